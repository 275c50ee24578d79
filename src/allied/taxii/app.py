"""The HTTP layer of the TAXII API (Starlette under uvicorn): authentication, content
negotiation, request limits, error messages and the access log, around
:class:`allied.taxii.service.TaxiiService`.

Every request but discovery (and that only if the node allows it) carries a partner's bearer
token. Every failure is a TAXII error message with the status the specification gives it;
an unexpected one is logged here with its traceback and answered with a 500 that carries an
error id and nothing else.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from allied.errors import AlliedError, LimitExceeded, NotFound
from allied.integrity import proofs
from allied.integrity.ledger import MAX_TREE_SIZE
from allied.node import Node
from allied.store.store import Partner
from allied.taxii.openapi import openapi_document
from allied.taxii.protocol import MEDIA_TYPE, TaxiiError, bad_request, now
from allied.taxii.service import Answer, TaxiiService
from allied.web.app import console_app

if TYPE_CHECKING:
    from allied.matching.blind import Oracle

access_log = logging.getLogger("allied.access")
error_log = logging.getLogger("allied.taxii")

_ACCEPTED = ("application/taxii+json", "*/*", "application/*")
Handler = Callable[[Request, Partner | None], Any]
_TITLES = {
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    413: "Payload Too Large", 422: "Unprocessable Content", 429: "Too Many Requests",
}  # fmt: skip


def _names_taxii_21(media_type: str) -> bool | None:
    """For one media type (with its parameters): None if it is not TAXII's, else whether
    it is TAXII 2.1 (or names no version)."""
    kind, _, params = media_type.strip().partition(";")
    if kind.strip().lower() != "application/taxii+json":
        return None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "version" and value.strip() != "2.1":
            return False
    return True


def _accepts_taxii(header: str | None) -> bool:
    """TAXII 2.1 media type, or anything; a version other than 2.1 is refused (406)."""
    if not header:
        return True
    for part in header.split(","):
        if part.split(";")[0].strip().lower() in ("*/*", "application/*"):
            return True
        if _names_taxii_21(part):
            return True
    return False


def _is_taxii_21(content_type: str) -> bool:
    """A request body's type: ``application/taxii+json``, of version 2.1 if it names one."""
    return bool(_names_taxii_21(content_type))


