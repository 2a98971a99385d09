# dynrpc_generate: generate protobuf messages and dynrpc stubs for .proto
# files at build time, and add them to a target.
#
#   dynrpc_generate(TARGET <target>
#                   PROTOS <file.proto>...
#                   [IMPORT_DIRS <dir>...]
#                   [NAMESPACE <name>])
#
# For each x.proto, runs protobuf's protoc (protobuf::protoc, from CMake's
# FindProtobuf) once to write x.pb.{h,cc} and, through protoc-gen-dynrpc
# (dynrpc::protoc-gen-dynrpc), x.dynrpc.pb.{h,cc} under the target's binary
# dir; adds them to <target>, puts that dir on its include path and links it
# to dynrpc::runtime (which brings protobuf). Works the same from dynrpc's
# own tree, a project that adds it with add_subdirectory, and one that uses
# the installed package (find_package(dynrpc)). Paths of .proto files are taken relative to
# the first IMPORT_DIRS entry (default: the current source dir), so
# "#include "x.dynrpc.pb.h"" mirrors the .proto's import path. With
# NAMESPACE (say `dyn`), the stubs and services go in that namespace inside
# the package's (pkg::dyn::Greeter), so that one program can also link
# gRPC's generated classes for the same .proto (pkg::Greeter).

function(dynrpc_generate)
  cmake_parse_arguments(arg "" "TARGET;NAMESPACE" "PROTOS;IMPORT_DIRS" ${ARGN})
  if(NOT arg_TARGET OR NOT arg_PROTOS)
    message(FATAL_ERROR "dynrpc_generate: TARGET and PROTOS are required")
  endif()
  if(NOT arg_IMPORT_DIRS)
    set(arg_IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  list(GET arg_IMPORT_DIRS 0 root)
  get_filename_component(root "${root}" ABSOLUTE)
  set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/${arg_TARGET}_gen")
  file(MAKE_DIRECTORY "${out_dir}")

  set(option_args)
  if(arg_NAMESPACE)
    set(option_args "--dynrpc_opt=namespace=${arg_NAMESPACE}")
  endif()
  set(include_args)
  foreach(dir ${arg_IMPORT_DIRS})
    get_filename_component(abs "${dir}" ABSOLUTE)
    list(APPEND include_args "-I${abs}")
  endforeach()

  set(srcs)
  foreach(proto ${arg_PROTOS})
    get_filename_component(abs "${proto}" ABSOLUTE)
    file(RELATIVE_PATH rel "${root}" "${abs}")
    if(rel MATCHES "^\\.\\./")
      message(FATAL_ERROR "dynrpc_generate: ${proto} is not under ${root}")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    set(outs "${out_dir}/${stem}.pb.h" "${out_dir}/${stem}.pb.cc"
             "${out_dir}/${stem}.dynrpc.pb.h" "${out_dir}/${stem}.dynrpc.pb.cc")
    # One protoc run writes the messages (protobuf's C++ generator) and the
    # stubs (our plugin); it reruns when the .proto or the plugin changes.
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc
      ARGS --cpp_out=${out_dir}
           --plugin=protoc-gen-dynrpc=$<TARGET_FILE:dynrpc::protoc-gen-dynrpc>
           --dynrpc_out=${out_dir} ${option_args} ${include_args} ${abs}
      DEPENDS ${abs} protobuf::protoc dynrpc::protoc-gen-dynrpc
      COMMENT "Generating messages and dynrpc stubs for ${rel}"
      VERBATIM)
    list(APPEND srcs ${outs})
  endforeach()
  target_sources(${arg_TARGET} PRIVATE ${srcs})
  target_include_directories(${arg_TARGET} PUBLIC "${out_dir}")
  target_link_libraries(${arg_TARGET} PUBLIC dynrpc::runtime)
endfunction()
