"""Tampering with a real node's store, behind the node's back (straight into the SQLite
file): `allied verify` names each kind of tampering, and exits 1.

Also: a partner's objects keep their originator's signature, key rotation keeps old
signatures verifiable, and the ledger's proofs verify with the RFC 9162 algorithms."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from allied.integrity.keys import public_pem
from allied.integrity.ledger import object_leaf, sign_head
from allied.integrity.merkle import verify_consistency, verify_inclusion
from allied.integrity.signing import SIGNATURE_EXTENSION_ID, Signer, sign
from allied.stix.labels import TLP2_IDS, tlp1_marking
from tests.conftest import (
    RawStore,
    indicator,
    malware,
    peer_key,
    raw_store,
    restore_store,
    signed_as,
    snapshot_store,
    unsigned,
    write_bundle,
)

Cli = Callable[..., Result]


@pytest.fixture
def filled(cli: Cli, tmp_path: Path) -> Path:
    """The test node with a few objects of its own, imported in two files."""
    first = [indicator(n) for n in range(1, 5)]
    cli("import", str(write_bundle(tmp_path / "a.json", first)))
    cli("import", str(write_bundle(tmp_path / "b.json", [malware(1), indicator(5)])))
    assert verified(cli)
    return tmp_path / "node"


def verified(cli: Cli) -> bool:
    result = cli("verify")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code == 0


def problems(cli: Cli) -> list[str]:
    result = cli("verify", "--json")
    report = json.loads(result.output)
    assert (result.exit_code == 1) == bool(report["problems"])
    return list(report["problems"])


database = raw_store


def stored(conn: RawStore, object_id: str) -> dict[str, object]:
    text = conn.execute("SELECT json FROM objects WHERE id = ?", (object_id,)).fetchone()[0]
    return dict(json.loads(text))


def store_json(conn: RawStore, object_id: str, data: dict[str, object]) -> None:
    conn.execute("UPDATE objects SET json = ? WHERE id = ?", (json.dumps(data), object_id))


def test_a_flipped_byte_breaks_the_signature_and_the_ledger_entry(cli: Cli, filled: Path) -> None:
    target = indicator(2)["id"]
    with database(filled) as conn:
        text = conn.execute("SELECT json FROM objects WHERE id = ?", (target,)).fetchone()[0]
        flipped = text.replace("bad address 2", "bad address 3")
        assert flipped != text
        conn.execute("UPDATE objects SET json = ? WHERE id = ?", (flipped, target))
    found = problems(cli)
    assert any(p.startswith(target) and "does not match" in p and "signature" in p for p in found)
    assert any(p.startswith(target) and "does not match its ledger entry" in p for p in found)


def test_a_removed_marking_is_caught_even_with_the_label_columns_rewritten(
    cli: Cli, filled: Path
) -> None:
    target = indicator(3)["id"]
    with database(filled) as conn:
        data = stored(conn, target)
        del data["object_marking_refs"]
        store_json(conn, target, data)
        empty = conn.execute("SELECT id FROM label_sets WHERE markings = '[]'").fetchone()
        conn.execute(
            "UPDATE objects SET markings = '[]', tlp = NULL, label_set = ? WHERE id = ?",
            (empty[0] if empty else 0, target),
        )
    found = problems(cli)
    assert any(p.startswith(target) and "signature by" in p for p in found)


def test_label_columns_that_disagree_with_the_object_are_caught(cli: Cli, filled: Path) -> None:
    """Release reads the label columns: changing them alone would change who receives it."""
    target = indicator(4)["id"]
    with database(filled) as conn:
        conn.execute(
            "UPDATE objects SET markings = ? WHERE id = ?",
            (json.dumps([TLP2_IDS["clear"]]), target),
        )
    found = problems(cli)
    assert any(p.startswith(target) and "its label columns say" in p for p in found)


@pytest.mark.parametrize("how", ["foreign key", "another object's signature"])
def test_a_replaced_signature_is_caught(cli: Cli, filled: Path, how: str) -> None:
    target = indicator(1)["id"]
    with database(filled) as conn:
        data = stored(conn, target)
        body = data["extensions"][SIGNATURE_EXTENSION_ID]  # type: ignore[index]
        if how == "foreign key":
            forged = sign(unsigned(data), Signer.of(Ed25519PrivateKey.generate(), body["signer"]))
            store_json(conn, target, forged)
            expected = "signed with unknown key"
        else:
            other = stored(conn, indicator(2)["id"])
            theirs = other["extensions"][SIGNATURE_EXTENSION_ID]  # type: ignore[index]
            body["signature"] = theirs["signature"]
            store_json(conn, target, data)
            expected = "does not match"
    found = problems(cli)
    assert any(p.startswith(target) and expected in p for p in found)


def test_a_deleted_ledger_entry_is_caught(cli: Cli, filled: Path) -> None:
    with database(filled) as conn:
        index, object_id = conn.execute(
            "SELECT ledger_index, id FROM objects WHERE id = ?", (indicator(2)["id"],)
        ).fetchone()
        conn.execute("DELETE FROM ledger WHERE idx = ?", (index,))
    found = problems(cli)
    assert f"ledger entry {index} is missing" in found
    assert any(p.startswith(object_id) and f"ledger entry {index} is missing" in p for p in found)
    assert any("history was rewritten" in p for p in found)


def test_reordered_ledger_entries_are_caught(cli: Cli, filled: Path) -> None:
    with database(filled) as conn:
        rows = conn.execute("SELECT idx, leaf FROM ledger WHERE idx IN (8, 9)").fetchall()
        (a, leaf_a), (b, leaf_b) = rows
        conn.execute("UPDATE ledger SET leaf = ? WHERE idx = ?", (leaf_b, a))
        conn.execute("UPDATE ledger SET leaf = ? WHERE idx = ?", (leaf_a, b))
    found = problems(cli)
    assert sum("does not match its ledger entry" in p for p in found) == 2
    assert any("history was rewritten" in p for p in found)
    assert any(p.startswith("ledger node (level 1") for p in found)


def test_a_deleted_object_is_caught(cli: Cli, filled: Path) -> None:
    with database(filled) as conn:
        index = conn.execute(
            "SELECT ledger_index FROM objects WHERE id = ?", (malware(1)["id"],)
        ).fetchone()[0]
        conn.execute("DELETE FROM objects WHERE id = ?", (malware(1)["id"],))
    assert f"ledger entry {index} belongs to no stored object (deleted?)" in problems(cli)


def test_a_store_rolled_back_to_an_older_copy_is_caught(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    older = snapshot_store(filled, tmp_path / "older.db")  # the CLI closed the store
    cli("import", str(write_bundle(tmp_path / "c.json", [indicator(6), indicator(7)])))
    assert verified(cli)
    restore_store(filled, older)
    found = problems(cli)
    assert any("the store was rolled back to an older copy" in p for p in found)


def test_a_rewritten_history_differs_from_the_recorded_head(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    """An operator with the key could re-sign a different history in the store; the head
    kept beside it still shows the one signed before."""
    with database(filled) as conn:
        conn.execute("DELETE FROM tree_heads")
        conn.execute("UPDATE ledger SET leaf = ? WHERE idx = 0", (b"\x07" * 32,))
    found = problems(cli)
    assert any(p.startswith("ledger-head.json") and "history was rewritten" in p for p in found)


def test_a_missing_recorded_head_is_reported(cli: Cli, filled: Path) -> None:
    (filled / "ledger-head.json").unlink()
    assert any(p.startswith("ledger-head.json: missing") for p in problems(cli))


# -- signatures from partners ----------------------------------------------------------------


def test_partner_objects_keep_their_signature_and_bad_ones_are_rejected(
    cli: Cli, tmp_path: Path
) -> None:
    pem, key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    us = next(p for p in json.loads(cli("partner", "list", "--json").output) if p["name"] == "us")
    good = signed_as([indicator(1)], key, us["identity_id"])[0]
    assert (
        cli("import", "--from", "us", str(write_bundle(tmp_path / "g.json", [good]))).exit_code == 0
    )
    assert json.loads(cli("show", good["id"]).output) == good  # kept exactly as signed
    assert verified(cli)
    stranger = Ed25519PrivateKey.generate()
    nobody = "identity--00000000-0000-4000-8000-0000000000aa"
    cases = {
        "altered": ({**good, "name": "changed"}, "signature by"),
        "foreign key": (
            signed_as([indicator(2)], stranger, us["identity_id"])[0],
            "signed with unknown key",
        ),
        "wrong signer": (
            signed_as([indicator(3)], key, nobody)[0],
            f"belongs to {us['identity_id']}",
        ),
        "unsigned": (indicator(4), "no origin signature (received from us)"),
    }
    for name, (obj, reason) in cases.items():
        result = cli("import", "--from", "us", str(write_bundle(tmp_path / f"{name}.json", [obj])))
        assert result.exit_code == 1, name
        assert reason in result.stderr, (name, result.stderr)
    assert cli("show", indicator(2)["id"]).exit_code == 1  # nothing half-written


# -- key rotation and proofs -----------------------------------------------------------------


def test_key_rotation_keeps_old_signatures_verifiable(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    key_file = filled / "keys" / "node.key"
    old = json.loads(cli("ledger", "head", "--json").output)["key_id"]
    result = cli("key", "rotate")
    assert result.exit_code == 0 and "new signing key" in result.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    cli("import", str(write_bundle(tmp_path / "c.json", [indicator(8)])))
    head = json.loads(cli("ledger", "head", "--json").output)
    assert head["key_id"] != old
    assert verified(cli)
    shown = json.loads(cli("show", indicator(8)["id"]).output)
    assert shown["extensions"][SIGNATURE_EXTENSION_ID]["key_id"] == head["key_id"]


def test_proofs_verify_with_the_rfc_algorithms(cli: Cli, filled: Path) -> None:
    def raw(text: str) -> bytes:
        return base64.b64decode(text)

    target = indicator(3)["id"]
    proof = json.loads(cli("ledger", "prove", target, "--json").output)
    leaf = object_leaf(json.loads(cli("show", target).output))
    assert raw(proof["leaf_hash"]) == leaf
    verify_inclusion(
        leaf, proof["leaf_index"], proof["tree_size"], [raw(p) for p in proof["proof"]],
        raw(proof["root_hash"]),
    )  # fmt: skip
    head = json.loads(cli("ledger", "head", "--json").output)
    assert head["root_hash"] == proof["root_hash"]
    consistency = json.loads(cli("ledger", "consistency", "3", "--json").output)
    verify_consistency(
        3, consistency["tree_size"], raw(consistency["old_root_hash"]),
        raw(consistency["root_hash"]), [raw(p) for p in consistency["proof"]],
    )  # fmt: skip
    missing = cli("ledger", "prove", "indicator--00000000-0000-4000-8000-0000000000ff")
    assert missing.exit_code == 1 and "no indicator--00000000" in missing.stderr
    too_big = cli("ledger", "consistency", "9999")
    assert too_big.exit_code == 1 and "not 9999" in too_big.stderr


def test_a_signing_key_others_can_read_is_refused(cli: Cli, tmp_path: Path) -> None:
    key_file = tmp_path / "node" / "keys" / "node.key"
    key_file.chmod(0o644)
    result = cli("import", str(write_bundle(tmp_path / "a.json", [indicator(1)])))
    assert result.exit_code == 1
    assert "accessible by group or others (mode 0o644)" in result.stderr
    assert cli("show", indicator(1)["id"]).exit_code == 1  # nothing stored


def test_a_key_slipped_into_the_store_signs_nothing(cli: Cli, filled: Path) -> None:
    """The node trusts its own keys from its key folder, not from the store."""
    intruder = Ed25519PrivateKey.generate()
    target = indicator(1)["id"]
    with database(filled) as conn:
        identity = conn.execute(
            "SELECT json FROM objects WHERE type = 'identity' AND json LIKE '%Test CERT%'"
        ).fetchone()[0]
        node_identity = json.loads(identity)["id"]
        signer = Signer.of(intruder, node_identity)
        conn.execute(
            "INSERT INTO node_keys (key_id, public_key, created) VALUES (?, ?, ?)",
            (signer.key_id, public_pem(intruder.public_key()), "2026-11-23T00:00:00Z"),
        )
        forged = sign({**unsigned(stored(conn, target)), "name": "forged"}, signer)
        store_json(conn, target, forged)
    found = problems(cli)
    assert any(p.startswith(target) and "signed with unknown key" in p for p in found)
    assert any(
        f"node key {signer.key_id}, which is not among the node's key files" in p for p in found
    )


def test_release_columns_altered_behind_the_nodes_back_are_caught(cli: Cli, filled: Path) -> None:
    """Egress filters on the closure column; listings read type and version."""
    red, clear = indicator(1)["id"], indicator(2)["id"]
    with database(filled) as conn:
        conn.execute("UPDATE objects SET closure = 999 WHERE id = ?", (red,))
        conn.execute("UPDATE objects SET version = '2030-01-01T00:00:00' WHERE id = ?", (clear,))
    found = problems(cli)
    assert any(p.startswith(red) and "its release closure does not match" in p for p in found)
    assert any(p.startswith(clear) and "its type and version columns say" in p for p in found)


def test_only_the_nodes_own_keys_sign_its_tree_heads(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    pem, key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    head = json.loads(cli("ledger", "head", "--json").output)
    forged = sign_head(head["tree_size"], base64.b64decode(head["root_hash"]),
                       "2030-01-01T00:00:00Z", Signer.of(key, head["signer"]))  # fmt: skip
    with database(filled) as conn:
        conn.execute("DELETE FROM tree_heads")
        conn.execute(
            "INSERT INTO tree_heads VALUES (?, ?, ?, ?, ?, ?)",
            (forged.size, forged.root, forged.timestamp, forged.signer, forged.key_id,
             forged.signature),
        )  # fmt: skip
    assert any("tree head signed with unknown key" in p for p in problems(cli))


def test_enrolment_refuses_colliding_identities_and_keys(cli: Cli, tmp_path: Path) -> None:
    own = json.loads(cli("identity", "--json").output)["identity_id"]
    result = cli("partner", "add", "x", "--nation", "USA", "--identity", own)
    assert result.exit_code == 1 and "is this node's own identity" in result.stderr
    node_pub = tmp_path / "node" / "keys" / "node.pub"
    result = cli("partner", "add", "y", "--nation", "USA", "--key", str(node_pub))
    assert result.exit_code == 1 and f"already belongs to {own}" in result.stderr
    pem, _key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    result = cli("partner", "add", "kr", "--nation", "KOR", "--key", str(pem))
    assert result.exit_code == 1 and "already belongs to identity--" in result.stderr


def test_a_partners_object_is_neither_taken_as_ours_nor_re_signed(cli: Cli, tmp_path: Path) -> None:
    pem, key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    us = next(p for p in json.loads(cli("partner", "list", "--json").output) if p["name"] == "us")
    theirs = signed_as([indicator(1)], key, us["identity_id"])
    result = cli("import", str(write_bundle(tmp_path / "a.json", theirs)))
    assert result.exit_code == 1 and "import it with --from us" in result.stderr
    stripped = indicator(2, created_by_ref=us["identity_id"])
    result = cli("import", str(write_bundle(tmp_path / "b.json", [stripped])))
    assert result.exit_code == 1 and "created by partner us but not signed" in result.stderr


def test_an_altered_standard_marking_is_refused(cli: Cli, tmp_path: Path) -> None:
    white = tlp1_marking("white")
    altered = {**white, "definition": {"tlp": "white"}, "name": "TLP:WHITE (forward freely)"}
    result = cli("import", str(write_bundle(tmp_path / "a.json", [altered])))
    assert result.exit_code == 1
    assert cli("import", str(write_bundle(tmp_path / "b.json", [white]))).exit_code == 0


def test_a_private_key_that_does_not_match_the_public_key_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    """An interrupted rotation must not leave the node signing with a retired key."""
    pem, _key = peer_key(tmp_path, "stray")
    shutil.copy(pem, tmp_path / "node" / "keys" / "node.pub")
    result = cli("import", str(write_bundle(tmp_path / "a.json", [indicator(1)])))
    assert result.exit_code == 1 and "does not match" in result.stderr


def test_only_the_originator_publishes_new_versions(cli: Cli, filled: Path, tmp_path: Path) -> None:
    pem, key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    us = next(p for p in json.loads(cli("partner", "list", "--json").output) if p["name"] == "us")
    ours = json.loads(cli("show", indicator(1)["id"]).output)
    takeover = {**unsigned(ours), "modified": "2026-05-01T00:00:00.000Z", "revoked": True}
    path = write_bundle(tmp_path / "t.json", signed_as([takeover], key, us["identity_id"]))
    result = cli("import", "--from", "us", str(path))
    assert result.exit_code == 1
    assert "is not from the originator of the versions this node holds" in result.stderr
    assert json.loads(cli("show", indicator(1)["id"]).output) == ours


def test_provenance_tlp_and_subtree_rows_altered_are_caught(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    pem, key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    us = next(p for p in json.loads(cli("partner", "list", "--json").output) if p["name"] == "us")
    theirs = signed_as([indicator(9)], key, us["identity_id"])
    path = write_bundle(tmp_path / "t.json", theirs)
    assert cli("import", "--from", "us", str(path)).exit_code == 0
    assert verified(cli)
    with database(filled) as conn:
        conn.execute("UPDATE objects SET received_from = NULL WHERE id = ?", (indicator(9)["id"],))
        conn.execute("UPDATE label_sets SET received_from = NULL WHERE received_from = 'us'")
        conn.execute("UPDATE objects SET tlp = 'clear' WHERE id = ?", (indicator(3)["id"],))
        conn.execute("DELETE FROM ledger_nodes WHERE level = 1 AND idx = 0")
    found = problems(cli)
    assert any(
        p.startswith(indicator(9)["id"]) and "recorded as this node's own" in p for p in found
    )
    assert any(p.startswith(indicator(3)["id"]) and "its TLP column says clear" in p for p in found)
    assert "ledger node (level 1, index 0) is missing" in found
    proof = cli("ledger", "prove", TLP2_IDS["amber"])  # entry 2: its path needs leaves 0-1
    assert proof.exit_code == 1 and "no stored hash for level 1, index 0" in proof.stderr


def test_a_partner_entry_changed_behind_the_nodes_back_counts_for_nothing(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    """The directory decides who receives what and whose signatures count."""
    pem, _key = peer_key(tmp_path, "us")
    assert cli("partner", "add", "us", "--nation", "USA", "--key", str(pem)).exit_code == 0
    assert cli("partner", "add", "kr", "--nation", "KOR").exit_code == 0
    assert verified(cli)
    planted_pem, planted = peer_key(tmp_path, "planted")
    with database(filled) as conn:
        conn.execute("UPDATE partners SET nation = 'USA' WHERE name = 'kr'")
        conn.execute(
            "UPDATE partners SET public_key = ? WHERE name = 'us'", (planted_pem.read_text(),)
        )
        identity = conn.execute("SELECT identity_id FROM partners WHERE name = 'us'").fetchone()[0]
    found = problems(cli)
    assert any(p.startswith("partner kr: its directory entry is not signed") for p in found)
    assert any(p.startswith("partner us: its directory entry is not signed") for p in found)
    result = cli("export", "--for", "kr")
    assert result.exit_code == 1 and "no partner named 'kr'" in result.stderr
    forged = write_bundle(tmp_path / "f.json", signed_as([indicator(9)], planted, identity))
    result = cli("import", "--from", "us", str(forged))
    assert result.exit_code == 1
    assert "partner 'us': its directory entry is not signed by this node" in result.stderr
    result = cli("import", str(forged))  # not as the node's own either
    assert result.exit_code == 1 and "signed with unknown key" in result.stderr
