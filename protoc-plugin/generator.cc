#include "protoc-plugin/generator.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/compiler/code_generator.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/printer.h"
#include "google/protobuf/io/zero_copy_stream.h"

namespace dynrpc::plugin {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::ServiceDescriptor;
using ::google::protobuf::SourceLocation;
using ::google::protobuf::compiler::GeneratorContext;
using ::google::protobuf::io::Printer;
using ::google::protobuf::io::ZeroCopyOutputStream;

// Substitutions for Printer::Print. Each method gets a fresh one.
using Vars = std::map<std::string, std::string>;

// Generated lines are kept to this width where the layout allows it.
constexpr std::size_t kColumns = 80;

// C++20's keywords, alternative tokens included.
constexpr absl::string_view kCppKeywords[] = {
    "alignas",       "alignof",     "and",
    "and_eq",        "asm",         "auto",
    "bitand",        "bitor",       "bool",
    "break",         "case",        "catch",
    "char",          "char8_t",     "char16_t",
    "char32_t",      "class",       "compl",
    "concept",       "const",       "consteval",
    "constexpr",     "constinit",   "const_cast",
    "continue",      "co_await",    "co_return",
    "co_yield",      "decltype",    "default",
    "delete",        "do",          "double",
    "dynamic_cast",  "else",        "enum",
    "explicit",      "export",      "extern",
    "false",         "float",       "for",
    "friend",        "goto",        "if",
    "inline",        "int",         "long",
    "mutable",       "namespace",   "new",
    "noexcept",      "not",         "not_eq",
    "nullptr",       "operator",    "or",
    "or_eq",         "private",     "protected",
    "public",        "register",    "reinterpret_cast",
    "requires",      "return",      "short",
    "signed",        "sizeof",      "static",
    "static_assert", "static_cast", "struct",
    "switch",        "template",    "this",
    "thread_local",  "throw",       "true",
    "try",           "typedef",     "typeid",
    "typename",      "union",       "unsigned",
    "using",         "virtual",     "void",
    "volatile",      "wchar_t",     "while",
    "xor",           "xor_eq",
};

// Macros that the headers generated code includes define, and that would
// break a declaration using the name.
constexpr absl::string_view kStandardMacros[] = {"NULL", "EOF", "assert",
                                                 "errno"};

bool IsCppKeyword(absl::string_view name) {
  return std::find(std::begin(kCppKeywords), std::end(kCppKeywords), name) !=
         std::end(kCppKeywords);
}

// Whether `name` cannot be a C++ identifier of ours as it is.
bool IsReservedWord(absl::string_view name) {
  return IsCppKeyword(name) ||
         std::find(std::begin(kStandardMacros), std::end(kStandardMacros),
                   name) != std::end(kStandardMacros);
}

// "a.b" -> "a::b".
std::string CppNamespace(absl::string_view package) {
  return absl::StrReplaceAll(package, {{".", "::"}});
}

// The class protobuf's C++ generator emits for `message`: enclosing message
// names joined by "_", with "_" appended when the result is a keyword or
// NULL. Protobuf 3.21 leaves C++20's new keywords (and char16_t, char32_t)
// alone, but its own output for such a message does not compile, so
// mangling them too changes nothing that works.
std::string MessageClassName(const Descriptor* message) {
  std::string name =
      message->containing_type() == nullptr
          ? message->name()
          : absl::StrCat(MessageClassName(message->containing_type()), "_",
                         message->name());
  if (IsCppKeyword(name) || name == "NULL") name += "_";
  return name;
}

// "::pkg::Outer_Inner", or "::Outer_Inner" without a package.
std::string QualifiedMessageName(const Descriptor* message) {
  const std::string& package = message->file()->package();
  if (package.empty()) return absl::StrCat("::", MessageClassName(message));
  return absl::StrCat("::", CppNamespace(package),
                      "::", MessageClassName(message));
}

// Appends "_" to `name` until neither `name` nor `name + suffix` is in
// `taken`.
std::string Unclash(std::string name, absl::string_view suffix,
                    const std::set<std::string>& taken) {
  do {
    name += "_";
  } while (taken.count(name) > 0 ||
           taken.count(name + std::string(suffix)) > 0);
  return name;
}

// The C++ class name of each service in `file`, by index. A name that is a
// keyword or names one of the nested classes and members of the generated
// class gets underscores appended, avoiding the other services' names.
std::vector<std::string> ServiceClassNames(const FileDescriptor* file) {
  const std::set<std::string> reserved = {"Service", "Stub", "StubInterface",
                                          "kServiceName"};
  std::set<std::string> taken = reserved;
  std::vector<std::string> names(file->service_count());
  for (int i = 0; i < file->service_count(); ++i) {
    const std::string& name = file->service(i)->name();
    if (!IsReservedWord(name) && reserved.count(name) == 0) {
      names[i] = name;
      taken.insert(name);
    }
  }
  for (int i = 0; i < file->service_count(); ++i) {
    if (!names[i].empty()) continue;
    names[i] = Unclash(file->service(i)->name(), "", taken);
    taken.insert(names[i]);
  }
  return names;
}

// The C++ name of each method of `service`, by index, where `class_name` is
// the service's class. A method keeps its proto name unless that is a
// keyword, names something the generated classes (or dynrpc::Service)
// already declare, is another method's name plus "Future", or its own future
// form would be taken; such a method gets underscores appended until neither
// its name nor its future form collides with anything.
std::vector<std::string> MethodCppNames(const ServiceDescriptor* service,
                                        const std::string& class_name) {
  std::set<std::string> taken = {
      class_name,  "Stub",         "StubInterface",
      "Service",   "kServiceName", "channel_",
      "full_name", "methods",      "AddUnaryMethod",
  };
  std::set<std::string> proto_names;
  for (int i = 0; i < service->method_count(); ++i) {
    proto_names.insert(service->method(i)->name());
  }
  constexpr absl::string_view kFuture = "Future";
  auto keeps_name = [&](const std::string& name) {
    if (IsReservedWord(name) || taken.count(name) > 0 ||
        taken.count(absl::StrCat(name, kFuture)) > 0) {
      return false;
    }
    return !(absl::EndsWith(name, kFuture) &&
             proto_names.count(name.substr(0, name.size() - kFuture.size())) >
                 0);
  };
  std::vector<std::string> names(service->method_count());
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string& name = service->method(i)->name();
    if (keeps_name(name)) names[i] = name;
  }
  for (const std::string& name : names) {
    if (name.empty()) continue;
    taken.insert(name);
    taken.insert(absl::StrCat(name, kFuture));
  }
  for (int i = 0; i < service->method_count(); ++i) {
    if (!names[i].empty()) continue;
    names[i] = Unclash(service->method(i)->name(), kFuture, taken);
    taken.insert(names[i]);
    taken.insert(absl::StrCat(names[i], kFuture));
  }
  return names;
}

