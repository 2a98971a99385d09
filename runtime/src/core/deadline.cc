#include "core/deadline.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/error.hpp"
#include "boost/system/system_error.hpp"

namespace dynrpc::internal {

absl::Status StatusFromException(std::exception_ptr e, std::string_view what) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& error) {
    if (error.code() == boost::asio::error::operation_aborted) {
      return absl::CancelledError("call cancelled");
    }
    return absl::InternalError(absl::StrCat(
        absl::string_view(what.data(), what.size()), ": ", error.what()));
  } catch (const std::exception& error) {
    return absl::InternalError(absl::StrCat(
        absl::string_view(what.data(), what.size()), ": ", error.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(
        absl::string_view(what.data(), what.size()), ": unknown exception"));
  }
}

}  // namespace dynrpc::internal
