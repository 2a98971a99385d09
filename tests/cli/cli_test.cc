// The `dynrpc` command line against a server on each request plane: what it
// prints, what it reads, and its exit status (the gRPC status code).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "dynrpc/dynrpc.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/nats_server.h"
#include "support/status_matchers.h"

extern char** environ;

namespace dynrpc {
namespace {

using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::IsOk;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

struct Result {
  int exit_code = -1;
  std::vector<std::string> out;  // stdout's lines
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs the command line with `args`, `env` ("K=V", over the test's own
// environment) and `input` on stdin, to its end.
Result RunCli(const std::vector<std::string>& args,
              const std::vector<std::string>& env, const std::string& input) {
  const std::string dir = ::testing::TempDir();
  static int n = 0;
  const std::string base = absl::StrFormat("%s/cli_%d_%d", dir, getpid(), ++n);
  {
    std::ofstream(base + ".in") << input;
  }
  std::vector<std::string> argv_s = {DYNRPC_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // `env` first; the test's own variables unless `env` sets them.
  std::vector<std::string> envp_s = env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const std::string& mine : env) {
      if (std::string_view(mine).substr(0, mine.find('=')) == name) {
        overridden = true;
      }
    }
    if (!overridden) envp_s.emplace_back(entry);
  }
  std::vector<char*> envp;
  for (std::string& e : envp_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  int in = open((base + ".in").c_str(), O_RDONLY | O_CLOEXEC);
  int out = open((base + ".out").c_str(),
                 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = open((base + ".err").c_str(),
                 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(in);
  close(out);
  close(err);
  Result result;
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  for (absl::string_view line :
       absl::StrSplit(ReadAll(base + ".out"), '\n', absl::SkipEmpty())) {
    result.out.emplace_back(line);
  }
  result.err = ReadAll(base + ".err");
  return result;
}

const RequestPlaneKind kPlanes[] = {RequestPlaneKind::kTcp,
                                     RequestPlaneKind::kHttp,
                                     RequestPlaneKind::kNats};

class CliTest : public ::testing::TestWithParam<RequestPlaneKind> {
 protected:
  void SetUp() override {
    discovery_dir_ = ::testing::TempDir() + "cli_discovery_" +
                     std::to_string(getpid()) + "_" +
                     std::string(RequestPlaneName(GetParam()));
    std::filesystem::create_directories(discovery_dir_);
    Config config;
    config.request_plane = GetParam();
    config.tcp.host = "127.0.0.1";
    config.http.host = "127.0.0.1";
    config.http.port = 0;
    config.discovery.file_dir = discovery_dir_;
    config.discovery.name_space = Namespace();
    if (GetParam() == RequestPlaneKind::kNats) {
      config.nats.server = dynrpc::testing::SharedNatsUrl();
      config.nats.name_space = Namespace();
    }
    server_ = std::make_unique<Server>(runtime_.executor(), config);
    ASSERT_THAT(server_->AddService(service_), IsOk());
    ASSERT_THAT(server_->Start(), IsOk());
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    std::filesystem::remove_all(discovery_dir_);
  }

  static const std::string& Namespace() {
    static const std::string name_space =
        dynrpc::testing::UniqueNatsNamespace("cli");
    return name_space;
  }

  // The command line's environment for this plane, as a user's would be.
  std::vector<std::string> Env() const {
    std::vector<std::string> env = {
        "DYN_REQUEST_PLANE=" + std::string(RequestPlaneName(GetParam())),
        "DYN_FILE_KV=" + discovery_dir_, "DYN_NAMESPACE=" + Namespace(),
        "DYN_DISCOVERY_BACKEND=file", "DYN_LOG=warn"};
    if (GetParam() == RequestPlaneKind::kNats) {
      env.push_back("NATS_SERVER=" + dynrpc::testing::SharedNatsUrl());
    }
    return env;
  }

  Result Cli(std::vector<std::string> args, const std::string& input = "") {
    return RunCli(args, Env(), input);
  }

  Runtime runtime_{2};
  EchoServiceImpl service_;
  std::unique_ptr<Server> server_;
  std::string discovery_dir_;
};

TEST_P(CliTest, ListsTheServicesAndAServicesMethods) {
  Result r = Cli({"list", server_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ElementsAre("dynrpc.testing.EchoService",
                                 "grpc.health.v1.Health",
                                 "grpc.reflection.v1.ServerReflection",
                                 "grpc.reflection.v1alpha.ServerReflection"));
  Result methods = Cli({"list", server_->address(), "dynrpc.testing.EchoService"});
  EXPECT_EQ(methods.exit_code, 0) << methods.err;
  EXPECT_THAT(methods.out, AllOf(Contains("dynrpc.testing.EchoService.Echo"),
                                 Contains("dynrpc.testing.EchoService.Chat")));
}

TEST_P(CliTest, DescribesServicesAndMessagesAsProtoText) {
  Result service =
      Cli({"describe", server_->address(), "dynrpc.testing.EchoService"});
  EXPECT_EQ(service.exit_code, 0) << service.err;
  std::string text = absl::StrJoin(service.out, "\n");
  EXPECT_THAT(text, AllOf(HasSubstr("service EchoService {"),
                          HasSubstr("rpc Chat(stream .dynrpc.testing.StreamMessage) "
                                    "returns (stream .dynrpc.testing.StreamMessage)")));
  Result message =
      Cli({"describe", server_->address(), "dynrpc.testing.EchoRequest"});
  EXPECT_EQ(message.exit_code, 0) << message.err;
  EXPECT_THAT(absl::StrJoin(message.out, "\n"),
              HasSubstr("bool no_payload_back = 4;"));
  Result unknown = Cli({"describe", server_->address(), "no.Such"});
  EXPECT_EQ(unknown.exit_code, 5);
  EXPECT_THAT(unknown.err, StartsWith("NOT_FOUND: "));
}

TEST_P(CliTest, CallsAUnaryMethodWithMetadataAndPrintsJson) {
  Result r = Cli({"call", server_->address(), "dynrpc.testing.EchoService/Echo",
                  R"({"text":"metadata:x-user"})", "-H", "X-User: ada",
                  "--timeout", "5s", "--compression", "gzip"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ElementsAre(R"({"text":"ada"})"));
}

TEST_P(CliTest, PrintsAServerStreamALineEach) {
  Result r = Cli({"call", server_->address(),
                  "dynrpc.testing.EchoService/Generate", R"({"count":3})"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ElementsAre("{}", R"({"sequence":"1"})",
                                 R"({"sequence":"2"})"));
}

TEST_P(CliTest, ReadsAClientStreamFromStdinALineEach) {
  Result collect = Cli({"call", server_->address(),
                        "dynrpc.testing.EchoService/Collect"},
                       "{\"sequence\":0}\n{\"sequence\":1}\n\n{\"sequence\":2}\n");
  EXPECT_EQ(collect.exit_code, 0) << collect.err;
  EXPECT_THAT(collect.out,
              ElementsAre(R"({"count":"3","in_order":true})"));
  Result chat = Cli({"call", server_->address(),
                     "dynrpc.testing.EchoService/Chat"},
                    "{\"text\":\"one\"}\n{\"text\":\"two\"}\n");
  EXPECT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_THAT(chat.out, ElementsAre(R"({"text":"one"})", R"({"text":"two"})"));
  Result bad = Cli({"call", server_->address(),
                    "dynrpc.testing.EchoService/Collect"},
                   "{\"sequence\":0}\nnot json\n");
  EXPECT_EQ(bad.exit_code, 3);
  EXPECT_THAT(bad.err, StartsWith("INVALID_ARGUMENT: stdin line 2 is not a JSON "
                                  "dynrpc.testing.StreamMessage"));
}

TEST_P(CliTest, ExitsWithTheCallsStatusCode) {
  Result failed = Cli({"call", server_->address(), "dynrpc.testing.EchoService/Fail",
                       R"({"code":5,"message":"gone"})"});
  EXPECT_EQ(failed.exit_code, 5);
  EXPECT_EQ(failed.err, "NOT_FOUND: gone\n");
  EXPECT_THAT(failed.out, IsEmpty());

  Result late = Cli({"call", server_->address(),
                     "dynrpc.testing.EchoService/Block", "{}", "--timeout",
                     "200ms"});
  EXPECT_EQ(late.exit_code, 4);
  EXPECT_THAT(late.err, StartsWith("DEADLINE_EXCEEDED: "));

  Result unknown = Cli({"call", server_->address(),
                        "dynrpc.testing.EchoService/Nope"});
  EXPECT_EQ(unknown.exit_code, 12);
  EXPECT_THAT(unknown.err, StartsWith("UNIMPLEMENTED: "));

  Result bad_json = Cli({"call", server_->address(),
                         "dynrpc.testing.EchoService/Echo", "{text"});
  EXPECT_EQ(bad_json.exit_code, 3);
  EXPECT_THAT(bad_json.err, StartsWith("INVALID_ARGUMENT: the request is not a "
                                       "JSON dynrpc.testing.EchoRequest"));
}

TEST_P(CliTest, ChecksHealth) {
  Result all = Cli({"health", server_->address()});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_THAT(all.out, ElementsAre("SERVING"));
  Result one = Cli({"health", server_->address(), "dynrpc.testing.EchoService"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  Result unknown = Cli({"health", server_->address(), "no.Such"});
  EXPECT_EQ(unknown.exit_code, 5);
  EXPECT_THAT(unknown.err, StartsWith("NOT_FOUND: "));
}

// A service's name in place of an address: found through discovery.
TEST_P(CliTest, FindsAServiceThroughDiscovery) {
  Result instances = Cli({"instances", "dynrpc.testing.EchoService"});
  EXPECT_EQ(instances.exit_code, 0) << instances.err;
  EXPECT_THAT(instances.out,
              ElementsAre(absl::StrFormat(
                  "%016x %s %s", server_->instance_id(),
                  RequestPlaneName(GetParam()), server_->address())));
  Result call = Cli({"call", "dynrpc.testing.EchoService",
                     "dynrpc.testing.EchoService/Echo", R"({"text":"found"})"});
  EXPECT_EQ(call.exit_code, 0) << call.err;
  EXPECT_THAT(call.out, ElementsAre(R"({"text":"found"})"));
  Result none = Cli({"instances", "no.Such", "--timeout", "300ms"});
  EXPECT_EQ(none.exit_code, 5);
  EXPECT_THAT(none.err, StartsWith("NOT_FOUND: no instance of no.Such"));
}

TEST_P(CliTest, HelpAndUsageErrors) {
  for (const char* command : {"list", "describe", "call", "health", "instances"}) {
    Result help = Cli({command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_THAT(help.out, Contains(StartsWith(std::string("usage: dynrpc ") +
                                              command)));
  }
  Result top = Cli({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  Result unknown = Cli({"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 3);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command 'frobnicate'"));
  Result missing = Cli({"call", server_->address()});
  EXPECT_EQ(missing.exit_code, 3);
  Result bad_option = Cli({"list", server_->address(), "--timeout", "soon"});
  EXPECT_EQ(bad_option.exit_code, 3);
  EXPECT_THAT(bad_option.err, HasSubstr("--timeout 'soon'"));
  Result unreachable = RunCli({"list", "127.0.0.1:1", "--plane", "tcp"}, Env(), "");
  EXPECT_EQ(unreachable.exit_code, 14);
  EXPECT_THAT(unreachable.err, StartsWith("UNAVAILABLE: "));
}

INSTANTIATE_TEST_SUITE_P(Planes, CliTest, ::testing::ValuesIn(kPlanes),
                         [](const ::testing::TestParamInfo<RequestPlaneKind>& i) {
                           return std::string(RequestPlaneName(i.param));
                         });

}  // namespace
}  // namespace dynrpc