def _max_depth(value: Any, limit: int) -> bool:
    """``value`` nests no deeper than ``limit`` arrays and objects (an explicit stack: a
    hostile document must not exhaust the interpreter's)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item)
    return True


class TaxiiApp:
    """The routes, bound to one node's service.

    Answers that read a handful of indexed rows (authentication, one object, its versions,
    a status, the tree head) run on the event loop: a hop to a worker thread would cost more
    than the read. Pages, posts and proofs run in worker threads."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.service = TaxiiService(node)
        self.max_json_depth = int(node.config.setting("max_json_depth"))
        self.oracle: Oracle | None = None
        self._offering = threading.Semaphore(1)
        self._oracle_made = threading.Lock()

    def application(self) -> Starlette:
        def route(
            path: str, handler: Handler, methods: list[str], *, anonymous: bool = False
        ) -> Route:
            return Route(path, self._endpoint(handler, anonymous=anonymous), methods=methods)

        collection = "/api/collections/{collection_id}"
        routes: list[BaseRoute] = [
            route("/taxii2/", self.discovery, ["GET"], anonymous=True),
            route("/api/", self.api_root, ["GET"]),
            route("/api/collections/", self.collections, ["GET"]),
            route(f"{collection}/", self.collection, ["GET"]),
            route(f"{collection}/objects/", self.objects, ["GET", "POST"]),
            route(f"{collection}/objects/{{object_id}}/", self.object, ["GET", "DELETE"]),
            route(f"{collection}/objects/{{object_id}}/versions/", self.versions, ["GET"]),
            route(f"{collection}/manifest/", self.manifest, ["GET"]),
            route("/api/status/{status_id}/", self.status, ["GET"]),
            route("/ledger/head", self.ledger_head, ["GET"]),
            route("/ledger/inclusion/{object_id}", self.ledger_inclusion, ["GET"]),
            route("/ledger/consistency", self.ledger_consistency, ["GET"]),
            route("/federation/withdrawn", self.withdrawn, ["GET"]),
            route("/ledger/peers", self.peer_head, ["GET"]),
            route("/blind/sessions", self.blind_session, ["POST"]),
            route("/blind/sessions/{session_id}/evaluate", self.blind_evaluate, ["POST"]),
            route("/openapi.json", self.openapi, ["GET"]),
        ]
        if self.node.config.setting("console"):  # pages for the node's own people
            routes += [
                Route("/", _to_console, methods=["GET"]),
                Mount("/ui", app=console_app(self.node)),
            ]
        app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})
        app.state.taxii = self
        return app

    # -- the wrapper every endpoint runs in ------------------------------------------------

    def _endpoint(
        self, handler: Handler, *, anonymous: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            request_id = uuid.uuid4().hex[:16]
            partner: Partner | None = None
            try:
                if not _accepts_taxii(request.headers.get("accept")):
                    raise TaxiiError(
                        406, "Not Acceptable", f"this server answers in {MEDIA_TYPE} only"
                    )
                partner = self._partner(request, anonymous)  # a few tiny indexed reads
                answer = await handler(request, partner)
                response = _answer(answer)
            except TaxiiError as error:
                response = _error(error, request_id)
            except NotFound as error:
                response = _error(TaxiiError(404, "Not Found", error.message), request_id)
            except AlliedError as error:
                status = error.http_status if 400 <= error.http_status < 500 else 400
                title = _TITLES.get(status, "Bad Request")
                response = _error(TaxiiError(status, title, error.message), request_id)
            except Exception:
                error_log.error("request %s failed:\n%s", request_id, traceback.format_exc())
                response = _error(
                    TaxiiError(
                        500,
                        "Internal Server Error",
                        f"the server could not answer; quote error id {request_id} to its operator",
                    ),
                    request_id,
                )
            self._log(request, partner, response, started, request_id)
            return response

        return endpoint

    def _partner(self, request: Request, anonymous: bool) -> Partner | None:
        header = request.headers.get("authorization")
        if header is None:
            if anonymous and self.service.anonymous_discovery:
                return None
            raise TaxiiError(
                401, "Unauthorized", "send a partner token: Authorization: Bearer TOKEN"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TaxiiError(401, "Unauthorized", "expected Authorization: Bearer TOKEN")
        partner = self.service.authenticate(token.strip())
        if partner is None:
            raise TaxiiError(401, "Unauthorized", "the token is not valid")
        if partner.revoked:
            raise TaxiiError(403, "Forbidden", f"partner {partner.name} is revoked")
        return partner

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Routing errors (no such path, method not allowed) as TAXII error messages."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        error = TaxiiError(status, titles.get(status, "Error"), "no such endpoint or method")
        response = _error(error, uuid.uuid4().hex[:16])
        if status == 405 and isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        self._log(request, None, response, time.perf_counter(), "-")
        return response

    def _log(
        self,
        request: Request,
        partner: Partner | None,
        response: Response,
        started: float,
        request_id: str,
    ) -> None:
        """One JSON line per request; never a header, token or body."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        access_log.info(
            orjson.dumps(
                {
                    "time": now(),
                    "request": request_id,
                    "client": request.client.host if request.client else None,
                    "partner": partner.name if partner else None,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "bytes": len(response.body),
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                }
            ).decode()
        )

    # -- endpoints -------------------------------------------------------------------------

    async def discovery(self, request: Request, _partner: Partner | None) -> Answer:
        return _json(self.service.discovery(str(request.base_url)))

    async def api_root(self, _request: Request, _partner: Partner | None) -> Answer:
        return _json(self.service.api_root())

    async def collections(self, _request: Request, partner: Partner | None) -> Answer:
        return _json(self.service.list_collections(_known(partner)))

    async def collection(self, request: Request, partner: Partner | None) -> Answer:
        cid = request.path_params["collection_id"]
        return _json(self.service.collection(_known(partner), cid))

    async def objects(self, request: Request, partner: Partner | None) -> Answer:
        who, cid = _known(partner), request.path_params["collection_id"]
        if request.method == "POST":
            requested = now()
            envelope = await self._body(request)
            return await run_in_threadpool(
                self.service.post_objects, who, cid, envelope, requested=requested
            )
        params = request.query_params.multi_items()
        return await run_in_threadpool(self.service.get_objects, who, cid, params)

    async def object(self, request: Request, partner: Partner | None) -> Answer:
        who, cid = _known(partner), request.path_params["collection_id"]
        oid, params = request.path_params["object_id"], request.query_params.multi_items()
        if request.method == "DELETE":
            return await run_in_threadpool(self.service.delete_object, who, cid, oid, params)
        return self.service.get_object(who, cid, oid, params)  # one indexed read

    async def versions(self, request: Request, partner: Partner | None) -> Answer:
        who, cid = _known(partner), request.path_params["collection_id"]
        oid, params = request.path_params["object_id"], request.query_params.multi_items()
        return self.service.get_versions(who, cid, oid, params)

    async def manifest(self, request: Request, partner: Partner | None) -> Answer:
        who, cid = _known(partner), request.path_params["collection_id"]
        params = request.query_params.multi_items()
        return await run_in_threadpool(self.service.get_manifest, who, cid, params)

    async def status(self, request: Request, partner: Partner | None) -> Answer:
        sid = request.path_params["status_id"]
        return self.service.get_status(_known(partner), sid)

    async def ledger_head(self, request: Request, partner: Partner | None) -> Answer:
        _no_params(request, set())
        head = proofs.latest_head(self.node.store)
        return _json(head.as_dict())

    async def ledger_inclusion(self, request: Request, partner: Partner | None) -> Answer:
        """Only for an object version the partner may see: a proof for a withheld one would
        say that it exists."""
        _no_params(request, {"version"})
        who, oid = _known(partner), request.path_params["object_id"]
        version = request.query_params.get("version")

        return _json(await run_in_threadpool(self.service.inclusion, who, oid, version))

    async def ledger_consistency(self, request: Request, partner: Partner | None) -> Answer:
        _no_params(request, {"first", "second"})
        first = _size(request.query_params.get("first"), "first", required=True)
        second = _size(request.query_params.get("second"), "second", required=False)
        assert first is not None
        proof = await run_in_threadpool(proofs.consistency, self.node.store, first, second)
        return _json(proof)

    async def peer_head(self, request: Request, partner: Partner | None) -> Answer:
        params = request.query_params.multi_items()
        return await run_in_threadpool(self.service.peer_head, _known(partner), params)

    async def withdrawn(self, request: Request, partner: Partner | None) -> Answer:
        params = request.query_params.multi_items()
        return await run_in_threadpool(self.service.withdrawn, _known(partner), params)

    async def blind_session(self, request: Request, partner: Partner | None) -> Answer:
        """A blind-matching session for the partner, with the offer of what it may
        blind-match (docs/blind-matching.md)."""
        _no_params(request, set())
        who = _known(partner)
        return _json(await run_in_threadpool(self._open_blind, who.name))

    def _open_blind(self, partner: str) -> dict[str, Any]:
        """The offer is made first and the session recorded once it exists (a refused
        offer leaves no session to evaluate in); one offer at a time per serving process,
        since each costs an evaluation per indicator value."""
        from allied.matching.blind import build_offer, new_session

        if not self._offering.acquire(blocking=False):
            raise LimitExceeded("another blind-matching offer is being made: try again shortly")
        try:
            oracle = self._oracle()
            session = new_session()
            offer = build_offer(self.node, partner, oracle.key(session), session)
            oracle.open(partner, session)  # counted against the partner's sessions per day
            return offer.to_wire()
        finally:
            self._offering.release()

    async def blind_evaluate(self, request: Request, partner: Partner | None) -> Answer:
        _no_params(request, set())
        from allied.matching.blind import elements_from_wire

        who, session = _known(partner), request.path_params["session_id"]
        elements = elements_from_wire(await self._body(request))
        answer = await run_in_threadpool(self._oracle().evaluate, who.name, session, elements)
        return _json(answer.to_wire())

    def _oracle(self) -> Oracle:
        """Made on first use (with the node's blind secret), not at every start: blind
        matching brings DuckDB along, which a server that never blind-matches need not load."""
        from allied.matching.blind import Oracle

        with self._oracle_made:
            return self._make_oracle(Oracle)

    def _make_oracle(self, make: type[Oracle]) -> Oracle:
        if self.oracle is None:
            setting = self.node.config.setting
            self.oracle = make(
                self.node,
                session_cap=int(setting("blind_session_cap")),
                partner_cap=int(setting("blind_partner_cap")),
                sessions_cap=int(setting("blind_sessions_cap")),
            )
        return self.oracle

    async def openapi(self, request: Request, _partner: Partner | None) -> Answer:
        return _json(openapi_document(str(request.base_url)))

    async def _body(self, request: Request) -> Any:
        """The request's JSON, within the size and nesting limits."""
        if not _is_taxii_21(request.headers.get("content-type", "")):
            raise TaxiiError(415, "Unsupported Media Type", f"send the envelope as {MEDIA_TYPE}")
        limit = self.service.max_content_length
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return await run_in_threadpool(self._parse, b"".join(chunks))

    def _parse(self, body: bytes) -> Any:
        """Parsing a large body takes a while: it is done in a worker thread."""
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise bad_request(f"the body is not JSON: {error}") from None
        if not _max_depth(envelope, self.max_json_depth):
            raise bad_request(f"the body nests deeper than {self.max_json_depth} levels")
        return envelope


async def _to_console(_request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=303)


def _too_large(limit: int) -> TaxiiError:
    return TaxiiError(
        413, "Payload Too Large", f"this server takes request bodies of at most {limit} bytes"
    )


def _known(partner: Partner | None) -> Partner:
    if partner is None:  # only discovery is ever anonymous
        raise TaxiiError(401, "Unauthorized", "send a partner token: Authorization: Bearer TOKEN")
    return partner


def _no_params(request: Request, allowed: set[str]) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise bad_request(f"{name}: not a parameter of this endpoint")


def _size(value: str | None, name: str, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise bad_request(f"{name}: required (a tree size)")
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        raise bad_request(f"{name} {value[:40]!r}: expected a tree size (a whole number)")
    if int(value) > MAX_TREE_SIZE:
        raise bad_request(f"{name} {value}: larger than any ledger ({MAX_TREE_SIZE} entries)")
    return int(value)


def _json(document: Any) -> Answer:
    return Answer(orjson.dumps(document), {})


def _answer(answer: Answer) -> Response:
    if answer.status == 200 and not answer.body:
        return Response(status_code=200, headers=answer.headers)
    return Response(answer.body, answer.status, answer.headers, media_type=MEDIA_TYPE)


def _error(error: TaxiiError, request_id: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    return Response(
        orjson.dumps(error.document(request_id)), error.status, headers, media_type=MEDIA_TYPE
    )


def create_app(node: Node) -> Starlette:
    return TaxiiApp(node).application()


def app_from_environment() -> Starlette:
    """The application for the node in ``ALLIED_NODE`` (how uvicorn's worker processes
    start it: ``allied serve --workers N``)."""
    directory = os.environ.get("ALLIED_NODE")
    if not directory:
        raise RuntimeError("ALLIED_NODE names no node directory")
    return create_app(Node.open(Path(directory)))
