// dynrpc: a command line for any dynrpc server (and, over the HTTP plane,
// any gRPC server with reflection). See `dynrpc --help`.
//
// Exit status: the gRPC status code of what failed (0 for OK), so scripts
// can rely on it; errors go to stderr as "CODE: message".
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "descriptors.h"
#include "dynrpc/dynrpc.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.pb.h"

namespace dynrpc::cli {
namespace {

namespace asio = boost::asio;
namespace pb = google::protobuf;

constexpr char kUsage[] = R"(usage: dynrpc COMMAND [OPTIONS] ARGS

Commands (each has --help):
  list ADDRESS [SERVICE]        the services a server hosts, or a service's methods
  describe ADDRESS SYMBOL       a service, method, message or enum, as .proto text
  call ADDRESS pkg.Service/Method [JSON]
                                calls a method; streams print one JSON message a
                                line, client streams read one a line from stdin
  health ADDRESS [SERVICE]      the server's (or a service's) health
  instances SERVICE             the instances discovery lists for a service

ADDRESS is a server's address (host:port on tcp and http; '*' or an instance
id on nats) or a service's name ("helloworld.Greeter"), found through
discovery. The request plane and its settings come from the environment
(DYN_REQUEST_PLANE, NATS_SERVER, DYN_NAMESPACE, ...), as for any dynrpc
process; the options below override them.

Options:
  -H, --header KEY:VALUE        metadata to send (repeatable)
  --timeout DURATION            the call's deadline: 500ms, 5s, 2m (default:
                                the plane's request timeout)
  --compression NAME            identity, deflate or gzip for what is sent
  --plane tcp|http|nats         the request plane (DYN_REQUEST_PLANE)
  --nats-server URL             the NATS server (NATS_SERVER)
  --namespace NAME              discovery's and NATS's namespace (DYN_NAMESPACE)
  -h, --help                    this text, or a command's

Exit status: the gRPC status code (0 OK, 3 INVALID_ARGUMENT, 5 NOT_FOUND,
12 UNIMPLEMENTED, 14 UNAVAILABLE, ...); errors go to stderr as CODE: message.
)";

constexpr char kListHelp[] = R"(usage: dynrpc list ADDRESS [SERVICE]

Without SERVICE: the services the server at ADDRESS hosts, one a line.
With SERVICE: its methods, one a line (pkg.Service.Method). Uses the
server's reflection service (grpc.reflection.v1, or v1alpha).
)";
constexpr char kDescribeHelp[] = R"(usage: dynrpc describe ADDRESS SYMBOL

SYMBOL (a service, pkg.Service.Method, a message or an enum, fully
qualified) as .proto text, from the server's reflection service.
)";
constexpr char kCallHelp[] = R"(usage: dynrpc call ADDRESS pkg.Service/Method [JSON]

Calls the method with the request JSON (default {}) and prints the response
as JSON. A server-streaming method prints each message on its own line as it
arrives. A client-streaming or bidi method reads its requests from stdin,
one JSON message a line, and prints responses as they arrive. Exits with the
call's status code.
)";
constexpr char kHealthHelp[] = R"(usage: dynrpc health ADDRESS [SERVICE]

Asks grpc.health.v1.Health/Check for the server as a whole, or for SERVICE,
and prints SERVING, NOT_SERVING or UNKNOWN. Exit status 0 when SERVING, 14
(UNAVAILABLE) otherwise, 5 (NOT_FOUND) for a service the server does not
host.
)";
constexpr char kInstancesHelp[] = R"(usage: dynrpc instances SERVICE

The instances of SERVICE that discovery lists (DYN_DISCOVERY_BACKEND,
DYN_FILE_KV or ETCD_ENDPOINTS, DYN_NAMESPACE), one a line:
<instance id> <plane> <address>. Waits up to --timeout (default 2s) for the
first listing; NOT_FOUND when there is none.
)";

