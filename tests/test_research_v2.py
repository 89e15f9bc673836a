"""Research v2 on real git trees made in temp dirs: scope everywhere, the profile's weight,
conventions learned from three backend layouts, and the brief across the loop's verdicts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from readfirst.core.config import Spec
from readfirst.core.errors import ConfigError
from readfirst.research import ResearchContext
from readfirst.research.brief import ResearchStore
from readfirst.research.orchestrate import (
    refresh_from_experiments,
    research_after_landing,
    research_target,
)
from readfirst.research.profile import from_stacks, hot_functions, perf_stacks, static_inclusive
from readfirst.research.run import rank_hypotheses, run_research
from readfirst.research.siblings import SiblingBackendsSource
from readfirst.store.journal import Journal
from readfirst.vcs.workspace import Workspace, target_at
from tests.conftest import commit, git, write


def d(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def ctx_for(root: Path, scope: list[str] | None = None, research: dict | None = None,
            ) -> ResearchContext:
    spec = Spec.model_validate({"target": {"bench": "true", "scope": scope or []},
                                "research": research or {}})
    return ResearchContext(repo=root, root=root, rel="", spec=spec, state_dir=root / ".readfirst")


MULTIPASS = d("""
    #include <string.h>
    void scale_copy(float * y, const float * x, float s, int n) {
        memcpy(y, x, n * sizeof(float));
        for (int i = 0; i < n; i++) {
            y[i] *= s;
        }
    }
""")
DISPATCH = d("""
    void {b}_graph_compute(struct graph * g) {{
        for (int i = 0; i < g->n; i++) {{
            if ({b}_can_fuse(g, i, {{ GGML_OP_RMS_NORM, GGML_OP_MUL }})) {{ i++; continue; }}
            switch (g->nodes[i]->op) {{
                case GGML_OP_RMS_NORM: {b}_rms_norm(g->nodes[i]); break;
                case GGML_OP_MUL: {b}_mul(g->nodes[i]); break;
                default: break;
            }}
        }}
    }}
""")
CPU_DISPATCH = d("""
    void cpu_graph_compute(struct graph * g) {
        for (int i = 0; i < g->n; i++) {
            switch (g->nodes[i]->op) {
                case GGML_OP_RMS_NORM: cpu_rms_norm(g->nodes[i]); break;
                case GGML_OP_MUL: cpu_mul(g->nodes[i]); break;
                default: break;
            }
        }
    }
