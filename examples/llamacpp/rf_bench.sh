#!/bin/sh
# Hot CPU kernels of decode, timed by llama.cpp's own test-backend-ops (perf mode), as METRIC
# lines: microseconds per run (lower is better). The first is the primary metric.
set -e
bin=./build/bin/test-backend-ops
run() {  # name, op, params regex
    us=$("$bin" perf -b CPU -o "$2" -p "$3" 2>/dev/null | sed -n 's/.* \([0-9.]*\) us\/run.*/\1/p' | head -1)
    [ -n "$us" ] || { echo "no timing for $1" >&2; exit 1; }
    echo "METRIC $1=$us"
}
run mul_mat_q4_0_us MUL_MAT 'type_a=q4_0,type_b=f32,m=4096,n=1,k=14336,'
run mul_mat_q8_0_us MUL_MAT 'type_a=q8_0,type_b=f32,m=4096,n=1,k=14336,'
