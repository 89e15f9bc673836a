"""The `forks` proposer: port the commits of competing projects, one candidate per commit.

Each competitor (`[research] competitors`) is fetched into the target repository under
`refs/readfirst/competitors/<name>` (vcs/competitors.py). With a shared history, the commits
after the merge-base are offered with `--full-index` diffs, so `git apply --3way` merges them
like cherry-pick would. With an unrelated history, each changed file is mapped onto the
baseline's file with the longest common path suffix and the diff's paths are rewritten. Before
anything is offered the commits are triaged (triage.py), stacked on what they depend on
(stack.py) and ranked (rank.py, archcheck.py), all in forkrank.py.
"""

from __future__ import annotations

from readfirst.core.candidate import Candidate
from readfirst.core.errors import ConfigError
from readfirst.proposers.base import ProposerContext, RecordsSkips
from readfirst.proposers.forkrank import port_competitor, replace_section
from readfirst.vcs import gitcli
from readfirst.vcs.competitors import DEFAULT_MAX_COMMITS, competitors_for, fetch


class ForksProposer(RecordsSkips):
    """Offers the in-scope commits of the configured competitors, ranked (see rank.py)."""

    name = "forks"

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        self._skipped = []
        competitors = competitors_for(ctx.spec.research, ctx.root, ctx.state_dir)
        cap = ctx.spec.research.get("max_fork_commits", DEFAULT_MAX_COMMITS)
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ConfigError(f"[research] max_fork_commits: expected an integer >= 0, got {cap!r}")
        out: list[Candidate] = []
        reports: list[str] = []
        for comp in competitors:
            try:
                fetch(ctx.repo, comp)
            except (gitcli.GitError, UnicodeDecodeError) as e:
                self._skipped.append((f"fork:{comp.name}", comp.name, f"fetch failed: {e}"))
                continue
            try:
                ported = port_competitor(ctx, comp, cap)
            except gitcli.GitError as e:  # the listing itself failed: this fork, not the run
                self._skipped.append((f"fork:{comp.name}", comp.name,
                                      f"cannot list its commits: {e}"))
                continue
            self._skipped += ported.skipped
            out += ported.candidates
            reports.append(ported.report)
        if reports:
            write_ranking(ctx, reports)
        return out


def write_ranking(ctx: ProposerContext, reports: list[str]) -> None:
    """The ranking, with reasons, in `research/fork_ranking.md` and as a section of the brief."""
    text = "\n".join(reports)
    out = ctx.state_dir / "research"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fork_ranking.md").write_text(text)
    brief = out / "brief.md"
    if brief.is_file():
        brief.write_text(replace_section(brief.read_text(), text))


