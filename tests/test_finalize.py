"""`readfirst finalize`: a real run's winners become independent branches, grouped when they
touch the same lines or only help on top of another; pushed to a real bare remote; PRs through
a stand-in `gh` that follows `gh pr create`'s documented behaviour."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import MAKEFILE, TOML, commit, diff_for, git, run_cli, write

# The knobs set how much work the program does, so the test sets the effects (2x each, far
# beyond the noise) and readfirst's own wall clock agrees with the metric: SCALE and SPEED
# always count, BONUS only when SCALE < 1.
PROGRAM = textwrap.dedent("""\
    #include <stdio.h>
    #include <string.h>
    #include <time.h>
    #include "params.h"
    #include "speed.h"
    #include "bonus.h"

    int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--check") == 0) return 0;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        volatile double s = 0;
        double bonus = SCALE < 1.0 ? BONUS : 1.0;
        long n = (long)(40000000.0 * SCALE / SPEED * bonus);
        for (long i = 0; i < n; i++) s += i * 0.5;
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        printf("METRIC time_ms=%.4f\\n", ms);
        return 0;
    }
    """)
MAKE = MAKEFILE.replace("src/prog.c src/params.h", "src/prog.c src/params.h src/speed.h "
                        "src/bonus.h")


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, dict]:
    repo = tmp_path / "target"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada Lovelace")
    git(repo, "config", "user.email", "ada@example.org")
    write(repo, "src/prog.c", PROGRAM)
    write(repo, "src/params.h", "#define SCALE 1.0\n")
    write(repo, "src/speed.h", "#define SPEED 1.0\n")
    write(repo, "src/bonus.h", "#define BONUS 1.0\n")
    write(repo, "Makefile", MAKE)
    write(repo, ".gitignore", "build/\n")
    write(repo, "autoresearch.sh", "#!/bin/sh\nexec ./build/prog\n", executable=True)
    write(repo, "autoresearch.checks.sh", "#!/bin/sh\nexec ./build/prog --check\n", True)
    # four 2x effects stack to 16x: beyond the default plausibility bound, not a parsing bug here
    write(repo, "readfirst.toml", TOML.replace("warmup = 1", "warmup = 1\nplausible_ratio = 20"))
    commit(repo, "base")
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "01-halve-scale.patch").write_text(
        diff_for(repo, "src/params.h", "#define SCALE 0.5\n"))
    (patches / "02-double-speed.patch").write_text(
        diff_for(repo, "src/speed.h", "#define SPEED 2.0\n"))
    (patches / "03-bonus.patch").write_text(diff_for(repo, "src/bonus.h", "#define BONUS 0.5\n"))
    write(repo, "src/params.h", "#define SCALE 0.5\n")  # 04 is written on top of 01
    git(repo, "add", "src/params.h")
    (patches / "04-quarter-scale.patch").write_text(
        diff_for(repo, "src/params.h", "#define SCALE 0.25\n"))
    git(repo, "reset", "-q", "--", "src/params.h")
    write(repo, "src/params.h", "#define SCALE 1.0\n")
    # --waves: 03 and 04 must be measured after 01 landed (each helps only on top of it);
    # without the barrier they could start on the base while 01 is still being confirmed
    code, summary, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                                  "--workers", "2", "--waves", "--json", cwd=repo)
    assert code == 0, proc.stderr
    kept = {e["title"] for e in summary["experiments"] if e["outcome"] == "kept"}
    assert kept == {"01-halve-scale", "02-double-speed", "03-bonus", "04-quarter-scale"}, \
        [(e["title"], e["verdict"], e["reason"]) for e in summary["experiments"]]
    return repo, summary


def _stand_in_gh(bin_dir: Path, log: Path) -> None:
    """`gh pr create`: needs the head branch pushed, prints the new PR's URL, exit 0."""
    write(bin_dir, "gh", textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1 $2" = "pr create" ] || {{ echo "unknown command" >&2; exit 1; }}
        shift 2
        head=""; title=""; body=""
        while [ $# -gt 0 ]; do
          case "$1" in
            --head) head="$2"; shift 2;;
            --title) title="$2"; shift 2;;
            --body-file) body="$2"; shift 2;;
            --base) shift 2;;
            *) echo "unknown flag: $1" >&2; exit 1;;
          esac
        done
        remote=$(git config --get remote.origin.url)
        git ls-remote --exit-code --heads "$remote" "$head" > /dev/null || {{
          echo "aborted: you must first push the current branch to a remote" >&2; exit 1; }}
        [ -s "$body" ] || {{ echo "body file is empty" >&2; exit 1; }}
        n=$(( $(wc -l < {log}) + 1 ))
        printf '%s\\t%s\\t%s\\n' "$head" "$title" "$body" >> {log}
        echo "https://github.com/ada/target/pull/$n"
        """), executable=True)
    log.write_text("")


def test_finalize_makes_independent_branches(finished_run: tuple[Path, dict],
                                             tmp_path: Path) -> None:
    repo, summary = finished_run
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    bin_dir, log = tmp_path / "bin", tmp_path / "gh.log"
    _stand_in_gh(bin_dir, log)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    code, result, proc = run_cli("finalize", "--push", "origin", "--pr", "--json", cwd=repo,
                                 env=env)
    assert code == 0, proc.stderr
    groups = {frozenset(w["title"] for w in g["winners"]): g for g in result["groups"]}
    # 04 rewrites 01's line: grouped; 03 only helps on top of 01: grouped; 02 stands alone
    assert set(groups) == {frozenset({"01-halve-scale", "03-bonus", "04-quarter-scale"}),
                           frozenset({"02-double-speed"})}
    assert result["dropped"] == []
    base = summary["base_commit"]
    for g in groups.values():
        titles = [w["title"] for w in g["winners"]]  # in landing order
        assert titles[0] == "01-halve-scale" or titles == ["02-double-speed"]
        assert g["verdict"] == "improved"
        branch = g["branch"]
        assert branch.startswith("perf/")
        commits = git(repo, "rev-list", "--reverse", f"{base}..{branch}").split()
        assert len(commits) == len(titles)  # one commit per winner, on the base itself
        assert git(repo, "merge-base", branch, summary["branch"]) == base
        for sha, title in zip(commits, titles, strict=True):
            author = git(repo, "log", "-1", "--format=%an <%ae>", sha)
            assert author == "Ada Lovelace <ada@example.org>"
            body = git(repo, "log", "-1", "--format=%B", sha)
            assert body.startswith(title) and "Kept by readfirst run" in body
            assert "Sources:" in body and ".patch" in body  # the patch file it came from
        head_msg = git(repo, "log", "-1", "--format=%B", branch)
        assert "Measured on this branch alone against the run's base: time_ms" in head_msg
        # pushed, and the PR opened with its Markdown description
        assert git(remote, "rev-parse", f"refs/heads/{branch}") == g["head"]
        md = Path(g["pr_file"]).read_text()
        assert md.startswith(f"# {titles[0]}") and "## Reproduce" in md
        assert f"readfirst compare {base[:12]} {branch}" in md
        assert g["pr_url"].startswith("https://github.com/ada/target/pull/")
    lines = log.read_text().splitlines()
    assert sorted(ln.split("\t")[0] for ln in lines) == sorted(g["branch"] for g in
                                                              groups.values())
    # the branches' trees: 02 alone changes only speed.h
    alone = groups[frozenset({"02-double-speed"})]["branch"]
    assert git(repo, "diff", "--name-only", base, alone).split() == ["src/speed.h"]
    # a second finalize does not overwrite the branches silently
    code, _, proc = run_cli("finalize", cwd=repo, env=env)
    assert code == 2 and "exists" in proc.stderr


def test_finalize_needs_push_for_pr_and_a_finished_run_with_winners(tmp_path: Path) -> None:
    from conftest import make_target

    repo = make_target(tmp_path / "t")
    code, _, proc = run_cli("finalize", "--pr", cwd=repo)
    assert code == 2 and "--push" in proc.stderr
    no_gh = tmp_path / "empty-bin"
    no_gh.mkdir()
    os.symlink(shutil.which("git"), no_gh / "git")
    code, _, proc = run_cli("finalize", "--push", "origin", "--pr", cwd=repo,
                            env={"PATH": str(no_gh)})
    assert code == 2 and "`gh`" in proc.stderr  # said before anything is measured
    code, _, proc = run_cli("finalize", cwd=repo)
    assert code == 2 and "no journal yet" in proc.stderr
    json.dumps({})
