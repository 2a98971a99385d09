#include "nats/protocol.h"

#include <algorithm>
#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/task_group.h"
#include "dynrpc/status_macros.h"
#include "nats/envelope.h"

namespace dynrpc::internal::nats {

std::optional<std::string> MethodSubjectSuffix(std::string_view path) {
  if (path.size() < 4 || path.front() != '/') return std::nullopt;
  std::size_t slash = path.find('/', 1);
  if (slash == std::string_view::npos || slash == 1 ||
      slash + 1 >= path.size()) {
    return std::nullopt;
  }
  std::string subject(path.substr(1));
  subject[slash - 1] = '.';
  if (subject.find_first_of(" \t*>/") != std::string::npos) return std::nullopt;
  return subject;
}

std::string ServiceOf(std::string_view path) {
  std::size_t slash = path.find('/', 1);
  return std::string(path.substr(1, slash == std::string_view::npos
                                        ? std::string_view::npos
                                        : slash - 1));
}

std::string EncodeMetadata(const Metadata& metadata) {
  std::string raw;
  for (const auto& [k, v] : metadata) {
    PutLength(raw, k.size());
    raw += k;
    PutLength(raw, v.size());
    raw += v;
  }
  return absl::Base64Escape(raw);
}

std::optional<Metadata> DecodeMetadata(std::string_view value) {
  std::string raw;
  if (!absl::Base64Unescape(absl::string_view(value.data(), value.size()),
                            &raw)) {
    return std::nullopt;
  }
  Metadata metadata;
  std::string_view in = raw;
  while (!in.empty()) {
    std::size_t n = 0;
    if (!GetLength(in, n)) return std::nullopt;
    std::string key(in.substr(0, n));
    in.remove_prefix(n);
    if (!GetLength(in, n)) return std::nullopt;
    metadata.emplace_back(std::move(key), std::string(in.substr(0, n)));
    in.remove_prefix(n);
  }
  return metadata;
}

std::string EncodeText(std::string_view text) {
  return absl::Base64Escape(absl::string_view(text.data(), text.size()));
}

std::string DecodeText(std::string_view value) {
  std::string text;
  if (!absl::Base64Unescape(absl::string_view(value.data(), value.size()),
                            &text)) {
    return std::string(value);
  }
  return text;
}

void AddStatus(NatsHeaders& headers, const absl::Status& status) {
  headers.emplace_back(kCode, std::to_string(static_cast<int>(status.code())));
  if (!status.message().empty()) {
    headers.emplace_back(
        kMessage, EncodeText(std::string_view(status.message().data(),
                                              status.message().size())));
  }
}

absl::Status StatusFrom(const NatsMessage& message) {
  const std::string* code = message.Header(kCode);
  int n = 0;
  if (code == nullptr || !absl::SimpleAtoi(*code, &n) || n < 0 || n > 16) {
    return absl::InternalError("a NATS call ended without a valid status");
  }
  const std::string* text = message.Header(kMessage);
  return absl::Status(static_cast<absl::StatusCode>(n),
                      text ? DecodeText(*text) : "");
}

absl::Status CheckMessageSize(const NatsConfig& config, std::size_t size,
                              std::string_view what) {
  if (config.max_message_size == 0 || size <= config.max_message_size) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      std::string(what), " of ", size,
      " bytes exceeds DYN_NATS_MAX_MESSAGE_SIZE=", config.max_message_size,
      " bytes"));
}

boost::asio::awaitable<void> EveryHeartbeat(std::function<bool()> tick) {
  namespace asio = boost::asio;
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!co_await TaskCancelled()) {
    timer.expires_after(kHeartbeatInterval);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || !tick()) break;
  }
}

absl::Status CheckSequence(const NatsMessage& message, int64_t* expected) {
  const std::string* seq = message.Header(kSeq);
  int64_t n = -1;
  if (seq == nullptr || !absl::SimpleAtoi(*seq, &n) || n != *expected) {
    return absl::DataLossError(absl::StrCat(
        "stream message ", *expected, " was lost in transit (the next one "
        "to arrive was ", seq ? *seq : "unnumbered", ")"));
  }
  ++*expected;
  return absl::OkStatus();
}

std::size_t ReceiveLimit(const NatsConfig& config, int64_t max_payload) {
  std::size_t limit =
      static_cast<std::size_t>(std::max<int64_t>(max_payload, 1));
  if (config.max_message_size != 0) {
    limit = std::min(limit, config.max_message_size);
  }
  return limit;
}

void AddCompression(NatsHeaders& headers, Compression compression) {
  if (compression == Compression::kIdentity) return;
  headers.emplace_back(kEncoding, std::string(CompressionName(compression)));
}

absl::StatusOr<Compression> CompressionFrom(const NatsMessage& message) {
  const std::string* name = message.Header(kEncoding);
  if (name == nullptr) return Compression::kIdentity;
  std::optional<Compression> compression = ParseCompression(*name);
  if (!compression) return UnsupportedCompression(*name);
  return *compression;
}

absl::Status DeliverInOrder(NatsMessage& message, int64_t* expected,
                            StreamState& state, std::string_view peer) {
  DYNRPC_RETURN_IF_ERROR(CheckSequence(message, expected));
  absl::StatusOr<Compression> compression = CompressionFrom(message);
  if (!compression.ok()) return compression.status();
  if (state.Deliver(std::move(message.data), *compression)) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      std::string(peer), " sent beyond the stream's credit"));
}

void AddCredit(const NatsMessage& message, StreamState& state) {
  uint32_t bytes = 0;
  const std::string* credit = message.Header(kCredit);
  if (credit != nullptr && absl::SimpleAtoi(*credit, &bytes)) {
    state.AddSendWindow(bytes);
  }
}

Clock::rep NowCount() { return Clock::now().time_since_epoch().count(); }

std::optional<uint64_t> CallNumber(std::string_view subject) {
  std::size_t dot = subject.rfind('.');
  uint64_t n = 0;
  if (dot == std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(subject.data() + dot + 1,
                                          subject.size() - dot - 1),
                        &n)) {
    return std::nullopt;
  }
  return n;
}

const std::shared_ptr<const Liveness::Policy>& HeartbeatPolicy() {
  static const auto* const policy = new std::shared_ptr<const Liveness::Policy>(
      std::make_shared<const Liveness::Policy>(Liveness::Policy{
          .interval = kHeartbeatInterval,
          .timeout = std::chrono::milliseconds(3000),
          .peer_answers_probes = false,
          .probe_name = "heartbeat",
          .timeout_setting = "3000 ms",
          .idle_setting = ""}));
  return *policy;
}

bool PeerLost(Clock::rep since) {
  const Liveness::Policy& policy = *HeartbeatPolicy();
  return Clock::now() - Clock::time_point(Clock::duration(since)) >
         policy.interval + policy.timeout;
}

std::string NewId() {
  thread_local absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

}  // namespace dynrpc::internal::nats
