"""The network between the drill's nodes: one relay per peering direction, on 127.0.0.1.

A relay passes every request through to the node it stands for, untouched, until an inject
turns it hostile: then it alters the objects of the TAXII pages it forwards, or strips their
labels, and records each version it tampered with so the score can check that the puller
refused every one. Nodes never know a relay is there: it is the path their peer URL names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

PASS = "pass"
MODES = (PASS, "alter", "strip-label")
_FORWARDED = frozenset({"authorization", "accept", "content-type"})


@dataclass(frozen=True)
class Tampered:
    """One object version a relay altered on its way to ``puller``."""

    puller: str
    source: str
    id: str
    version: str
    mode: str
    at: float


@dataclass
class Relay:
    puller: str
    source: str
    upstream: str
    clock: Any  # seconds since the start of the drill
    mode: str = PASS
    #: a rewrite of each page's objects in place of the modes (the federation tests
    #: replay, drop or forge objects with it)
    rewrite: Callable[[list[Any]], list[Any]] | None = None
    tampered: list[Tampered] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: httpx.Client | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> None:
        relay = self
        client = httpx.Client(timeout=30)
        self._client = client

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._forward("GET", None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._forward("POST", self.rfile.read(length))

            def _forward(self, method: str, body: bytes | None) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
                try:
                    response = client.request(
                        method, relay.upstream.rstrip("/") + self.path, headers=headers,
                        content=body,
                    )  # fmt: skip
                except httpx.HTTPError:  # the node is down: the puller sees a bad gateway
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content = response.content
                if method == "GET" and "/objects/" in self.path and response.status_code == 200:
                    content = relay._tamper(content)
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    lowered = name.lower()
                    if lowered == "content-type" or lowered.startswith("x-taxii"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"relay-{self.puller}-{self.source}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._client is not None:
            self._client.close()

    def _tamper(self, content: bytes) -> bytes:
        with self._lock:
            mode = self.mode
        if self.rewrite is not None:
            return self._rewrite(content, self.rewrite)
        if mode == PASS:
            return content
        try:
            envelope = orjson.loads(content)
        except orjson.JSONDecodeError:
            return content
        objects = envelope.get("objects") if isinstance(envelope, dict) else None
        if not objects:
            return content
        at = float(self.clock())
        for obj in objects:
            if not isinstance(obj, dict):
                continue
            if mode == "alter":
                obj["description"] = "altered in transit"
            elif "object_marking_refs" in obj:
                del obj["object_marking_refs"]
            else:
                continue
            version = obj.get("modified") or obj.get("created") or ""
            self.tampered.append(
                Tampered(self.puller, self.source, str(obj.get("id")), str(version), mode, at)
            )
        return orjson.dumps(envelope)

    @staticmethod
    def _rewrite(content: bytes, rewrite: Callable[[list[Any]], list[Any]]) -> bytes:
        try:
            envelope = orjson.loads(content)
        except orjson.JSONDecodeError:
            return content
        if isinstance(envelope, dict) and "objects" in envelope:
            envelope["objects"] = rewrite(envelope["objects"])
        return orjson.dumps(envelope)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"relay mode {mode!r}: expected one of {', '.join(MODES)}")
        with self._lock:
            self.mode = mode
