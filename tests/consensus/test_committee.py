"""The committee file: round trip, quorum arithmetic, refusals with a named key, and the
application command's exit status 2 on a bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synod.consensus.committee import Committee, CommitteeError
from synod.consensus.signed import VALID, Attest, SignedTx, Unauthorized
from tests.consensus.conftest import COMMITTEE


def test_round_trip_and_quorum(tmp_path: Path) -> None:
    COMMITTEE.save(tmp_path / "c.json")
    loaded = Committee.load(tmp_path / "c.json")
    assert loaded == COMMITTEE
    assert (loaded.faults, loaded.attest_quorum, loaded.refute_quorum) == (1, 3, 2)
    seven = Committee("x", {i: COMMITTEE.members[1] for i in range(1, 8)})
    assert (seven.faults, seven.attest_quorum, seven.refute_quorum) == (2, 5, 3)
    assert Committee("x", dict(seven.members), quorum=7).refute_quorum == 1
    assert loaded.public_key("member:1") == COMMITTEE.members[1]
    assert loaded.public_key("member:01x") is None and loaded.public_key("root:1") is None
    assert loaded.may_submit("operator:api", "withdraw_request")
    assert not loaded.may_submit("member:1", "withdraw_request")


@pytest.mark.parametrize("name", ["²", "٥", "1²", "１"])
def test_a_member_name_is_ascii_digits_only(name: str) -> None:
    assert COMMITTEE.public_key(f"member:{name}") is None
    stx = SignedTx(f"member:{name}", Attest("ab" * 32, VALID), b"\0" * 64)
    assert stx.member is None
    with pytest.raises(Unauthorized, match="not in the committee"):
        stx.authorize(COMMITTEE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"members": []}, "at least one member"),
        ({"members": [{"id": 1, "sign_key": "00"}]}, "members[0]: sign_key"),
        ({"members": [{"id": True, "sign_key": "11" * 32}]}, "members[0].id"),
        ({"quorum": 9}, "quorum"),
        ({"chain_id": ""}, "chain_id"),
        ({"permissions": {"root": ["reserve"]}}, "permissions.root"),
        ({"permissions": ["reserve"]}, "permissions must be an object"),
        ({"members": "abc"}, "members must be a list"),
        ({"operators": [{"name": "a b", "sign_key": "11" * 32}]}, "operators[0].name"),
    ],
)
def test_bad_files_are_refused_with_the_key(change: dict[str, object], message: str) -> None:
    with pytest.raises(CommitteeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Committee.from_dict({**COMMITTEE.to_dict(), **change})


def test_serve_exits_2_on_a_bad_committee_file(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"chain_id": "x", "members": []}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synod.consensus",
            "serve",
            "--db",
            str(tmp_path / "l.db"),
            "--committee",
            str(tmp_path / "c.json"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