struct Options {
  std::string command;
  std::vector<std::string> args;
  Metadata headers;
  std::optional<Clock::duration> timeout;
  std::optional<Compression> compression;
  std::optional<std::string> plane;
  std::optional<std::string> nats_server;
  std::optional<std::string> name_space;
  bool help = false;
};

int Exit(const absl::Status& status) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "%s: %s\n",
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return static_cast<int>(status.code());
}

std::optional<Clock::duration> ParseDuration(std::string_view text) {
  std::string_view digits = text;
  std::chrono::milliseconds unit = std::chrono::seconds(1);
  if (text.ends_with("ms")) {
    digits = text.substr(0, text.size() - 2);
    unit = std::chrono::milliseconds(1);
  } else if (text.ends_with("s")) {
    digits = text.substr(0, text.size() - 1);
  } else if (text.ends_with("m")) {
    digits = text.substr(0, text.size() - 1);
    unit = std::chrono::minutes(1);
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &n) ||
      n == 0 || n > 7 * 24 * 3600 * 1000ull) {
    return std::nullopt;
  }
  return unit * static_cast<int64_t>(n);
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  std::vector<std::string> words(argv + 1, argv + argc);
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= words.size()) {
        return absl::InvalidArgumentError(absl::StrCat(w, " needs a value"));
      }
      return words[++i];
    };
    if (w == "-h" || w == "--help") {
      o.help = true;
    } else if (w == "-H" || w == "--header") {
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      std::size_t colon = v->find(':');
      if (colon == std::string::npos || colon == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "header '", *v, "' is not KEY:VALUE"));
      }
      std::string key = absl::AsciiStrToLower(v->substr(0, colon));
      std::string val(absl::StripLeadingAsciiWhitespace(v->substr(colon + 1)));
      o.headers.emplace_back(std::move(key), std::move(val));
    } else if (w == "--timeout") {
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      o.timeout = ParseDuration(*v);
      if (!o.timeout) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--timeout '", *v, "' is not a duration (500ms, 5s, 2m)"));
      }
    } else if (w == "--compression") {
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      o.compression = ParseCompression(absl::AsciiStrToLower(*v));
      if (!o.compression) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--compression '", *v, "' is not identity, deflate or gzip"));
      }
    } else if (w == "--plane") {
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      o.plane = *v;
    } else if (w == "--nats-server") {
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      o.nats_server = *v;
    } else if (w == "--namespace") {
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      o.name_space = *v;
    } else if (w.size() > 1 && w[0] == '-' && w != "-") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option ", w, " (see dynrpc --help)"));
    } else if (o.command.empty()) {
      o.command = w;
    } else {
      o.args.push_back(w);
    }
  }
  return o;
}

// The environment's configuration with the options' overrides.
absl::StatusOr<Config> MakeConfig(const Options& o) {
  absl::StatusOr<Config> config = Config::FromEnvironment();
  if (!config.ok()) return config.status();
  // A command is not a process to watch: no system server of its own (it
  // would take the port of the service it is run beside).
  config->system_port.reset();
  if (o.plane) {
    absl::StatusOr<RequestPlaneKind> plane = ParseRequestPlane(*o.plane);
    if (!plane.ok()) return plane.status();
    config->request_plane = *plane;
  }
  if (o.nats_server) config->nats.server = *o.nats_server;
  if (o.name_space) {
    config->nats.name_space = *o.name_space;
    config->discovery.name_space = *o.name_space;
  }
  return config;
}

// A server's address, not a service's name: host:port, or on NATS '*' or
// an instance id (16 hex digits).
bool IsAddress(const std::string& target, const Config& config) {
  if (target.find(':') != std::string::npos) return true;
  if (config.request_plane != RequestPlaneKind::kNats) return false;
  if (target == "*") return true;
  return target.size() == 16 &&
         target.find_first_not_of("0123456789abcdef") == std::string::npos;
}

