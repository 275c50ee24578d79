"""A peer node's TAXII API and ledger endpoints, as this node's sync needs them.

Every failure (refused connection, timeout, an HTTP error, a body that is not what TAXII
says) is a :class:`RemoteError` with a message naming the peer and the request: the sync
records it, backs off and tries again later. The token is sent, never logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from allied.errors import AlliedError
from allied.integrity.ledger import TreeHead
from allied.integrity.signing import SignatureError

TAXII = "application/taxii+json;version=2.1"


class RemoteError(AlliedError):
    """The peer could not be reached, or answered with something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: the peer's HTTP status, when it answered with an error
        self.status = status


@dataclass(frozen=True)
class Page:
    objects: list[Any]
    #: X-TAXII-Date-Added-Last: when the page's last object was added at the peer
    last_added: str | None
    more: bool
    next: str | None


class Remote:
    """One peer, through one HTTP client (closed with the remote)."""

    def __init__(self, name: str, url: str, token: str, *, timeout: float) -> None:
        self.name = name
        self.url = url
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "Accept": TAXII},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _get(self, path: str, params: Any = None) -> httpx.Response:
        try:
            response = self._client.get(path, params=params)
        except httpx.TimeoutException:
            raise RemoteError(f"peer {self.name}: GET {path}: timed out") from None
        except httpx.HTTPError as error:
            raise RemoteError(f"peer {self.name}: GET {path}: {error}") from None
        if response.status_code != 200:
            detail = ""
            try:
                body = orjson.loads(response.content)
                if isinstance(body, dict):
                    detail = f": {body.get('title', '')} {body.get('description', '')}".rstrip()
            except orjson.JSONDecodeError:
                pass
            raise RemoteError(
                f"peer {self.name}: GET {path}: HTTP {response.status_code}{detail}",
                response.status_code,
            )
        return response

    def _json(self, path: str, params: Any = None) -> Any:
        response = self._get(path, params)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise RemoteError(f"peer {self.name}: GET {path}: not JSON ({error})") from None

    def head(self) -> TreeHead:
        """The peer's latest signed tree head, not yet verified."""
        body = self._json("ledger/head")
        try:
            return TreeHead.from_dict(body, source=f"peer {self.name}: tree head")
        except SignatureError as error:
            raise RemoteError(error.message) from None

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        body = self._json("ledger/consistency", {"first": first, "second": second})
        if not isinstance(body, dict):
            raise RemoteError(f"peer {self.name}: a consistency proof is not a JSON object")
        return body

    def post(self, collection_url: str, body: bytes) -> dict[str, Any]:
        """POST an envelope (already JSON) to a collection; the peer's status resource."""
        path = urljoin(collection_url, "objects/")
        try:
            response = self._client.post(path, content=body, headers={"Content-Type": TAXII})
        except httpx.TimeoutException:
            raise RemoteError(f"peer {self.name}: POST {path}: timed out") from None
        except httpx.HTTPError as error:
            raise RemoteError(f"peer {self.name}: POST {path}: {error}") from None
        if response.status_code != 202:
            raise RemoteError(
                f"peer {self.name}: POST {path}: HTTP {response.status_code}",
                response.status_code,
            )
        try:
            status = orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise RemoteError(f"peer {self.name}: a status is not JSON ({error})") from None
        if not isinstance(status, dict):
            raise RemoteError(f"peer {self.name}: a status is not a JSON object")
        return status

    def post_json(self, path: str, document: Any) -> Any:
        """POST a JSON document to one of the peer's endpoints beside TAXII (blind
        matching); its JSON answer, or :class:`RemoteError` with the peer's reason."""
        try:
            response = self._client.post(
                path, content=orjson.dumps(document), headers={"Content-Type": TAXII}
            )
        except httpx.TimeoutException:
            raise RemoteError(f"peer {self.name}: POST {path}: timed out") from None
        except httpx.HTTPError as error:
            raise RemoteError(f"peer {self.name}: POST {path}: {error}") from None
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise RemoteError(f"peer {self.name}: POST {path}: not JSON ({error})") from None
        if response.status_code != 200:
            detail = f"{body.get('title', '')}: {body.get('description', '')}" if isinstance(
                body, dict) else ""  # fmt: skip
            raise RemoteError(
                f"peer {self.name}: POST {path}: HTTP {response.status_code} {detail}".rstrip(),
                response.status_code,
            )
        return body

    def peer_head(self, signer: str) -> TreeHead | None:
        """The latest head the peer verified of another node ``signer`` (not yet verified
        here), or None if it has none."""
        try:
            body = self._json("ledger/peers", {"signer": signer})
        except RemoteError as error:
            if error.status == 404:
                return None
            raise
        try:
            return TreeHead.from_dict(body, source=f"peer {self.name}: head of {signer}")
        except SignatureError as error:
            raise RemoteError(error.message) from None

    def withdrawn(self, after: str | None) -> list[tuple[str, str]]:
        """(id, when) of what the peer may no longer release to this node, since ``after``."""
        body = self._json("federation/withdrawn", {"added_after": after} if after else None)
        entries = body.get("withdrawn") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(
                e.get("withdrawn"), str) for e in entries
        ):  # fmt: skip
            raise RemoteError(f"peer {self.name}: a withdrawal notice is malformed")
        return [(e["id"], e["withdrawn"]) for e in entries]

    def collection_url(self, collection_id: str) -> str:
        """The collection's URL under the peer's default API root (from discovery)."""
        discovery = self._json("taxii2/")
        root = discovery.get("default") if isinstance(discovery, dict) else None
        if not isinstance(root, str):
            raise RemoteError(f"peer {self.name}: discovery names no default API root")
        # only the path counts: the token goes to the peer this node was told of, whatever
        # host a discovery answer (or a proxy rewriting it) names
        url = urljoin(urljoin(self.url, urlsplit(root).path), f"collections/{collection_id}/")
        if _origin(url) != _origin(self.url):
            raise RemoteError(f"peer {self.name}: its API root {root!r} is on another host")
        self._json(url)  # the collection exists and this node may read it
        return url

    def object_versions(self, collection_url: str, object_id: str) -> list[Any]:
        """Every version of one object the peer gives this node; none if it gives none."""
        url = urljoin(collection_url, f"objects/{object_id}/")
        try:
            body = self._json(url, {"match[version]": "all"})
        except RemoteError as error:
            if error.status == 404:
                return []
            raise
        objects = body.get("objects", []) if isinstance(body, dict) else None
        if not isinstance(objects, list):
            raise RemoteError(f"peer {self.name}: GET {url}: not a TAXII envelope")
        return objects

    def pages(
        self, collection_url: str, *, added_after: str | None, resume: str | None, limit: int
    ) -> Iterator[Page]:
        """Every object version added after ``added_after`` (or from the ``next`` token
        ``resume``), a page at a time, oldest first. The next page is fetched while the
        caller works on this one: the peer answers while this node verifies and stores."""
        url = urljoin(collection_url, "objects/")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch") as fetcher:
            page = self._page(url, added_after, resume, limit)
            while True:
                ahead = (
                    fetcher.submit(self._page, url, None, page.next, limit) if page.more else None
                )
                yield page
                if ahead is None:
                    return
                page = ahead.result()

    def _page(self, url: str, added_after: str | None, after: str | None, limit: int) -> Page:
        params: dict[str, Any] = {"limit": limit, "match[version]": "all"}
        if after is not None:
            params["next"] = after
        elif added_after is not None:
            params["added_after"] = added_after
        response = self._get(url, params)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise RemoteError(f"peer {self.name}: a page is not JSON ({error})") from None
        objects = body.get("objects", []) if isinstance(body, dict) else None
        if not isinstance(objects, list):
            raise RemoteError(f"peer {self.name}: a page is not a TAXII envelope")
        more = bool(body.get("more"))
        token = body.get("next")
        if more and not isinstance(token, str):
            raise RemoteError(f"peer {self.name}: a page says more but gives no next")
        return Page(
            objects,
            response.headers.get("X-TAXII-Date-Added-Last"),
            more,
            token if more else None,
        )


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port
