"""Screenshots of the dashboard and the HTML report at 1400 px wide, for docs/.

Runs the bundled demo (or reuses one: --demo-dir DIR from `readfirst demo --dir DIR`), serves
its journal with `readfirst dashboard`, and photographs both pages in Debian's headless
Chromium through Playwright.

    .venv/bin/python scripts/screenshots.py [--demo-dir /tmp/rf-demo] [--out docs]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def readfirst(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "readfirst", *args], cwd=cwd, text=True,
                          capture_output=True, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=Path, help="an existing `readfirst demo --dir` directory")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    opts = ap.parse_args()
    demo = opts.demo_dir or Path(tempfile.mkdtemp(prefix="readfirst-shots-"))
    if opts.demo_dir is None:
        print(f"running the demo in {demo} ...", flush=True)
        readfirst("demo", "--dir", str(demo), "--json", cwd=Path.cwd())
    target = demo / "target"
    report = json.loads(readfirst("status", "--json", cwd=target).stdout)
    html = Path(readfirst("report", cwd=target).stdout.split()[1])
    dash = subprocess.Popen([sys.executable, "-m", "readfirst", "dashboard", "--port", "0"],
                            cwd=target, text=True, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = (dash.stdout.readline() if dash.stdout else "").split()[1]
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_function("() => document.body.dataset.status !== undefined")
            opts.out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(opts.out / "dashboard.png"), full_page=True)
            page.goto(html.as_uri())
            page.screenshot(path=str(opts.out / "report.png"), full_page=True)
            browser.close()
    finally:
        dash.terminate()
        dash.wait()
    print(f"run {report['run_id']}: wrote {opts.out / 'dashboard.png'} and "
          f"{opts.out / 'report.png'}")


if __name__ == "__main__":
    main()