""")
PY_SCRIPT = d("""
    import numpy as np

    def convert(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        out[:] = x
        out *= 2.0
        return out
""")


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A llama.cpp-shaped tree: cpu/cuda/vulkan backends, each with a multi-pass kernel,
    and a Python conversion script with one too."""
    root = tmp_path_factory.mktemp("multi")
    git(root, "init", "-q")
    for b in ("cuda", "vulkan"):
        write(root, f"ggml/src/ggml-{b}/ggml-{b}.cpp", DISPATCH.format(b=b))
        write(root, f"ggml/src/ggml-{b}/ops.cpp", MULTIPASS)
    write(root, "ggml/src/ggml-cpu/ggml-cpu.c", CPU_DISPATCH)
    write(root, "ggml/src/ggml-cpu/ops.c", MULTIPASS)
    write(root, "convert_hf.py", PY_SCRIPT)
    commit(root, "tree")
    return root


# ---- 1. scope everywhere --------------------------------------------------------------------


def test_every_site_is_in_scope_and_siblings_are_cited_not_offered(multi: Path) -> None:
    unscoped = run_research(ctx_for(multi), only=["siblings", "multipass"], profile=False)
    assert {s.path for h in unscoped.hypotheses for s in h.sites} >= {
        "ggml/src/ggml-cuda/ops.cpp", "convert_hf.py"}  # without scope: everything
    scope = ["ggml/src/ggml-cpu/**"]
    r = run_research(ctx_for(multi, scope), only=["siblings", "multipass", "history"],
                     profile=False)
    sites = [s.path for h in r.hypotheses for s in h.sites]
    assert sites and all(p.startswith("ggml/src/ggml-cpu/") for p in sites), sites
    fuse = next(h for h in r.hypotheses if h.title.startswith("Fuse RMS_NORM + MUL"))
    assert [s.path for s in fuse.sites] == ["ggml/src/ggml-cpu/ggml-cpu.c"]
    ref_ids = {ref.id for ref in r.references}
    gpu = ("ggml/src/ggml-cuda", "ggml/src/ggml-vulkan")
    cited = [s for s in fuse.sources if s.startswith(gpu)]
    assert len(cited) == 2 and set(cited) <= ref_ids  # the siblings: evidence, not sites
    assert any(h.kind == "multi-pass" and h.sites[0].path == "ggml/src/ggml-cpu/ops.c"
               for h in r.hypotheses)


# ---- 2. the profile's weight ------------------------------------------------------------------

PROFILED = d("""
    static float leaf(const float * x, int n) {
        float s = 0; for (int i = 0; i < n; i++) s += x[i]; return s;
    }
    float mid(const float * x, int n) { return leaf(x, n) + leaf(x, n / 2); }
    float top(const float * x, int n) { return mid(x, n) * 2.0f; }
    float other(const float * x, int n) { return x[0] * n; }
""")


def test_static_inclusive_shares_flow_to_callers(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, "src/k.c", PROFILED)
    commit(tmp_path, "k")
    write(tmp_path, "tools/driver.c", "int drive(const float * x) { return (int) top(x, 4); }\n")
    commit(tmp_path, "driver")
    incl = static_inclusive(tmp_path, {"leaf": 60.0, "other": 10.0, "mid": 5.0})
    assert incl["leaf"] == 60.0 and incl["mid"] == 65.0 and incl["top"] == 65.0
    assert incl["other"] == 10.0 and incl["drive"] == 65.0
    scoped = static_inclusive(tmp_path, {"leaf": 60.0}, scope=["src/**"])
    assert scoped["top"] == 60.0 and "drive" not in scoped  # callers read in scope only


def test_perf_script_stacks_give_inclusive_shares() -> None:
    text = ("\n\t  11aa leaf+0x1a (/t/prog)\n\t  11b9 mid (/t/prog)\n\t 2724a main (/t/prog)\n\n"
            "\t  ffff8 asm_exc_page_fault ([kernel.kallsyms])\n\t  11b9 mid (/t/prog)\n\n"
            "\t  11aa leaf (/t/prog)\n")
    stacks = list(perf_stacks(text.splitlines()))
    assert stacks[1] == ["[kernel]", "mid"]
    shares, deep = from_stacks((s, 1) for s in stacks)
    assert shares["mid"] == pytest.approx(200 / 3) and shares["leaf"] == pytest.approx(200 / 3)
    assert deep == pytest.approx(2 / 3) and "[kernel]" not in shares


def test_profile_weighs_hypotheses_and_unprofiled_sites_go_last(multi: Path) -> None:
    r = run_research(ctx_for(multi), only=["multipass"], profile=False)
    found = r.hypotheses
    diag = {"conclusion": "", "hotspots": ["scale_copy"],
            "top_functions": [{"function": "scale_copy", "share": 40.0}],
            "inclusive": [{"function": "scale_copy", "share": 40.0}],
            "profiled": ["scale_copy", "main"]}
    from readfirst.research import Finding, Hypothesis, Site

    cold = Hypothesis("Never run", "todo", "a note", [Site("convert_hf.py", 4, "convert")],
                      ["convert_hf.py:4"], "", 0.9)
    ranked = rank_hypotheses([Finding("x", [*found, cold])], diag, [], root=multi)
    unprofiled = [h for h in ranked if h.data.get("in_profile") is False]
    assert ranked[-len(unprofiled):] == unprofiled  # last, whatever their own score
    assert {h.title for h in unprofiled} == {"Never run", "Fuse 2 passes over `out` in convert()"}
    assert all("not in the profile" in h.rationale for h in unprofiled)
    hot = [h for h in ranked if h.data.get("in_profile")]
    assert hot and all(h.data["profile_share"] == 40.0 for h in hot)
    assert hot_functions({"diagnosis": diag}) == [("scale_copy", 40.0)]


# ---- 4. conventions: three real layouts ----------------------------------------------------------

ATEN_CPU = d("""
    namespace at::native {
    void add_kernel(TensorIteratorBase& iter, const Scalar& alpha) {}
    void mul_kernel(TensorIteratorBase& iter) {}
    REGISTER_DISPATCH(add_stub, &add_kernel);
    REGISTER_DISPATCH(mul_stub, &mul_kernel);
    }
""")
ATEN_GPU = d("""
    namespace at::native {{
    void add_kernel_{b}(TensorIteratorBase& iter, const Scalar& alpha) {{}}
    void mul_kernel_{b}(TensorIteratorBase& iter) {{}}
    void gelu_kernel_{b}(TensorIteratorBase& iter) {{}}
    REGISTER_DISPATCH(add_stub, &add_kernel_{b});
    REGISTER_DISPATCH(mul_stub, &mul_kernel_{b});
    REGISTER_DISPATCH(gelu_stub, &gelu_kernel_{b});
    }}
""")
KERNEL = "void {k}(int n, float * x) {{ for (int i = 0; i < n; i++) x[i] += 1.0f; }}\n"


def test_registration_dispatch_like_aten(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, "aten/src/ATen/native/cpu/BinaryOpsKernel.cpp", ATEN_CPU)
    write(tmp_path, "aten/src/ATen/native/cuda/BinaryOps.cu", ATEN_GPU.format(b="cuda"))
    write(tmp_path, "aten/src/ATen/native/mps/BinaryOps.mm.cpp", ATEN_GPU.format(b="mps"))
    write(tmp_path, "aten/src/ATen/native/sparse/SparseOps.cpp", ATEN_CPU)  # not a backend
    commit(tmp_path, "aten")
    f = SiblingBackendsSource().run(ctx_for(tmp_path, ["aten/src/ATen/native/cpu/**"]))
    titles = [h.title for h in f.hypotheses]
    assert titles == ["gelu_stub exists in 2 sibling backends but not in cpu"], (titles, f.notes)
    h = f.hypotheses[0]
    assert set(h.data["siblings"]) == {"cuda", "mps"}
    assert h.sites[-1].path == "aten/src/ATen/native/cpu/BinaryOpsKernel.cpp"


def test_per_isa_kernel_files_like_openblas(tmp_path: Path) -> None:
    """kernel/<arch>/ directories of same-named kernels, `*_haswell.c`-style variants, and
    a configuration per ISA registering kernel ids (BLIS)."""
    git(tmp_path, "init", "-q")
    kernels = {"x86_64": ["daxpy", "ddot", "dgemv_n", "dscal"],
               "arm64": ["daxpy", "ddot", "dgemv_n", "dscal", "dnrm2"],
               "power": ["daxpy", "ddot", "dgemv_n", "dnrm2"]}
    for arch, names in kernels.items():
        for k in names:
            write(tmp_path, f"kernel/{arch}/{k}.c", KERNEL.format(k=k))
    for isa in ("haswell", "skylakex", "zen"):
        write(tmp_path, f"driver/sgemv_n_{isa}.c", KERNEL.format(k=f"sgemv_n_{isa}"))
        if isa != "haswell":
            write(tmp_path, f"driver/sgemv_t_{isa}.c", KERNEL.format(k=f"sgemv_t_{isa}"))
    commit(tmp_path, "kernels")
    f = SiblingBackendsSource().run(ctx_for(tmp_path, ["kernel/x86_64/**", "driver/**"],
                                            {"siblings": {"target": "haswell"}}))
    titles = {h.title for h in f.hypotheses}
    assert "dnrm2 exists in 2 sibling backends but not in x86_64" in titles, (titles, f.notes)
    assert "sgemv_t exists in 2 sibling backends but not in haswell" in titles, titles


def test_siblings_table_steers_and_bad_input_names_the_key(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    for m in ("alpha", "beta", "gamma"):  # names no profile knows
        write(tmp_path, f"impl/{m}/ops.c", CPU_DISPATCH.replace("cpu_", f"{m}_"))
        if m != "alpha":
            write(tmp_path, f"impl/{m}/extra.c", d(f"""
                void {m}_dispatch(struct graph * g) {{
                    switch (g->op) {{ case GGML_OP_SOFT_MAX: {m}_softmax(g); break; }}
                }}
            """))
    commit(tmp_path, "impl")
    plain = SiblingBackendsSource().run(ctx_for(tmp_path))
    assert not plain.hypotheses  # nothing says these are siblings
    steered = SiblingBackendsSource().run(ctx_for(
        tmp_path, None, {"siblings": {"families": ["impl"], "target": "alpha"}}))
    assert [h.title for h in steered.hypotheses] == [
        "SOFT_MAX exists in 2 sibling backends but not in alpha"]
    with pytest.raises(ConfigError, match=r"\[research.siblings\] target"):
        SiblingBackendsSource().run(ctx_for(tmp_path, None, {"siblings": {"target": 3}}))
    with pytest.raises(ConfigError, match=r"\[research.siblings\] colour: Extra inputs"):
        SiblingBackendsSource().run(ctx_for(tmp_path, None, {"siblings": {"colour": "x"}}))


# ---- 6. the brief: verdicts, history across re-runs, queries -----------------------------

TOML = d("""
    [target]
    bench = "true"
    scope = ["src/**"]
    [metric]
    name = "tok_s"
    unit = "tok/s"
    [research]
    sources = ["multipass"]
""")


def _explore(seq: int, title: str, verdict: str, outcome: str) -> dict:
    return {"kind": "explore", "outcome": outcome, "title": title, "provenance": [],
            "seq": seq, "verdict": verdict, "status": "finished", "reason": "p=0.4"}


def test_verdicts_history_and_refresh_after_landing(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, "readfirst.toml", TOML)
    write(tmp_path, "README.md", "autoresearch build build tok s autoresearch\n")
    write(tmp_path, "src/a.c", MULTIPASS)
    write(tmp_path, "src/b.c", MULTIPASS.replace("scale_copy", "scale_copy2"))
    first = commit(tmp_path, "two kernels")
    target, spec = target_at(tmp_path), Spec.model_validate(
        {**__import__("tomllib").loads(TOML)})
    r1 = research_target(target, spec, offline=True, profile=False)
    titles = [h.title for h in r1.hypotheses]
    assert len(titles) == 2
    ws = Workspace(tmp_path)
    journal = Journal(ws.journal_path)
    try:
        changed = refresh_from_experiments(ws, journal, str(tmp_path), [
            _explore(1, titles[0], "inconclusive", "discarded"),
            _explore(2, titles[1], "regressed", "discarded")])
    finally:
        journal.close()
    assert changed == 2
    brief = Path(r1.brief or "").read_text()
    assert "inconclusive (not failed): tried in experiment #1" in brief
    assert "regressed: tried in experiment #2" in brief and "failed:" not in brief
    assert research_after_landing(target, spec, first) is None  # same baseline: nothing to do
    git(tmp_path, "checkout", "-q", "-b", "readfirst/run1")  # the loop lands on its branch
    write(tmp_path, "src/c.c", MULTIPASS.replace("scale_copy", "scale_copy3"))
    landed = commit(tmp_path, "a landing")
    git(tmp_path, "checkout", "-q", "-")  # the user's tree stays where it was
    assert not (tmp_path / "src/c.c").exists()
    r2 = research_after_landing(target, spec, landed)
    assert r2 is not None
    assert any("scale_copy3" in h.title for h in r2.hypotheses)  # the baseline's code
    by_title = {h.title: h for h in r2.hypotheses}
    assert by_title[titles[0]].data["status"] == "inconclusive"  # the history stays
    assert by_title[titles[1]].data["status"] == "regressed"
    assert any(c.startswith(f"baseline {first[:7]}") for c in r2.changes), r2.changes
    assert any(c.startswith("1 new hypothesis(es): Fuse") for c in r2.changes), r2.changes
    brief2 = Path(r2.brief or "").read_text()
    assert "## What changed since the previous research" in brief2
    assert "inconclusive (not failed)" in brief2
    journal = Journal(ws.journal_path)
    try:
        store = ResearchStore(journal)
        rows = journal.db.execute("SELECT baseline FROM research_runs ORDER BY id").fetchall()
        assert [r[0] for r in rows] == [first, landed]  # one version per baseline
        statuses = {h["title"]: h["status"] for h in store.hypotheses(store.latest() or 0)}
        assert statuses[titles[0]] == "inconclusive"
    finally:
        journal.close()


def test_paper_queries_come_from_the_code_not_the_readme(multi: Path, tmp_path: Path) -> None:
    write(multi, "README.md", "autoresearch build build tok s autoresearch\n")
    ctx = ctx_for(multi, ["ggml/src/ggml-cpu/**"])
    ctx.spec.metric.name = "tok_s"
    r = run_research(ctx, only=["siblings", "multipass", "papers_dir"], profile=False)
    words = " ".join(ctx.keywords).lower().split()
    assert ctx.keywords and not {"tok", "s", "build", "autoresearch"} & set(words), ctx.keywords
    assert any("rms" in k or "scale" in k for k in ctx.keywords), ctx.keywords
    assert json.dumps(r.to_dict())


# ---- 3. passes through calls ----------------------------------------------------------------

WRAPPED = d("""
    #include <string.h>
    float g_bias;
    static void copy_f32(float * dst, const float * src, int n) { memcpy(dst, src, n * 4); }
    static void scale_f32(float * y, float s, int n) { for (int i = 0; i < n; i++) { y[i] *= s; } }
    static void vec_scale(float * y, float s, int n) { scale_f32(y, s, n); }
    static void prefix_f32(float * y, int n) { for (int i = 1; i < n; i++) { y[i] += y[i - 1]; } }
    static void bias_f32(float * y, int n) { for (int i = 0; i < n; i++) { y[i] += g_bias; } }
    void through_calls(float * y, const float * x, float s, int n) {
        copy_f32(y, x, n);
        vec_scale(y, s, n);
    }
    void with_dependency(float * y, const float * x, int n) {
        copy_f32(y, x, n);
        prefix_f32(y, n);
    }
    void another_reader(float * y, float * z, const float * x, int n) {
        copy_f32(y, x, n);
        copy_f32(z, y, n);
    }
    void global_state(float * y, const float * x, int n) {
        copy_f32(y, x, n);
        bias_f32(y, n);
    }
""")


def test_passes_through_simple_wrappers_and_look_alikes(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, "src/ops.c", WRAPPED)
    commit(tmp_path, "ops")
    r = run_research(ctx_for(tmp_path), only=["multipass"], profile=False)
    by_fn = {h.data["function"]: h for h in r.hypotheses}
    assert set(by_fn) == {"through_calls"}, [h.title for h in r.hypotheses]
    h = by_fn["through_calls"]
    assert h.title == "Fuse 2 passes over `y` in through_calls()"
    assert [p["what"] for p in h.data["passes"]] == ["copy_f32(y, x, n)", "vec_scale(y, s, n)"]


# ---- 5. the LLM synthesis pass (recorded API answers) ---------------------------------

import respx  # noqa: E402
import test_llm_proposer as recorded  # noqa: E402 - registers respx's httpcore2 mocker


@pytest.fixture
def llm_api(monkeypatch: pytest.MonkeyPatch) -> respx.MockRouter:
    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", recorded.KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", recorded.KEY)
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        yield router


@pytest.mark.parametrize("kind,url,model", [
    ("openai", recorded.OPENAI_URL, "gpt-4o-mini"),
    ("anthropic", recorded.ANTHROPIC_URL, "claude-haiku-4-5")])
def test_synthesis_keeps_only_cited_hypotheses_in_scope(
        tmp_path: Path, llm_api: respx.MockRouter, kind: str, url: str, model: str) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, "src/a.c", MULTIPASS)
    write(tmp_path, "tools/convert.py", PY_SCRIPT)
    write(tmp_path, "papers/fusion.md", "# Single-pass elementwise kernels\n\nFusing a copy "
          "with an elementwise scale halves the memory traffic of scale_copy style code.\n")
    commit(tmp_path, "tree")
    route = llm_api.post(url).mock(return_value=recorded.ok(f"{kind}_synthesis.json"))
    ctx = ctx_for(tmp_path, ["src/**"], {"papers_dir": "papers"})
    ctx.spec.agent = {"kind": kind, "model": model}
    r = run_research(ctx, only=["multipass", "papers_dir"], profile=False)
    assert route.call_count == 1
    sent = json.loads(route.calls[0].request.content)
    prompt = json.dumps(sent)
    assert "`src/a.c:3`" in prompt and "`file:papers/fusion.md`" in prompt
    synth = [h for h in r.hypotheses if h.kind == "synthesis"]
    assert [h.title for h in synth] == ["Scale while copying in scale_copy()"]
    assert synth[0].sources == ["src/a.c:3", "file:papers/fusion.md"]
    assert {ref.id for ref in r.references} >= set(synth[0].sources)
    assert any("dropped 2 hypothesis(es)" in n for n in r.notes), r.notes
    offline = ctx_for(tmp_path, ["src/**"])
    offline.spec.agent, offline.offline = {"kind": kind, "model": model}, True
    quiet = run_research(offline, only=["multipass"], profile=False)
    assert route.call_count == 1 and not any(h.kind == "synthesis" for h in quiet.hypotheses)
    assert any("skipped offline" in n for n in quiet.notes)


