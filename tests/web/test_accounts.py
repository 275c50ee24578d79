"""Console accounts and sessions on a real store: argon2id hashes, the login rate limit
counted in the store, and sessions that end when they should."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from allied.errors import AuthError, ConfigError, Conflict, LimitExceeded, NotFound
from allied.node import Node
from allied.store import schema
from allied.web.accounts import Accounts, LoginLimit
from allied.web.sessions import Sessions

PASSWORD = "long enough password"


def test_an_account_keeps_an_argon2id_hash_never_the_password(node: Node) -> None:
    accounts = Accounts(node.store)
    added = accounts.add("ann", "analyst", PASSWORD)
    assert added.role == "analyst"
    with node.store.engine.connect() as conn:
        stored = conn.execute(select(schema.console_accounts.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert accounts.login("ann", PASSWORD, "127.0.0.1").name == "ann"


@pytest.mark.parametrize(
    ("name", "role", "password", "expected"),
    [
        ("", "viewer", PASSWORD, "account name"),
        ("ann smith", "viewer", PASSWORD, "account name"),
        ("-ann", "viewer", PASSWORD, "account name"),
        ("ann", "owner", PASSWORD, "role 'owner'"),
        ("ann", "viewer", "short", "too short"),
        ("ann", "viewer", f" {PASSWORD}", "white space"),
    ],
)
def test_bad_accounts_are_refused_with_the_reason(
    node: Node, name: str, role: str, password: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        Accounts(node.store).add(name, role, password)
    assert Accounts(node.store).all() == []


def test_an_account_name_is_taken_once(node: Node) -> None:
    accounts = Accounts(node.store)
    accounts.add("ann", "viewer", PASSWORD)
    with pytest.raises(Conflict, match="exists already"):
        accounts.add("ann", "admin", PASSWORD + "!")
    assert [a.role for a in accounts.all()] == ["viewer"]


def test_a_wrong_password_and_an_unknown_name_fail_alike(node: Node) -> None:
    accounts = Accounts(node.store)
    accounts.add("ann", "viewer", PASSWORD)
    with pytest.raises(AuthError) as wrong:
        accounts.login("ann", PASSWORD + "x", "10.0.0.1")
    with pytest.raises(AuthError) as unknown:
        accounts.login("nobody", PASSWORD, "10.0.0.2")
    assert wrong.value.message == unknown.value.message


def test_too_many_failures_lock_the_account_even_for_the_right_password(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=3, window=timedelta(seconds=2)))
    accounts.add("ann", "viewer", PASSWORD)
    for n in range(3):
        with pytest.raises(AuthError):
            accounts.login("ann", f"guess {n}", f"10.0.0.{n}")  # from three addresses
    with pytest.raises(LimitExceeded, match="too many failed logins"):
        accounts.login("ann", PASSWORD, "10.0.0.9")
    time.sleep(2.1)  # the window passes: the failures no longer count
    assert accounts.login("ann", PASSWORD, "10.0.0.9").name == "ann"


def test_a_client_spraying_many_accounts_is_limited(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=2, window=timedelta(minutes=5)))
    accounts.add("ann", "viewer", PASSWORD)
    for n in range(8):  # per client: four times the per-account limit
        with pytest.raises(AuthError):
            accounts.login(f"user{n}", PASSWORD, "10.9.9.9")
    with pytest.raises(LimitExceeded):
        accounts.login("ann", PASSWORD, "10.9.9.9")
    assert accounts.login("ann", PASSWORD, "10.1.1.1").name == "ann"  # another client


def test_a_success_forgets_the_accounts_earlier_failures(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=2, window=timedelta(minutes=5)))
    accounts.add("ann", "viewer", PASSWORD)
    with pytest.raises(AuthError):
        accounts.login("ann", "wrong", "10.0.0.1")
    accounts.login("ann", PASSWORD, "10.0.0.1")
    with pytest.raises(AuthError):  # one failure again, not two: still below the limit
        accounts.login("ann", "wrong", "10.0.0.1")
    assert accounts.login("ann", PASSWORD, "10.0.0.1").name == "ann"


def _sessions(node: Node, **kwargs: timedelta) -> Sessions:
    return Sessions(
        node.store,
        idle=kwargs.get("idle", timedelta(minutes=30)),
        lifetime=kwargs.get("lifetime", timedelta(hours=12)),
    )


def test_a_session_is_stored_by_its_hash_and_ends_at_logout(node: Node) -> None:
    account = Accounts(node.store).add("ann", "analyst", PASSWORD)
    sessions = _sessions(node)
    token, session = sessions.open(account)
    with node.store.engine.connect() as conn:
        rows = conn.execute(select(schema.console_sessions)).mappings().all()
    assert len(rows) == 1 and token not in str(dict(rows[0]))
    found = sessions.find(token)
    assert found is not None and found.account.name == "ann" and found.csrf == session.csrf
    assert sessions.find(token + "x") is None
    sessions.close(session)
    assert sessions.find(token) is None


def test_each_login_is_a_new_session(node: Node) -> None:
    account = Accounts(node.store).add("ann", "analyst", PASSWORD)
    sessions = _sessions(node)
    first, one = sessions.open(account)
    second, two = sessions.open(account)
    assert first != second and one.csrf != two.csrf


def test_idle_and_old_sessions_end(node: Node) -> None:
    account = Accounts(node.store).add("ann", "analyst", PASSWORD)
    idle = _sessions(node, idle=timedelta(seconds=1))
    token, _ = idle.open(account)
    time.sleep(1.1)
    assert idle.find(token) is None
    old = _sessions(node, lifetime=timedelta(seconds=1))
    token, _ = old.open(account)
    assert old.find(token) is not None
    time.sleep(1.1)
    assert old.find(token) is None
    with node.store.engine.connect() as conn:  # ended sessions are removed, not kept
        assert conn.execute(select(schema.console_sessions)).all() == []


def test_a_new_password_or_a_removed_account_ends_its_sessions(node: Node) -> None:
    accounts = Accounts(node.store)
    account = accounts.add("ann", "analyst", PASSWORD)
    sessions = _sessions(node)
    token, _ = sessions.open(account)
    accounts.set_password("ann", PASSWORD + " new")
    assert sessions.find(token) is None
    with pytest.raises(AuthError):
        accounts.login("ann", PASSWORD, "10.0.0.1")
    token, _ = sessions.open(account)
    accounts.remove("ann")
    assert sessions.find(token) is None
    with pytest.raises(NotFound):
        accounts.remove("ann")


def test_a_role_change_applies_to_open_sessions(node: Node) -> None:
    accounts = Accounts(node.store)
    account = accounts.add("ann", "admin", PASSWORD)
    sessions = _sessions(node)
    token, _ = sessions.open(account)
    accounts.set_role("ann", "viewer")
    found = sessions.find(token)
    assert found is not None and found.account.role == "viewer"
    assert not found.account.may("analyst") and found.account.may("viewer")