// "client-streaming", "server-streaming", "bidi-streaming", or empty for a
// unary method.
absl::string_view StreamingKind(const MethodDescriptor* method) {
  if (method->client_streaming() && method->server_streaming()) {
    return "bidi-streaming";
  }
  if (method->client_streaming()) return "client-streaming";
  if (method->server_streaming()) return "server-streaming";
  return "";
}

// One comment, as protoc recorded it, as `//` lines: one leading space of
// each line gives way to "// ", trailing spaces go, and empty lines at either
// end are dropped.
std::vector<std::string> CommentBlockLines(absl::string_view text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty()) {
      lines.push_back("//");
      continue;
    }
    absl::ConsumePrefix(&line, " ");
    std::string out = absl::StrCat("// ", line);
    // A backslash ending a `//` line would continue the comment onto the
    // next line of code.
    if (out.back() == '\\') out += '.';
    lines.push_back(std::move(out));
  }
  while (!lines.empty() && lines.back() == "//") lines.pop_back();
  auto first = std::find_if(lines.begin(), lines.end(),
                            [](const std::string& l) { return l != "//"; });
  lines.erase(lines.begin(), first);
  return lines;
}

// The comments on `descriptor` in its .proto, as `//` lines: the detached
// comments before it, its leading comment, then its trailing comment, with
// an empty `//` line between them.
template <typename DescriptorT>
std::vector<std::string> CommentLines(const DescriptorT* descriptor) {
  SourceLocation location;
  if (!descriptor->GetSourceLocation(&location)) return {};
  std::vector<std::string> blocks = location.leading_detached_comments;
  blocks.push_back(location.leading_comments);
  blocks.push_back(location.trailing_comments);
  std::vector<std::string> lines;
  for (const std::string& block : blocks) {
    std::vector<std::string> block_lines = CommentBlockLines(block);
    if (block_lines.empty()) continue;
    if (!lines.empty()) lines.push_back("//");
    lines.insert(lines.end(), block_lines.begin(), block_lines.end());
  }
  return lines;
}

