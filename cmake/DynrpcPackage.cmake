# How another CMake project gets dynrpc: the installed package
# (find_package(dynrpc CONFIG)), or add_subdirectory(dynrpc), after which
# find_package(dynrpc CONFIG) finds this build too. Either way it gives
# dynrpc::runtime and dynrpc_generate().
include(CMakePackageConfigHelpers)

set(DYNRPC_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/dynrpc")

if(NOT PROJECT_IS_TOP_LEVEL)
  # add_subdirectory: the targets and dynrpc_generate() exist already; a
  # find_package(dynrpc CONFIG) in the user's project finds this note.
  file(WRITE "${CMAKE_FIND_PACKAGE_REDIRECTS_DIR}/dynrpc-config.cmake"
       "# dynrpc is part of this build (add_subdirectory).\n")
  write_basic_package_version_file(
    "${CMAKE_FIND_PACKAGE_REDIRECTS_DIR}/dynrpc-config-version.cmake"
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
endif()

if(NOT DYNRPC_INSTALL)
  return()
endif()

install(TARGETS dynrpc_core dynrpc_net dynrpc_tcp dynrpc_http dynrpc_nats
                dynrpc_runtime protoc-gen-dynrpc
  EXPORT dynrpcTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/dynrpc
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT dynrpcTargets NAMESPACE dynrpc::
  DESTINATION ${DYNRPC_CMAKE_INSTALL_DIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/dynrpcConfig.cmake.in
  ${PROJECT_BINARY_DIR}/dynrpcConfig.cmake
  INSTALL_DESTINATION ${DYNRPC_CMAKE_INSTALL_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/dynrpcConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dynrpcConfig.cmake
              ${PROJECT_BINARY_DIR}/dynrpcConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/DynrpcGenerate.cmake
  DESTINATION ${DYNRPC_CMAKE_INSTALL_DIR})

# pkg-config, for builds without CMake (code generation then is the user's:
# protoc --plugin=protoc-gen-dynrpc=$(pkg-config --variable=plugin dynrpc)).
# Relative to the .pc file, so that `cmake --install --prefix` anywhere works.
file(RELATIVE_PATH DYNRPC_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" DYNRPC_PC_TO_PREFIX "${DYNRPC_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/dynrpc.pc.in
               ${PROJECT_BINARY_DIR}/dynrpc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/dynrpc.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
