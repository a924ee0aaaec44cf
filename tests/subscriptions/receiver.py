"""A real HTTP receiver on loopback for rest-hook notifications: records every request it gets and
answers with the status codes a test lines up (then 200)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes to answer next, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, *codes: int) -> None:
        with self.lock:
            self.answers.extend(codes)

    def bundles(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The notification Bundles received (of one notification type)."""
        found = [r.json() for r in list(self.requests) if r.method == "POST" and r.body]
        return [b for b in found if kind is None or notification_type(b) == kind]

    async def wait_for(self, predicate: Any, seconds: float = 15.0) -> None:
        for _ in range(int(seconds / 0.05)):
            if predicate(self):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the receiver did not get what was expected; it got {self.requests!r}")


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    parameters = bundle["entry"][0]["resource"]["parameter"]
    return {p["name"]: p for p in parameters if p["name"] != "notification-event"} | {
        "events": [{part["name"]: next(v for k, v in part.items() if k.startswith("value")) for part in p["part"]}
                   for p in parameters if p["name"] == "notification-event"]}


def notification_type(bundle: dict[str, Any]) -> str:
    return status_of(bundle)["type"]["valueCode"]


@contextmanager
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            mine = state["receiver"]
            with mine.lock:
                code = mine.answers.pop(0) if mine.answers else 200
                mine.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(f"http://127.0.0.1:{httpd.server_address[1]}/hook")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        httpd.shutdown()
        httpd.server_close()