// `text` as `//` lines word-wrapped to fit from column `indent`.
std::vector<std::string> ProseComment(std::size_t indent,
                                      absl::string_view text) {
  std::vector<std::string> lines;
  std::string line = "//";
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (line != "//" && indent + line.size() + 1 + word.size() > kColumns) {
      lines.push_back(std::move(line));
      line = "//";
    }
    absl::StrAppend(&line, " ", word);
  }
  lines.push_back(std::move(line));
  return lines;
}

// A function declaration, the head of a definition, or a call statement:
// `head name(args)tail`.
// The members have default initializers so that designated initializers may
// leave them out.
struct Call {
  std::string head = {};  // A return type, "return", or empty.
  std::string name = {};
  std::vector<std::string> args = {};
  std::string tail = {};  // What follows ")": " override;", " {", ";".
  // Whether `head` is a return type that may stand on a line of its own.
  bool head_may_break = false;
};

// `args` packed onto lines of at most `width` columns, the first starting
// with `first` and the others with `pad`, the last one ending in `close`.
std::vector<std::string> PackArgs(std::string first, absl::string_view pad,
                                  const std::vector<std::string>& args,
                                  absl::string_view close, std::size_t width) {
  std::vector<std::string> lines;
  std::string line = std::move(first);
  bool line_has_args = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string arg =
        absl::StrCat(args[i], i + 1 < args.size() ? "," : close);
    if (line_has_args && line.size() + 1 + arg.size() > width) {
      lines.push_back(std::move(line));
      line = std::string(pad);
      line_has_args = false;
    }
    absl::StrAppend(&line, line_has_args ? " " : "", arg);
    line_has_args = true;
  }
  lines.push_back(std::move(line));
  return lines;
}

// Lays `call` out from column `indent` within kColumns, trying what
// clang-format's Google style would choose, in its order of preference: one
// line; arguments aligned after "("; a break after "("; a return type on a
// line of its own. Continuation lines carry their extra indentation.
std::vector<std::string> LayOut(const Call& call, std::size_t indent) {
  const std::size_t width = kColumns - indent;
  auto fits = [width](const std::vector<std::string>& lines) {
    return std::all_of(lines.begin(), lines.end(), [width](const auto& line) {
      return line.size() <= width;
    });
  };
  const std::string callee =
      call.head.empty() ? call.name : absl::StrCat(call.head, " ", call.name);
  const std::string close = absl::StrCat(")", call.tail);
  std::vector<std::string> one_line = {
      absl::StrCat(callee, "(", absl::StrJoin(call.args, ", "), close)};
  if (fits(one_line)) return one_line;
  if (!call.args.empty()) {
    std::vector<std::string> aligned =
        PackArgs(absl::StrCat(callee, "("), std::string(callee.size() + 1, ' '),
                 call.args, close, width);
    if (fits(aligned)) return aligned;
    std::vector<std::string> broken =
        PackArgs("    ", "    ", call.args, close, width);
    broken.insert(broken.begin(), absl::StrCat(callee, "("));
    if (fits(broken) || !call.head_may_break || call.head.empty()) {
      return broken;
    }
  }
  if (!call.head_may_break || call.head.empty()) return one_line;
  Call rest = call;
  rest.head.clear();
  std::vector<std::string> lines = LayOut(rest, indent);
  // A return type too long for its line breaks after its first "<".
  const std::size_t angle = call.head.find('<');
  if (call.head.size() <= width || angle == std::string::npos) {
    lines.insert(lines.begin(), call.head);
  } else {
    lines.insert(lines.begin(),
                 {call.head.substr(0, angle + 1),
                  absl::StrCat("    ", call.head.substr(angle + 1))});
  }
  return lines;
}

