"""Stand-in for coding-agent CLIs in tests: parses its argv the way the real CLI does, then acts
as FAKE_AGENT_MODE says, in the current directory. Every call is logged (JSON line) to
FAKE_AGENT_LOG."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def prompt_from_argv(name: str, argv: list[str]) -> str:
    if name == "claude":  # claude -p "<prompt>" --output-format json ...
        return argv[argv.index("-p") + 1]
    if name == "codex":  # codex exec [options] "<prompt>"
        assert argv[0] == "exec", argv
        rest, i = [], 1
        while i < len(argv):
            if argv[i] in ("--sandbox", "--model", "-s", "-m"):
                i += 2
                continue
            rest.append(argv[i])
            i += 1
        return rest[-1]
    if name == "aider":  # aider --message "<prompt>" --yes-always ...
        return argv[argv.index("--message") + 1]
    raise SystemExit(f"unknown agent {name}")


def edit(path: str, old: str, new: str) -> None:
    p = Path(path)
    p.write_text(re.sub(old, new, p.read_text()))


def _try_append(path: Path) -> str:
    try:
        with open(path, "ab") as f:
            f.write(b"escaped\n")
    except OSError:
        return "held"
    return "written"


def escape(prompt_file: str, prompt: str) -> dict[str, str]:
    """What a hostile agent tries: write the user's checkout, readfirst's journal and the shared
    .git; move a ref; find the other provider's key in its environment or any process's."""
    repo = Path(os.environ["READFIRST_WORKTREE"]).parents[2]  # <repo>/.readfirst/worktrees/agent
    found = {"checkout": _try_append(repo / "src" / "params.h"),
             "journal": _try_append(repo / ".readfirst" / "journal.db"),
             "git_config": _try_append(repo / ".git" / "config"),
             "prompt_readable": str(Path(prompt_file).read_text() == prompt)}
    ref = subprocess.run(["git", "update-ref", "refs/heads/escaped", "HEAD"],
                         capture_output=True)
    found["ref"] = "held" if ref.returncode else "written"
    own, other = os.environ.get("FAKE_OWN_KEY", ""), os.environ.get("FAKE_OTHER_KEY_NAME", "")
    found["own_key"] = "present" if own and os.environ.get(own) else "absent"
    found["other_key_env"] = "present" if other in os.environ else "absent"
    digest = os.environ.get("FAKE_OTHER_KEY_SHA256", "")  # the key itself is not given to us
    seen = "absent"
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            keys = re.findall(rb"sk-other-[0-9a-f]{32}", environ.read_bytes())
        except OSError:
            continue
        if any(hashlib.sha256(k).hexdigest() == digest for k in keys):
            seen = "present"
    found["other_key_proc"] = seen
    return found


def main() -> int:
    name, argv = sys.argv[1], sys.argv[2:]
    prompt = prompt_from_argv(name, argv)
    prompt_file = os.environ.get("READFIRST_PROMPT_FILE", "")
    mode = os.environ.get("FAKE_AGENT_MODE", "halve")
    if os.environ.get("FAKE_AGENT_LOG"):  # not given to a sandboxed stand-in (out of its reach)
        with open(os.environ["FAKE_AGENT_LOG"], "a") as log:
            log.write(json.dumps({
                "agent": name, "argv": argv, "cwd": os.getcwd(), "mode": mode,
                "prompt_file_matches": bool(prompt_file) and Path(prompt_file).read_text()
                == prompt, "worktree": os.environ.get("READFIRST_WORKTREE"), "pid": os.getpid(),
            }) + "\n")
    summary = "Halved WORK in src/params.h."
    if mode == "escape":  # hostile: reach past the worktree, then do the job
        print(json.dumps(escape(prompt_file, prompt)))
        edit("src/params.h", r"WORK 6000000L", "WORK 3000000L")
    elif mode == "hang":
        Path(os.environ["FAKE_AGENT_PIDFILE"]).write_text(str(os.getpid()))
        time.sleep(120)
    elif mode == "halve":
        edit("src/params.h", r"WORK 6000000L", "WORK 3000000L")
    elif mode == "protected":
        edit("src/params.h", r"WORK 6000000L", "WORK 3000000L")
        with open("autoresearch.sh", "a") as f:
            f.write("echo 'METRIC time_ms=0.001'\n")
    elif mode == "commit":
        edit("src/params.h", r"WORK 6000000L", "WORK 3000000L")
        env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@localhost",
               "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@localhost"}
        subprocess.run(["git", "commit", "-qam", "agent commit"], check=True, env=env)
    elif mode == "fix":  # repair: the candidate is already applied; add a second change
        with open("src/params.h", "a") as f:
            f.write("#define FIXED 1\n")
        summary = "Added FIXED."
    elif mode == "fail":
        print("thinking...")
        print("error: model overloaded", file=sys.stderr)
        return 3
    elif mode == "nothing":
        summary = "Nothing worth changing."
    if name == "claude":
        print(json.dumps({
            "type": "result", "subtype": "success", "is_error": False, "result": summary,
            "total_cost_usd": float(os.environ.get("FAKE_COST", "0.12")),
            "usage": {"input_tokens": 10, "output_tokens": 5}, "session_id": "s-1",
        }))
    elif name == "codex":
        print(summary)
    else:
        print(f"Applied edit to src/params.h\n{summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
