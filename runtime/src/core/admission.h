// Admission limits the core applies once for every plane: a counter of what
// is in use (connections, running handlers) against a configured limit.
#ifndef DYNRPC_RUNTIME_SRC_CORE_ADMISSION_H_
#define DYNRPC_RUNTIME_SRC_CORE_ADMISSION_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <utility>

namespace dynrpc::internal {

// Thread-safe. Tokens share the counter, so a token may outlive the
// Admission that issued it (a connection that closes after its server).
class Admission {
 public:
  // Holds one unit until destroyed (or moved from).
  class Token {
   public:
    Token(Token&&) = default;
    Token& operator=(Token&& other) noexcept {
      Release();
      state_ = std::move(other.state_);
      gauge_ = other.gauge_;
      return *this;
    }
    ~Token() { Release(); }

   private:
    friend class Admission;
    Token(std::shared_ptr<std::atomic<std::size_t>> state,
          std::atomic<int64_t>* gauge)
        : state_(std::move(state)), gauge_(gauge) {
      if (gauge_) gauge_->fetch_add(1, std::memory_order_relaxed);
    }
    void Release() {
      if (state_) {
        state_->fetch_sub(1, std::memory_order_acq_rel);
        if (gauge_) gauge_->fetch_sub(1, std::memory_order_relaxed);
      }
      state_.reset();
    }
    std::shared_ptr<std::atomic<std::size_t>> state_;
    std::atomic<int64_t>* gauge_;  // never dangles: the process's metrics
  };

  // `gauge` (optional, the process's metrics) counts the units in use too.
  explicit Admission(std::size_t limit, std::atomic<int64_t>* gauge = nullptr)
      : limit_(limit),
        in_use_(std::make_shared<std::atomic<std::size_t>>(0)),
        gauge_(gauge) {}

  // A unit, or nullopt when `limit` are in use.
  std::optional<Token> TryAcquire() {
    std::size_t n = in_use_->load(std::memory_order_relaxed);
    do {
      if (n >= limit_) return std::nullopt;
    } while (!in_use_->compare_exchange_weak(n, n + 1,
                                             std::memory_order_acq_rel));
    return Token(in_use_, gauge_);
  }

  std::size_t limit() const { return limit_; }

 private:
  const std::size_t limit_;
  std::shared_ptr<std::atomic<std::size_t>> in_use_;
  std::atomic<int64_t>* const gauge_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_ADMISSION_H_