void PrintLines(Printer& printer, const std::vector<std::string>& lines) {
  for (const std::string& line : lines) {
    printer.Print("$line$\n", "line", line);
  }
}

// Prints an out-of-line function at namespace scope whose body is the one
// statement `statement`. The tails of both are filled in here.
void PrintDefinition(Printer& printer, Call signature, Call statement) {
  signature.tail = " {";
  signature.head_may_break = true;
  statement.tail = ";";
  PrintLines(printer, LayOut(signature, 0));
  printer.Indent();
  PrintLines(printer, LayOut(statement, 2));
  printer.Outdent();
  printer.Print("}\n");
}

// Emits the class generated for one service: its declaration in the header,
// its out-of-line members in the .cc.
class ServiceEmitter {
 public:
  // `class_name` is the service's C++ class (see ServiceClassNames).
  ServiceEmitter(const ServiceDescriptor* service, std::string class_name)
      : service_(service),
        class_name_(std::move(class_name)),
        method_names_(MethodCppNames(service, class_name_)) {}

  // Emits the class at namespace scope.
  void EmitDeclarations(Printer& printer) const {
    const Vars vars = {{"class", class_name_},
                       {"full_name", service_->full_name()}};
    PrintLines(printer, CommentLines(service_));
    printer.Print(vars,
                  "class $class$ final {\n"
                  " public:\n"
                  "  static constexpr char kServiceName[] = \"$full_name$\";\n"
                  "\n");
    printer.Indent();
    EmitStubInterfaceDeclaration(printer);
    printer.Print("\n");
    EmitStubDeclaration(printer);
    printer.Print("\n");
    EmitServiceDeclaration(printer);
    printer.Outdent();
    printer.Print("};\n");
  }

  // Emits the definitions at namespace scope.
  void EmitDefinitions(Printer& printer) const {
    EmitStubDefinitions(printer);
    printer.Print("\n");
    EmitServiceDefinitions(printer);
  }

 private:
  // Fresh for every use: nothing one method sets leaks into the next.
  Vars MethodVars(int index) const {
    const MethodDescriptor* method = service_->method(index);
    const std::string response = QualifiedMessageName(method->output_type());
    return {
        {"method", method_names_[index]},
        {"future", absl::StrCat(method_names_[index], "Future")},
        {"proto_name", method->name()},
        {"path", absl::StrCat("/", service_->full_name(), "/", method->name())},
        {"request", QualifiedMessageName(method->input_type())},
        {"response", response},
        {"awaitable", absl::StrCat("::boost::asio::awaitable<::absl::StatusOr<",
                                   response, ">>")},
        {"future_type",
         absl::StrCat("::std::future<::absl::StatusOr<", response, ">>")},
    };
  }

  static std::vector<std::string> ClientParams(const Vars& method) {
    return {"::dynrpc::ClientContext& context",
            absl::StrCat("const ", method.at("request"), "& request")};
  }

