#include "discovery/etcd_discovery.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/use_future.hpp"
#include "core/log.h"
#include "core/task_group.h"
#include "dynrpc/channel.h"
#include "etcd/etcd_v3.dynrpc.pb.h"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

// How long one etcd request may take, and the pause before a failed watch
// or keepalive stream is opened again.
constexpr std::chrono::seconds kRequestTimeout{5};
constexpr std::chrono::seconds kRetryPause{1};

// The end of etcd's range for every key that starts with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

asio::awaitable<bool> Pause(std::chrono::milliseconds how_long) {
  asio::steady_timer timer(co_await asio::this_coro::executor, how_long);
  auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return !ec;
}

class EtcdDiscovery final
    : public Discovery,
      public std::enable_shared_from_this<EtcdDiscovery> {
 public:
  EtcdDiscovery(DiscoveryConfig config, asio::any_io_executor executor,
                std::vector<std::shared_ptr<Channel>> channels)
      : config_(std::move(config)),
        executor_(executor),
        channels_(std::move(channels)) {}

  std::string Describe() const override {
    return absl::StrCat("etcd at ", absl::StrJoin(config_.etcd_endpoints, ","),
                        " (ETCD_ENDPOINTS)");
  }

  std::string Prefix(const std::string& service) const {
    return absl::StrCat("dynrpc/", config_.name_space, "/", service, "/");
  }

  // The endpoint's channel to use now; Failed() moves to the next.
  std::shared_ptr<Channel> channel() const {
    return channels_[current_.load() % channels_.size()];
  }
  void Failed(const absl::Status& status) {
    if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
      current_.fetch_add(1);
    }
  }

  absl::Status Annotate(const absl::Status& status,
                        const std::string& what) const {
    return absl::Status(
        status.ok() ? absl::StatusCode::kUnknown : status.code(),
        absl::StrCat(what, " failed: ", status.message(), " (", Describe(),
                     ")"));
  }

  // --- registration ---
  struct Lease {
    std::mutex mu;
    int64_t id = 0;  // under mu
    std::vector<std::pair<std::string, std::string>> entries;  // key, value
  };

  // Grants a lease and puts every entry under it.
  asio::awaitable<absl::Status> GrantAndPut(Lease& lease) {
    etcdserverpb::Lease::Stub leases(channel());
    etcdserverpb::LeaseGrantRequest grant;
    grant.set_ttl(std::max<int64_t>(
        1, std::chrono::ceil<std::chrono::seconds>(config_.lease_ttl).count()));
    ClientContext grant_context;
    grant_context.set_timeout(kRequestTimeout);
    absl::StatusOr<etcdserverpb::LeaseGrantResponse> granted =
        co_await leases.LeaseGrant(grant_context, grant);
    if (!granted.ok()) {
      Failed(granted.status());
      co_return Annotate(granted.status(), "granting a lease");
    }
    if (!granted->error().empty()) {
      co_return absl::UnavailableError(
          absl::StrCat("granting a lease failed: ", granted->error(), " (",
                       Describe(), ")"));
    }
    etcdserverpb::KV::Stub kv(channel());
    for (const auto& [key, value] : lease.entries) {
      etcdserverpb::PutRequest put;
      put.set_key(key);
      put.set_value(value);
      put.set_lease(granted->id());
      ClientContext context;
      context.set_timeout(kRequestTimeout);
      absl::StatusOr<etcdserverpb::PutResponse> done =
          co_await kv.Put(context, put);
      if (!done.ok()) {
        Failed(done.status());
        co_return Annotate(done.status(), absl::StrCat("putting ", key));
      }
    }
    std::lock_guard lock(lease.mu);
    lease.id = granted->id();
    co_return absl::OkStatus();
  }

  // Keeps the lease alive: a keepalive every third of its time on one
  // stream; a lease found gone (etcd answers TTL 0) is granted again and
  // the entries put again; a broken stream is opened again.
  static asio::awaitable<void> KeepAlive(std::shared_ptr<EtcdDiscovery> self,
                                         std::shared_ptr<Lease> lease) {
    const auto every = std::chrono::duration_cast<std::chrono::milliseconds>(
        self->config_.lease_ttl / 3);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!co_await TaskCancelled()) {
      etcdserverpb::Lease::Stub leases(self->channel());
      ClientContext context;
      context.set_timeout(std::chrono::hours(24 * 365));
      // A member cut off from its cluster's leader refuses rather than
      // answers for a lease it cannot keep.
      context.AddMetadata("hasleader", "true");
      auto stream = leases.LeaseKeepAlive(context);
      absl::Status failure;
      for (;;) {
        etcdserverpb::LeaseKeepAliveRequest ping;
        {
          std::lock_guard lock(lease->mu);
          ping.set_id(lease->id);
        }
        if (!(co_await stream.Write(ping)).ok()) break;
        // Each answer within a third of the lease, or this endpoint is
        // given up (the next one is tried) before the lease can expire.
        etcdserverpb::LeaseKeepAliveResponse pong;
        timer.expires_after(every);
        std::variant<bool, std::tuple<boost::system::error_code>> round =
            co_await (stream.Next(pong) ||
                      timer.async_wait(asio::as_tuple(asio::use_awaitable)));
        if (round.index() == 1) {
          failure = absl::DeadlineExceededError(absl::StrCat(
              "no keepalive answer within ", every.count(), " ms"));
          break;
        }
        if (!std::get<0>(round)) break;
        if (pong.ttl() <= 0) {
          // The lease expired (this process was cut off too long): the
          // entries are gone with it; register them again.
          if (absl::Status s = co_await self->GrantAndPut(*lease); !s.ok()) {
            DYNRPC_LOG(kWarn, "dynrpc::discovery", s.message());
            failure = s;
            break;
          }
        }
        if (!co_await Pause(every)) co_return;
      }
      // Ends the call rather than half-closing it: etcd keeps a stream open
      // after the client's half-close.
      context.TryCancel();
      absl::Status ended = co_await stream.Finish();
      if (co_await TaskCancelled()) co_return;
      self->Failed(failure.ok() ? ended : failure);
      if (!co_await Pause(kRetryPause)) co_return;
    }
  }

  class EtcdRegistration final : public Registration {
   public:
    EtcdRegistration(std::shared_ptr<EtcdDiscovery> discovery,
                     std::shared_ptr<Lease> lease,
                     std::unique_ptr<TaskGroup> keepalive)
        : discovery_(std::move(discovery)),
          lease_(std::move(lease)),
          keepalive_(std::move(keepalive)) {}

    ~EtcdRegistration() override { keepalive_->Stop(); }

    void Deregister() override {
      keepalive_->Stop();
      int64_t id;
      {
        std::lock_guard lock(lease_->mu);
        id = lease_->id;
        lease_->id = 0;
      }
      if (id == 0) return;
      // Revoking the lease deletes every entry under it at once.
      auto revoke = [](std::shared_ptr<EtcdDiscovery> d,
                       int64_t id) -> asio::awaitable<void> {
        etcdserverpb::Lease::Stub leases(d->channel());
        etcdserverpb::LeaseRevokeRequest request;
        request.set_id(id);
        ClientContext context;
        context.set_timeout(std::chrono::seconds(3));
        (void)co_await leases.LeaseRevoke(context, request);
      };
      // Unreachable etcd: the entries expire with the lease instead.
      asio::co_spawn(discovery_->executor_, revoke(discovery_, id),
                     asio::use_future)
          .get();
    }

   private:
    std::shared_ptr<EtcdDiscovery> discovery_;
    std::shared_ptr<Lease> lease_;
    std::unique_ptr<TaskGroup> keepalive_;  // stopped with the handle
  };

  absl::StatusOr<std::unique_ptr<Registration>> Register(
      std::vector<Instance> instances) override {
    auto lease = std::make_shared<Lease>();
    for (const Instance& i : instances) {
      lease->entries.emplace_back(
          absl::StrFormat("%s%016x", Prefix(i.service), i.id),
          EncodeInstance(i, config_.name_space, /*expires_unix_ms=*/0));
    }
    auto grant = [](std::shared_ptr<EtcdDiscovery> self,
                    std::shared_ptr<Lease> lease)
        -> asio::awaitable<absl::Status> {
      absl::Status s;
      // Each endpoint in turn, until one answers.
      for (std::size_t i = 0; i < self->channels_.size(); ++i) {
        s = co_await self->GrantAndPut(*lease);
        if (s.ok() || !(absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s))) {
          break;
        }
      }
      co_return s;
    };
    absl::Status granted =
        asio::co_spawn(executor_, grant(shared_from_this(), lease),
                       asio::use_future)
            .get();
    if (!granted.ok()) return granted;
    auto keepalive = std::make_unique<TaskGroup>(executor_);
    keepalive->Spawn(keepalive->NewStrand(),
                     KeepAlive(shared_from_this(), lease),
                     "etcd lease keepalive");
    return std::make_unique<EtcdRegistration>(
        shared_from_this(), std::move(lease), std::move(keepalive));
  }

  // --- watching ---
  class EtcdWatch final : public WatchHandle {
   public:
    explicit EtcdWatch(std::unique_ptr<TaskGroup> follow)
        : follow_(std::move(follow)) {}
    ~EtcdWatch() override { follow_->Stop(); }

   private:
    std::unique_ptr<TaskGroup> follow_;
  };

  static std::vector<Instance> Values(
      const std::map<std::string, Instance>& by_key) {
    std::vector<Instance> out;
    for (const auto& [key, i] : by_key) out.push_back(i);
    std::sort(out.begin(), out.end(),
              [](const Instance& a, const Instance& b) { return a.id < b.id; });
    return out;
  }

  // Range, then a watch from the next revision: every change, none missed.
  // A failure reports itself once and starts over after a pause.
  static asio::awaitable<void> Follow(std::shared_ptr<EtcdDiscovery> self,
                                      std::string service,
                                      InstancesCallback on_change) {
    const std::string prefix = self->Prefix(service);
    const std::string end = PrefixEnd(prefix);
    bool failing = false;
    while (!co_await TaskCancelled()) {
      std::map<std::string, Instance> by_key;
      etcdserverpb::KV::Stub kv(self->channel());
      etcdserverpb::RangeRequest range;
      range.set_key(prefix);
      range.set_range_end(end);
      ClientContext range_context;
      range_context.set_timeout(kRequestTimeout);
      absl::StatusOr<etcdserverpb::RangeResponse> listed =
          co_await kv.Range(range_context, range);
      if (co_await TaskCancelled()) co_return;
      absl::Status failure;
      if (listed.ok()) {
        for (const etcdserverpb::KeyValue& entry : listed->kvs()) {
          absl::StatusOr<DecodedInstance> d = DecodeInstance(entry.value());
          if (d.ok()) by_key[entry.key()] = std::move(d->instance);
        }
        failing = false;
        on_change(Values(by_key));
        etcdserverpb::Watch::Stub watches(self->channel());
        ClientContext context;
        context.set_timeout(std::chrono::hours(24 * 365));
        // A member cut off from its cluster's leader would deliver no
        // event and say nothing; with this it refuses, and the watch moves
        // to another endpoint.
        context.AddMetadata("hasleader", "true");
        auto stream = watches.Watch_(context);
        etcdserverpb::WatchRequest create;
        create.mutable_create_request()->set_key(prefix);
        create.mutable_create_request()->set_range_end(end);
        create.mutable_create_request()->set_start_revision(
            listed->header().revision() + 1);
        if ((co_await stream.Write(create)).ok()) {
          etcdserverpb::WatchResponse response;
          while (co_await stream.Next(response)) {
            if (response.canceled()) {  // compacted, say: start over
              failure = absl::UnavailableError(absl::StrCat(
                  "etcd cancelled the watch: ", response.cancel_reason()));
              break;
            }
            for (const etcdserverpb::Event& e : response.events()) {
              if (e.type() == etcdserverpb::Event::DELETE) {
                by_key.erase(e.kv().key());
              } else if (absl::StatusOr<DecodedInstance> d =
                             DecodeInstance(e.kv().value());
                         d.ok()) {
                by_key[e.kv().key()] = std::move(d->instance);
              }
            }
            if (!response.events().empty()) on_change(Values(by_key));
          }
        }
        // Ends the call rather than half-closing it: etcd keeps a watch
        // stream open after the client's half-close.
        context.TryCancel();
        absl::Status ended = co_await stream.Finish();
        if (failure.ok()) failure = ended;
        if (failure.ok() || absl::IsCancelled(failure)) {
          failure = absl::UnavailableError("the watch stream ended");
        }
      } else {
        failure = listed.status();
      }
      if (co_await TaskCancelled()) co_return;
      self->Failed(failure);
      if (!failing) on_change(self->Annotate(failure, "watching " + service));
      failing = true;
      if (!co_await Pause(kRetryPause)) co_return;
    }
  }

  std::unique_ptr<WatchHandle> Watch(std::string service,
                                     InstancesCallback on_change) override {
    auto follow = std::make_unique<TaskGroup>(executor_);
    follow->Spawn(follow->NewStrand(),
                  Follow(shared_from_this(), std::move(service),
                         std::move(on_change)),
                  "etcd watch");
    return std::make_unique<EtcdWatch>(std::move(follow));
  }

 private:
  const DiscoveryConfig config_;
  const asio::any_io_executor executor_;
  const std::vector<std::shared_ptr<Channel>> channels_;
  std::atomic<std::size_t> current_{0};
};

}  // namespace

absl::StatusOr<std::shared_ptr<Discovery>> CreateEtcdDiscovery(
    const DiscoveryConfig& config, asio::any_io_executor executor) {
  // etcd speaks gRPC: dynrpc's HTTP/2 plane, on gRPC's bare paths.
  Config http;
  http.request_plane = RequestPlaneKind::kHttp;
  http.http.root_path = "/";
  http.http.connect_timeout = std::chrono::seconds(2);
  std::vector<std::shared_ptr<Channel>> channels;
  for (const std::string& url : config.etcd_endpoints) {
    std::string target = url.substr(std::string_view("http://").size());
    if (!target.empty() && target.back() == '/') target.pop_back();
    absl::StatusOr<std::shared_ptr<Channel>> channel =
        Channel::Create(executor, target, http);
    if (!channel.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ETCD_ENDPOINTS entry '", url, "': ", channel.status().message()));
    }
    channels.push_back(*std::move(channel));
  }
  return std::shared_ptr<Discovery>(std::make_shared<EtcdDiscovery>(
      config, std::move(executor), std::move(channels)));
}

}  // namespace dynrpc::internal
