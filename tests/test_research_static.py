"""Static research sources on small git-committed source trees: sibling backends (fusion and
op gaps) and multi-pass code (copy + scale, softmax passes), plus the bundled demo target."""

from __future__ import annotations

import platform
import shutil
import textwrap
from pathlib import Path

import pytest

from readfirst.core.config import Spec
from readfirst.research import ResearchContext
from readfirst.research import treesit as T
from readfirst.research.multipass import MultiPassSource, scan_file, scan_source
from readfirst.research.siblings import SiblingBackendsSource, families, pick_target
from tests.conftest import commit, git, write

DEMO = (Path(__file__).resolve().parents[1] / "src" / "readfirst" / "frontends" / "data" / "demo"
        / "target")


def d(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def ctx_for(root: Path, research: dict | None = None, hotspots: list[str] | None = None,
            repo: Path | None = None) -> ResearchContext:
    spec = Spec.model_validate({"target": {"bench": "true"}, "research": research or {}})
    repo = repo or root
    return ResearchContext(repo=repo, root=root, rel=str(root.relative_to(repo)), spec=spec,
                           state_dir=repo / ".readfirst", hotspots=hotspots or [])


def line_of(root: Path, rel: str, needle: str) -> int:
    lines = (root / rel).read_text().splitlines()
    return next(i + 1 for i, s in enumerate(lines) if needle in s)


def loc(root: Path, rel: str, needle: str) -> str:
    return f"{rel}:{line_of(root, rel, needle)}"


# ---- a mini ggml-like tree --------------------------------------------------------------

CPU = d("""
    #include "ggml-cpu.h"

    static void ggml_compute_forward(struct ggml_compute_params * params, struct ggml_tensor * t) {
        switch (t->op) {
            case GGML_OP_ADD:
                {
                    ggml_compute_forward_add(params, t);
                } break;
            case GGML_OP_MUL:
                {
                    ggml_compute_forward_mul(params, t);
                } break;
            case GGML_OP_RMS_NORM:
                {
                    ggml_compute_forward_rms_norm(params, t);
                } break;
            case GGML_OP_SOFT_MAX:
                {
                    ggml_compute_forward_soft_max(params, t);
                } break;
            case GGML_OP_NONE:
                break;
            default:
                GGML_ABORT("fatal error");
        }
    }

    static int ggml_get_n_tasks(struct ggml_tensor * node, int n_threads) {
        switch (node->op) {
            case GGML_OP_ADD:
            case GGML_OP_MUL:
            case GGML_OP_RMS_NORM:
                return n_threads;
            default:
                return 1;
        }
    }

    static void ggml_graph_compute_thread(struct ggml_cgraph * cgraph,
                                          struct ggml_compute_params * p) {
        for (int node_n = 0; node_n < cgraph->n_nodes; node_n++) {
            struct ggml_tensor * node = cgraph->nodes[node_n];
            if (ggml_cpu_can_fuse(cgraph, node_n, { GGML_OP_ADD, GGML_OP_ADD })) {
                node_n++;
            }
            ggml_compute_forward(p, node);
        }
    }
""")

CUDA = d("""
    #include "ggml-cuda/common.cuh"

    static bool ggml_cuda_compute_forward(ggml_backend_cuda_context & ctx,
                                          struct ggml_tensor * dst) {
        switch (dst->op) {
            case GGML_OP_ADD:
                ggml_cuda_op_add(ctx, dst);
                break;
            case GGML_OP_MUL:
                ggml_cuda_op_mul(ctx, dst);
                break;
            case GGML_OP_RMS_NORM:
                ggml_cuda_op_rms_norm(ctx, dst);
                break;
            case GGML_OP_TOPK_MOE:
                ggml_cuda_op_topk_moe(ctx, dst);
                break;
            case GGML_OP_CONV_3D:
                return false;
            default:
                return false;
        }
        return true;
    }

    static void ggml_cuda_graph_evaluate(ggml_backend_cuda_context * cuda_ctx,
                                         ggml_cgraph * cgraph) {
        for (int i = 0; i < cgraph->n_nodes; i++) {
            ggml_tensor * node = cgraph->nodes[i];
            if (ggml_cuda_can_fuse(cgraph, i, { GGML_OP_RMS_NORM, GGML_OP_MUL }, {})) {
                ggml_cuda_op_rms_norm_fused(*cuda_ctx, node, cgraph->nodes[i + 1]);
                i++;
                continue;
            }
            if (ggml_cuda_can_fuse(cgraph, i, { GGML_OP_ADD, GGML_OP_ADD }, {})) {
                i++;
                continue;
            }
            bool ok = ggml_cuda_compute_forward(*cuda_ctx, node);
            GGML_ASSERT(ok);
        }
    }
""")

METAL = d("""
    #include "ggml-metal-ops.h"

    int ggml_metal_op_encode_impl(ggml_metal_op_t ctx, int idx) {
        struct ggml_tensor * node = ggml_graph_node(ctx->gf, idx);
        int n_fuse = 1;
        switch (node->op) {
            case GGML_OP_ADD:
                n_fuse = ggml_metal_op_bin(ctx, idx);
                break;
            case GGML_OP_RMS_NORM:
                n_fuse = ggml_metal_op_norm(ctx, idx);
                break;
            case GGML_OP_CONV_3D:
                n_fuse = ggml_metal_op_conv_3d(ctx, idx);
                break;
            default:
                break;
        }
        return n_fuse;
    }

    int ggml_metal_op_norm(ggml_metal_op_t ctx, int idx) {
        ggml_op fops[8];
        int n_fuse = 1;
        fops[0] = GGML_OP_RMS_NORM;
        fops[1] = GGML_OP_MUL;
        if (ctx->use_fusion && ggml_can_fuse(ctx->gf, idx, fops, 2)) {
            n_fuse = 2;
        }
        return n_fuse;
    }
""")

VULKAN = d("""
    #include "ggml-vulkan.h"

    static bool ggml_vk_build_graph(ggml_backend_vk_context * ctx, ggml_cgraph * cgraph,
                                    int node_idx) {
        ggml_tensor * node = cgraph->nodes[node_idx];
        switch (node->op) {
            case GGML_OP_ADD:
            case GGML_OP_MUL:
            case GGML_OP_RMS_NORM:
                ggml_vk_elementwise(ctx, node);
                break;
            case GGML_OP_TOPK_MOE:
                ggml_vk_topk_moe(ctx, cgraph, node_idx);
                break;
            case GGML_OP_CONV_3D:
                return false;
            default:
                return false;
        }
        return true;
    }

    static void ggml_vk_graph_compute(ggml_backend_vk_context * ctx, ggml_cgraph * cgraph) {
        for (int i = 0; i < cgraph->n_nodes; i++) {
            if (ggml_vk_can_fuse(ctx, cgraph, i, { GGML_OP_RMS_NORM, GGML_OP_MUL })) {
                ctx->num_additional_fused_ops = 1;
            } else if (ggml_vk_can_fuse(ctx, cgraph, i, { GGML_OP_MUL_MAT, GGML_OP_ADD })) {
                ctx->num_additional_fused_ops = 1;
            }
            ggml_vk_build_graph(ctx, cgraph, i);
        }
    }
""")

OPENCL_UNTRACKED = d("""
    static void ggml_cl_graph_compute(ggml_cgraph * cgraph) {
        for (int i = 0; i < cgraph->n_nodes; i++) {
            if (ggml_opencl_can_fuse(cgraph, i, { GGML_OP_RMS_NORM, GGML_OP_MUL })) { i++; }
        }
    }
""")

SIMD = {
    "avx2": d("""
        #include <immintrin.h>
        static inline float hsum_avx2(__m256 v) { return 0.0f; }
        float dot_q8_avx2(const void * x, const void * y, int n) { return 0.0f; }
        float dot_q4_avx2(const void * x, const void * y, int n) { return 0.0f; }
    """),
    "neon": d("""
        #include <arm_neon.h>
        static inline float hsum_neon(float32x4_t v) { return 0.0f; }
        float dot_q8_neon(const void * x, const void * y, int n) { return 0.0f; }
        float dot_q4_neon(const void * x, const void * y, int n) { return 0.0f; }
    """),
    "scalar": d("""
        float dot_q8_scalar(const void * x, const void * y, int n) { return 0.0f; }
    """),
}


@pytest.fixture(scope="module")
def ggml_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ggml")
    git(root, "init", "-q")
    write(root, "ggml/src/ggml-cpu/ggml-cpu.c", CPU)
    write(root, "ggml/src/ggml-cuda/ggml-cuda.cu", CUDA)
    write(root, "ggml/src/ggml-metal/ggml-metal-ops.cpp", METAL)
    write(root, "ggml/src/ggml-vulkan/ggml-vulkan.cpp", VULKAN)
    write(root, "ggml/src/ggml-hip/CMakeLists.txt", "add_library(ggml-hip)\n")
    for variant, text in SIMD.items():
        write(root, f"src/simd/dot_{variant}.c", text)
    write(root, ".gitignore", "build/\n")
    commit(root, "mini ggml")
    # neither untracked nor ignored files count as siblings
    write(root, "ggml/src/ggml-opencl/ggml-opencl.cpp", OPENCL_UNTRACKED)
    write(root, "build/ggml-sycl/ggml-sycl.cpp", OPENCL_UNTRACKED)
    return root


def test_families_and_targets() -> None:
    files = ["ggml/src/ggml-cpu/a.c", "ggml/src/ggml-cuda/b.cu", "ggml/src/ggml-metal/c.cpp",
             "backends/x86/k.c", "backends/arm/k.c", "src/dot_avx2.c", "src/dot_neon.c",
             "src/dot_generic.c", "src/other.c"]
    fams = {f.where: f for f in families(files)}
    assert set(fams["ggml/src"].members) == {"cpu", "cuda", "metal"}
    assert set(fams["backends"].members) == {"x86", "arm"}
    assert set(fams["src"].members) == {"avx2", "neon", "generic"}  # one family per directory
    assert pick_target(["cuda", "cpu", "metal"], None) == "cpu"
    assert pick_target(["cuda", "cpu", "metal"], "metal") == "metal"
    assert pick_target(["avx2", "neon", "generic"], "cpu") == "generic"  # not a member
    host = {"x86_64": "x86", "aarch64": "arm"}.get(platform.machine().lower())
    assert pick_target(["x86", "arm"], None) == host  # this machine's ISA, else none


def test_fusion_gap_names_every_sibling_and_the_cpu_switch(ggml_tree: Path) -> None:
    f = SiblingBackendsSource().run(ctx_for(ggml_tree))
    titles = [h.title for h in f.hypotheses]
    fuse = [h for h in f.hypotheses if h.title.startswith("Fuse RMS_NORM + MUL")]
    assert len(fuse) == 1, titles
    h = fuse[0]
    assert h.title == "Fuse RMS_NORM + MUL in the cpu backend (as cuda, metal, vulkan do)"
    assert h.kind == "backend-gap" and h.score == 0.8
    cuda = loc(ggml_tree, "ggml/src/ggml-cuda/ggml-cuda.cu", "GGML_OP_RMS_NORM, GGML_OP_MUL")
    metal = loc(ggml_tree, "ggml/src/ggml-metal/ggml-metal-ops.cpp", "ggml_can_fuse(")
    vk = loc(ggml_tree, "ggml/src/ggml-vulkan/ggml-vulkan.cpp", "GGML_OP_RMS_NORM, GGML_OP_MUL")
    for x in (cuda, metal, vk):
        assert x in h.rationale and x in h.sources
    assert h.data["ops"] == ["RMS_NORM", "MUL"]
    assert h.data["siblings"] == {"cuda": [cuda], "metal": [metal], "vulkan": [vk]}
    cpu = "ggml/src/ggml-cpu/ggml-cpu.c"
    site = h.sites[-1]
    assert (site.path, site.line, site.function) == (
        cpu, line_of(ggml_tree, cpu, "case GGML_OP_RMS_NORM"), "ggml_compute_forward")
    assert {s.path for s in h.sites[:-1]} == {x.rsplit(":", 1)[0] for x in (cuda, metal, vk)}
    refs = {r.id: r for r in f.references}
    assert refs[cuda].kind == "code" and "ggml_cuda_can_fuse" in refs[cuda].detail
    # cpu already fuses ADD+ADD; MUL_MAT+ADD is in one sibling only; opencl is untracked
    assert not any("ADD + ADD" in t or "MUL_MAT" in t for t in titles)
    assert "opencl" not in " ".join(titles) and "sycl" not in " ".join(titles)


def test_op_missing_in_target(ggml_tree: Path) -> None:
    f = SiblingBackendsSource().run(ctx_for(ggml_tree))
    titles = [h.title for h in f.hypotheses]
    assert "TOPK_MOE exists in 2 sibling backends but not in cpu" in titles
    h = next(h for h in f.hypotheses if h.title.startswith("TOPK_MOE"))
    assert h.score == 0.5 and set(h.data["siblings"]) == {"cuda", "vulkan"}
    assert h.sites[-1].path == "ggml/src/ggml-cpu/ggml-cpu.c"
    # CONV_3D: metal only (cuda and vulkan `return false`); SOFT_MAX: cpu has it
    assert not any(t.startswith(("CONV_3D", "SOFT_MAX", "MUL_MAT")) for t in titles)


def test_simd_file_family(ggml_tree: Path) -> None:
    f = SiblingBackendsSource().run(ctx_for(ggml_tree))
    titles = [h.title for h in f.hypotheses]
    assert "dot_q4 exists in 2 sibling backends but not in scalar" in titles
    assert not any(t.startswith(("hsum", "dot_q8")) for t in titles)  # static / present


def test_research_backend_override(ggml_tree: Path) -> None:
    f = SiblingBackendsSource().run(ctx_for(ggml_tree, {"backend": "metal"}))
    titles = [h.title for h in f.hypotheses]
    assert "TOPK_MOE exists in 2 sibling backends but not in metal" in titles
    assert not any(t.startswith("Fuse RMS_NORM + MUL") for t in titles)  # metal has it


# ---- multi-pass -------------------------------------------------------------------------

GGML_OPS = d("""
    #include <math.h>
    #include <string.h>

    static void ggml_compute_forward_rms_norm_f32(const struct ggml_compute_params * params,
                                                  struct ggml_tensor * dst) {
        const struct ggml_tensor * src0 = dst->src[0];
        const int64_t ne00 = src0->ne[0];
        for (int64_t i01 = params->ith; i01 < ne01; i01 += params->nth) {
            const float * x = (float *) ((char *) src0->data + i01*nb01);

            ggml_float sum = 0.0;
            for (int64_t i00 = 0; i00 < ne00; i00++) {
                sum += (ggml_float)(x[i00] * x[i00]);
            }

            const float mean = sum/ne00;

            float * y = (float *) ((char *) dst->data + i01*nb1);

            memcpy(y, x, ne00 * sizeof(float));

            const float scale = 1.0f/sqrtf(mean + eps);

            ggml_vec_scale_f32(ne00, y, scale);
        }
    }

    static void ggml_compute_forward_soft_max_f32(const struct ggml_compute_params * params,
                                                  struct ggml_tensor * dst) {
        const int ne00 = dst->ne[0];
        float * wp = (float *) params->wdata + (ne00 + CACHE_LINE_SIZE_F32) * params->ith;
        for (int i1 = ir0; i1 < ir1; i1++) {
            float * sp = (float *)((char *) src0->data + i1*src0->nb[1]);
            float * dp = (float *)((char *)  dst->data + i1*dst->nb[1]);
            const float * mp_f32 = src1 ? (float *)((char *) src1->data + i1*src1->nb[1]) : NULL;

            ggml_vec_cpy_f32  (ne00, wp, sp);
            ggml_vec_scale_f32(ne00, wp, scale);
            if (mp_f32) {
                for (int i = 0; i < ne00; ++i) {
                    wp[i] += slope*mp_f32[i];
                }
            }

    #ifndef NDEBUG
            for (int i = 0; i < ne00; ++i) {
                assert(!isnan(wp[i]));
            }
    #endif

            float max = -INFINITY;
            ggml_vec_max_f32(ne00, &max, wp);

            ggml_float sum = ggml_vec_soft_max_f32(ne00, dp, wp, max);
            assert(sum > 0.0);

            sum = 1.0/sum;
            ggml_vec_scale_f32(ne00, dp, sum);
        }
    }

    void scale_rows(float *dst, const float *src, int n, float s) {
        memcpy(dst, src, n * sizeof(float));
        for (int i = 0; i < n; i++) {
            dst[i] *= s;
        }
    }

    void add_bias(float *y, const float *x, const float *b, int n) {
        for (int i = 0; i < n; i++) y[i] = x[i] * 2.0f;
        for (int i = 0; i < n; i++) y[i] += b[i];
    }
""")

NEGATIVES_C = d("""
    #include <string.h>

    void neg_different(float *a, float *b, const float *src, int n, float s) {
        memcpy(a, src, n * sizeof(float));
        for (int i = 0; i < n; i++) {
            b[i] *= s;
        }
    }

    void neg_touch_between(float *dst, const float *src, int n, float s) {
        memcpy(dst, src, n * sizeof(float));
        dst[0] = 0.0f;
        for (int i = 0; i < n; i++) {
            dst[i] *= s;
        }
    }

    void neg_call_between(float *dst, const float *src, int n, float s) {
        memcpy(dst, src, n * sizeof(float));
        publish(dst, n);
        for (int i = 0; i < n; i++) {
            dst[i] *= s;
        }
    }

    void neg_not_adjacent(float *dst, float *tmp, const float *src, int n, float s) {
        memcpy(dst, src, n * sizeof(float));
        for (int i = 0; i < n; i++) {
            tmp[i] = src[i] * 2.0f;
        }
        for (int i = 0; i < n; i++) {
            dst[i] *= s;
        }
    }

    void neg_stencil(float *dst, const float *src, int n) {
        memcpy(dst, src, n * sizeof(float));
        for (int i = 1; i < n; i++) {
            dst[i] += dst[i - 1];
        }
    }

    void neg_other_bound(float *y, const float *x, int n, int m) {
        for (int i = 0; i < n; i++) y[i] = x[i] * 2.0f;
        for (int i = 0; i < m; i++) y[i] += 1.0f;
    }

    void neg_overwrite(float *y, const float *x, int n) {
        memcpy(y, x, n * sizeof(float));
        for (int i = 0; i < n; i++) y[i] = x[i] * 2.0f;
    }

    void neg_dependent(float *out, const float *x, int n) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            out[i] = expf(x[i]);
            sum += out[i];
        }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < n; i++) out[i] *= inv;
    }

    /* ggml's early softmax: max, exp + sum, scale by 1/sum -- each needs the one before */
    void neg_softmax_dependent(float *p, int nc) {
        float max = -INFINITY;
        ggml_vec_max_f32(nc, &max, p);
        ggml_float sum = 0.0;
        uint16_t scvt;
        for (int i = 0; i < nc; i++) {
            if (p[i] == -INFINITY) {
                p[i] = 0.0f;
            } else {
                ggml_fp16_t s = GGML_FP32_TO_FP16(p[i] - max);
                memcpy(&scvt, &s, sizeof(scvt));
                const float val = GGML_FP16_TO_FP32(table_exp_f16[scvt]);
                sum += val;
                p[i] = val;
            }
        }
        sum = 1.0/sum;
        ggml_vec_scale_f32(nc, p, sum);
    }
""")

CPP = d("""
    #include <algorithm>
    #include <vector>

    void normalize(std::vector<float> &out, const std::vector<float> &in, float s) {
        std::copy(in.begin(), in.end(), out.begin());
        for (size_t i = 0; i < out.size(); ++i) {
            out[i] *= s;
        }
    }

    void neg_cpp(std::vector<float> &out, const std::vector<float> &in, float s) {
        std::copy(in.begin(), in.end(), out.begin());
        std::sort(out.begin(), out.end());
        for (size_t i = 0; i < out.size(); ++i) {
            out[i] *= s;
        }
    }
""")

PY = d("""
    import numpy as np


    def rmsnorm(x, out, eps=1e-5):
        np.copyto(out, x)
        ms = np.mean(out * out)
        out /= np.sqrt(ms + eps)


    def scaled(x, s):
        y = x.copy()
        y *= s
        return y


    def neg_print_between(x, out, s):
        out[:] = x
        print(out)
        out *= s


    def neg_scalars(a, b):
        t = a + b
        t *= 2
        return t


    def neg_partial_slices(offsets, sx, sy):
        offsets = np.asarray(offsets)
        offsets[:, 0] *= sx
        offsets[:, 1] *= sy


    def neg_lists(tokens):
        tokens += [1, 2]
        tokens += list(range(3))
        return np.array(tokens)


    def neg_matmul(a, b, w):
        r = a - b
        return (r @ w).sum()
""")


@pytest.fixture(scope="module")
def mp_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mp")
    git(root, "init", "-q")
    write(root, "ops/ops.c", GGML_OPS)
    write(root, "ops/negatives.c", NEGATIVES_C)
    write(root, "ops/norm.cpp", CPP)
    write(root, "py/kernels.py", PY)
    write(root, "tests/test_ops.c", GGML_OPS.replace("scale_rows", "neg_in_tests"))
    write(root, ".gitignore", "build/\n")
    commit(root, "kernels")
    write(root, "build/gen.c", NEGATIVES_C.replace("neg_", "gen_") + GGML_OPS)  # ignored
    return root


def by_function(f) -> dict[str, object]:
    return {h.data["function"]: h for h in f.hypotheses}


def test_multipass_c_patterns(mp_tree: Path) -> None:
    f = MultiPassSource().run(ctx_for(mp_tree))
    hs = by_function(f)
    rms = hs["ggml_compute_forward_rms_norm_f32"]
    assert rms.title == "Fuse 2 passes over `y` in ggml_compute_forward_rms_norm_f32()"
    mem = line_of(mp_tree, "ops/ops.c", "memcpy(y, x")
    assert rms.sources == [f"ops/ops.c:{mem}"] and rms.kind == "multi-pass"
    assert [s.line for s in rms.sites] == [mem, mem, line_of(mp_tree, "ops/ops.c", "(ne00, y,")]
    assert rms.score == 0.55 and "one pass over memory" in rms.expected_effect
    ref = next(r for r in f.references if r.id == rms.sources[0])
    assert ref.kind == "code" and "memcpy(y, x" in ref.detail and "ggml_vec_scale_f32" in ref.detail

    sm = hs["ggml_compute_forward_soft_max_f32"]
    kinds = [p["kind"] for p in sm.data["passes"]]
    assert sm.title.startswith("Fuse 5 passes over `wp`") and kinds[:3] == ["copy", "map", "map"]
    assert "ggml_vec_cpy_f32" in sm.rationale and "if (mp_f32)" in sm.rationale
    assert sm.score == 0.7  # capped

    assert hs["scale_rows"].title == "Fuse 2 passes over `dst` in scale_rows()"
    assert hs["add_bias"].title == "Fuse 2 passes over `y` in add_bias()"


def test_multipass_negatives(mp_tree: Path) -> None:
    f = MultiPassSource().run(ctx_for(mp_tree))
    names = set(by_function(f))
    assert not {n for n in names if n.startswith(("neg_", "gen_"))}, names
    assert all(not h.sites[0].path.startswith("build/") for h in f.hypotheses)


def test_multipass_cpp_and_python(mp_tree: Path) -> None:
    hs = by_function(MultiPassSource().run(ctx_for(mp_tree)))
    assert hs["normalize"].title == "Fuse 2 passes over `out` in normalize()"
    assert hs["normalize"].data["passes"][0]["what"].startswith("std::copy(")
    assert hs["rmsnorm"].title == "Fuse 3 passes over `out` in rmsnorm()"
    assert [p["kind"] for p in hs["rmsnorm"].data["passes"]] == ["copy", "reduce", "map"]
    assert hs["scaled"].sites[0].path == "py/kernels.py"


def test_hotspot_boost(mp_tree: Path) -> None:
    hs = by_function(MultiPassSource().run(ctx_for(mp_tree, hotspots=["scale_rows"])))
    # marked hot here; the +0.1 itself is the ranker's, applied once for every kind
    assert hs["scale_rows"].score == pytest.approx(0.55) and hs["scale_rows"].data["hot"]
    assert hs["add_bias"].score == pytest.approx(0.55)


def test_large_files_are_skipped(tmp_path: Path) -> None:
    big = GGML_OPS + "/*" + "x" * (T.MAX_BYTES + 10) + "*/\n"
    write(tmp_path, "big.c", big)
    assert scan_file((str(tmp_path), "big.c")) == ("big.c", [])
    assert scan_source(big.encode(), "c")  # the content itself has chains


def test_parallel_scan_matches_serial(mp_tree: Path) -> None:
    items = [(str(mp_tree), rel) for rel in T.tracked_files(mp_tree)]
    serial = list(map(scan_file, items))
    assert list(T.parallel_map(scan_file, items, 2, min_items=1)) == serial


# ---- the bundled demo target ------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("demo")
    git(repo, "init", "-q")
    shutil.copytree(DEMO, repo / "target")
    shutil.move(repo / "target" / "dot-gitignore", repo / "target" / ".gitignore")
    commit(repo, "demo")
    return repo


def test_demo_target(demo_repo: Path) -> None:
    root = demo_repo / "target"
    ctx = ctx_for(root, repo=demo_repo, hotspots=["softmax"])
    hs = by_function(MultiPassSource().run(ctx))
    assert set(hs) == {"rmsnorm", "softmax"}
    norm = hs["rmsnorm"]
    assert norm.title == "Fuse 3 passes over `out` in rmsnorm()"
    assert norm.sources == [f"src/norm.c:{line_of(root, 'src/norm.c', 'memcpy(out, x')}"]
    assert [p["kind"] for p in norm.data["passes"]] == ["copy", "reduce", "map"]
    soft = hs["softmax"]
    assert soft.title == "Fuse 4 passes over `tmp`, `out` in softmax()"
    assert soft.sites[0].path == "src/softmax.c" and soft.data["hot"]
    assert soft.score == pytest.approx(0.65) and norm.score == pytest.approx(0.6)
    sib = SiblingBackendsSource().run(ctx)
    assert sib.hypotheses == [] and sib.notes  # no sibling backends in the demo


def test_target_without_dispatch_switch_points_at_its_main_file(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    check = ("void run(graph *g, int i) {{\n"
             "  if (ops_{b}_can_fuse(g, i, {{ OP_SCALE, OP_ADD }})) {{}}\n}}\n")
    for b in ("cuda", "vulkan"):
        write(tmp_path, f"kernels/ops-{b}/ops-{b}.c", check.format(b=b))
    write(tmp_path, "kernels/ops-cpu/util.c", "int helper(void) { return 0; }\n")
    write(tmp_path, "kernels/ops-cpu/ops-cpu.c", "void run(graph *g, int i) { }\n")
    write(tmp_path, "other/x-rpc/a.c", "int a;\n")
    write(tmp_path, "other/x-blas/b.c", "int b;\n")
    commit(tmp_path, "ops")
    f = SiblingBackendsSource().run(ctx_for(tmp_path))
    [h] = f.hypotheses
    assert h.title == "Fuse SCALE + ADD in the cpu backend (as cuda, vulkan do)"
    assert (h.sites[-1].path, h.sites[-1].line) == ("kernels/ops-cpu/ops-cpu.c", 1)
    assert any("other" in n and "no target" in n for n in f.notes)  # rpc + blas: no cpu
