// Everything generated code and applications need, in one include.
#ifndef DYNRPC_DYNRPC_H_
#define DYNRPC_DYNRPC_H_

#include "dynrpc/channel.h"     // IWYU pragma: export
#include "dynrpc/config.h"      // IWYU pragma: export
#include "dynrpc/context.h"     // IWYU pragma: export
#include "dynrpc/routing.h"     // IWYU pragma: export
#include "dynrpc/runtime.h"     // IWYU pragma: export
#include "dynrpc/server.h"      // IWYU pragma: export
#include "dynrpc/service.h"     // IWYU pragma: export
#include "dynrpc/status_macros.h"  // IWYU pragma: export

#endif  // DYNRPC_DYNRPC_H_
