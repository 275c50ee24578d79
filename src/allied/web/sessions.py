"""Console sessions: a random cookie per login, known to the store only by its SHA-256.

A session is made only by a successful login, and each login makes a new one, so a cookie
planted before the login (session fixation) never becomes a logged-in session. Each session
carries its own CSRF token, which every form posts back. Sessions end when idle too long,
when too old, at logout, and when their account's password changes or the account goes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update

from allied.store import schema
from allied.store.store import Store, now, stamp
from allied.web.accounts import Account

_S = schema.console_sessions
_A = schema.console_accounts
#: how stale ``last_seen`` may get before a request writes it again (a write per page view
#: would make every click wait for the writers' turn)
_TOUCH = timedelta(minutes=1)


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str
    token_hash: str

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Sessions:
    def __init__(self, store: Store, *, idle: timedelta, lifetime: timedelta) -> None:
        self.store = store
        self.idle = idle
        self.lifetime = lifetime

    def open(self, account: Account, replacing: str | None = None) -> tuple[str, Session]:
        """A new session for ``account``: the cookie value (shown once) and the session.
        The session of cookie ``replacing`` (the browser's before this login) ends, and so
        does every session past its time, which nobody would otherwise remove."""
        token = secrets.token_urlsafe(32)
        session = Session(account, secrets.token_urlsafe(32), _hash(token))
        opened = now()
        current = datetime.now(UTC)
        with self.store.write() as writer:
            writer.conn.execute(
                delete(_S).where(
                    or_(
                        _S.c.last_seen < stamp(current - self.idle),
                        _S.c.created < stamp(current - self.lifetime),
                        _S.c.token_hash == _hash(replacing or ""),
                    )
                )
            )
            writer.conn.execute(
                insert(_S).values(
                    token_hash=session.token_hash,
                    account=account.name,
                    csrf=session.csrf,
                    created=opened,
                    last_seen=opened,
                )
            )
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session of cookie ``token``; an expired one is removed."""
        if not token or len(token) > 200:
            return None
        digest = _hash(token)
        query = (
            select(_S.c.csrf, _S.c.created, _S.c.last_seen, _A.c.name, _A.c.role, _A.c.created)
            .join(_A, _A.c.name == _S.c.account)
            .where(_S.c.token_hash == digest)
        )
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        csrf, created, last_seen, name, role, account_created = row
        current = datetime.now(UTC)
        if current - _parse(created) > self.lifetime or current - _parse(last_seen) > self.idle:
            self._delete(digest)
            return None
        if current - _parse(last_seen) > _TOUCH:
            with self.store.write() as writer:
                writer.conn.execute(
                    update(_S).where(_S.c.token_hash == digest).values(last_seen=now())
                )
        return Session(Account(name, role, account_created), csrf, digest)

    def close(self, session: Session) -> None:
        self._delete(session.token_hash)

    def _delete(self, digest: str) -> None:
        with self.store.write() as writer:
            writer.conn.execute(delete(_S).where(_S.c.token_hash == digest))