  void EmitStubDefinitions(Printer& printer) const {
    PrintLines(
        printer,
        LayOut({.name = absl::StrCat(class_name_, "::Stub::Stub"),
                .args = {"::std::shared_ptr<::dynrpc::Channel> channel"}},
               0));
    printer.Print("    : channel_(::std::move(channel)) {}\n");
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      printer.Print("\n");
      PrintDefinition(
          printer,
          {.head = method.at("awaitable"),
           .name = absl::StrCat(class_name_, "::Stub::", method.at("method")),
           .args = ClientParams(method)},
          {.head = "return",
           .name = absl::StrCat("channel_->Unary<", method.at("response"), ">"),
           .args = {"context", absl::StrCat("\"", method.at("path"), "\""),
                    "request"}});
      printer.Print("\n");
      PrintDefinition(
          printer,
          {.head = method.at("future_type"),
           .name = absl::StrCat(class_name_, "::Stub::", method.at("future")),
           .args = ClientParams(method)},
          {.head = "return",
           .name = "::dynrpc::CallAsFuture",
           .args = {"channel_->executor()", "this",
                    absl::StrCat("&Stub::", method.at("method")), "context",
                    "request"}});
    }
  }

  void EmitServiceDefinitions(Printer& printer) const {
    const std::string constructor =
        absl::StrCat(class_name_, "::Service::Service()");
    const std::string initializer =
        absl::StrCat(" : ::dynrpc::Service(kServiceName) {",
                     service_->method_count() == 0 ? "}" : "");
    if (constructor.size() + initializer.size() <= kColumns) {
      PrintLines(printer, {absl::StrCat(constructor, initializer)});
    } else {
      PrintLines(printer, {constructor, absl::StrCat("   ", initializer)});
    }
    if (service_->method_count() == 0) return;  // Nothing more to define.
    printer.Indent();
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      PrintLines(
          printer,
          LayOut({.name = "AddUnaryMethod",
                  .args = {absl::StrCat("\"", method.at("proto_name"), "\""),
                           absl::StrCat("&Service::", method.at("method"))},
                  .tail = ";"},
                 2));
    }
    printer.Outdent();
    printer.Print("}\n");
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      printer.Print("\n");
      // The default handler ignores its parameters, so they are unnamed.
      PrintDefinition(
          printer,
          {.head = method.at("awaitable"),
           .name =
               absl::StrCat(class_name_, "::Service::", method.at("method")),
           .args = {"::dynrpc::ServerContext&",
                    absl::StrCat("const ", method.at("request"), "&")}},
          {.head = "co_return",
           .name = "::dynrpc::UnimplementedMethod",
           .args = {absl::StrCat("\"", method.at("path"), "\"")}});
    }
  }

  // Nested in the service class: these start at column 2, their members at 4.
  void EmitStubInterfaceDeclaration(Printer& printer) const {
    printer.Print(
        "// The client side. Stub implements it over a dynrpc::Channel; tests\n"
        "// mock it (gmock's MOCK_METHOD works on these methods). Every "
        "method\n"
        "// borrows `context` and `request`: they must outlive the returned\n"
        "// awaitable.\n"
        "class StubInterface {\n"
        " public:\n"
        "  virtual ~StubInterface() = default;\n");
    printer.Indent();
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      printer.Print("\n");
      PrintLines(printer, CommentLines(service_->method(i)));
      PrintLines(
          printer,
          LayOut({.head = absl::StrCat("virtual ", method.at("awaitable")),
                  .name = method.at("method"),
                  .args = ClientParams(method),
                  .tail = " = 0;",
                  .head_may_break = true},
                 4));
    }
    printer.Outdent();
    printer.Print("};\n");
  }

  void EmitStubDeclaration(Printer& printer) const {
    printer.Print(
        "// Calls the service through a dynrpc::Channel. Thread-safe, like "
        "the\n"
        "// channel. The stub must outlive the calls it starts, awaitables "
        "and\n"
        "// futures alike.\n"
        "//\n"
        "// WARNING: never wait on a future form's result from a thread that\n"
        "// runs the channel's executor: get() would never return.\n"
        "class Stub final : public StubInterface {\n"
        " public:\n"
        "  explicit Stub(::std::shared_ptr<::dynrpc::Channel> channel);\n");
    printer.Indent();
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      printer.Print("\n");
      PrintLines(printer, CommentLines(service_->method(i)));
      PrintLines(printer, LayOut({.head = method.at("awaitable"),
                                  .name = method.at("method"),
                                  .args = ClientParams(method),
                                  .tail = " override;",
                                  .head_may_break = true},
                                 4));
      PrintLines(
          printer,
          ProseComment(4, absl::StrCat("Future form of ", method.at("method"),
                                       ", for callers without coroutines. "
                                       "`request` is copied; `context` must "
                                       "outlive the future's completion.")));
      PrintLines(printer, LayOut({.head = method.at("future_type"),
                                  .name = method.at("future"),
                                  .args = ClientParams(method),
                                  .tail = ";",
                                  .head_may_break = true},
                                 4));
    }
    printer.Outdent();
    printer.Print(
        "\n"
        " private:\n"
        "  ::std::shared_ptr<::dynrpc::Channel> channel_;\n"
        "};\n");
  }

  void EmitServiceDeclaration(Printer& printer) const {
    printer.Print(
        "// The server side: derive from it, override the methods the server\n"
        "// implements, and hand it to dynrpc::Server::AddService. A method\n"
        "// that is not overridden fails with UNIMPLEMENTED. `context` and\n"
        "// `request` stay valid until the handler's coroutine completes.\n"
        "class Service : public ::dynrpc::Service {\n"
        " public:\n"
        "  Service();\n");
    printer.Indent();
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      printer.Print("\n");
      PrintLines(printer, CommentLines(service_->method(i)));
      PrintLines(
          printer,
          LayOut({.head = absl::StrCat("virtual ", method.at("awaitable")),
                  .name = method.at("method"),
                  .args = {"::dynrpc::ServerContext& context",
                           absl::StrCat("const ", method.at("request"),
                                        "& request")},
                  .tail = ";",
                  .head_may_break = true},
                 4));
    }
    printer.Outdent();
    printer.Print("};\n");
  }

  const ServiceDescriptor* service_;
  std::string class_name_;
  std::vector<std::string> method_names_;
};

