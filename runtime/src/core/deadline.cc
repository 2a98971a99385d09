#include "core/deadline.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/error.hpp"
#include "boost/system/system_error.hpp"

namespace dynrpc::internal {

absl::Status StatusFromException(std::exception_ptr e, std::string_view what,
                                 absl::StatusCode otherwise) {
  absl::string_view prefix(what.data(), what.size());
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& error) {
    if (error.code() == boost::asio::error::operation_aborted) {
      return absl::CancelledError(absl::StrCat(prefix, " was cancelled"));
    }
    return absl::Status(otherwise, absl::StrCat(prefix, " threw: ", error.what()));
  } catch (const std::exception& error) {
    return absl::Status(otherwise, absl::StrCat(prefix, " threw: ", error.what()));
  } catch (...) {
    return absl::Status(otherwise,
                        absl::StrCat(prefix, " threw a non-std exception"));
  }
}

}  // namespace dynrpc::internal
