"""`readfirst run --proposer agent`: a coding agent (here `kind = "command"`) inside the loop."""

from __future__ import annotations

from pathlib import Path

from conftest import TOML, git, make_target, run_cli

# The "agent": reads the prompt file readfirst hands it, then halves the work in params.h.
AGENT = r"""
test -s "$READFIRST_PROMPT_FILE" || exit 3
grep -q 'Never change' "$READFIRST_PROMPT_FILE" || exit 4
python3 - <<'PY'
import re, pathlib
p = pathlib.Path("src/params.h")
s = p.read_text()
n = int(re.search(r"WORK (\d+)L", s).group(1))
p.write_text(s.replace(f"WORK {n}L", f"WORK {n // 2}L"))
PY
"""


def test_agent_proposer_in_the_loop(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text(AGENT)
    toml = TOML + f'\n[agent]\nkind = "command"\ncommand = "sh {script}"\ntimeout = 60\n'
    target = make_target(tmp_path / "t", toml)
    code, s, proc = run_cli("run", "--proposer", "agent", "--workers", "2",
                            "--max-experiments", "2", "--json", cwd=target)
    assert code == 0, proc.stderr
    explore = [e for e in s["experiments"] if e["kind"] == "explore" and e["wave"] > 0]
    assert len(explore) == 2 and s["stop_reason"] == "max experiments"
    assert all(e["source"] == "agent" for e in explore)
    kept = [e for e in s["experiments"] if e["outcome"] == "kept" and e["kind"] == "confirm"]
    assert len(kept) == 2  # asked again on the new baseline, it halved the work again
    assert "WORK 1500000L" in git(target, "show", f"{s['branch']}:src/params.h")
    assert git(target, "status", "--porcelain") == ""  # the agent never touched the user's tree