absl::StatusOr<std::shared_ptr<Channel>> Connect(Runtime& runtime,
                                                 const std::string& target,
                                                 const Config& config) {
  if (IsAddress(target, config)) {
    return Channel::Create(runtime.executor(), target, config);
  }
  return Channel::ForService(runtime.executor(), target, ChannelOptions{},
                             config);
}

void Prepare(ClientContext& context, const Options& o) {
  for (const auto& [key, value] : o.headers) context.AddMetadata(key, value);
  if (o.timeout) context.set_timeout(*o.timeout);
  if (o.compression) context.set_compression(*o.compression);
}

// One JSON message a line on stdout, whole lines even from two threads.
void PrintLine(const std::string& line) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

absl::StatusOr<std::string> ToJson(const pb::Message& message) {
  std::string json;
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  pb::util::Status s = pb::util::MessageToJsonString(message, &json, options);
  if (!s.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print a ", message.GetDescriptor()->full_name(),
                     " as JSON: ", std::string(s.message())));
  }
  return json;
}

absl::Status FromJson(const std::string& json, pb::Message& message,
                      std::string_view where) {
  pb::util::Status s = pb::util::JsonStringToMessage(json, &message);
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(where), " is not a JSON ",
      message.GetDescriptor()->full_name(), ": ", std::string(s.message())));
}

// Prints `bytes` parsed as `type` as one JSON line.
absl::Status PrintMessage(const pb::Message& prototype,
                          const std::string& bytes) {
  std::unique_ptr<pb::Message> message(prototype.New());
  if (!message->ParseFromString(bytes)) {
    return absl::InternalError(absl::StrCat(
        "the response is not a ", prototype.GetDescriptor()->full_name()));
  }
  absl::StatusOr<std::string> json = ToJson(*message);
  if (!json.ok()) return json.status();
  PrintLine(*json);
  return absl::OkStatus();
}

// ---- commands ---------------------------------------------------------------

absl::Status List(Runtime& runtime, Channel& channel, const Options& o) {
  ClientContext context;
  Prepare(context, o);
  RemoteDescriptors remote(channel, context);
  if (o.args.size() == 1) {
    absl::StatusOr<std::vector<std::string>> services =
        runtime.Run(remote.ListServices());
    if (!services.ok()) return services.status();
    for (const std::string& s : *services) PrintLine(s);
    return absl::OkStatus();
  }
  const std::string& name = o.args[1];
  if (absl::Status s = runtime.Run(remote.FetchSymbol(name)); !s.ok()) return s;
  const pb::ServiceDescriptor* service = remote.pool().FindServiceByName(name);
  if (service == nullptr) {
    return absl::NotFoundError(absl::StrCat("'", name, "' is not a service"));
  }
  for (int i = 0; i < service->method_count(); ++i) {
    PrintLine(service->method(i)->full_name());
  }
  return absl::OkStatus();
}