def test_convention_profiles_are_data() -> None:
    from readfirst.research.conventions import literal_of, load, shipped

    assert set(shipped()) == {"aten", "ggml", "isa"}
    conv = load({"siblings": {"profiles": ["isa"], "variants": ["myisa"]}})
    assert "haswell" in conv.variants and "myisa" in conv.variants
    assert conv.op_constant is None and "cuda" not in conv.backends  # only the isa profile
    assert literal_of(r"\bREGISTER_(?:[A-Z0-9]+_)?DISPATCH\s*\(\s*(\w+)") == "REGISTER_"
    assert literal_of(r"\b(?:A_OP_\w+|OP_\w+)\b") == ""  # a branch's text is no pre-filter
    with pytest.raises(ConfigError, match=r"profiles: unknown nope"):
        load({"siblings": {"profiles": ["nope"]}})
    with pytest.raises(ConfigError, match=r"registration: expected a regular expression"):
        load({"siblings": {"registration": ["(unclosed"]}})


def test_bad_siblings_table_is_a_usage_error_before_anything_is_written(tmp_path: Path) -> None:
    from tests.conftest import make_target, run_cli

    target = make_target(tmp_path / "t")
    toml = target / "readfirst.toml"
    toml.write_text(toml.read_text() + '\n[research.siblings]\ntarget = ["cpu"]\n')
    code, _, proc = run_cli("research", "--offline", "--no-profile", cwd=target,
                            check_json=False)
    assert code == 2 and "[research.siblings] target" in proc.stderr, proc.stderr
    assert not (target / ".readfirst").exists()
