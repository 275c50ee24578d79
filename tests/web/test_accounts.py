"""Console accounts and sessions on a real store: argon2id hashes, the login rate limit
counted in the store, and sessions that end when they should."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from allied.errors import AuthError, ConfigError, Conflict, LimitExceeded, NotFound
from allied.node import Node
from allied.store import schema
from allied.web.accounts import Accounts, LoginLimit, client_key
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


def test_too_many_failures_refuse_that_client_even_the_right_password(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=3, window=timedelta(seconds=2)))
    accounts.add("ann", "viewer", PASSWORD)
    for n in range(3):
        with pytest.raises(AuthError):
            accounts.login("ann", f"guess {n}", "10.0.0.1")
    with pytest.raises(LimitExceeded, match="too many failed logins"):
        accounts.login("ann", PASSWORD, "10.0.0.1")
    # whoever guessed cannot lock the owner out from elsewhere
    assert accounts.login("ann", PASSWORD, "10.0.0.2").name == "ann"
    time.sleep(2.1)  # the window passes: the failures no longer count
    assert accounts.login("ann", PASSWORD, "10.0.0.1").name == "ann"


def test_a_guess_spread_over_many_clients_locks_the_account(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=1, window=timedelta(minutes=5)))
    accounts.add("ann", "viewer", PASSWORD)
    for n in range(10):  # all clients together: ten times the limit of one
        with pytest.raises(AuthError):
            accounts.login("ann", "wrong", f"10.0.1.{n}")
    with pytest.raises(LimitExceeded):
        accounts.login("ann", PASSWORD, "10.0.2.1")
    assert accounts.unlock("ann") == 10  # the operator looked into it
    assert accounts.login("ann", PASSWORD, "10.0.2.1").name == "ann"


def test_logins_at_once_cannot_all_pass_the_limit(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=3, window=timedelta(minutes=5)))
    accounts.add("ann", "viewer", PASSWORD)
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            accounts.login("ann", f"guess {n}", "10.0.0.1")
        except AuthError:
            outcomes.append("checked")
        except LimitExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 12
    assert 1 <= outcomes.count("checked") <= 3


def test_a_name_no_account_can_have_counts_against_the_client(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=1, window=timedelta(minutes=5)))
    accounts.add("ann", "viewer", PASSWORD)
    for n in range(4):
        with pytest.raises(AuthError):
            accounts.login("x" * 3000 + str(n), PASSWORD, "10.0.0.5")
    with node.store.engine.connect() as conn:
        keys = set(conn.execute(select(schema.console_login_failures.c.key)).scalars())
    assert keys == {"client:10.0.0.5"}
    with pytest.raises(LimitExceeded):  # four per client, whatever the names
        accounts.login("ann", PASSWORD, "10.0.0.5")


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


def test_a_login_ends_the_browsers_earlier_session_and_expired_ones(node: Node) -> None:
    account = Accounts(node.store).add("ann", "analyst", PASSWORD)
    sessions = _sessions(node, idle=timedelta(seconds=1))
    sessions.open(account)
    time.sleep(1.1)
    earlier, _ = sessions.open(account)  # fresh: not purged for being idle
    current, _ = sessions.open(account, replacing=earlier)
    with node.store.engine.connect() as conn:
        rows = conn.execute(select(schema.console_sessions.c.token_hash)).all()
    assert len(rows) == 1  # the stale one was purged, the replaced one ended
    assert sessions.find(current) is not None


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
    with pytest.raises(AuthError):
        accounts.login("ann", "wrong", "10.0.0.1")
    accounts.set_password("ann", PASSWORD + " new")
    assert sessions.find(token) is None
    with node.store.engine.connect() as conn:  # and its failed logins are forgotten
        keys = set(conn.execute(select(schema.console_login_failures.c.key)).scalars())
    assert keys == {"client:10.0.0.1"}
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


def test_clients_are_counted_by_address_and_ipv6_hosts_by_network() -> None:
    assert client_key("10.0.0.7") == "10.0.0.7"
    assert client_key("::ffff:10.0.0.7") == "10.0.0.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("testclient") == "testclient"


def test_unlock_with_a_client_forgets_that_address_too(node: Node) -> None:
    accounts = Accounts(node.store, LoginLimit(attempts=1, window=timedelta(minutes=5)))
    accounts.add("vic", "viewer", PASSWORD)
    for n in range(4):  # an office behind one address mistypes names
        with pytest.raises(AuthError):
            accounts.login(f"vik{n}", PASSWORD, "192.0.2.1")
    with pytest.raises(LimitExceeded):
        accounts.login("vic", PASSWORD, "192.0.2.1")
    assert accounts.unlock("vic") == 0  # vic itself never failed
    with pytest.raises(LimitExceeded):
        accounts.login("vic", PASSWORD, "192.0.2.1")
    assert accounts.unlock("vic", client="192.0.2.1") == 4
    assert accounts.login("vic", PASSWORD, "192.0.2.1").name == "vic"
