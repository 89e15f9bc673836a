"""On-disk cache for network sources: keyed by request, 1-day TTL, ETag revalidation.

`fetch` is the one way research sources reach the network. Offline (or on a network error)
it answers from the cache however old, with a note saying so; with nothing cached it raises
`Unavailable` with a one-line reason, which the source turns into a note, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from readfirst.core.fsutil import atomic_write

DAY = 86_400.0


class Unavailable(Exception):
    """The network answer is not available (offline, error, rate limit) and nothing is cached."""


@dataclass(frozen=True)
class Response:
    status: int
    text: str
    headers: dict[str, str]
    from_cache: bool
    age: float  # seconds since it was fetched
    note: str = ""  # set when a stale cached answer stands in for the network

    def json(self) -> Any:
        return json.loads(self.text)


class Cache:
    def __init__(self, directory: Path, ttl: float = DAY) -> None:
        self.dir = directory
        self.ttl = ttl

    def _path(self, key: str) -> Path:
        return self.dir / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, status: int, text: str, headers: dict[str, str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        atomic_write(path, json.dumps({"key": key, "fetched": time.time(), "status": status,
                                       "text": text, "headers": headers}))

    def fetch(self, client: httpx.Client | None, url: str, *, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, offline: bool = False) -> Response:
        """GET with the cache in front. `client` None means offline."""
        key = url + "?" + json.dumps(params or {}, sort_keys=True)
        cached = self.get(key)
        now = time.time()
        if cached and now - cached["fetched"] < self.ttl:
            return Response(cached["status"], cached["text"], cached["headers"], True,
                            now - cached["fetched"])
        if offline or client is None:
            return self._stale(cached, url, "offline")
        req_headers = dict(headers or {})
        etag = cached["headers"].get("etag") if cached else None
        if etag:
            req_headers["If-None-Match"] = etag
        try:
            resp = client.get(url, params=params, headers=req_headers)
        except httpx.HTTPError as e:
            return self._stale(cached, url, f"network error ({type(e).__name__}: {e})")
        if resp.status_code == 304 and cached:
            self.put(key, cached["status"], cached["text"], cached["headers"])
            return Response(cached["status"], cached["text"], cached["headers"], True, 0.0)
        if resp.status_code >= 400:
            return self._stale(cached, url, f"HTTP {resp.status_code}")
        hdrs = {k.lower(): v for k, v in resp.headers.items()
                if k.lower() in ("etag", "link", "content-type", "x-ratelimit-remaining")}
        self.put(key, resp.status_code, resp.text, hdrs)
        return Response(resp.status_code, resp.text, hdrs, False, 0.0)

    @staticmethod
    def _stale(cached: dict[str, Any] | None, url: str, why: str) -> Response:
        if cached is None:
            raise Unavailable(f"{url}: {why}, and nothing cached")
        age = time.time() - cached["fetched"]
        note = f"{url}: {why}; using the cached answer from {age / 3600:.1f} h ago"
        return Response(cached["status"], cached["text"], cached["headers"], True, age, note)


def make_client(offline: bool) -> httpx.Client | None:
    """The HTTP client research sources share; None when offline."""
    if offline:
        return None
    return httpx.Client(timeout=20.0, follow_redirects=True,
                        headers={"User-Agent": "readfirst (research; offline-first)"})
