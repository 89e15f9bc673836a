"""`readfirst dashboard`: a local, read-only web view of the journal, pushed live.

Starlette serves one plain HTML page (no build step: a static script and stylesheet, charts
as server-made SVG) and a server-sent-events stream that sends the run's whole view whenever
the journal changes (and every few seconds while a run is going, so clocks move). It binds to
127.0.0.1 unless told otherwise, accepts only GET, answers only to its own host names (against
DNS rebinding), and opens the journal read-only.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.errors import ReadfirstError

STATIC = ("app.js", "style.css")


def _fingerprint(journal: Path, run_id: str | None) -> tuple[Any, ...]:
    from readfirst.report.view import connect_read_only, latest_run_id

    db = connect_read_only(journal)
    try:
        rid = run_id or latest_run_id(db)
        row = db.execute(
            "SELECT COUNT(*), MAX(COALESCE(finished, 0)), MAX(started),"
            " SUM(status = 'running'), GROUP_CONCAT(COALESCE(outcome, ''))"
            " FROM experiments WHERE loop_id = ?", (rid,)).fetchone()
        run = db.execute("SELECT status, baseline FROM loop_runs WHERE id = ?",
                         (rid,)).fetchone()
        try:
            prog = db.execute("SELECT MAX(updated) FROM progress").fetchone()[0]
        except sqlite3.OperationalError:
            prog = None
        return (rid, tuple(row), tuple(run) if run else None, prog)
    finally:
        db.close()


def _view(journal: Path, run_id: str | None) -> dict[str, Any]:
    from readfirst.report.view import connect_read_only, run_view

    db = connect_read_only(journal)
    try:
        return run_view(db, run_id)
    finally:
        db.close()


def make_app(journal: Path, run_id: str | None = None, *, hosts: list[str] | None = None,
             poll: float = 0.5) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    static = files("readfirst.frontends.dashboard") / "static"

    async def index(_request: Request) -> Response:
        return HTMLResponse(static.joinpath("index.html").read_text(encoding="utf-8"))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(static.joinpath(name).read_text(encoding="utf-8"), media_type=kind)

    async def view(_request: Request) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(_view, journal, run_id))
        except ReadfirstError as e:
            return JSONResponse({"error": str(e)}, status_code=404)

    async def events(request: Request) -> Response:
        async def stream() -> Any:
            last: tuple[Any, ...] | None = None
            sent = 0.0
            while not await request.is_disconnected():
                try:
                    fp = await run_in_threadpool(_fingerprint, journal, run_id)
                    running = bool(fp[2] and fp[2][0] == "running")
                    if fp != last or (running and time.monotonic() - sent > C.DASHBOARD_TICK):
                        data = await run_in_threadpool(_view, journal, run_id)
                        yield f"event: view\ndata: {json.dumps(data)}\n\n"
                        last, sent = fp, time.monotonic()
                except (ReadfirstError, sqlite3.Error) as e:
                    yield f"event: problem\ndata: {json.dumps({'error': str(e)})}\n\n"
                    await asyncio.sleep(C.DASHBOARD_TICK)
                await asyncio.sleep(poll)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    routes = [Route("/", index), Route("/static/{name}", asset), Route("/api/view", view),
              Route("/api/events", events)]
    allowed = hosts or ["127.0.0.1", "localhost"]
    return Starlette(routes=routes,
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed)])


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        from readfirst.core.errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(64)
    return sock


def serve(app: Any, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
