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

// Identifiers joined by "::" ("dyn", "a::b"), none a keyword or holding
// "__".
bool IsNamespaceName(absl::string_view name) {
  if (name.empty()) return false;
  for (absl::string_view part : absl::StrSplit(name, "::")) {
    if (part.empty() || absl::ascii_isdigit(part.front()) ||
        IsReservedWord(part) || absl::StrContains(part, "__")) {
      return false;
    }
    for (char c : part) {
      if (!absl::ascii_isalnum(c) && c != '_') return false;
    }
  }
  return true;
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

// A name for `name`, which cannot be kept, that is not in `taken`, nor is
// with `suffix` appended: `name` with "_" appended, else with "_2", "_3",
// ... (never two underscores in a row, which C++ reserves).
std::string Unclash(const std::string& name, absl::string_view suffix,
                    const std::set<std::string>& taken) {
  const std::string base = absl::EndsWith(name, "_") ? name : name + "_";
  auto free = [&](const std::string& candidate) {
    return candidate != name && taken.count(candidate) == 0 &&
           taken.count(candidate + std::string(suffix)) == 0;
  };
  if (free(base)) return base;
  for (int i = 2;; ++i) {
    std::string candidate = absl::StrCat(base, i);
    if (free(candidate)) return candidate;
  }
}

// The C++ class name of each service in `file`, by index. A name that is a
// keyword or names one of the nested classes and members of the generated
// class is changed by Unclash(), avoiding the other services' names.
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

// Unary methods get a future form (`FooFuture`) besides their coroutine one;
// streaming methods do not.
bool IsUnary(const MethodDescriptor* method) {
  return !method->client_streaming() && !method->server_streaming();
}

// The C++ name of each method of `service`, by index, where `class_name` is
// the service's class. A method keeps its proto name unless that is a
// keyword, names something the generated classes (or dynrpc::Service)
// already declare, is a unary method's name plus "Future", or (for a unary
// method) its own future form would be taken; such a method is renamed by
// Unclash() so that neither its name nor its future form collides with
// anything. A streaming method has no future form and reserves no second
// name.
std::vector<std::string> MethodCppNames(const ServiceDescriptor* service,
                                        const std::string& class_name) {
  std::set<std::string> taken = {
      // The generated classes and their members.
      class_name, "Stub", "StubInterface", "Service", "kServiceName",
      "channel_",
      // dynrpc::Service's public and protected members.
      "full_name", "methods", "AddUnaryMethod", "AddServerStreamingMethod",
      "AddClientStreamingMethod", "AddBidiStreamingMethod"};
  // The proto names whose future forms are generated.
  std::set<std::string> unary_names;
  for (int i = 0; i < service->method_count(); ++i) {
    if (IsUnary(service->method(i))) {
      unary_names.insert(service->method(i)->name());
    }
  }
  constexpr absl::string_view kFuture = "Future";
  // The suffix of the second name that method `i` declares: its future
  // form's, or none (an empty suffix names the method itself again).
  auto second_suffix = [&](int i) {
    return IsUnary(service->method(i)) ? kFuture : absl::string_view();
  };
  auto keeps_name = [&](int i) {
    const std::string& name = service->method(i)->name();
    if (IsReservedWord(name) || taken.count(name) > 0 ||
        taken.count(absl::StrCat(name, second_suffix(i))) > 0) {
      return false;
    }
    return !(absl::EndsWith(name, kFuture) &&
             unary_names.count(name.substr(0, name.size() - kFuture.size())) >
                 0);
  };
  std::vector<std::string> names(service->method_count());
  for (int i = 0; i < service->method_count(); ++i) {
    if (keeps_name(i)) names[i] = service->method(i)->name();
  }
  for (int i = 0; i < service->method_count(); ++i) {
    if (names[i].empty()) continue;
    taken.insert(names[i]);
    taken.insert(absl::StrCat(names[i], second_suffix(i)));
  }
  for (int i = 0; i < service->method_count(); ++i) {
    if (!names[i].empty()) continue;
    names[i] = Unclash(service->method(i)->name(), second_suffix(i), taken);
    taken.insert(names[i]);
    taken.insert(absl::StrCat(names[i], second_suffix(i)));
  }
  return names;
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

std::vector<std::string> PackArgs(std::string first, absl::string_view pad,
                                  const std::vector<std::string>& args,
                                  absl::string_view close, std::size_t width);

// `text`, which starts a line after `prefix`, broken after the commas
// between its outermost template arguments, which line up after the "<", as
// clang-format breaks a type too long for its line. Empty when that
// template has fewer than two arguments.
std::vector<std::string> BreakTemplateArgs(absl::string_view prefix,
                                           absl::string_view text,
                                           std::size_t width) {
  const std::size_t open = text.find('<');
  if (open == absl::string_view::npos) return {};
  std::vector<std::string> template_args;
  std::size_t arg_start = open + 1;
  int depth = 1;
  std::size_t i = open + 1;
  for (; i < text.size() && depth > 0; ++i) {
    if (text[i] == '<') ++depth;
    if (text[i] == '>') --depth;
    if ((text[i] == ',' && depth == 1) || depth == 0) {
      template_args.push_back(std::string(
          absl::StripAsciiWhitespace(text.substr(arg_start, i - arg_start))));
      arg_start = i + 1;
    }
  }
  if (depth != 0 || template_args.size() < 2) return {};
  const std::string first = absl::StrCat(prefix, text.substr(0, open + 1));
  return PackArgs(first, std::string(first.size(), ' '), template_args,
                  text.substr(i - 1), width);
}

// `args` packed onto lines of at most `width` columns, the first starting
// with `first` and the others with `pad`, the last one ending in `close`. An
// argument too long for a continuation line of its own is broken inside its
// template arguments where it can be.
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
    if (!line_has_args && line.size() + arg.size() > width &&
        absl::StripLeadingAsciiWhitespace(line).empty()) {
      std::vector<std::string> broken = BreakTemplateArgs(line, arg, width);
      if (!broken.empty()) {
        lines.insert(lines.end(), broken.begin(), broken.end() - 1);
        line = std::move(broken.back());
        line_has_args = true;
        continue;
      }
    }
    absl::StrAppend(&line, line_has_args ? " " : "", arg);
    line_has_args = true;
  }
  lines.push_back(std::move(line));
  return lines;
}

