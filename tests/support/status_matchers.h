// GoogleTest matchers for absl::Status and absl::StatusOr<T> (Abseil
// 20220623 ships none).
//
//   EXPECT_THAT(status, IsOk());
//   EXPECT_THAT(reply, StatusIs(absl::StatusCode::kUnavailable));
//   EXPECT_THAT(reply, StatusIs(absl::StatusCode::kResourceExhausted,
//                               HasSubstr("DYN_TCP_MAX_MESSAGE_SIZE")));
#ifndef DYNRPC_TESTS_SUPPORT_STATUS_MATCHERS_H_
#define DYNRPC_TESTS_SUPPORT_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace dynrpc::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher,
                                       std::string(s.message()),
                                       result_listener);
}

// Overload without a message matcher.
inline auto StatusIs(absl::StatusCode code) {
  return StatusIs(code, ::testing::_);
}

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_STATUS_MATCHERS_H_
