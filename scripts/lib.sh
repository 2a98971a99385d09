# Shared by scripts/demo, scripts/test and scripts/bench; sourced, not run.
# Installs missing Debian packages, configures once and builds incrementally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${DYNRPC_BUILD_DIR:-$ROOT/build}"
ASAN_BUILD_DIR="${DYNRPC_ASAN_BUILD_DIR:-$BUILD_DIR-asan}"
JOBS="${DYNRPC_JOBS:-$(nproc)}"

# Everything the build and the tests need, from Debian 12.
PACKAGES=(
  cmake ninja-build g++ ccache python3
  libprotobuf-dev libprotoc-dev protobuf-compiler
  libabsl-dev zlib1g-dev
  libboost1.81-dev
  pkg-config libnghttp2-dev
  libgrpc++-dev protobuf-compiler-grpc curl
  libnats-dev nats-server iproute2
  etcd-server
  libgtest-dev libgmock-dev libbenchmark-dev
)

log() { printf '==> %s\n' "$*"; }

# Installs whichever of PACKAGES is missing; a no-op when all are present.
ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
      echo "need root or sudo to install: ${missing[*]}" >&2
      exit 1
    }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# build [TARGET...]: configures the build tree on first use, then builds the
# targets (all when none) incrementally, through ccache.
build() {
  # Configured on first use, and again when the caller asks for settings
  # (a tree configured before an option existed gets it).
  if [ ! -f "$BUILD_DIR/build.ninja" ] || [ "${#EXTRA_CMAKE_ARGS[@]}" -gt 0 ]; then
    log "configuring $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja \
      -DCMAKE_BUILD_TYPE="${DYNRPC_BUILD_TYPE:-RelWithDebInfo}" \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache "${EXTRA_CMAKE_ARGS[@]}" >/dev/null
  fi
  log "building ${*:-everything} (-j$JOBS)"
  if [ "$#" -gt 0 ]; then
    cmake --build "$BUILD_DIR" -j "$JOBS" --target "$@"
  else
    cmake --build "$BUILD_DIR" -j "$JOBS"
  fi
}

# build_sanitized: the tests (no examples) with ASan and UBSan, in $BUILD_DIR.
build_sanitized() {
  local flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  EXTRA_CMAKE_ARGS=(-DDYNRPC_BUILD_EXAMPLES=OFF -DDYNRPC_BUILD_INTEROP=OFF
                    -DDYNRPC_TEST_CONSUMERS=OFF
                    "-DCMAKE_CXX_FLAGS=$flags"
                    "-DCMAKE_EXE_LINKER_FLAGS=$flags")
  DYNRPC_BUILD_TYPE=Debug build
}
EXTRA_CMAKE_ARGS=()

# Servers started by the project's scripts listen on loopback unless the user
# chose a host.
use_loopback() {
  export DYN_TCP_RPC_HOST="${DYN_TCP_RPC_HOST:-127.0.0.1}"
  export DYN_HTTP_RPC_HOST="${DYN_HTTP_RPC_HOST:-127.0.0.1}"
}

# start_nats [CONFIG]: starts a nats-server of our own with CONFIG
# (tests/nats/nats-server.conf by default: loopback, a port it picks
# itself), waits up to 30 s until it greets a client with INFO, and exports
# NATS_SERVER=nats://127.0.0.1:<port>. NATS_PID is its pid, for stop_nats;
# its log is in $NATS_DIR/log. The caller arranges for stop_nats to run on
# exit (trap).
NATS_PID=""
NATS_DIR=""
# Debian installs nats-server in /usr/sbin, which a user's PATH may lack.
NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
start_nats() {
  local config="${1:-$ROOT/tests/nats/nats-server.conf}" port="" f _
  NATS_DIR="$(mktemp -d)"
  # --ports_file_dir: once it listens, nats-server writes the address it
  # bound to $NATS_DIR/nats-server_<pid>.ports: {"nats":["nats://..."]}.
  "$NATS_SERVER_BIN" -c "$config" --ports_file_dir "$NATS_DIR" \
    >"$NATS_DIR/log" 2>&1 </dev/null &
  NATS_PID=$!
  for _ in $(seq 300); do
    for f in "$NATS_DIR"/*.ports; do
      [ -f "$f" ] && port="$(grep -o 'nats://[^"]*' "$f" | head -n1)"
    done
    [ -n "$port" ] && break
    kill -0 "$NATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  port="${port##*:}"
  # Ready means: a client that connects is greeted with INFO.
  if [ -z "$port" ] || ! nats_greets "$port"; then
    echo "nats-server did not start (config $config); its log:" >&2
    cat "$NATS_DIR/log" >&2
    stop_nats
    return 1
  fi
  export NATS_SERVER="nats://127.0.0.1:$port"
  log "nats-server (pid $NATS_PID) at $NATS_SERVER"
}

# nats_greets PORT: true when a connection to 127.0.0.1:PORT is greeted with
# a NATS INFO line within 5 s.
nats_greets() {
  local line="" fd
  exec {fd}<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null || return 1
  IFS= read -r -t 5 line <&"$fd" || true
  exec {fd}<&-
  [[ "$line" == INFO* ]]
}

# stop_nats: stops the nats-server start_nats started (by its pid; none
# other), waiting for it to exit (SIGKILL after 10 s). Idempotent.
stop_nats() {
  stop_pid "$NATS_PID"
  NATS_PID=""
  [ -n "$NATS_DIR" ] && rm -rf "$NATS_DIR"
  NATS_DIR=""
}

# start_etcd: starts an etcd (Debian's etcd-server) on free loopback ports
# with its data in a temporary directory, waits up to 30 s until it serves
# clients, and exports ETCD_ENDPOINTS=http://127.0.0.1:<port> (the etcd
# discovery backend's tests use it). ETCD_PID is its pid, for stop_etcd.
ETCD_PID=""
ETCD_DIR=""
start_etcd() {
  local client peer _
  ETCD_DIR="$(mktemp -d)"
  read -r client peer < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
  etcd --name dynrpc-test --data-dir "$ETCD_DIR/data" \
    --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "dynrpc-test=http://127.0.0.1:$peer" \
    >"$ETCD_DIR/log" 2>&1 </dev/null &
  ETCD_PID=$!
  for _ in $(seq 300); do
    grep -q "ready to serve client requests" "$ETCD_DIR/log" && break
    kill -0 "$ETCD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "ready to serve client requests" "$ETCD_DIR/log"; then
    echo "etcd did not start; its log:" >&2
    cat "$ETCD_DIR/log" >&2
    stop_etcd
    return 1
  fi
  export ETCD_ENDPOINTS="http://127.0.0.1:$client"
  log "etcd (pid $ETCD_PID) at $ETCD_ENDPOINTS"
}

# stop_etcd: stops the etcd start_etcd started (by its pid; none other) and
# removes its data. Idempotent.
stop_etcd() {
  stop_pid "$ETCD_PID"
  ETCD_PID=""
  [ -n "$ETCD_DIR" ] && rm -rf "$ETCD_DIR"
  ETCD_DIR=""
}

# stop_pid PID: stops a process this script started (SIGTERM, then SIGKILL
# after 10 s) and reaps it. No-op for an empty or finished PID.
stop_pid() {
  local pid="$1" _
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
