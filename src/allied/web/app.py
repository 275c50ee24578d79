"""The HTTP layer of the analyst console (Starlette, mounted by the TAXII app under ``/ui``):
logins and sessions, CSRF, roles, security headers and the access log around plain page
functions (:mod:`allied.web.overview`, :mod:`.search`, :mod:`.detail`, :mod:`.authoring`).

Every page but the login form needs a session; every POST needs the session's CSRF token
(and, when the browser names one, this site as its Origin). Templates are Jinja2 with
autoescaping on, and pages are served with a Content-Security-Policy that allows no inline
script or style: STIX text is partners' input, and none of it may ever run.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from allied.errors import AlliedError, AuthError, LimitExceeded, NotFound
from allied.node import Node
from allied.stix.checks import IDENTIFIER
from allied.web import authoring, detail
from allied.web.accounts import Account, Accounts, Busy, LoginLimit
from allied.web.overview import overview
from allied.web.search import (
    Filters,
    label_choices,
    object_types,
    own_label_choices,
    search,
)
from allied.web.sessions import Session, Sessions

access_log = logging.getLogger("allied.access")
error_log = logging.getLogger("allied.taxii")

PREFIX = "/ui"
SESSION_COOKIE = "allied_session"
LOGIN_COOKIE = "allied_login"
_HERE = Path(__file__).parent
#: password checks (argon2id: 64 MiB, a tenth of a second) one process runs at once, and
#: how long a login waits for one
CHECKS_AT_ONCE = 2
CHECK_WAIT = 5.0
#: a form body larger than this is refused before it is parsed (a report's text fits)
MAX_FORM_BYTES = 256 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class _Static(StaticFiles):
    """The console's stylesheet and scripts, and nothing else of the folder."""

    async def get_response(self, path: str, scope: Any) -> Response:
        if not path.endswith((".css", ".js")):
            return Response("no such file", 404, _HEADERS, media_type="text/plain")
        response = await super().get_response(path, scope)
        response.headers.update({**_HEADERS, "Cache-Control": "no-cache"})
        return response


class Forbidden(AlliedError):
    http_status = 403


