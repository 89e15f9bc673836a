#!/usr/bin/env bash
# Correctness checks: the kernels against reference implementations.
set -euo pipefail
cd "$(dirname "$0")"
./build/test_kernels
