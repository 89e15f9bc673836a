"""Speed of the static research sources on a synthetic ggml-like C/C++ tree.

Generates about `--lines` lines (default 500 000) in a temporary git repository: backend
directories ggml-cpu/-cuda/-metal/-vulkan with op switch statements and fusion checks (the
GPU ones fuse RMS_NORM+MUL, the CPU one does not), and many library files of realistic C and
C++ functions (elementwise loops, reductions, matmuls, string and control code), some of them
with multi-pass patterns. Then times SiblingBackendsSource, MultiPassSource (1 and 2 worker
processes) and, when present, HistorySource, and prints a Markdown table.

Usage: .venv/bin/python benchmarks/research_static.py [--lines 500000] [--keep]
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from readfirst.core.config import Spec
from readfirst.research import ResearchContext, multipass
from readfirst.research import treesit as T
from readfirst.research.multipass import MultiPassSource
from readfirst.research.siblings import SiblingBackendsSource, families

OP_NAMES = (
    "NONE DUP ADD ADD1 ACC SUB MUL DIV SQR SQRT LOG SIN COS SUM SUM_ROWS MEAN ARGMAX COUNT_EQUAL "
    "REPEAT REPEAT_BACK CONCAT SILU_BACK NORM RMS_NORM RMS_NORM_BACK GROUP_NORM L2_NORM MUL_MAT "
    "MUL_MAT_ID OUT_PROD SCALE SET CPY CONT RESHAPE VIEW PERMUTE TRANSPOSE GET_ROWS SET_ROWS "
    "DIAG DIAG_MASK_INF SOFT_MAX SOFT_MAX_BACK ROPE ROPE_BACK CLAMP CONV_TRANSPOSE_1D IM2COL "
    "POOL_1D POOL_2D UPSCALE PAD ARANGE ARGSORT LEAKY_RELU FLASH_ATTN_EXT SSM_CONV SSM_SCAN "
    "WIN_PART UNARY GLU TOPK_MOE")
OPS = [f"GGML_OP_{n}" for n in OP_NAMES.split()]
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@localhost"}


def backend_file(name: str, k: int, rng: random.Random) -> str:
    ops = OPS if name != "cpu" else OPS[:-1]  # cpu lacks TOPK_MOE
    out = [f'#include "ggml-{name}.h"\n', f"static bool ggml_{name}_compute_forward_{k}("
           "struct ggml_tensor * dst) {", "    switch (dst->op) {"]
    for op in ops:
        out += [f"        case {op}:", f"            ggml_{name}_op_{op[8:].lower()}(dst);",
                "            break;"]
    out += ["        default:", "            return false;", "    }", "    return true;", "}\n"]
    out += [f"static void ggml_{name}_graph_compute_{k}(struct ggml_cgraph * cgraph) {{",
            "    for (int i = 0; i < cgraph->n_nodes; i++) {",
            "        struct ggml_tensor * node = cgraph->nodes[i];"]
    fusions = [("ADD", "ADD")] + ([("RMS_NORM", "MUL"), ("MUL_MAT", "ADD")] if name != "cpu"
                                  else [])
    for a, b in fusions:
        out += [f"        if (ggml_{name}_can_fuse(cgraph, i, {{ GGML_OP_{a}, GGML_OP_{b} }})) {{",
                "            i++;", "            continue;", "        }"]
    out += [f"        ggml_{name}_compute_forward_{k}(node);", "    }", "}\n"]
    while len(out) < 480:
        out += kernel(rng, len(out))
    return "\n".join(out) + "\n"


def kernel(rng: random.Random, i: int) -> list[str]:
    """One realistic function; about one in eight is a multi-pass pattern."""
    kind = rng.choice(["map", "map", "reduce", "matmul", "control", "control", "strings",
                       "multipass", "twoloops"])
    f = f"{kind}_{i}_{rng.randrange(1 << 30):x}"  # the kind in the name: checked below
    if kind == "map":
        return [f"void {f}(float *restrict y, const float *restrict x, const float *b, int n) {{",
                "    for (int j = 0; j < n; j++) {", "        y[j] = x[j] * 0.5f + b[j];",
                "    }", "}", ""]
    if kind == "reduce":
        return [f"float {f}(const float *x, int n) {{", "    float acc = 0.0f;",
                "    for (int j = 0; j < n; j++) {", "        acc += x[j] * x[j];", "    }",
                "    return acc / (float) n;", "}", ""]
    if kind == "matmul":
        return [f"void {f}(float *c, const float *a, const float *b, int m, int n, int k) {{",
                "    for (int r = 0; r < m; r++) {", "        for (int q = 0; q < n; q++) {",
                "            float s = 0.0f;", "            for (int t = 0; t < k; t++) {",
                "                s += a[r * k + t] * b[t * n + q];", "            }",
                "            c[r * n + q] = s;", "        }", "    }", "}", ""]
    if kind == "control":
        return [f"int {f}(struct ctx *c, int mode) {{", "    int rc = 0;",
                "    if (c == NULL) {", "        return -1;", "    }", "    switch (mode) {",
                "        case 0: rc = c->a + c->b; break;", "        case 1: rc = c->a * 2; break;",
                "        default: rc = log_error(c, \"bad mode %d\", mode); break;", "    }",
                "    while (c->next && rc < 100) {", "        c = c->next;", "        rc++;",
                "    }", "    return rc;", "}", ""]
    if kind == "strings":
        return [f"size_t {f}(char *dst, const char *src, size_t cap) {{",
                "    size_t len = strlen(src);", "    if (len >= cap) {",
                "        len = cap - 1;", "    }", "    memcpy(dst, src, len);",
                "    dst[len] = '\\0';", "    return len;", "}", ""]
    if kind == "twoloops":  # different buffers: no finding
        return [f"void {f}(float *a, float *b, const float *x, int n) {{",
                "    for (int j = 0; j < n; j++) {", "        a[j] = x[j] + 1.0f;", "    }",
                "    for (int j = 0; j < n; j++) {", "        b[j] = x[j] - 1.0f;", "    }",
                "}", ""]
    return [f"void {f}(float *dst, const float *src, int n, float eps) {{",
            "    memcpy(dst, src, n * sizeof(float));", "    float ss = 0.0f;",
            "    for (int j = 0; j < n; j++) {", "        ss += dst[j] * dst[j];", "    }",
            "    const float scale = 1.0f / sqrtf(ss / n + eps);",
            "    ggml_vec_scale_f32(n, dst, scale);", "}", ""]


def cpp_file(rng: random.Random) -> str:
    out = ["#include <vector>", "#include <algorithm>", "", "namespace lib {", ""]
    while len(out) < 480:
        c = f"Layer{rng.randrange(1 << 30):x}"  # forward(): std::copy + scale, a chain
        out += [f"class {c} {{", " public:", "    void forward(std::vector<float> &out, "
                "const std::vector<float> &in, float s) {",
                "        std::copy(in.begin(), in.end(), out.begin());",
                "        for (size_t i = 0; i < out.size(); ++i) {", "            out[i] *= s;",
                "        }", "    }", "    float norm(const std::vector<float> &v) const {",
                "        float acc = 0.0f;", "        for (float e : v) acc += e * e;",
                "        return acc;", "    }", "    int count_ = 0;", "};", ""]
        out += kernel(rng, len(out))
    return "\n".join(out + ["}  // namespace lib", ""])


def generate(root: Path, lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    total, k = 0, 0
    for name in ("cpu", "cuda", "metal", "vulkan"):
        ext = {"cpu": "c", "cuda": "cu", "metal": "cpp", "vulkan": "cpp"}[name]
        for j in range(max(5, lines // 10 // 480)):  # each backend: ~10% of the tree
            text = backend_file(name, j, rng)
            path = root / f"ggml/src/ggml-{name}/part{j}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            total += text.count("\n")
    while total < lines:
        lib = root / f"src/lib{k // 50:03d}"
        lib.mkdir(parents=True, exist_ok=True)
        if k % 5 == 4:
            text, name = cpp_file(rng), f"mod{k}.cpp"
        else:
            body: list[str] = ["#include <math.h>", "#include <string.h>", ""]
            while len(body) < 500:
                body += kernel(rng, len(body))
            text, name = "\n".join(body) + "\n", f"mod{k}.c"
        (lib / name).write_text(text)
        total += text.count("\n")
        k += 1
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "synthetic tree"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=500_000)
    ap.add_argument("--keep", action="store_true", help="print and keep the generated tree")
    args = ap.parse_args()
    multipass.MAX_HYPOTHESES = 10**9  # count every chain, to check them all below
    tmp = tempfile.mkdtemp(prefix="rf-static-")
    root = Path(tmp)
    t0 = time.perf_counter()
    generate(root, args.lines)
    files = T.tracked_files(root)
    nlines = {f: (root / f).read_bytes().count(b"\n") for f in files}
    fam_files = sorted({f for fam in families(files) for fs in fam.members.values() for f in fs})
    texts = [(root / f).read_text() for f in files]
    planted = {"multipass": sum(t.count("void multipass_") for t in texts),
               "forward": sum(t.count("void forward(") for t in texts)}
    print(f"generated {len(files)} files, {sum(nlines.values())} lines in "
          f"{time.perf_counter() - t0:.1f} s ({os.cpu_count()} CPUs); planted multi-pass "
          f"functions: {planted}\n")
    rows, notes = [], []
    for label, source, jobs, scope in (
        ("siblings", SiblingBackendsSource(), 1, fam_files),
        ("siblings (2 processes)", SiblingBackendsSource(), 2, fam_files),
        ("multipass", MultiPassSource(), 1, files),
        ("multipass (2 processes)", MultiPassSource(), 2, files),
    ):
        spec = Spec.model_validate({"target": {"bench": "true"}, "research": {"jobs": jobs}})
        ctx = ResearchContext(root, root, ".", spec, root / ".readfirst")
        started = time.perf_counter()
        finding = source.run(ctx)
        rows.append((label, len(scope), sum(nlines[f] for f in scope),
                     time.perf_counter() - started, len(finding.hypotheses)))
        notes += [f"{label}: {n}" for n in finding.notes]
        if label == "multipass":
            kinds = Counter(str(h.data["function"]).split("_")[0].split("::")[-1]
                            for h in finding.hypotheses)
            notes.append(f"multipass findings by generated function kind: {dict(kinds)}")
    try:
        history = importlib.import_module("readfirst.research.history").HistorySource()
    except (ImportError, AttributeError):
        history = None
    if history is not None:
        spec = Spec.model_validate({"target": {"bench": "true"}})
        ctx = ResearchContext(root, root, ".", spec, root / ".readfirst")
        started = time.perf_counter()
        finding = history.run(ctx)
        rows.append(("history", len(files), sum(nlines.values()),
                     time.perf_counter() - started, len(finding.hypotheses)))
    print("| source | files | lines | seconds | findings |")
    print("|---|---:|---:|---:|---:|")
    for label, nfiles, nl, secs, found in rows:
        print(f"| {label} | {nfiles} | {nl} | {secs:.2f} | {found} |")
    if notes:
        print("\n" + "\n".join(f"- {n}" for n in notes))
    if args.keep:
        print(f"\ntree kept at {root}")
    else:
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
