"""Research sources `forks` (GitHub fork discovery + competitor study) and `history`.

GitHub is replayed with respx from recorded REST answers (tests/data/http/github/); each fork's
`clone_url` is rewritten to a local repository, so the git fetch runs for real.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
import respx
from conftest import TOML, commit, git, make_target, write

from readfirst.core.config import Spec, load_spec
from readfirst.proposers.base import ProposerContext
from readfirst.proposers.forks import ForksProposer
from readfirst.research import Finding, ResearchContext, Site
from readfirst.research.forks_github import ForkDiscoverySource, github_repo, next_link
from readfirst.research.history import HistorySource, parse_patch, perf_cues
from readfirst.vcs.competitors import REF_PREFIX

DATA = Path(__file__).parent / "data" / "http" / "github"
API = "https://api.github.com"
DISCOVERED = ".readfirst/research/discovered_competitors.json"
KERNEL = """\
#include <string.h>

void axpy(int n, float a, const float *x, float *y)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

void scale(int n, float a, const float *x, float *y)
{
    float tmp[256];
    memcpy(tmp, x, n * sizeof *x);
    for (int i = 0; i < n; i++)
        y[i] = a * tmp[i];
}
"""
AVX = """\
    int i = 0;
    __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
"""

COPY = "    float tmp[256];\n    memcpy(tmp, x, n * sizeof *x);\n"


def ctx_for(root: Path, offline: bool = False, **research: object) -> ResearchContext:
    spec = load_spec(root)
    spec.research.update(research)
    return ResearchContext(root, root, "", spec, root / ".readfirst", offline=offline)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path | str]:
    """A target on github.com/o/r and local clones standing in for the forks alice and bob."""
    target = make_target(tmp_path / "target")
    write(target, "src/kernel.c", KERNEL)
    commit(target, "Add kernels")
    git(target, "remote", "add", "origin", "https://github.com/o/r.git")
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(target), str(alice))
    git(alice, "checkout", "-q", "-B", "main")
    write(alice, "src/kernel.c", KERNEL.replace("    for (int i = 0; i < n; i++)\n        y[i] +=",
                                                AVX + "        y[i] +="))
    avx = commit(alice, "Vectorise axpy with AVX2 (3x faster)")
    write(alice, "src/kernel.c", "/* kernels */\n" + (alice / "src/kernel.c").read_text())
    doc = commit(alice, "Document the kernels")
    write(alice, "README", "axpy is 3x faster\n")
    commit(alice, "Mention the speedup in the README")
    git(tmp_path, "clone", "-q", str(target), str(bob))
    git(bob, "checkout", "-q", "-b", "dev")
    write(bob, "src/kernel.c", KERNEL.replace(COPY, "").replace("tmp[i]", "x[i]"))
    copies = commit(bob, "Reduce copies in scale()")
    return {"target": target, "alice": alice, "bob": bob, "avx": avx, "doc": doc, "copies": copies}


class GitHubReplay:
    """Serves the recorded answers with ETags (304 on a match); records every request."""

    def __init__(self, world: dict[str, Path | str], status: int = 200) -> None:
        self.world, self.status, self.requests = world, status, []

    def body(self, request: httpx.Request) -> tuple[str, dict[str, str]]:
        path, page = request.url.path, request.url.params.get("page", "1")
        if path.endswith("/forks"):
            forks = json.loads((DATA / f"forks_page{page}.json").read_text())
            for fork in forks:  # the recorded forks live in local repositories
                local = self.world.get(fork["owner"]["login"])
                if local:
                    fork["clone_url"] = str(local)
            nxt = f'<{API}/repositories/8000/forks?sort=stargazers&per_page=100&page=2>'
            link = f'{nxt}; rel="next", {nxt}; rel="last"' if page == "1" else \
                f'<{API}/repositories/8000/forks?sort=stargazers&per_page=100&page=1>; rel="first"'
            return json.dumps(forks), {"Link": link}
        if "/compare/" in path:
            owner = path.rsplit("...", 1)[1].split(":")[0]
            return (DATA / f"compare_{owner}.json").read_text(), {}
        assert path == "/repos/o/r", path
        return (DATA / "repo.json").read_text(), {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, text=(DATA / "rate_limit.json").read_text(),
                                  headers={"x-ratelimit-remaining": "0"})
        text, headers = self.body(request)
        etag = 'W/"' + hashlib.sha1(text.encode()).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        return httpx.Response(200, text=text, headers={**headers, "ETag": etag,
                                                       "Content-Type": "application/json"})


def run_forks(ctx: ResearchContext, replay: GitHubReplay | None) -> Finding:
    with respx.mock(assert_all_called=False) as mock:
        if replay is not None:
            mock.route(host="api.github.com").mock(side_effect=replay)
        return ForkDiscoverySource().run(ctx)


def age_cache(ctx: ResearchContext, seconds: float = 3 * 86_400) -> None:
    for path in (ctx.cache_dir / "github").glob("*.json"):
        entry = json.loads(path.read_text())
        entry["fetched"] = time.time() - seconds
        path.write_text(json.dumps(entry))


def by_commit(f: Finding) -> dict[str, object]:
    return {h.data["commit"]: h for h in f.hypotheses}


def test_discovery_follows_pages_compares_fetches_and_marks_perf(world) -> None:
    target = world["target"]
    ctx = ctx_for(target)
    replay = GitHubReplay(world)
    f = run_forks(ctx, replay)
    urls = [str(r.url) for r in replay.requests]
    assert urls[:2] == [f"{API}/repos/o/r/forks?sort=stargazers&per_page=100&page=1",
                        f"{API}/repositories/8000/forks?sort=stargazers&per_page=100&page=2"]
    compared = sorted(u.rsplit("...", 1)[1] for u in urls if "/compare/" in u)
    assert compared == ["alice:main", "bob:dev", "dave:main"]  # carol never pushed
    assert f"{API}/repos/o/r" in urls and f.notes == []
    discovered = json.loads((target / DISCOVERED).read_text())
    assert discovered == [{"name": "alice", "url": str(world["alice"]), "branch": "main"},
                          {"name": "bob", "url": str(world["bob"]), "branch": "dev"}]
    assert git(target, "rev-parse", REF_PREFIX + "bob") == world["copies"]
    hyps = by_commit(f)
    assert set(hyps) == {world["avx"], world["doc"], world["copies"]}  # README one: out of scope
    avx = hyps[world["avx"]]
    assert avx.kind == "port-commit" and avx.title == "Vectorise axpy with AVX2 (3x faster)"
    assert avx.score == 0.9 and avx.sources == [f"alice@{world['avx']}"]
    assert "+_mm intrinsics" in avx.rationale and "'avx2'" in avx.rationale
    assert avx.rationale.endswith(f"from alice {world['avx'][:12]}")
    assert avx.sites == [Site("src/kernel.c", 5, "axpy")]
    assert hyps[world["doc"]].score == 0.2 and "no performance cues" in hyps[world["doc"]].rationale
    copies = hyps[world["copies"]]
    assert copies.score == 0.8 and "-memcpy" in copies.rationale
    assert copies.sites[0] == Site("src/kernel.c", 11, "scale")
    assert [h.data["commit"] for h in f.hypotheses][0] == world["avx"]  # best first
    refs = {r.id: r for r in f.references}
    ref = refs[f"alice@{world['avx']}"]
    assert ref.kind == "commit" and ref.url == f"https://github.com/alice/r/commit/{world['avx']}"
    assert "3 ahead" in refs["github:alice/r"].detail

    # The forks proposer picks the discovered competitors up (none are configured).
    base = git(target, "rev-parse", "HEAD")
    pctx = ProposerContext(target, target, "", base, load_spec(target), target / ".readfirst")
    cands = ForksProposer().propose(pctx)
    assert {c.id for c in cands} >= {f"fork:alice@{world['avx'][:12]}",
                                     f"fork:bob@{world['copies'][:12]}"}


def test_caps_and_configured_competitors_win(world, tmp_path: Path) -> None:
    target = world["target"]
    ctx = ctx_for(target, competitors=[{"name": "alice", "path": "../alice"}],
                  max_fetched_forks=2, max_forks=1)
    replay = GitHubReplay(world)
    f = run_forks(ctx, replay)
    assert sum("/compare/" in str(r.url) for r in replay.requests) == 1  # the most starred
    discovered = json.loads((target / DISCOVERED).read_text())
    assert discovered == []  # alice is configured; bob was not among the top max_forks
    competitors = [h.data["competitor"] for h in f.hypotheses]
    assert competitors.count("alice") == 2 and "bob" not in competitors


def test_etag_revalidation_is_served_from_cache(world) -> None:
    ctx = ctx_for(world["target"])
    first = run_forks(ctx, GitHubReplay(world))
    age_cache(ctx)
    replay = GitHubReplay(world)
    second = run_forks(ctx, replay)
    assert replay.requests and all(r.headers.get("if-none-match") for r in replay.requests)
    assert [h.to_dict() for h in second.hypotheses] == [h.to_dict() for h in first.hypotheses]
    assert second.notes == []


def test_fresh_cache_means_no_requests(world) -> None:
    ctx = ctx_for(world["target"])
    run_forks(ctx, GitHubReplay(world))
    replay = GitHubReplay(world)
    assert run_forks(ctx, replay).hypotheses and replay.requests == []


def test_offline_uses_cache_and_earlier_fetches(world) -> None:
    online = run_forks(ctx_for(world["target"]), GitHubReplay(world))
    f = run_forks(ctx_for(world["target"], offline=True), None)  # any request would fail
    assert any(n.startswith("offline: fork discovery of o/r answered from the cache")
               for n in f.notes)
    assert by_commit(f).keys() == by_commit(online).keys()


def test_offline_without_cache_notes_and_studies_configured(world) -> None:
    ctx = ctx_for(world["target"], offline=True, competitors=["../bob"])
    f = run_forks(ctx, None)
    assert any("skipped" in n and "offline" in n and "nothing cached" in n for n in f.notes)
    assert [h.data["commit"] for h in f.hypotheses] == [world["copies"]]
    assert not (world["target"] / DISCOVERED).exists()


def test_rate_limit_is_a_note(world, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    f = run_forks(ctx_for(world["target"], competitors=["../bob"]), GitHubReplay(world, 403))
    assert len(f.notes) == 1 and "HTTP 403" in f.notes[0] and "rate limit" in f.notes[0]
    assert "$GITHUB_TOKEN" in f.notes[0]
    assert [h.data["competitor"] for h in f.hypotheses] == ["bob"]


def test_rate_limit_with_stale_cache_uses_it(world) -> None:
    ctx = ctx_for(world["target"])
    first = run_forks(ctx, GitHubReplay(world))
    age_cache(ctx)
    f = run_forks(ctx, GitHubReplay(world, 403))
    assert f.notes and all("using the cached answer" in n and "rate limit" in n for n in f.notes)
    assert by_commit(f).keys() == by_commit(first).keys()


def test_token_is_sent_and_never_cached(world, monkeypatch) -> None:
    monkeypatch.setenv("RF_TEST_TOKEN", "ghp_s3cr3tT0ken")
    ctx = ctx_for(world["target"], github_token_env="RF_TEST_TOKEN")
    replay = GitHubReplay(world)
    run_forks(ctx, replay)
    assert replay.requests
    assert all(r.headers["authorization"] == "Bearer ghp_s3cr3tT0ken" for r in replay.requests)
    for path in ctx.state_dir.rglob("*"):
        if path.is_file():
            assert b"ghp_s3cr3tT0ken" not in path.read_bytes(), path


@pytest.mark.parametrize(("origin", "why"), [(None, "no `origin` remote"),
                                             ("https://gitlab.com/o/r.git", "not a GitHub")])
def test_no_github_origin_is_a_note(world, origin: str | None, why: str) -> None:
    target = world["target"]
    git(target, "remote", "remove", "origin")
    if origin:
        git(target, "remote", "add", "origin", origin)
    replay = GitHubReplay(world)
    f = run_forks(ctx_for(target), replay)
    assert replay.requests == [] and len(f.notes) == 1 and why in f.notes[0]


def test_unrelated_competitor_is_path_mapped(world, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    write(other, "lib/num/src/kernel.c", KERNEL)
    commit(other, "Import the kernels")
    write(other, "lib/num/src/kernel.c", KERNEL.replace("float tmp[256];", "float tmp[1024];"))
    sha = commit(other, "Bigger buffer in scale")
    ctx = ctx_for(world["target"], competitors=["../other"], discover_forks=False)
    f = ForkDiscoverySource().run(ctx)
    assert [h.data["commit"] for h in f.hypotheses] == [sha]  # the import adds files: skipped
    assert f.hypotheses[0].sites == [Site("src/kernel.c", 11, "scale")]
    assert f.hypotheses[0].score == 0.2 and f.references[0].url is None


def test_github_urls_and_link_header() -> None:
    for url in ("https://github.com/o/r", "https://github.com/o/r.git", "git@github.com:o/r.git",
                "ssh://git@github.com/o/r.git", "https://user@github.com/o/r/"):
        assert github_repo(url) == ("o", "r"), url
    assert github_repo("https://gitlab.com/o/r.git") is None
    assert github_repo("/srv/git/r.git") is None
    link = '<https://x/forks?page=2>; rel="next", <https://x/forks?page=5>; rel="last"'
    assert next_link(link) == "https://x/forks?page=2"
    assert next_link('<https://x/forks?page=1>; rel="prev"') is None and next_link(None) is None


def test_perf_cues_from_message_and_diff() -> None:
    assert perf_cues("Fix a typo", [], []) == []
    assert perf_cues("Speed up the parser by 12%", [], []) == ["'speed'", "'12%'"]
    assert perf_cues("Optimise: fuse the two loops", [], []) == ["'optimise'", "'fuse'"]
    assert perf_cues("x", ["#pragma omp parallel for", "if (likely(n))"], []) == \
        ["+#pragma omp", "+likely()"]
    assert perf_cues("x", ["float *restrict y", "vld1q_f32(p)"], []) == \
        ["+NEON intrinsics", "+restrict"]
    assert perf_cues("x", [], ["memcpy(a, b, n);", "p = malloc(n);"]) == ["-memcpy", "-malloc"]
    assert perf_cues("x", ["memcpy(a, b, m);"], ["memcpy(a, b, n);"]) == []  # only changed


def test_parse_patch_hunks_and_functions() -> None:
    patch = ("diff --git a/s.c b/s.c\n--- a/s.c\n+++ b/s.c\n"
             "@@ -7,0 +8,2 @@ static int sum(const int *v)\n+a\n+b\n@@ -20 +22 @@\n-c\n+d\n"
             "diff --git a/n.c b/n.c\nnew file mode 100644\n--- /dev/null\n+++ b/n.c\n"
             "@@ -0,0 +1 @@\n+x\n")
    s, n = parse_patch(patch)
    assert (s.old, s.new, s.hunks) == ("s.c", "s.c", [(8, 8, "sum"), (20, 22, None)])
    assert s.added == ["a", "b", "d"] and s.removed == ["c"]
    assert (n.old, n.new, n.hunks) == (None, "n.c", [(1, 1, None)])


# --- history ---------------------------------------------------------------------------------


def history_repo(repo: Path, prefix: str = "") -> dict[str, str]:
    """A project with perf work in and out of scope, plain commits and TODO notes."""
    write(repo, f"{prefix}src/kernel.c", KERNEL)
    write(repo, f"{prefix}Makefile", "all:\n\tcc -O2 src/kernel.c\n")
    write(repo, f"{prefix}docs/notes.c", "// TODO: optimize the docs build\n")
    base = commit(repo, "Kernels")
    write(repo, f"{prefix}src/kernel.c", KERNEL.replace(COPY, "").replace("tmp[i]", "x[i]"))
    perf = commit(repo, "Speed up scale by 20% with fewer copies")
    write(repo, f"{prefix}Makefile", "all:\n\tcc -O3 -march=native src/kernel.c\n")
    build = commit(repo, "Faster build flags")
    write(repo, f"{prefix}src/kernel.c", (repo / f"{prefix}src/kernel.c").read_text().replace(
        "        y[i] += a * x[i];",
        "        y[i] += a * x[i];  /* TODO: slow, vectorize this loop */\n"
        "    // FIXME: rename these parameters"))
    write(repo, f"{prefix}src/util.c", "#define N 8 /* TODO: slow, vectorize this loop */\n")
    plain = commit(repo, "Notes")
    write(repo, f"{prefix}src/kernel.c",
          (repo / f"{prefix}src/kernel.c").read_text() + "// TODO: cache the uncommitted one\n")
    return {"base": base, "perf": perf, "build": build, "plain": plain}


def test_history_perf_commits_and_todo_notes(tmp_path: Path) -> None:
    repo = make_target(tmp_path / "target", TOML)
    shas = history_repo(repo)
    f = HistorySource().run(ctx_for(repo))
    refs = {r.id: r for r in f.references}
    assert set(refs) == {f"self@{shas['perf']}", f"self@{shas['build']}", "src/kernel.c:6",
                         "src/util.c:1"}
    assert refs[f"self@{shas['perf']}"].kind == "commit"
    hist = [h for h in f.hypotheses if h.kind == "history"]
    assert [h.title for h in hist] == ["Revisit src/kernel.c: recent performance work"]
    assert hist[0].score == 0.15 and hist[0].sources == [f"self@{shas['perf']}"]
    assert hist[0].sites == [Site("src/kernel.c", 11, "scale")]
    todos = [h for h in f.hypotheses if h.kind == "todo"]
    assert [(h.title, h.sources, h.score) for h in todos] == [
        ("TODO: slow, vectorize this loop", ["src/kernel.c:6", "src/util.c:1"], 0.3)]
    assert todos[0].sites == [Site("src/kernel.c", 6, "axpy"), Site("src/util.c", 1)]
    assert refs["src/kernel.c:6"].kind == "code"


def test_history_in_a_subdirectory_is_relative_to_the_root(tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, "other/src/kernel.c", "// TODO: slow path\n")
    shas = history_repo(repo, "proj/")
    spec = Spec.model_validate({"target": {"bench": "true", "scope": ["src/**"]},
                                "research": {"history_commits": 3}})
    ctx = ResearchContext(repo, repo / "proj", "proj", spec, repo / "proj/.readfirst")
    f = HistorySource().run(ctx)
    assert {s.path for h in f.hypotheses for s in h.sites} == {"src/kernel.c", "src/util.c"}
    assert {r.id for r in f.references} == {f"self@{shas['perf']}", f"self@{shas['build']}",
                                            "src/kernel.c:6", "src/util.c:1"}
