# Shared set-up for scripts/test, scripts/bench and .ci/run: install the
# Debian packages the project needs when they are missing, then configure and
# build with CMake + Ninja. Sourced, not run.
#
# Environment knobs: NORI_JOBS (parallel build jobs, default nproc),
# NORI_CXX (compiler, default clang++: see README on g++ 12 and coroutines).

NORI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NORI_PACKAGES=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  liburing-dev libboost-dev libmimalloc-dev libxxhash-dev libgtest-dev libgmock-dev
  libbenchmark-dev libsodium-dev libcli11-dev libfmt-dev nlohmann-json3-dev
  libhiredis-dev redis-tools redis-server python3
)

nori_log() { printf '[nori] %s\n' "$*" >&2; }

nori_install_deps() {
  local missing=()
  for p in "${NORI_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    nori_log "installing missing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# nori_configure DIR [cmake args...]: configure DIR once (CMake re-runs itself
# on later builds when a CMakeLists.txt changes).
nori_configure() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    nori_log "configuring $dir"
    CXX=${NORI_CXX:-clang++} CC=${NORI_CC:-clang} \
      cmake -S "$NORI_ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  fi
}

# nori_build DIR [cmake args...]: configure (once) and build DIR.
nori_build() {
  local dir=$1
  shift
  nori_configure "$dir" "$@"
  nori_log "building $dir"
  cmake --build "$dir" -j "${NORI_JOBS:-$(nproc)}"
}