class BadForm(AlliedError):
    """A POST body that is not a form of a sensible size."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status


@dataclass(frozen=True)
class Page:
    """What a page function returns: a template and its values, or a redirect."""

    template: str = ""
    values: dict[str, Any] | None = None
    status: int = 200
    redirect: str | None = None
    json: Any = None
    #: the response also deletes the session cookie (logout)
    forget: bool = False


Handler = Callable[[Request, Session], Awaitable[Page]]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda stamp: (stamp or "")[:19].replace("T", " ")
    return env


class Console:
    def __init__(self, node: Node) -> None:
        self.node = node
        setting = node.config.setting
        self.accounts = Accounts(
            node.store,
            LoginLimit(
                int(setting("console_login_attempts")),
                timedelta(minutes=int(setting("console_login_window_minutes"))),
            ),
        )
        self.sessions = Sessions(
            node.store,
            idle=timedelta(minutes=int(setting("console_idle_minutes"))),
            lifetime=timedelta(hours=int(setting("console_session_hours"))),
        )
        self.env = _environment()
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)

    def application(self) -> Starlette:
        def page(path: str, handler: Handler, methods: list[str], role: str = "viewer") -> Route:
            return Route(path, self._endpoint(handler, role), methods=methods)

        routes = [
            Route("/login", self._login, methods=["GET", "POST"]),
            page("/logout", self.logout, ["POST"]),
            page("/", self.dashboard, ["GET"]),
            page("/search", self.search, ["GET"]),
            page("/objects/{object_id}", self.object, ["GET"]),
            page("/objects/{object_id}/graph.json", self.graph, ["GET"]),
            page("/partners", self.partners, ["GET"]),
            page("/journal", self.journal, ["GET"]),
            page("/new/indicator", self.new_indicator, ["GET", "POST"], role="analyst"),
            page("/new/report", self.new_report, ["GET", "POST"], role="analyst"),
            page("/accounts", self.account_list, ["GET"], role="admin"),
            Mount("/static", _Static(directory=_HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    # -- rendering -------------------------------------------------------------------------

    def _render(self, request: Request, page: Page, session: Session | None) -> Response:
        if page.redirect is not None:
            response = RedirectResponse(page.redirect, status_code=303, headers=_HEADERS)
            if page.forget:
                response.delete_cookie(
                    SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict"
                )
            return response
        if page.json is not None:
            return Response(
                orjson.dumps(page.json), page.status, _HEADERS, media_type="application/json"
            )
        values = dict(page.values or {})
        values.setdefault("error", None)
        values.update(
            session=session,
            account=session.account if session else None,
            csrf=session.csrf if session else "",
            node_name=self.node.config.name,
            path=request.url.path,
        )
        body = self.env.get_template(page.template).render(values)
        return HTMLResponse(body, page.status, _HEADERS)

    def _error_page(
        self, request: Request, status: int, message: str, session: Session | None
    ) -> Response:
        page = Page("error.html", {"status": status, "message": message}, status=status)
        return self._render(request, page, session)

    # -- the wrapper of every page but the login form --------------------------------------

    def _endpoint(self, handler: Handler, role: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            session: Session | None = None
            try:
                token = request.cookies.get(SESSION_COOKIE)
                session = await run_in_threadpool(self.sessions.find, token)
                if session is None:
                    response = self._to_login(request)
                elif not session.account.may(role):
                    response = self._error_page(
                        request, 403, f"this page needs the {role} role", session
                    )
                else:
                    if request.method == "POST":
                        await self._check_post(request, session)
                    response = self._render(request, await handler(request, session), session)
            except Forbidden as error:
                response = self._error_page(request, 403, error.message, session)
            except AlliedError as error:
                status = error.http_status if 400 <= error.http_status < 500 else 400
                response = self._error_page(request, status, error.message, session)
            except Exception:
                error_id = uuid.uuid4().hex[:16]
                error_log.error("console request %s failed:\n%s", error_id, traceback.format_exc())
                response = self._error_page(
                    request, 500, f"the page could not be made; quote error id {error_id}", session
                )
            self._log(request, session.account.name if session else None, response, started)
            return response

        return endpoint

    def _to_login(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD") or request.headers.get("hx-request"):
            return Response("log in first", 401, _HEADERS, media_type="text/plain")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303, headers=_HEADERS
        )

    async def _check_post(self, request: Request, session: Session) -> None:
        _same_origin(request)
        form = await _form(request)
        request.state.form = form
        sent = form.get("csrf")
        if not isinstance(sent, str) or not session.csrf_matches(sent):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        messages = {404: "no such page", 405: "that method is not allowed here"}
        message = messages.get(status, "the request could not be handled")
        response = Response(message, status, _HEADERS, media_type="text/plain")
        if status == 405 and isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        return response

    def _log(
        self, request: Request, account: str | None, response: Response, started: float
    ) -> None:
        """One JSON line per request, like the API's; never a cookie, header or form."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        access_log.info(
            orjson.dumps(
                {
                    "client": request.client.host if request.client else None,
                    "account": account,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                }
            ).decode()
        )

    # -- logging in and out ----------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        started = time.perf_counter()
        account: Account | None = None
        target = _local_target(request.query_params.get("next"))
        try:
            if request.method == "POST":
                response, account = await self._log_in(request, target)
            else:
                response = self._login_form(request, target, None, 200)
        except Exception:
            error_id = uuid.uuid4().hex[:16]
            error_log.error("console login %s failed:\n%s", error_id, traceback.format_exc())
            message = f"the login could not be handled; quote error id {error_id}"
            response = self._error_page(request, 500, message, None)
        self._log(request, account.name if account else None, response, started)
        return response

    def _login_form(
        self, request: Request, target: str, error: str | None, status: int
    ) -> Response:
        """The form, with a fresh login token in a cookie and in the form (double submit):
        a page elsewhere cannot post a login for its own account in this browser."""
        token = secrets.token_urlsafe(24)
        page = Page("login.html", {"next": target, "login_token": token, "error": error}, status)
        response = self._render(request, page, None)
        response.set_cookie(
            LOGIN_COOKIE, token, max_age=1800, path=f"{PREFIX}/login", httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def _log_in(self, request: Request, target: str) -> tuple[Response, Account | None]:
        try:
            _same_origin(request)
            form = await _form(request)
        except AlliedError as error:
            return self._login_form(request, target, error.message, error.http_status), None
        sent, kept = form.get("login_token"), request.cookies.get(LOGIN_COOKIE)
        if (
            not isinstance(sent, str)
            or not kept
            or not hmac.compare_digest(sent.encode(), kept.encode())
        ):
            message = "the login form expired or came from elsewhere: try again"
            return self._login_form(request, target, message, 403), None
        name, password = form.get("name"), form.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name:
            return self._login_form(
                request, target, "enter an account name and password", 400
            ), None
        client = request.client.host if request.client else "-"
        try:
            account = await self._check_login(name, password, client)
        except OperationalError:  # the store's writer was busy past the lock's timeout
            message = "the node is busy writing: try again in a moment"
            return self._login_form(request, target, message, 503), None
        except (AuthError, LimitExceeded) as error:
            response = self._login_form(request, target, error.message, error.http_status)
            if isinstance(error, LimitExceeded):
                wait = 1 if isinstance(error, Busy) else self.accounts.limit.window.total_seconds()
                response.headers["Retry-After"] = str(int(wait))
            return response, None
        token, _session = await run_in_threadpool(
            self.sessions.open, account, request.cookies.get(SESSION_COOKIE)
        )
        response = RedirectResponse(target, status_code=303, headers=_HEADERS)
        response.set_cookie(
            SESSION_COOKIE, token, path=PREFIX, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
        return response, account

    async def _check_login(self, name: str, password: str, client: str) -> Account:
        """Count the attempt, then check the password when one of CHECKS_AT_ONCE slots is
        free: an attempt over its limit never waits for one, and waiting happens here on
        the event loop, not in a worker thread, so a burst of logins neither makes argon2
        use gigabytes nor starves the API partners use. An attempt that waits longer than
        CHECK_WAIT seconds is turned away uncounted (429, retry)."""
        attempt = await run_in_threadpool(self.accounts.begin, name, client)
        try:
            await asyncio.wait_for(self._checks.acquire(), CHECK_WAIT)
        except TimeoutError:
            await run_in_threadpool(self.accounts.abandon, attempt)
            raise Busy("the node is checking other logins: try again in a moment") from None
        try:
            return await run_in_threadpool(self.accounts.check, attempt, password)
        finally:
            self._checks.release()

    async def logout(self, request: Request, session: Session) -> Page:
        await run_in_threadpool(self.sessions.close, session)
        return Page(redirect=f"{PREFIX}/login", forget=True)

    # -- pages -----------------------------------------------------------------------------

    async def dashboard(self, request: Request, session: Session) -> Page:
        seen = await run_in_threadpool(overview, self.node)
        return Page("dashboard.html", {"o": seen})

    async def search(self, request: Request, session: Session) -> Page:
        filters = Filters.parse(request.query_params)
        results = await run_in_threadpool(search, self.node.store, filters)
        values = {
            "results": results,
            "f": filters,
            "labels": label_choices(self.node.store),
            "types": object_types(self.node.store),
            "originators": self._originators(),
        }
        partial = request.headers.get("hx-request") == "true"
        return Page("results.html" if partial else "search.html", values)

    def _originators(self) -> list[tuple[str, str]]:
        config = self.node.config
        found = [(config.identity_id, f"{config.name} (this node)")]
        return found + [(p.identity_id, p.name) for p in self.node.partners()]

    async def object(self, request: Request, session: Session) -> Page:
        object_id = _object_id(request.path_params["object_id"])

        def gather() -> dict[str, Any]:
            return {
                "d": detail.describe(self.node, object_id),
                "receivers": detail.receivers(self.node, object_id),
                "bars": detail.sightings(self.node, object_id),
                "releases": self.node.store.releases(object_id=object_id, limit=50),
            }

        values = await run_in_threadpool(gather)
        values["json_text"] = orjson.dumps(values["d"].data, option=orjson.OPT_INDENT_2).decode()
        return Page("object.html", values)

    async def graph(self, request: Request, session: Session) -> Page:
        object_id = _object_id(request.path_params["object_id"])
        return Page(json=await run_in_threadpool(detail.graph, self.node, object_id))

    async def partners(self, request: Request, session: Session) -> Page:
        from allied.federation.status import status

        def gather() -> dict[str, Any]:
            return {"partners": self.node.partners(), "peers": status(self.node)}

        return Page("partners.html", await run_in_threadpool(gather))

    async def journal(self, request: Request, session: Session) -> Page:
        partner = request.query_params.get("partner", "").strip() or None
        object_id = request.query_params.get("object", "").strip() or None
        if object_id is not None and IDENTIFIER.match(object_id) is None:
            raise BadForm(f"object {object_id[:80]!r}: not a STIX id (type--UUID)", 400)
        if partner is not None:
            self.node.partner(partner)  # an unknown name is a 404, not an empty page
        rows = await run_in_threadpool(
            lambda: self.node.store.releases(partner=partner, object_id=object_id, limit=500)
        )
        names = [p.name for p in self.node.partners()]
        return Page("journal.html", {"rows": rows, "partner": partner or "",
                                     "object_id": object_id or "", "names": names})  # fmt: skip

    async def new_indicator(self, request: Request, session: Session) -> Page:
        return await self._author(request, authoring.indicator, "new_indicator.html")

    async def new_report(self, request: Request, session: Session) -> Page:
        return await self._author(request, authoring.report, "new_report.html")

    async def _author(
        self,
        request: Request,
        make: Callable[[Node, dict[str, str]], authoring.Draft],
        template: str,
    ) -> Page:
        values: dict[str, Any] = {
            "labels": own_label_choices(self.node.store),
            "indicator_types": authoring.INDICATOR_TYPES,
            "report_types": authoring.REPORT_TYPES,
            "form": {},
            "errors": {},
        }
        if request.method == "POST":
            form = {k: v for k, v in request.state.form.items() if isinstance(v, str)}
            draft = await run_in_threadpool(make, self.node, form)
            if draft.object_id is not None:
                return Page(redirect=f"{PREFIX}/objects/{quote(draft.object_id)}")
            values.update(form=form, errors=draft.errors)
            return Page(template, values, status=422)
        return Page(template, values)

    async def account_list(self, request: Request, session: Session) -> Page:
        return Page("accounts.html", {"accounts": await run_in_threadpool(self.accounts.all)})


def _object_id(value: str) -> str:
    """A path's object id: one that cannot be a STIX id is no object of this node's."""
    if IDENTIFIER.match(value) is None:
        raise NotFound(f"no object {value[:80]!r} in this node")
    return value


def _local_target(value: str | None) -> str:
    """Where to go after logging in: a console path only, never another site."""
    default = f"{PREFIX}/"
    if not value or not value.startswith(f"{PREFIX}/") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return default
    return value


def _same_origin(request: Request) -> None:
    """A browser names the page a POST came from; it must be this site."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser, or one that sends no Origin for same-site forms
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        raise Forbidden(f"a form posted from {origin[:80]} is not accepted here")


async def _form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise BadForm(f"a form of at most {MAX_FORM_BYTES} bytes is expected", 413)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadForm("expected a form (application/x-www-form-urlencoded)", 415)
    try:
        return await request.form(max_files=0, max_fields=50)
    except HTTPException as error:  # more fields or parts than a console form has
        raise BadForm(f"the form could not be read: {error.detail}", 400) from None


def console_app(node: Node) -> Starlette:
    return Console(node).application()
