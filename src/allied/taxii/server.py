"""Running the TAXII API under uvicorn: one process, or several workers on one node.

Logging goes to stderr: uvicorn's own lines, and the API's access log as one JSON object per
request (:mod:`allied.taxii.app`); uvicorn's access log is off, so no request line is ever
written twice or with its headers.
"""

from __future__ import annotations

import logging.config
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from allied.errors import ConfigError
from allied.node import Node
from allied.taxii.app import create_app

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(message)s"},
        "server": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
        "server": {
            "class": "logging.StreamHandler",
            "formatter": "server",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "allied.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "allied.taxii": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "allied.sync": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
    },
}


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    #: CA whose certificates clients must present (mutual TLS); None: no client certificate
    client_ca: Path | None = None


def serve(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    tls: Tls | None = None,
    sync_interval: float | None = None,
) -> None:
    """Serve the node in ``directory`` until interrupted; with ``sync_interval``, also sync
    from its peers every that many seconds (in this process, whatever the workers)."""
    with Node.open(directory) as node:
        node.signer  # noqa: B018 -- a missing or exposed key fails here, before listening
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": LOG_CONFIG,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
    }
    if tls is not None:
        for path in (tls.cert, tls.key, tls.client_ca):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        options.update(ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
        if tls.client_ca is not None:
            options.update(ssl_ca_certs=str(tls.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    with _syncing(directory, sync_interval):
        if workers > 1:
            os.environ["ALLIED_NODE"] = str(directory)
            uvicorn.run(
                "allied.taxii.app:app_from_environment", factory=True, workers=workers, **options
            )
        else:
            uvicorn.run(create_app(Node.open(directory)), **options)


@contextmanager
def _syncing(directory: Path, interval: float | None) -> Iterator[None]:
    """A thread syncing from the node's peers while the server runs."""
    if interval is None:
        yield
        return
    from allied.federation.sync import sync_forever

    logging.config.dictConfig(LOG_CONFIG)
    node = Node.open(directory)
    stop = threading.Event()
    thread = threading.Thread(
        target=sync_forever, args=(node, interval, stop), name="sync", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        node.close()
