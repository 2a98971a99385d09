#!/usr/bin/env bash
# Builds generated-examples/first-service as a project of a user's own would
# be built, then runs its server and client and checks what they print:
#
#   run_first_service.sh installed DYNRPC_SOURCE DYNRPC_BUILD WORK
#       cmake --install DYNRPC_BUILD into WORK/prefix, then
#       find_package(dynrpc) from that prefix; the server is built a second
#       time without CMake, from dynrpc.pc (pkg-config), and that one runs;
#   run_first_service.sh subdirectory DYNRPC_SOURCE DYNRPC_BUILD WORK
#       a project that add_subdirectory()s DYNRPC_SOURCE and then the
#       example (whose find_package(dynrpc) finds that build).
#
# WORK is emptied first. Fails with the step that failed.
set -euo pipefail
mode=$1 source=$2 build=$3 work=$4
example="$source/generated-examples/first-service"
rm -rf "$work"
mkdir -p "$work"
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if command -v ccache > /dev/null; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_NOHASHDIR=true  # the same sources in another build dir hit
fi

case "$mode" in
  installed)
    cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
    cmake -S "$example" -B "$work/build" "${cmake_args[@]}" \
      -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
    bin="$work/build"
    ;;
  subdirectory)
    mkdir -p "$work/project"
    cat > "$work/project/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(uses_dynrpc LANGUAGES CXX)
add_subdirectory("$source" dynrpc)
add_subdirectory("$example" first-service)
CMAKE
    cmake -S "$work/project" -B "$work/build" "${cmake_args[@]}" \
      > "$work/configure.log"
    bin="$work/build/first-service"
    ;;
  *)
    echo "usage: $0 installed|subdirectory DYNRPC_SOURCE DYNRPC_BUILD WORK" >&2
    exit 2
    ;;
esac
cmake --build "$work/build" -j "${JOBS:-2}" > "$work/build.log" || {
  tail -40 "$work/build.log"
  exit 1
}

server_bin="$bin/server"
if [ "$mode" = installed ]; then
  pc=$(dirname "$(find "$work/prefix" -name dynrpc.pc | head -1)")
  export PKG_CONFIG_PATH="$pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  gen="$work/pkg-config"
  mkdir -p "$gen"
  protoc --cpp_out="$gen" --dynrpc_out="$gen" -I"$example" \
    --plugin=protoc-gen-dynrpc="$(pkg-config --variable=plugin dynrpc)" \
    "$example/greeter.proto"
  compile=(c++)
  command -v ccache > /dev/null && compile=(ccache c++)
  # shellcheck disable=SC2046  # pkg-config's flags are words
  "${compile[@]}" -O1 -I"$gen" "$example/server.cc" "$gen/greeter.pb.cc" \
    "$gen/greeter.dynrpc.pb.cc" $(pkg-config --cflags --libs dynrpc) \
    -o "$gen/server"
  server_bin="$gen/server"
fi

# The server on loopback, any free port; the client against what it prints.
DYN_REQUEST_PLANE=tcp DYN_TCP_RPC_HOST=127.0.0.1 DYN_TCP_RPC_PORT=0 \
  "$server_bin" > "$work/server.out" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
for _ in $(seq 300); do
  grep -q '^listening on ' "$work/server.out" && break
  kill -0 $server 2> /dev/null || { cat "$work/server.out"; exit 1; }
  sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$work/server.out")
[ -n "$address" ] || { echo "the server never listened"; exit 1; }
out=$("$bin/client" "$address" Ada)
expected=$'Hello, Ada!\nHello #1, Ada\nHello #2, Ada\nHello #3, Ada'
if [ "$out" != "$expected" ]; then
  printf 'client printed:\n%s\nexpected:\n%s\n' "$out" "$expected"
  exit 1
fi
if [ "$mode" = installed ]; then
  # The command line came with the package, and reaches the server.
  listed=$("$work/prefix/bin/dynrpc" list "$address" --plane tcp)
  if ! grep -qx 'first.Greeter' <<< "$listed"; then
    printf 'the installed dynrpc list printed:\n%s\n' "$listed"
    exit 1
  fi
fi
# Server::Wait() returns on SIGINT and main() exits 0.
kill -INT $server
wait $server
trap - EXIT
echo "first-service ($mode): OK"
