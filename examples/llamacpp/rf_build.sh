#!/bin/sh
# Configure once (later calls reuse the cache) and build the one test binary the benchmark
# runs. CMake's Makefile generator: readfirst's build reuse relies on make's mtime checks.
set -e
cmake -S . -B build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON > build-configure.log
cmake --build build --target test-backend-ops -j "${BUILD_JOBS:-2}"