// Lays `call` out from column `indent` within kColumns, trying what
// clang-format's Google style would choose, in its order of preference: one
// line; arguments aligned after "("; a break after "("; a break before the
// "->" of a member call; a return type on a line of its own. Continuation
// lines carry their extra indentation.
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
    if (fits(broken)) return broken;
    // `object->Method(args)`: the "->" starts a continuation line, and the
    // arguments follow on that line or on lines of their own further in.
    const std::size_t arrow = callee.find("->");
    if (arrow != std::string::npos) {
      const std::string member =
          absl::StrCat("    ", callee.substr(arrow), "(");
      std::vector<std::string> lines = {
          callee.substr(0, arrow),
          absl::StrCat(member, absl::StrJoin(call.args, ", "), close)};
      if (!fits(lines)) {
        lines.pop_back();
        lines.push_back(member);
        std::vector<std::string> args =
            PackArgs("        ", "        ", call.args, close, width);
        lines.insert(lines.end(), args.begin(), args.end());
      }
      if (fits(lines)) return lines;
    }
    if (!call.head_may_break || call.head.empty()) return broken;
  }
  if (!call.head_may_break || call.head.empty()) return one_line;
  Call rest = call;
  rest.head.clear();
  std::vector<std::string> lines = LayOut(rest, indent);
  // A return type too long for its line breaks between its template
  // arguments, or else after its first "<".
  std::vector<std::string> head = {call.head};
  const std::size_t angle = call.head.find('<');
  if (call.head.size() > width && angle != std::string::npos) {
    head = BreakTemplateArgs("", call.head, width);
    if (head.empty() || !fits(head)) {
      head = {call.head.substr(0, angle + 1),
              absl::StrCat("    ", call.head.substr(angle + 1))};
    }
  }
  lines.insert(lines.begin(), head.begin(), head.end());
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

// A parameter of a generated function.
struct Param {
  std::string type;
  std::string name;
};

// `params` as declared: "type name", or the type alone when `named` is false
// (a default handler, which ignores its parameters).
std::vector<std::string> DeclareParams(const std::vector<Param>& params,
                                       bool named) {
  std::vector<std::string> declared;
  for (const Param& param : params) {
    declared.push_back(named ? absl::StrCat(param.type, " ", param.name)
                             : param.type);
  }
  return declared;
}