absl::Status Describe(Runtime& runtime, Channel& channel, const Options& o) {
  ClientContext context;
  Prepare(context, o);
  RemoteDescriptors remote(channel, context);
  const std::string& symbol = o.args[1];
  if (absl::Status s = runtime.Run(remote.FetchSymbol(symbol)); !s.ok()) {
    return s;
  }
  const pb::DescriptorPool& pool = remote.pool();
  std::string text;
  if (const auto* s = pool.FindServiceByName(symbol)) {
    text = s->DebugString();
  } else if (const auto* m = pool.FindMethodByName(symbol)) {
    text = m->DebugString();
  } else if (const auto* t = pool.FindMessageTypeByName(symbol)) {
    text = t->DebugString();
  } else if (const auto* e = pool.FindEnumTypeByName(symbol)) {
    text = e->DebugString();
  } else if (const auto* f = pool.FindFieldByName(symbol)) {
    text = f->DebugString();
  } else {
    return absl::NotFoundError(absl::StrCat("no symbol named '", symbol, "'"));
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  PrintLine(text);
  return absl::OkStatus();
}

absl::Status Call(Runtime& runtime, Channel& channel, const Options& o) {
  const std::string& path = o.args[1];
  std::size_t slash = path.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == path.size() ||
      path.find('/', slash + 1) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path, "' is not a method: give pkg.Service/Method"));
  }
  const std::string service = path.substr(0, slash);
  const std::string method_name =
      absl::StrCat(service, ".", path.substr(slash + 1));
  const std::string wire_path = absl::StrCat("/", path);

  ClientContext reflection_context;
  Prepare(reflection_context, o);
  RemoteDescriptors remote(channel, reflection_context);
  if (absl::Status s = runtime.Run(remote.FetchSymbol(service)); !s.ok()) {
    return s;
  }
  const pb::MethodDescriptor* method = remote.pool().FindMethodByName(method_name);
  if (method == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("the server has no method ", path));
  }
  pb::DynamicMessageFactory factory(&remote.pool());
  const pb::Message& request_type = *factory.GetPrototype(method->input_type());
  const pb::Message& response_type =
      *factory.GetPrototype(method->output_type());

  ClientContext context;
  Prepare(context, o);
  if (!method->client_streaming()) {
    std::unique_ptr<pb::Message> request(request_type.New());
    const std::string json = o.args.size() > 2 ? o.args[2] : "{}";
    if (absl::Status s = FromJson(json, *request, "the request"); !s.ok()) {
      return s;
    }
    if (!method->server_streaming()) {
      absl::StatusOr<std::string> reply = runtime.Run(
          channel.CallUnary(context, wire_path, request->SerializeAsString()));
      if (!reply.ok()) return reply.status();
      return PrintMessage(response_type, *reply);
    }
    std::unique_ptr<RawClientStream> stream =
        channel.StartStream(context, wire_path, request->SerializeAsString());
    for (;;) {
      absl::StatusOr<std::optional<std::string>> next =
          runtime.Run(stream->Read());
      if (!next.ok() || !next->has_value()) break;
      if (absl::Status s = PrintMessage(response_type, **next); !s.ok()) {
        context.TryCancel();
        return s;
      }
    }
    return runtime.Run(stream->Finish());
  }
  if (o.args.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is a client-streaming method: its requests come from stdin, "
              "one JSON message a line"));
  }
  std::unique_ptr<RawClientStream> stream =
      channel.StartStream(context, wire_path, std::nullopt);
  // Responses print as they arrive while stdin is read.
  auto reader = [&]() -> asio::awaitable<absl::Status> {
    for (;;) {
      absl::StatusOr<std::optional<std::string>> next = co_await stream->Read();
      if (!next.ok() || !next->has_value()) co_return absl::OkStatus();
      if (absl::Status s = PrintMessage(response_type, **next); !s.ok()) {
        co_return s;
      }
    }
  };
  std::future<absl::Status> printed =
      asio::co_spawn(runtime.executor(), reader(), asio::use_future);
  absl::Status input;
  std::string line;
  int number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    std::unique_ptr<pb::Message> request(request_type.New());
    input = FromJson(line, *request, absl::StrCat("stdin line ", number));
    if (!input.ok()) break;
    absl::Status written = runtime.Run(
        stream->Write(request->SerializeAsString(), WriteOptions{}));
    if (!written.ok()) break;  // the call ended: Finish says why
  }
  if (!input.ok()) {
    context.TryCancel();
    printed.wait();
    return input;
  }
  (void)runtime.Run(stream->WritesDone());
  absl::Status print_error = printed.get();
  absl::Status status = runtime.Run(stream->Finish());
  return status.ok() ? print_error : status;
}

