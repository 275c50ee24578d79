"""A tampering relay between two nodes, on 127.0.0.1: it forwards every GET to the real
peer and lets a test rewrite the objects of the pages on the way."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

Tamper = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@contextmanager
def relay(upstream: str, tamper: Tamper) -> Iterator[str]:
    """A relay to ``upstream`` (a node's base URL) that passes every page's objects through
    ``tamper``; yields its own base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
            response = httpx.get(upstream.rstrip("/") + self.path, headers=headers, timeout=30)
            body = response.content
            if "/objects/" in self.path and response.status_code == 200:
                envelope = orjson.loads(body)
                if "objects" in envelope:
                    envelope["objects"] = tamper(envelope["objects"])
                body = orjson.dumps(envelope)
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() in ("content-type",) or name.lower().startswith("x-taxii"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


_FORWARDED = frozenset({"authorization", "accept"})
