"""Which database a store URL names, how it is shown, and how it is reached.

Operators write PostgreSQL URLs the way libpq and every other tool spells them
(``postgresql://user@host:5432/name``); SQLAlchemy would read that as the psycopg2 driver,
which Allied does not ship. The driver is chosen here, once, for every caller. A URL may carry
a password (from ``ALLIED_DATABASE_URL``): it is never shown, in errors, logs or output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from allied.errors import ConfigError

POSTGRESQL = "postgresql"
_PSYCOPG = "postgresql+psycopg"
_DRIVERS = {"sqlite": "sqlite", "postgresql": _PSYCOPG, "postgres": _PSYCOPG}
_KEY = "database"
#: query parameters libpq takes a secret from, besides the URL's own password
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def parse(url: str) -> URL:
    """``url`` with Allied's driver for its database; a ConfigError names what is wrong."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # not repeated: a URL that does not parse may still hold a password
        raise ConfigError(
            "database: not a database URL (expected empty for the node's SQLite file, "
            "or postgresql://USER@HOST:PORT/NAME)",
            key=_KEY,
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise ConfigError(
            f"database {shown(parsed)}: the {backend!r} database is not supported "
            "(use PostgreSQL, postgresql://USER@HOST:PORT/NAME, or SQLite)",
            key=_KEY,
        )
    if backend == "postgres" or (backend == POSTGRESQL and driver in ("", "psycopg2")):
        parsed = parsed.set(drivername=_DRIVERS[backend])
    if parsed.get_backend_name() == POSTGRESQL and not parsed.database:
        raise ConfigError(
            f"database {shown(parsed)}: name the database (postgresql://USER@HOST:PORT/NAME)",
            key=_KEY,
        )
    return parsed


def shown(url: URL | str) -> str:
    """The URL as it may be printed: the password, if any, masked, and any secret given as
    a query parameter too."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "(not a database URL)"
    secrets = {key: "***" for key in url.query if key.lower() in _SECRET_PARAMETERS}
    if secrets:
        url = url.update_query_dict(secrets)
    return url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def engine_options(url: URL) -> dict[str, Any]:
    """How Allied connects. PostgreSQL compiles a query to machine code when its estimated
    cost is high, and the release filters of a TAXII page (correlated subqueries per row)
    are estimated high though they run in milliseconds: compiling took 20 ms of a 35 ms
    page. Allied's queries are short, so the JIT is off for its connections.

    A failed statement's error leaves its parameters out: they may be a session's token
    hash or an object's text, and errors end up in logs."""
    if url.get_backend_name() == POSTGRESQL:
        return {"hide_parameters": True, "connect_args": {"options": "-c jit=off"}}
    return {"hide_parameters": True}


def same(first: str, second: str) -> bool:
    """Whether two URLs name the same store as far as their text tells: SQLite files by
    their resolved path. (Two spellings of one PostgreSQL server are caught when the copy
    finds its target locked by its source.)"""
    a, b = parse(first), parse(second)
    if a.get_backend_name() == b.get_backend_name() == "sqlite" and a.database and b.database:
        return Path(a.database).resolve() == Path(b.database).resolve()
    return a == b


def has_password(url: str) -> bool:
    """Whether ``url`` carries a secret: a password, or a query parameter libpq takes one
    from (``?password=``)."""
    parsed = parse(url)
    return bool(parsed.password) or any(key.lower() in _SECRET_PARAMETERS for key in parsed.query)


def unreachable(url: URL, error: BaseException) -> ConfigError:
    """The error an operator gets when the database cannot be reached: the server's own
    reason (which never carries the password), without the driver's traceback."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = reason[0] if reason else type(error).__name__
    return ConfigError(f"database {shown(url)}: cannot connect ({first})", key=_KEY)