absl::Status Health(Runtime& runtime, Channel& channel, const Options& o) {
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  ClientContext context;
  Prepare(context, o);
  HealthCheckRequest request;
  if (o.args.size() > 1) request.set_service(o.args[1]);
  absl::StatusOr<std::string> reply =
      runtime.Run(channel.CallUnary(context, "/grpc.health.v1.Health/Check",
                                    request.SerializeAsString()));
  if (!reply.ok()) return reply.status();
  HealthCheckResponse response;
  if (!response.ParseFromString(*reply)) {
    return absl::InternalError("the answer is not a HealthCheckResponse");
  }
  const std::string status =
      HealthCheckResponse::ServingStatus_Name(response.status());
  PrintLine(status);
  if (response.status() == HealthCheckResponse::SERVING) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat(
      request.service().empty() ? std::string("the server")
                                : absl::StrCat("service ", request.service()),
      " is ", status));
}

absl::Status Instances(Runtime& runtime, const Config& config,
                       const Options& o) {
  const std::string& service = o.args[0];
  absl::StatusOr<std::shared_ptr<Channel>> channel = Channel::ForService(
      runtime.executor(), service, ChannelOptions{}, config);
  if (!channel.ok()) return channel.status();
  const Clock::time_point until =
      Clock::now() + o.timeout.value_or(std::chrono::seconds(2));
  std::vector<Instance> instances;
  // The first listing comes from discovery's watch, shortly.
  while ((instances = (*channel)->instances()).empty() &&
         Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (instances.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no instance of ", service, " is registered in namespace ",
        config.discovery.name_space, " (",
        std::string(DiscoveryBackendName(config.discovery.backend)),
        " discovery)"));
  }
  for (const Instance& i : instances) {
    PrintLine(absl::StrFormat("%016x %s %s", i.id, i.plane, i.address));
  }
  return absl::OkStatus();
}

struct Command {
  std::string_view name;
  const char* help;
  std::size_t min_args, max_args;
};
constexpr Command kCommands[] = {
    {"list", kListHelp, 1, 2},         {"describe", kDescribeHelp, 2, 2},
    {"call", kCallHelp, 2, 3},         {"health", kHealthHelp, 1, 2},
    {"instances", kInstancesHelp, 1, 1},
};

int Main(int argc, char** argv) {
  absl::StatusOr<Options> options = ParseArgs(argc, argv);
  if (!options.ok()) return Exit(options.status());
  const Options& o = *options;
  if (o.command.empty()) {
    std::fputs(kUsage, o.help ? stdout : stderr);
    return o.help ? 0 : Exit(absl::InvalidArgumentError("no command given"));
  }
  const Command* command = nullptr;
  for (const Command& c : kCommands) {
    if (c.name == o.command) command = &c;
  }
  if (command == nullptr) {
    return Exit(absl::InvalidArgumentError(absl::StrCat(
        "unknown command '", o.command,
        "': list, describe, call, health or instances (dynrpc --help)")));
  }
  if (o.help) {
    std::fputs(command->help, stdout);
    return 0;
  }
  if (o.args.size() < command->min_args || o.args.size() > command->max_args) {
    std::fputs(command->help, stderr);
    return Exit(absl::InvalidArgumentError(
        absl::StrCat("dynrpc ", o.command, ": wrong number of arguments")));
  }
  absl::StatusOr<Config> config = MakeConfig(o);
  if (!config.ok()) return Exit(config.status());
  Runtime runtime(2);
  if (o.command == "instances") return Exit(Instances(runtime, *config, o));
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Connect(runtime, o.args[0], *config);
  if (!channel.ok()) return Exit(channel.status());
  absl::Status status;
  if (o.command == "list") {
    status = List(runtime, **channel, o);
  } else if (o.command == "describe") {
    status = Describe(runtime, **channel, o);
  } else if (o.command == "call") {
    status = Call(runtime, **channel, o);
  } else {
    status = Health(runtime, **channel, o);
  }
  return Exit(status);
}

}  // namespace
}  // namespace dynrpc::cli

int main(int argc, char** argv) { return dynrpc::cli::Main(argc, argv); }
