// Golden tests of protoc-gen-dynrpc. Each case runs the generator in-process,
// through protoc's own command line (CommandLineInterface), on a .proto under
// testdata/ and compares every output file byte for byte with
// testdata/<name>.dynrpc.pb.h.golden and .cc.golden.
//
// After an intended change to the generated code, rewrite the goldens with
//   DYNRPC_UPDATE_GOLDENS=1 ./generator_test
// and review their diff. tests/generated/ compiles and runs the same code,
// so a golden cannot be right yet fail to build.
#include "protoc-plugin/generator.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "google/protobuf/compiler/command_line_interface.h"
#include "gtest/gtest.h"

namespace dynrpc::plugin {
namespace {

namespace fs = std::filesystem;

const fs::path kTestdata = DYNRPC_TESTDATA_DIR;

struct ProtocResult {
  int exit_code;
  std::string errors;  // What protoc printed to stderr.
};

// Runs protoc with our generator registered as --dynrpc_out, importing from
// `import_dir` and the well-known types.
ProtocResult RunProtoc(const fs::path& import_dir, std::string_view out_flag,
                       std::string_view proto,
                       std::string_view parameter = "") {
  Generator generator;
  google::protobuf::compiler::CommandLineInterface cli;
  cli.RegisterGenerator("--dynrpc_out", "--dynrpc_opt", &generator,
                        "Generate dynrpc stubs.");
  std::vector<std::string> args = {
      "protoc",
      "-I" + import_dir.string(),
      std::string("-I") + DYNRPC_PROTOBUF_INCLUDE_DIR,
      std::string(out_flag),
      std::string(proto),
  };
  // As dynrpc_generate() passes it: --dynrpc_opt (a namespace's "::"
  // cannot go in --dynrpc_out=PARAMETER:DIR).
  if (!parameter.empty()) {
    args.push_back("--dynrpc_opt=" + std::string(parameter));
  }
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  ::testing::internal::CaptureStderr();
  const int exit_code = cli.Run(static_cast<int>(argv.size()), argv.data());
  return {exit_code, ::testing::internal::GetCapturedStderr()};
}

// A new, empty directory under the test's temporary directory, private to
// this process (two build trees may run the test at once), removed with
// everything in it when this goes out of scope.
class ScratchDir {
 public:
  explicit ScratchDir(std::string_view name)
      : path_(fs::path(::testing::TempDir()) /
              ("generator_test." + std::to_string(::getpid()) + "." +
               std::string(name))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void WriteFile(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

// Every regular file under `dir`, relative to it.
std::set<std::string> ListFiles(const fs::path& dir) {
  std::set<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      files.insert(fs::relative(entry.path(), dir).generic_string());
    }
  }
  return files;
}

// The first line where `generated` and `golden` differ, both versions of
// it, for a failure message shorter than two whole files.
std::string FirstDifference(std::string_view generated,
                            std::string_view golden) {
  int line = 1;
  while (true) {
    const std::size_t generated_end = generated.find('\n');
    const std::size_t golden_end = golden.find('\n');
    const std::string_view generated_line = generated.substr(0, generated_end);
    const std::string_view golden_line = golden.substr(0, golden_end);
    if (generated_line != golden_line ||
        (generated_end == golden.npos) != (golden_end == golden.npos)) {
      return "line " + std::to_string(line) +
             ":\n  generated: " + std::string(generated_line) +
             "\n  golden:    " + std::string(golden_line);
    }
    if (generated_end == generated.npos) return "no difference";
    generated.remove_prefix(generated_end + 1);
    golden.remove_prefix(golden_end + 1);
    ++line;
  }
}

bool UpdatingGoldens() {
  const char* value = std::getenv("DYNRPC_UPDATE_GOLDENS");
  return value != nullptr && std::string_view(value) == "1";
}

TEST(GeneratorTest, OutputMatchesGoldens) {
  const struct {
    std::string proto;
    std::string stem;
    std::string parameter = "";  // --dynrpc_opt=PARAMETER
    std::string golden = "";     // the goldens' stem, when not `stem`
  } kCases[] = {
      {"greeter.proto", "greeter"},
      {"nopackage.proto", "nopackage"},
      {"common/types.proto", "common/types"},
      {"streaming.proto", "streaming"},
      // The classes in a namespace of their own, beside gRPC's for the
      // same .proto.
      {"streaming.proto", "streaming", "namespace=dyn", "streaming_ns_dyn"},
      {"nopackage.proto", "nopackage", "namespace=dyn::v1",
       "nopackage_ns_dyn_v1"},
  };
  for (const auto& test_case : kCases) {
    SCOPED_TRACE(test_case.proto);
    const ScratchDir scratch("golden");
    const fs::path& out_dir = scratch.path();
    const ProtocResult result =
        RunProtoc(kTestdata, "--dynrpc_out=" + out_dir.string(),
                  test_case.proto, test_case.parameter);
    ASSERT_EQ(result.exit_code, 0) << result.errors;
    EXPECT_EQ(result.errors, "");

    const std::string header = test_case.stem + ".dynrpc.pb.h";
    const std::string source = test_case.stem + ".dynrpc.pb.cc";
    EXPECT_EQ(ListFiles(out_dir), (std::set<std::string>{header, source}));
    for (const std::string& file : {header, source}) {
      SCOPED_TRACE(file);
      const std::string generated = ReadFile(out_dir / file);
      std::string golden_name = file;
      if (!test_case.golden.empty()) {
        golden_name.replace(0, test_case.stem.size(), test_case.golden);
      }
      const fs::path golden = kTestdata / (golden_name + ".golden");
      if (UpdatingGoldens()) {
        WriteFile(golden, generated);
        continue;
      }
      ASSERT_TRUE(fs::exists(golden))
          << golden << " is missing: run with DYNRPC_UPDATE_GOLDENS=1";
      const std::string expected = ReadFile(golden);
      EXPECT_TRUE(generated == expected)
          << FirstDifference(generated, expected)
          << "\nRegenerate with DYNRPC_UPDATE_GOLDENS=1 if this is intended.";
    }
  }
}

TEST(GeneratorTest, RejectsUnknownParameter) {
  const ScratchDir scratch("bogus");
  const fs::path& out_dir = scratch.path();
  const ProtocResult result = RunProtoc(
      kTestdata, "--dynrpc_out=bogus=1:" + out_dir.string(), "greeter.proto");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.errors.find(
                "--dynrpc_out: greeter.proto: unknown parameter \"bogus\""),
            std::string::npos)
      << result.errors;
  EXPECT_TRUE(ListFiles(out_dir).empty());
}

TEST(GeneratorTest, RejectsANamespaceThatIsNotOne) {
  for (const std::string bad : {"1dyn", "dyn::", "a__b", "class", "a-b"}) {
    SCOPED_TRACE(bad);
    const ScratchDir scratch("badns");
    const ProtocResult result =
        RunProtoc(kTestdata, "--dynrpc_out=" + scratch.path().string(),
                  "greeter.proto", "namespace=" + bad);
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.errors.find("namespace=" + bad +
                                 " is not a C++ namespace name"),
              std::string::npos)
        << result.errors;
  }
}

// No generated identifier holds two underscores in a row (C++ reserves
// them), whatever clashes the .proto's names cause.
TEST(GeneratorTest, NoGeneratedIdentifierHasADoubleUnderscore) {
  for (const char* golden :
       {"greeter.dynrpc.pb.h.golden", "greeter.dynrpc.pb.cc.golden"}) {
    const std::string text = ReadFile(kTestdata / golden);
    std::size_t at = text.find("__");
    // Only inside protoc's own names (none in these files) would be allowed.
    EXPECT_EQ(at, std::string::npos)
        << golden << ": " << text.substr(at == std::string::npos ? 0 : at, 40);
  }
}

}  // namespace
}  // namespace dynrpc::plugin
