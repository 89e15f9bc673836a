#!/usr/bin/env bash
# Benchmark: one run of the decode-step loop; prints METRIC lines.
set -euo pipefail
cd "$(dirname "$0")"
./build/bench