// Prints `paragraphs` as one comment word-wrapped from column `indent`, with
// an empty `//` line between paragraphs.
void PrintProse(Printer& printer, std::size_t indent,
                const std::vector<absl::string_view>& paragraphs) {
  for (std::size_t i = 0; i < paragraphs.size(); ++i) {
    if (i > 0) printer.Print("//\n");
    PrintLines(printer, ProseComment(indent, paragraphs[i]));
  }
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
  // Besides the names and types, each kind of method sets:
  //   client_type: what the client's method returns;
  //   handler_type: what the server's handler returns;
  //   channel_call: the Channel member the stub calls;
  //   add_method: the dynrpc::Service member that registers the handler.
  // "future" and "future_type" are for unary methods only.
  Vars MethodVars(int index) const {
    const MethodDescriptor* method = service_->method(index);
    const std::string request = QualifiedMessageName(method->input_type());
    const std::string response = QualifiedMessageName(method->output_type());
    const std::string status_or_awaitable = absl::StrCat(
        "::boost::asio::awaitable<::absl::StatusOr<", response, ">>");
    // Handlers return dynrpc's aliases (the same types, shorter to copy).
    const std::string reply = absl::StrCat("::dynrpc::Reply<", response, ">");
    const std::string stream_reply = "::dynrpc::StreamReply";
    const std::string both = absl::StrCat(request, ", ", response);
    Vars vars = {
        {"method", method_names_[index]},
        {"future", absl::StrCat(method_names_[index], "Future")},
        {"proto_name", method->name()},
        {"path", absl::StrCat("/", service_->full_name(), "/", method->name())},
        {"request", request},
        {"response", response},
        {"future_type",
         absl::StrCat("::std::future<::absl::StatusOr<", response, ">>")},
    };
    if (IsUnary(method)) {
      vars["client_type"] = status_or_awaitable;
      vars["handler_type"] = reply;
      vars["channel_call"] = absl::StrCat("channel_->Unary<", response, ">");
      vars["add_method"] = "AddUnaryMethod";
    } else if (!method->client_streaming()) {
      vars["client_type"] =
          absl::StrCat("::dynrpc::ClientReader<", response, ">");
      vars["handler_type"] = stream_reply;
      vars["channel_call"] =
          absl::StrCat("channel_->ServerStreaming<", response, ">");
      vars["add_method"] = "AddServerStreamingMethod";
    } else if (!method->server_streaming()) {
      vars["client_type"] = absl::StrCat("::dynrpc::ClientWriter<", both, ">");
      vars["handler_type"] = reply;
      vars["channel_call"] =
          absl::StrCat("channel_->ClientStreaming<", both, ">");
      vars["add_method"] = "AddClientStreamingMethod";
    } else {
      vars["client_type"] =
          absl::StrCat("::dynrpc::ClientReaderWriter<", both, ">");
      vars["handler_type"] = stream_reply;
      vars["channel_call"] =
          absl::StrCat("channel_->BidiStreaming<", both, ">");
      vars["add_method"] = "AddBidiStreamingMethod";
    }
    return vars;
  }

  // The client's parameters: the context, and the request unless the client
  // streams its requests.
  std::vector<Param> ClientParams(int index, const Vars& method) const {
    std::vector<Param> params = {{"::dynrpc::ClientContext&", "context"}};
    if (!service_->method(index)->client_streaming()) {
      params.push_back(
          {absl::StrCat("const ", method.at("request"), "&"), "request"});
    }
    return params;
  }

  // The handler's parameters: the context, then the request or the stream of
  // them, then the writer of a stream of responses.
  std::vector<Param> HandlerParams(int index, const Vars& method) const {
    const MethodDescriptor* descriptor = service_->method(index);
    std::vector<Param> params = {{"::dynrpc::ServerContext&", "context"}};
    if (!descriptor->client_streaming()) {
      params.push_back(
          {absl::StrCat("const ", method.at("request"), "&"), "request"});
      if (descriptor->server_streaming()) {
        params.push_back({absl::StrCat("::dynrpc::ServerWriter<",
                                       method.at("response"), ">&"),
                          "writer"});
      }
    } else if (!descriptor->server_streaming()) {
      params.push_back(
          {absl::StrCat("::dynrpc::ServerReader<", method.at("request"), ">&"),
           "reader"});
    } else {
      params.push_back(
          {absl::StrCat("::dynrpc::ServerReaderWriter<", method.at("request"),
                        ", ", method.at("response"), ">&"),
           "stream"});
    }
    return params;
  }

  bool HasStreamingMethods() const {
    for (int i = 0; i < service_->method_count(); ++i) {
      if (!IsUnary(service_->method(i))) return true;
    }
    return false;
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
      const std::vector<Param> params = ClientParams(i, method);
      std::vector<std::string> call_args = {
          "context", absl::StrCat("\"", method.at("path"), "\"")};
      if (!service_->method(i)->client_streaming()) {
        call_args.push_back("request");
      }
      printer.Print("\n");
      PrintDefinition(
          printer,
          {.head = method.at("client_type"),
           .name = absl::StrCat(class_name_, "::Stub::", method.at("method")),
           .args = DeclareParams(params, true)},
          {.head = "return",
           .name = method.at("channel_call"),
           .args = std::move(call_args)});
      if (!IsUnary(service_->method(i))) continue;
      printer.Print("\n");
      PrintDefinition(
          printer,
          {.head = method.at("future_type"),
           .name = absl::StrCat(class_name_, "::Stub::", method.at("future")),
           .args = DeclareParams(params, true)},
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
          LayOut({.name = method.at("add_method"),
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
      PrintDefinition(printer,
                      {.head = method.at("handler_type"),
                       .name = absl::StrCat(class_name_,
                                            "::Service::", method.at("method")),
                       .args = DeclareParams(HandlerParams(i, method), false)},
                      {.head = "co_return",
                       .name = "::dynrpc::UnimplementedMethod",
                       .args = {absl::StrCat("\"", method.at("path"), "\"")}});
    }
  }

  // Nested in the service class: these start at column 2, their members at 4.
  void EmitStubInterfaceDeclaration(Printer& printer) const {
    if (!HasStreamingMethods()) {
      printer.Print(
          "// The client side. Stub implements it over a dynrpc::Channel; "
          "tests\n"
          "// mock it (gmock's MOCK_METHOD works on these methods). Every "
          "method\n"
          "// borrows `context` and `request`: they must outlive the "
          "returned\n"
          "// awaitable.\n");
    } else {
      PrintProse(
          printer, 2,
          {"The client side. Stub implements it over a dynrpc::Channel; "
           "tests mock it (gmock's MOCK_METHOD works on these methods). A "
           "unary method borrows `context` and `request`: they must outlive "
           "the returned awaitable.",
           "A streaming method returns its stream at once; the call opens on "
           "the stream's first operation, where errors (an unreachable "
           "server, say) surface. `context` must outlive the stream; the "
           "request of a server-streaming call is copied. Dropping a stream "
           "before its call has ended (Read() gave nullopt or an error, or "
           "Finish() completed) cancels the call. A mock returns a stream "
           "built over a fake dynrpc::RawClientStream."});
    }
    printer.Print(
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
          LayOut({.head = absl::StrCat("virtual ", method.at("client_type")),
                  .name = method.at("method"),
                  .args = DeclareParams(ClientParams(i, method), true),
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
        "the\n");
    if (!HasStreamingMethods()) {
      printer.Print(
          "// channel. The stub must outlive the calls it starts, awaitables "
          "and\n"
          "// futures alike.\n");
    } else {
      printer.Print(
          "// channel. The stub must outlive the calls it starts: "
          "awaitables,\n"
          "// futures and streams alike.\n");
    }
    printer.Print(
        "//\n"
        "// WARNING: never wait on a future form's result from a thread that\n"
        "// runs the channel's executor: get() would never return.\n"
        "class Stub final : public StubInterface {\n"
        " public:\n"
        "  explicit Stub(::std::shared_ptr<::dynrpc::Channel> channel);\n");
    printer.Indent();
    for (int i = 0; i < service_->method_count(); ++i) {
      const Vars method = MethodVars(i);
      const std::vector<std::string> params =
          DeclareParams(ClientParams(i, method), true);
      printer.Print("\n");
      PrintLines(printer, CommentLines(service_->method(i)));
      PrintLines(printer, LayOut({.head = method.at("client_type"),
                                  .name = method.at("method"),
                                  .args = params,
                                  .tail = " override;",
                                  .head_may_break = true},
                                 4));
      if (!IsUnary(service_->method(i))) continue;
      PrintLines(
          printer,
          ProseComment(4, absl::StrCat("Future form of ", method.at("method"),
                                       ", for callers without coroutines. "
                                       "`request` is copied; `context` must "
                                       "outlive the future's completion.")));
      PrintLines(printer, LayOut({.head = method.at("future_type"),
                                  .name = method.at("future"),
                                  .args = params,
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
        "// `request` stay valid until the handler's coroutine completes.\n");
    if (HasStreamingMethods()) {
      printer.Print("//\n");
      PrintProse(printer, 2,
                 {"A streaming handler's `reader`, `writer` or `stream` stays "
                  "valid as long, and what the handler returns ends the call: "
                  "its status (and a client-streaming method's response). When "
                  "the call ends first (cancelled, deadline, connection lost), "
                  "Read() and Write() fail and the handler should return."});
    }
    printer.Print(
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
          LayOut({.head = absl::StrCat("virtual ", method.at("handler_type")),
                  .name = method.at("method"),
                  .args = DeclareParams(HandlerParams(i, method), true),
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

// The namespace of the generated classes: the package's, then the
// `namespace` option's inside it (or alone, without a package).
std::string ClassNamespace(const FileDescriptor* file,
                           absl::string_view sub_namespace) {
  std::string ns = CppNamespace(file->package());
  if (sub_namespace.empty()) return ns;
  return ns.empty() ? std::string(sub_namespace)
                    : absl::StrCat(ns, "::", sub_namespace);
}

void EmitHeader(const FileDescriptor* file, absl::string_view stem,
                absl::string_view ns,
                const std::vector<ServiceEmitter>& services, Printer& printer) {
  const std::string header = absl::StrCat(stem, ".dynrpc.pb.h");
  const Vars vars = {{"source", file->name()},
                     {"guard", HeaderGuard(header)},
                     {"namespace", std::string(ns)}};
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
  } else if (!ns.empty()) {
    printer.Print(vars, "\nnamespace $namespace$ {\n");
  }
  for (const ServiceEmitter& service : services) {
    printer.Print("\n");
    service.EmitDeclarations(printer);
  }
  if (!services.empty() && !ns.empty()) {
    printer.Print(vars, "\n}  // namespace $namespace$\n");
  }
  printer.Print(vars, "\n#endif  // $guard$\n");
}

void EmitSource(const FileDescriptor* file, absl::string_view stem,
                absl::string_view ns,
                const std::vector<ServiceEmitter>& services, Printer& printer) {
  const Vars vars = {{"source", file->name()},
                     {"header", absl::StrCat(stem, ".dynrpc.pb.h")},
                     {"namespace", std::string(ns)}};
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
  if (!ns.empty()) printer.Print(vars, "\nnamespace $namespace$ {\n");
  for (const ServiceEmitter& service : services) {
    printer.Print("\n");
    service.EmitDefinitions(printer);
  }
  if (!ns.empty()) printer.Print(vars, "\n}  // namespace $namespace$\n");
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
  std::string sub_namespace;
  for (const auto& [key, value] : options) {
    if (key != "namespace") {
      *error = absl::StrCat("unknown parameter \"", key,
                            "\": protoc-gen-dynrpc takes namespace=NAME");
      return false;
    }
    if (!IsNamespaceName(value)) {
      *error = absl::StrCat(
          "namespace=", value,
          " is not a C++ namespace name (identifiers joined by ::, no "
          "keywords, no double underscores)");
      return false;
    }
    sub_namespace = value;
  }
  const std::string ns = ClassNamespace(file, sub_namespace);

  const std::vector<std::string> class_names = ServiceClassNames(file);
  std::vector<ServiceEmitter> services;
  for (int i = 0; i < file->service_count(); ++i) {
    services.emplace_back(file->service(i), class_names[i]);
  }
  const std::string stem = google::protobuf::compiler::StripProto(file->name());
  return WriteFile(
             context, absl::StrCat(stem, ".dynrpc.pb.h"),
             [&](Printer& printer) {
               EmitHeader(file, stem, ns, services, printer);
             },
             error) &&
         WriteFile(
             context, absl::StrCat(stem, ".dynrpc.pb.cc"),
             [&](Printer& printer) {
               EmitSource(file, stem, ns, services, printer);
             },
             error);
}

uint64_t Generator::GetSupportedFeatures() const {
  return FEATURE_PROTO3_OPTIONAL;
}

}  // namespace dynrpc::plugin
