# Shared by scripts/demo, scripts/test and scripts/bench; sourced, not run.
# Installs missing Debian packages, configures once and builds incrementally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${DYNRPC_BUILD_DIR:-$ROOT/build}"
ASAN_BUILD_DIR="${DYNRPC_ASAN_BUILD_DIR:-$BUILD_DIR-asan}"
JOBS="${DYNRPC_JOBS:-$(nproc)}"

# Everything the build and the tests need, from Debian 12.
PACKAGES=(
  cmake ninja-build g++ ccache
  libprotobuf-dev libprotoc-dev protobuf-compiler
  libabsl-dev
  libboost1.81-dev
  pkg-config libnghttp2-dev
  libgrpc++-dev protobuf-compiler-grpc curl
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
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
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
  EXTRA_CMAKE_ARGS=(-DDYNRPC_BUILD_EXAMPLES=OFF "-DCMAKE_CXX_FLAGS=$flags"
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
