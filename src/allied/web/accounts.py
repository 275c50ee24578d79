"""Local accounts of the node's own people, for the console: distinct from partners, who
hold API tokens and never log in here.

Passwords are kept as argon2id hashes only. A login is checked against the rate limit
before the password is: failed attempts are counted per account and per client address in
the store, so every serving process counts the same ones, and a limited account stays
limited even for the right password until the window has passed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, or_, select, update

from allied.errors import AuthError, ConfigError, Conflict, LimitExceeded, NotFound
from allied.store import schema
from allied.store.store import Store, now, stamp

#: each role may do all that the ones before it may
ROLES = ("viewer", "analyst", "admin")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12
_A = schema.console_accounts
_F = schema.console_login_failures
_S = schema.console_sessions
_HASHER = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verified when the account does not exist, so that answer takes as long as a wrong
    password; made once per process when accounts are first used (see Accounts), not at
    import, which every command line start would pay 0.1 s for."""
    return _HASHER.hash("not a password of anyone's")


class Busy(LimitExceeded):
    """Too many logins being checked at this moment (not too many failures)."""


@dataclass(frozen=True)
class Attempt:
    """A login attempt counted against its limits (see Accounts.begin)."""

    #: None for a name no account can have
    name: str | None
    keys: tuple[str, ...]
    #: the failure rows counted for it, taken back on success
    reserved: tuple[int, ...]


def client_key(address: str) -> str:
    """What the limit counts a client by: its address, or for IPv6 its /64 network (one
    host commonly holds all of one)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


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
    """How many failed logins a window allows.

    ``attempts`` for one account from one client: past them that client is refused even
    the right password, but the account's owner elsewhere is not (anyone could otherwise
    lock out any account). Ten times as many for one account from all clients together (a
    guess spread over many addresses), and four times as many for one client over all
    accounts (it may mistype a name, not spray many)."""

    attempts: int = 5
    window: timedelta = timedelta(minutes=15)

    @property
    def per_client(self) -> int:
        return self.attempts * 4

    @property
    def per_account(self) -> int:
        return self.attempts * 10


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
        _dummy()  # made now, not by the first login with an unknown name (it would be slower)

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
            writer.conn.execute(delete(_F).where(_failures_of(name)))
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
        """:meth:`begin` and :meth:`check` at once (the console spaces its checks out
        between the two, see allied.web.app)."""
        return self.check(self.begin(name, client), password)

    def begin(self, name: str, client: str) -> Attempt:
        """An attempt to log in, counted as a failure before its password is checked: in the
        write transaction that checks the counts, so attempts made at once cannot all pass
        the limit (LimitExceeded). A success takes it back."""
        valid = _NAME.fullmatch(name) is not None
        keys = [f"client:{client_key(client)}"]
        if valid:  # a name no account can have is counted against the client alone
            keys += [f"account:{name}", f"pair:{name} {client_key(client)}"]
        return Attempt(name if valid else None, tuple(keys), tuple(self._count_attempt(keys)))

    def check(self, attempt: Attempt, password: str) -> Account:
        """The account, if ``password`` is its password; AuthError otherwise, the same for
        a name no account has (which costs as long)."""
        if attempt.name is None:
            raise AuthError("wrong account name or password")
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(_A.c.name, _A.c.role, _A.c.created, _A.c.password_hash).where(
                    _A.c.name == attempt.name
                )
            ).first()
        if row is None:
            _verified(_dummy(), password)
            raise AuthError("wrong account name or password")
        if not _verified(row.password_hash, password):
            raise AuthError("wrong account name or password")
        with self.store.write() as writer:
            writer.conn.execute(
                delete(_F).where(
                    or_(_F.c.seq.in_(attempt.reserved), _F.c.key.in_(attempt.keys[1:]))
                )
            )
        if _HASHER.check_needs_rehash(row.password_hash):
            self._rehash(row.name, password)
        return Account(row.name, row.role, row.created)

    def abandon(self, attempt: Attempt) -> None:
        """An attempt whose password was never checked is no failure."""
        with self.store.write() as writer:
            writer.conn.execute(delete(_F).where(_F.c.seq.in_(attempt.reserved)))

    def _count_attempt(self, keys: list[str]) -> list[int]:
        """Check the limits of ``keys`` and count one more failure for each, at once;
        returns the new rows' numbers (a success deletes them)."""
        since = stamp(datetime.now(UTC) - self.limit.window)
        limits = {"client": self.limit.per_client, "account": self.limit.per_account,
                  "pair": self.limit.attempts}  # fmt: skip
        with self.store.write() as writer:
            conn = writer.conn
            conn.execute(delete(_F).where(_F.c.at <= since))
            counted = select(_F.c.key, func.count()).where(_F.c.key.in_(keys)).group_by(_F.c.key)
            counts: dict[str, int] = {key: int(n) for key, n in conn.execute(counted)}
            if any(counts.get(key, 0) >= limits[key.split(":")[0]] for key in keys):
                minutes = int(self.limit.window.total_seconds() // 60)
                raise LimitExceeded(f"too many failed logins: try again in up to {minutes} minutes")
            at, numbers = now(), []
            for key in keys:
                inserted = conn.execute(insert(_F).values(key=key, at=at)).inserted_primary_key
                assert inserted is not None
                numbers.append(int(inserted[0]))
            return numbers

    def unlock(self, name: str, client: str | None = None) -> int:
        """Forget the account's failed logins (from every client), and with ``client``
        every failed login of that client address too (a shared address that mistyped
        names); how many attempts were forgotten."""
        self.get(name)
        which = _failures_of(name)
        counted = _F.c.key == f"account:{name}"
        if client is not None:
            key = f"client:{client_key(client)}"
            which, counted = or_(which, _F.c.key == key), or_(counted, _F.c.key == key)
        with self.store.write() as writer:
            attempts = writer.conn.execute(select(func.count()).where(counted)).scalar_one()
            writer.conn.execute(delete(_F).where(which))
        return int(attempts)

    def _rehash(self, name: str, password: str) -> None:
        with self.store.write() as writer:
            writer.conn.execute(
                update(_A).where(_A.c.name == name).values(password_hash=_HASHER.hash(password))
            )


def _failures_of(name: str) -> Any:
    return or_(_F.c.key == f"account:{name}", _F.c.key.startswith(f"pair:{name} ", autoescape=True))


def _verified(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