// "dir/x.dynrpc.pb.h" -> "DYNRPC_GENERATED_DIR_X_DYNRPC_PB_H_".
std::string HeaderGuard(absl::string_view header_path) {
  std::string guard = absl::StrCat("DYNRPC_GENERATED_", header_path, "_");
  for (char& c : guard) {
    c = absl::ascii_isalnum(c) ? absl::ascii_toupper(c) : '_';
  }
  return guard;
}

void EmitHeader(const FileDescriptor* file, absl::string_view stem,
                const std::vector<ServiceEmitter>& services, Printer& printer) {
  const std::string header = absl::StrCat(stem, ".dynrpc.pb.h");
  const Vars vars = {{"source", file->name()},
                     {"guard", HeaderGuard(header)},
                     {"namespace", CppNamespace(file->package())}};
  printer.Print(vars,
                "// Generated by protoc-gen-dynrpc. DO NOT EDIT.\n"
                "// source: $source$\n"
                "\n"
                "#ifndef $guard$\n"
                "#define $guard$\n"
                "\n"
                "#include <future>\n"
                "#include <memory>\n"
                "\n");
  // Sorted, as clang-format wants them.
  std::vector<std::string> includes = {"dynrpc/dynrpc.h",
                                       absl::StrCat(stem, ".pb.h")};
  std::sort(includes.begin(), includes.end());
  for (const std::string& include : includes) {
    printer.Print("#include \"$include$\"\n", "include", include);
  }
  if (services.empty()) {
    printer.Print(vars, "\n// $source$ defines no services.\n");
  } else if (!file->package().empty()) {
    printer.Print(vars, "\nnamespace $namespace$ {\n");
  }
  for (const ServiceEmitter& service : services) {
    printer.Print("\n");
    service.EmitDeclarations(printer);
  }
  if (!services.empty() && !file->package().empty()) {
    printer.Print(vars, "\n}  // namespace $namespace$\n");
  }
  printer.Print(vars, "\n#endif  // $guard$\n");
}

