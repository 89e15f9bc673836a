"""Competing forks: the configured competitors, plus the GitHub forks of `origin` that are ahead.

Discovery lists the forks (`GET /repos/{o}/{r}/forks`, following `Link: rel="next"`), drops
the ones never pushed after creation, compares the most starred against the base branch, and
fetches the few furthest ahead into `refs/readfirst/competitors/<owner>`; they are written to
`<state_dir>/research/discovered_competitors.json` for the `forks` proposer. Every competitor's
divergent commits touching files in scope become `port-commit` hypotheses, scored by their
performance cues (research/history.py).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import httpx

from readfirst.core.errors import ConfigError
from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site
from readfirst.research.cache import Cache, Response, Unavailable, make_client
from readfirst.research.history import (
    baseline_of,
    commit_detail,
    commit_patches,
    cue_score,
    in_scope,
    int_option,
    perf_cues,
    scope_of,
    skip_notes,
    to_root,
)
from readfirst.vcs import gitcli
from readfirst.vcs.competitors import (
    DEFAULT_MAX_COMMITS,
    DISCOVERED_FILE,
    Competitor,
    PathMapper,
    discovered_competitors,
    fetch,
    list_fork_commits,
    parse_competitors,
)

API = "https://api.github.com"
_GITHUB = re.compile(r"^(?:(?:https?|git|ssh)://(?:[^@/]+@)?(?:www\.)?github\.com(?::\d+)?/"
                     r"|(?:[\w.-]+@)?github\.com:)([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")
_NETWORK = re.compile(r"^(?!file://)[A-Za-z][A-Za-z0-9+.-]*://|^[\w.-]+@[\w.-]+:")
MAX_SITES = 20


def github_repo(url: str) -> tuple[str, str] | None:
    """(owner, repo) of a GitHub URL (https, ssh or scp-like), else None."""
    m = _GITHUB.match(url.strip())
    return (m[1], m[2]) if m else None


def next_link(link: str | None) -> str | None:
    """The `rel="next"` URL of a `Link` header."""
    for part in (link or "").split(","):
        m = re.match(r'\s*<([^>]+)>\s*;.*\brel="?next"?', part)
        if m:
            return m[1]
    return None


class _GitHub:
    """GitHub REST GETs through the cache; notes on stale answers, offline and rate limits."""

    def __init__(self, ctx: ResearchContext, client: httpx.Client | None, f: Finding) -> None:
        env = ctx.research.get("github_token_env", "GITHUB_TOKEN")
        self.token = os.environ.get(str(env), "").strip()
        self.env, self.ctx, self.client, self.f = env, ctx, client, f
        self.cache = Cache(ctx.cache_dir / "github")
        self.headers = {"Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": "2022-11-28"}
        if self.token:  # sent, never part of the cache key or the cached headers
            self.headers["Authorization"] = f"Bearer {self.token}"
        self.oldest = 0.0

    def get(self, url: str, params: dict[str, Any] | None = None) -> Response:
        try:
            r = self.cache.fetch(self.client, url, params=params, headers=self.headers,
                                 offline=self.ctx.offline)
        except Unavailable as e:
            raise Unavailable(self.explain(str(e))) from None
        if r.note:
            self.f.notes.append(self.explain(r.note))
        if r.from_cache:
            self.oldest = max(self.oldest, r.age)
        return r

    def explain(self, why: str) -> str:
        if re.search(r"HTTP (403|429)", why):
            hint = "" if self.token else f"; set ${self.env} for 5000/h"
            why += f" (likely the GitHub API rate limit: 60 requests/h without a token{hint})"
        return why


class ForkDiscoverySource:
    """Configured competitors (offline too) and discovered GitHub forks, as port-commit ideas."""

    name = "forks"
    needs_network = True

    def run(self, ctx: ResearchContext) -> Finding:
        t0 = time.monotonic()
        f = Finding(self.name)
        comps: list[tuple[Competitor, str | None]] = []
        if ctx.research.get("competitors"):
            try:
                home = ctx.home or ctx.root
                comps = [(c, _web(c.source)) for c in parse_competitors(ctx.research, home)]
            except ConfigError as e:
                f.notes.append(f"configured competitors ignored: {e}")
        found: list[tuple[Competitor, str | None]] | None = []
        if ctx.research.get("discover_forks", True):
            client = make_client(ctx.offline)
            try:
                found = self._discover(ctx, f, _GitHub(ctx, client, f), comps)
            finally:
                if client is not None:
                    client.close()
        if found is None:  # no discovery this time: what an earlier one found, if anything
            found = [(c, _web(c.source))
                     for c in discovered_competitors(ctx.state_dir, ctx.home or ctx.root)]
        names = {c.name for c, _ in comps} | {c.source for c, _ in comps}
        comps += [(c, w) for c, w in found if c.name not in names and c.source not in names]
        base, pats = baseline_of(ctx), scope_of(ctx)
        cap = int_option(ctx, "max_fork_commits", DEFAULT_MAX_COMMITS)
        for comp, web in comps:
            if _ensure_fetched(ctx, comp, f):
                study(ctx, comp, base, pats, cap, f, web)
        f.hypotheses.sort(key=lambda h: -h.score)
        f.seconds = time.monotonic() - t0
        return f

    def _discover(self, ctx: ResearchContext, f: Finding, gh: _GitHub,
                  configured: list[tuple[Competitor, str | None]],
                  ) -> list[tuple[Competitor, str | None]] | None:
        """The interesting forks, fetched; None when discovery could not run (with a note)."""
        origin = gitcli.git(ctx.repo, "config", "--get", "remote.origin.url", check=False).strip()
        if not origin:
            f.notes.append("fork discovery skipped: the target has no `origin` remote")
            return None
        repo = github_repo(origin)
        if repo is None:
            f.notes.append(f"fork discovery skipped: origin {origin} is not a GitHub repository")
            return None
        o, r = repo
        try:
            forks = self._list(ctx, gh, f"{API}/repos/{o}/{r}/forks")
            base = self._base_branch(ctx, gh, o, r)
        except Unavailable as e:
            f.notes.append(f"fork discovery of {o}/{r} skipped: {e}")
            return None
        live = [x for x in forks if (x.get("pushed_at") or "") > (x.get("created_at") or "~")
                and isinstance(x.get("owner"), dict) and x["owner"].get("login")
                and x.get("clone_url")]
        live.sort(key=lambda x: (-int(x.get("stargazers_count") or 0), x.get("full_name", "")))
        ahead: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for fork in live[:int_option(ctx, "max_forks", 10)]:
            owner, branch = fork["owner"]["login"], fork.get("default_branch") or "main"
            try:
                cmp = gh.get(f"{API}/repos/{o}/{r}/compare/{base}...{owner}:{branch}").json()
            except Unavailable as e:
                f.notes.append(f"fork {fork.get('full_name')} not compared: {e}")
                continue
            if int(cmp.get("ahead_by") or 0) > 0:
                ahead.append((fork, cmp))
        ahead.sort(key=lambda fc: (-int(fc[1]["ahead_by"]), -int(fc[0].get("stargazers_count")
                                                                 or 0)))
        if ctx.offline:
            f.notes.append(f"offline: fork discovery of {o}/{r} answered from the cache "
                           f"(up to {gh.oldest / 3600:.1f} h old)")
        taken = {c.name for c, _ in configured} | {c.source for c, _ in configured}
        out: list[tuple[Competitor, str | None]] = []
        for fork, cmp in ahead[:int_option(ctx, "max_fetched_forks", 3)]:
            name = re.sub(r"[^A-Za-z0-9._-]", "-", fork["owner"]["login"]).lstrip(".-")
            comp = Competitor(name, fork["clone_url"], fork.get("default_branch") or None)
            f.references.append(Reference(
                f"github:{fork.get('full_name')}", "note", f"fork {fork.get('full_name')}",
                url=fork.get("html_url"),
                detail=f"{cmp['ahead_by']} ahead, {cmp.get('behind_by', 0)} behind {base} "
                       f"({cmp.get('status', '?')}); {fork.get('stargazers_count', 0)} stars; "
                       f"pushed {fork.get('pushed_at')}"))
            if name in taken or comp.source in taken:
                continue
            if _ensure_fetched(ctx, comp, f):
                out.append((comp, fork.get("html_url") or _web(comp.source)))
        path = ctx.state_dir / DISCOVERED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"name": c.name, "url": c.source, "branch": c.branch} for c, _ in out]
        path.write_text(json.dumps([{k: v for k, v in e.items() if v} for e in entries],
                                   indent=2) + "\n")
        return out

    def _list(self, ctx: ResearchContext, gh: _GitHub, url: str) -> list[dict[str, Any]]:
        """All pages of a GitHub list (up to `[research] max_fork_pages`)."""
        items: list[dict[str, Any]] = []
        page: str | None = url
        params: dict[str, Any] | None = {"sort": "stargazers", "per_page": 100, "page": 1}
        for _ in range(int_option(ctx, "max_fork_pages", 3)):
            if page is None:
                break
            resp = gh.get(page, params)
            items += [x for x in resp.json() if isinstance(x, dict)]
            page, params = next_link(resp.headers.get("link")), None
        return items

    def _base_branch(self, ctx: ResearchContext, gh: _GitHub, o: str, r: str) -> str:
        """`[research] base_branch`, else origin's HEAD branch, else the repo's default."""
        if ctx.research.get("base_branch"):
            return str(ctx.research["base_branch"])
        head = gitcli.git(ctx.repo, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD",
                          check=False).strip()
        if head:
            return head.removeprefix("refs/remotes/origin/")
        return str(gh.get(f"{API}/repos/{o}/{r}").json().get("default_branch") or "main")


def _web(source: str) -> str | None:
    repo = github_repo(source)
    return f"https://github.com/{repo[0]}/{repo[1]}" if repo else None


def _ensure_fetched(ctx: ResearchContext, comp: Competitor, f: Finding) -> bool:
    """Fetch the competitor (not over the network when offline); True when its ref exists."""
    have = gitcli.git(ctx.repo, "rev-parse", "--verify", "--quiet", f"{comp.ref}^{{commit}}",
                      check=False).strip()
    if ctx.offline and _NETWORK.match(comp.source):
        if not have:
            f.notes.append(f"offline: competitor {comp.name} ({comp.source}) was never fetched")
        return bool(have)
    try:
        fetch(ctx.repo, comp)
        return True
    except (gitcli.GitError, UnicodeDecodeError) as e:
        why = str(e).splitlines()[-1] if str(e) else type(e).__name__
        f.notes.append(f"competitor {comp.name}: fetch failed ({why})"
                       + ("; studying the earlier fetch" if have else ""))
        return bool(have)


def study(ctx: ResearchContext, comp: Competitor, base: str, pats: list[str], cap: int,
          f: Finding, web: str | None = None) -> None:
    """Each divergent commit of `comp` touching files in scope becomes a port-commit hypothesis
    and a commit reference (paths mapped by suffix when the histories are unrelated)."""
    try:
        commits, shared = list_fork_commits(ctx.repo, base, comp.ref)
    except gitcli.GitError as e:  # this competitor's listing, not the other sources'
        f.notes.append(f"competitor {comp.name}: cannot list its commits "
                       f"({str(e).splitlines()[-1][:300]})")
        return
    commits = [c for c in commits[:cap] if c.mark != "="]
    if not commits:
        return
    mapper = PathMapper(ctx.repo, base, pats)
    files = {p for ps in mapper.by_name.values() for p in ps}
    patches = commit_patches(ctx.repo, [c.sha for c in commits])
    f.notes += skip_notes(f"competitor {comp.name}", patches.skipped)
    for c in commits:
        if c.sha in patches.skipped:
            continue
        diffs, sites, touched = patches.get(c.sha, []), [], False
        for d in diffs:
            if shared:
                path = d.old or d.new
                touched |= bool(path and in_scope(path, pats))
                target = path if path in files else None
            else:  # only changes to a file the target has a unique counterpart of
                target = mapper.lookup(d.old) if d.old else None
                touched |= target is not None
            if target:
                sites += [Site(to_root(target, ctx.rel), old, fn) for old, _new, fn in d.hunks]
        if not touched:
            continue
        cues = perf_cues(f"{c.subject}\n{c.body}", [ln for d in diffs for ln in d.added],
                         [ln for d in diffs for ln in d.removed])
        ref_id, short = f"{comp.name}@{c.sha}", c.sha[:12]
        found = f"performance cues: {', '.join(cues)}" if cues else "no performance cues"
        f.references.append(Reference(ref_id, "commit", c.subject or short,
                                      url=f"{web}/commit/{c.sha}" if web else None,
                                      detail=commit_detail(c.subject, c.body)))
        f.hypotheses.append(Hypothesis(
            title=c.subject or short, kind="port-commit",
            rationale=f"{found}; from {comp.name} {short}",
            sites=list(dict.fromkeys(sites))[:MAX_SITES], sources=[ref_id],
            score=cue_score(cues), data={"competitor": comp.name, "commit": c.sha}))
