// protoc-gen-dynrpc's code generator. For each x.proto it writes
// x.dynrpc.pb.h and x.dynrpc.pb.cc, which declare, per service `Greeter`, a
// class `Greeter` holding:
//   - `StubInterface`: the client API, for tests to mock: one virtual
//     coroutine per unary method, and per streaming method one virtual that
//     returns its stream (dynrpc::ClientReader, ClientWriter or
//     ClientReaderWriter);
//   - `Stub`: implements it over a dynrpc::Channel and adds one future form
//     per unary method for callers without coroutines;
//   - `Service`: the server skeleton to derive from, one virtual coroutine
//     handler per method (a streaming one gets a dynrpc::ServerReader,
//     ServerWriter or ServerReaderWriter); a method that is not overridden
//     fails with UNIMPLEMENTED.
// The .proto's comments on services and methods are copied onto the
// generated classes and methods.
//
// Example (this is all of main.cc):
//   dynrpc::plugin::Generator generator;
//   return google::protobuf::compiler::PluginMain(argc, argv, &generator);
#ifndef DYNRPC_PROTOC_PLUGIN_GENERATOR_H_
#define DYNRPC_PROTOC_PLUGIN_GENERATOR_H_

#include <cstdint>
#include <string>

#include "google/protobuf/compiler/code_generator.h"
#include "google/protobuf/descriptor.h"

namespace dynrpc::plugin {

// Stateless: one instance may generate any number of files, from any number
// of threads at once.
class Generator final : public google::protobuf::compiler::CodeGenerator {
 public:
  // Writes the two files for `file`, or fails with `*error` set and nothing
  // written. Fails when `parameter` is not empty (the plugin takes no
  // parameters; the error names the first one).
  bool Generate(const google::protobuf::FileDescriptor* file,
                const std::string& parameter,
                google::protobuf::compiler::GeneratorContext* context,
                std::string* error) const override;

  // FEATURE_PROTO3_OPTIONAL: optional fields change nothing in stubs.
  uint64_t GetSupportedFeatures() const override;
};

}  // namespace dynrpc::plugin

#endif  // DYNRPC_PROTOC_PLUGIN_GENERATOR_H_
