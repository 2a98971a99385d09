// Status propagation helpers for functions and coroutines that return
// absl::Status or absl::StatusOr<T> (Abseil 20220623 ships none of its own).
//
// Example:
//   absl::StatusOr<int> Parse(std::string_view s);
//   absl::Status Use(std::string_view s) {
//     DYNRPC_ASSIGN_OR_RETURN(int n, Parse(s));
//     DYNRPC_RETURN_IF_ERROR(Check(n));
//     return absl::OkStatus();
//   }
//
// Coroutines cannot `return`; they use the DYNRPC_CO_* forms, which
// `co_return` the error instead.
#ifndef DYNRPC_STATUS_MACROS_H_
#define DYNRPC_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DYNRPC_INTERNAL_CONCAT_(a, b) a##b
#define DYNRPC_INTERNAL_CONCAT(a, b) DYNRPC_INTERNAL_CONCAT_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define DYNRPC_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    ::absl::Status dynrpc_status_ = (expr);            \
    if (!dynrpc_status_.ok()) return dynrpc_status_;   \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (a declaration or an lvalue).
#define DYNRPC_ASSIGN_OR_RETURN(lhs, rexpr)                                 \
  DYNRPC_INTERNAL_ASSIGN_OR_RETURN_(                                        \
      DYNRPC_INTERNAL_CONCAT(dynrpc_statusor_, __LINE__), lhs, rexpr, return)

// Coroutine forms: identical, but leave with `co_return`.
#define DYNRPC_CO_RETURN_IF_ERROR(expr)                   \
  do {                                                    \
    ::absl::Status dynrpc_status_ = (expr);               \
    if (!dynrpc_status_.ok()) co_return dynrpc_status_;   \
  } while (false)

#define DYNRPC_CO_ASSIGN_OR_RETURN(lhs, rexpr)                        \
  DYNRPC_INTERNAL_ASSIGN_OR_RETURN_(                                  \
      DYNRPC_INTERNAL_CONCAT(dynrpc_statusor_, __LINE__), lhs, rexpr, \
      co_return)

#define DYNRPC_INTERNAL_ASSIGN_OR_RETURN_(tmp, lhs, rexpr, ret) \
  auto tmp = (rexpr);                                           \
  if (!tmp.ok()) ret std::move(tmp).status();                   \
  lhs = std::move(tmp).value()

#endif  // DYNRPC_STATUS_MACROS_H_
