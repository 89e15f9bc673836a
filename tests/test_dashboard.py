"""`readfirst dashboard` end to end in a real headless Chromium (Debian's, driven by
Playwright): the page loads, shows a running experiment, updates when it finishes, shows an
untrusted title as text, and logs no console error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from test_live import held_target, wait_until_held

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HOSTILE = "<img src=x onerror=window.__xss=1> held"

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the python package playwright is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium (`sh .ci/sysdeps.sh` installs it as root with apt)")


def start_dashboard(target: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "readfirst", "dashboard", "--port", "0"],
                            cwd=target, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.startswith("dashboard: http://127.0.0.1:"), (line, proc.stderr.read())
    return proc, line.split()[1]


def launch(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def test_dashboard_follows_a_run_in_a_real_browser(tmp_path: Path) -> None:
    header = f"From: Mallory <m@example.org>\nSubject: [PATCH] {HOSTILE}\n\n---\n"
    target, patches = held_target(tmp_path, header)
    run = subprocess.Popen(
        [sys.executable, "-m", "readfirst", "run", "--proposer", "patches", "--patches",
         str(patches), "--workers", "1"], cwd=target, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    go = target / ".readfirst/worktrees/w0-cand/build/.go"
    dash = None
    try:
        wait_until_held(target, run)
        dash, url = start_dashboard(target)
        problems: list[str] = []
        with sync_api.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(0)  # no upper time bound: a loaded machine is slow
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            # a running experiment, live: its stage, rounds and the estimate so far
            page.wait_for_function(
                "() => [...document.querySelectorAll('#workers .worker')]"
                ".some(w => w.textContent.includes('benchmark rounds 2/20'))")
            assert page.inner_text("#run-status") == "running"
            row = page.locator("#experiments tbody tr[data-seq='1']")
            assert row.locator("td").nth(3).inner_text() == "running"
            # the candidate's title is text, never markup
            assert HOSTILE in row.locator("td").nth(1).inner_text()
            assert page.evaluate("document.querySelectorAll('main img').length") == 0
            assert page.evaluate("window.__xss") is None
            assert page.locator("#progress svg").count() == 1
            # it finishes: the page updates by itself
            go.touch()
            page.wait_for_function("() => document.body.dataset.status === 'done'")
            result = row.locator("td").nth(3).inner_text()
            assert result not in ("running", "")
            assert page.inner_text("#workers").strip() == "none running"
            assert page.locator("#forest svg circle, #forest svg polygon").count() >= 1
            assert page.locator("#samples svg").count() >= 1
            assert page.evaluate("window.__xss") is None
            browser.close()
        assert problems == []
        assert run.wait() == 0
    finally:
        go.parent.mkdir(parents=True, exist_ok=True)
        go.touch()
        if run.poll() is None:
            run.wait()
        if dash is not None:
            dash.terminate()
            dash.wait()


def test_dashboard_is_read_only_and_local(tmp_path: Path) -> None:
    from conftest import make_target

    target = make_target(tmp_path / "t")
    code, _, proc = run_cli("dashboard", "--port", "0", cwd=target)
    assert code == 2 and "no journal yet" in proc.stderr
    run_cli("bench", "--rounds", "2", cwd=target, timeout=None)  # a journal, no loop run yet
    dash, url = start_dashboard(target)
    try:
        import httpx

        assert httpx.get(url + "api/view").status_code == 404  # no run: said, not a crash
        assert httpx.post(url + "api/view").status_code == 405
        assert httpx.get(url + "api/view", headers={"Host": "evil.example"}).status_code == 400
        assert httpx.get(url + "static/../journal.db").status_code == 404
    finally:
        dash.terminate()
        dash.wait()
