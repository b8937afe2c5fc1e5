"""Asking an API instance (vocabsync or the naive baseline) what it holds, over HTTP only.

Served: ``GET /ready`` reports the version of the snapshot the instance serves (and, for
vocabsync, the version its matching index was built for, under ``matcher``). Matchable:
``POST /api/vocabulary/match`` finds the term in a question. Both are cheap at any vocabulary
size, unlike ``GET /api/vocabulary`` (about 30 MB at 1M terms), which the benchmark never polls.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class Http:
    """One keep-alive connection to one instance; reconnects after any error."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON body); (0, error text) when the instance cannot be reached."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):  # a kept-alive connection the server closed: retry once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, self._timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    return 0, str(exc)
                continue
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode(errors="replace")
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    version: int | None  # the snapshot served
    matcher_version: int | None  # the matching index's; None when the instance does not say


def readiness(http: Http) -> Readiness:
    status, body = http.request("GET", "/ready")
    if status != 200 or not isinstance(body, dict):
        return Readiness(False, None, None)
    matcher = body.get("matcher")
    matcher_version = matcher.get("version") if isinstance(matcher, dict) else None
    return Readiness(
        True,
        int(body["version"]) if isinstance(body.get("version"), int) else None,
        int(matcher_version) if isinstance(matcher_version, int) else None,
    )


def question_for(term: str) -> str:
    return f"how much did we spend on {term} this month"


def matches(http: Http, field: str, term: str) -> bool | None:
    """Does the instance find ``term`` (in ``field``) in a question naming it? None: no answer."""
    status, body = http.request(
        "POST", "/api/vocabulary/match", {"text": question_for(term), "fields": [field]}
    )
    if status != 200 or not isinstance(body, dict):
        return None
    return term in {m.get("value") for m in body.get("matches", ())}


class Backoff:
    """Poll interval that grows with the time waited: fine resolution early, little load late
    (an instance rebuilding its index shares the CPU with the requests asking about it)."""

    def __init__(self, minimum_s: float, fraction: float = 0.02, maximum_s: float = 0.1) -> None:
        self.started = time.perf_counter()
        self.minimum_s = minimum_s
        self.fraction = fraction
        self.maximum_s = maximum_s

    def sleep(self) -> None:
        waited = time.perf_counter() - self.started
        time.sleep(min(self.maximum_s, max(self.minimum_s, waited * self.fraction)))
