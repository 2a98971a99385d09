// protoc-gen-dynrpc: protoc runs it for --dynrpc_out (see generator.h).
#include "google/protobuf/compiler/plugin.h"
#include "protoc-plugin/generator.h"

int main(int argc, char* argv[]) {
  dynrpc::plugin::Generator generator;
  return google::protobuf::compiler::PluginMain(argc, argv, &generator);
}
