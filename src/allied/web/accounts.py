"""Local accounts of the node's own people, for the console: distinct from partners, who
hold API tokens and never log in here.

Passwords are kept as argon2id hashes only. A login is checked against the rate limit
before the password is: failed attempts are counted per account and per client address in
the store, so every serving process counts the same ones, and a limited account stays
limited even for the right password until the window has passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from allied.errors import AuthError, ConfigError, Conflict, LimitExceeded, NotFound
from allied.store import schema
from allied.store.store import Store, now

#: each role may do all that the ones before it may
ROLES = ("viewer", "analyst", "admin")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12
_A = schema.console_accounts
_F = schema.console_login_failures
_S = schema.console_sessions
_HASHER = PasswordHasher()
#: verified when the account does not exist, so that answer takes as long as a wrong password
_DUMMY = _HASHER.hash("not a password of anyone's")


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    created: str

    def may(self, role: str) -> bool:
        """Whether this account holds ``role`` or one above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class LoginLimit:
    """How many failed logins a window allows, per account and per client address."""

    attempts: int = 5
    window: timedelta = timedelta(minutes=15)

    @property
    def per_client(self) -> int:
        """A client may try a few accounts (a mistyped name) but not spray many."""
        return self.attempts * 4


def check_name(name: str) -> str:
    if _NAME.fullmatch(name) is None:
        raise ConfigError(
            f"account name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise ConfigError("the password begins or ends with white space")
    return password


class Accounts:
    def __init__(self, store: Store, limit: LoginLimit | None = None) -> None:
        self.store = store
        self.limit = limit or LoginLimit()

    def add(self, name: str, role: str, password: str) -> Account:
        check_name(name)
        check_role(role)
        check_password(password)
        account = Account(name, role, now())
        hashed = _HASHER.hash(password)
        with self.store.write() as writer:
            exists = writer.conn.execute(select(_A.c.name).where(_A.c.name == name)).first()
            if exists is not None:
                raise Conflict(f"account {name} exists already")
            writer.conn.execute(
                insert(_A).values(
                    name=name, role=role, password_hash=hashed, created=account.created
                )
            )
        return account

    def all(self) -> list[Account]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(_A.c.name, _A.c.role, _A.c.created).order_by(_A.c.name))
            return [Account(*row) for row in rows]

    def get(self, name: str) -> Account:
        for account in self.all():
            if account.name == name:
                return account
        raise NotFound(f"no account {name} (see 'allied user list')")

    def remove(self, name: str) -> None:
        """The account and every session it holds."""
        with self.store.write() as writer:
            gone = writer.conn.execute(delete(_A).where(_A.c.name == name)).rowcount
            writer.conn.execute(delete(_S).where(_S.c.account == name))
        if not gone:
            raise NotFound(f"no account {name} (see 'allied user list')")

    def set_password(self, name: str, password: str) -> None:
        """A new password ends every session the account holds."""
        check_password(password)
        hashed = _HASHER.hash(password)
        with self.store.write() as writer:
            changed = writer.conn.execute(
                update(_A).where(_A.c.name == name).values(password_hash=hashed)
            ).rowcount
            writer.conn.execute(delete(_S).where(_S.c.account == name))
        if not changed:
            raise NotFound(f"no account {name} (see 'allied user list')")

    def set_role(self, name: str, role: str) -> None:
        check_role(role)
        with self.store.write() as writer:
            changed = writer.conn.execute(
                update(_A).where(_A.c.name == name).values(role=role)
            ).rowcount
        if not changed:
            raise NotFound(f"no account {name} (see 'allied user list')")

    def login(self, name: str, password: str, client: str) -> Account:
        """The account, if ``password`` is its password and neither it nor ``client`` is
        over the limit; AuthError (the same for an unknown name) or LimitExceeded."""
        keys = (f"account:{name}", f"client:{client}")
        since = _stamp(datetime.now(UTC) - self.limit.window)
        with self.store.engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(_F.c.key, func.count())
                    .where(_F.c.key.in_(keys), _F.c.at > since)
                    .group_by(_F.c.key)
                ).all()
            )
            row = conn.execute(
                select(_A.c.name, _A.c.role, _A.c.created, _A.c.password_hash).where(
                    _A.c.name == name
                )
            ).first()
        if (
            counts.get(keys[0], 0) >= self.limit.attempts
            or counts.get(keys[1], 0) >= self.limit.per_client
        ):
            minutes = int(self.limit.window.total_seconds() // 60)
            raise LimitExceeded(f"too many failed logins: try again in up to {minutes} minutes")
        if row is not None and _verified(row.password_hash, password):
            if _HASHER.check_needs_rehash(row.password_hash):
                self._rehash(name, password)
            with self.store.write() as writer:
                writer.conn.execute(delete(_F).where(_F.c.key == keys[0]))
            return Account(row.name, row.role, row.created)
        if row is None:
            _verified(_DUMMY, password)
        with self.store.write() as writer:
            writer.conn.execute(delete(_F).where(_F.c.at <= since))
            writer.conn.execute(insert(_F), [{"key": key, "at": now()} for key in keys])
        raise AuthError("wrong account name or password")

    def _rehash(self, name: str, password: str) -> None:
        with self.store.write() as writer:
            writer.conn.execute(
                update(_A).where(_A.c.name == name).values(password_hash=_HASHER.hash(password))
            )


def _verified(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