void EmitSource(const FileDescriptor* file, absl::string_view stem,
                const std::vector<ServiceEmitter>& services, Printer& printer) {
  const Vars vars = {{"source", file->name()},
                     {"header", absl::StrCat(stem, ".dynrpc.pb.h")},
                     {"namespace", CppNamespace(file->package())}};
  printer.Print(vars,
                "// Generated by protoc-gen-dynrpc. DO NOT EDIT.\n"
                "// source: $source$\n"
                "\n"
                "#include \"$header$\"\n");
  if (services.empty()) return;
  printer.Print(vars,
                "\n"
                "#include <future>\n"
                "#include <memory>\n"
                "#include <utility>\n");
  if (!file->package().empty()) {
    printer.Print(vars, "\nnamespace $namespace$ {\n");
  }
  for (const ServiceEmitter& service : services) {
    printer.Print("\n");
    service.EmitDefinitions(printer);
  }
  if (!file->package().empty()) {
    printer.Print(vars, "\n}  // namespace $namespace$\n");
  }
}

// Opens `name` and prints it with `print`. Fails, setting `*error`, when the
// output cannot be written.
template <typename PrintFn>
bool WriteFile(GeneratorContext* context, const std::string& name,
               PrintFn print, std::string* error) {
  std::unique_ptr<ZeroCopyOutputStream> output(context->Open(name));
  Printer printer(output.get(), '$');
  print(printer);
  if (printer.failed()) {
    *error = absl::StrCat("failed to write ", name);
    return false;
  }
  return true;
}

}  // namespace

bool Generator::Generate(const FileDescriptor* file,
                         const std::string& parameter,
                         GeneratorContext* context, std::string* error) const {
  std::vector<std::pair<std::string, std::string>> options;
  google::protobuf::compiler::ParseGeneratorParameter(parameter, &options);
  if (!options.empty()) {
    *error = absl::StrCat("unknown parameter \"", options.front().first,
                          "\": protoc-gen-dynrpc takes no parameters");
    return false;
  }
  for (int i = 0; i < file->service_count(); ++i) {
    const ServiceDescriptor* service = file->service(i);
    for (int j = 0; j < service->method_count(); ++j) {
      const MethodDescriptor* method = service->method(j);
      if (absl::string_view kind = StreamingKind(method); !kind.empty()) {
        // protoc puts the file's name in front.
        *error = absl::StrCat("method ", method->full_name(), " is streaming (",
                              kind,
                              "); dynrpc supports unary methods only in this "
                              "version");
        return false;
      }
    }
  }

  const std::vector<std::string> class_names = ServiceClassNames(file);
  std::vector<ServiceEmitter> services;
  for (int i = 0; i < file->service_count(); ++i) {
    services.emplace_back(file->service(i), class_names[i]);
  }
  const std::string stem = google::protobuf::compiler::StripProto(file->name());
  return WriteFile(
             context, absl::StrCat(stem, ".dynrpc.pb.h"),
             [&](Printer& printer) {
               EmitHeader(file, stem, services, printer);
             },
             error) &&
         WriteFile(
             context, absl::StrCat(stem, ".dynrpc.pb.cc"),
             [&](Printer& printer) {
               EmitSource(file, stem, services, printer);
             },
             error);
}

uint64_t Generator::GetSupportedFeatures() const {
  return FEATURE_PROTO3_OPTIONAL;
}

}  // namespace dynrpc::plugin
