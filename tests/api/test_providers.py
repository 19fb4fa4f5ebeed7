"""The node view a node publishes in a file: read when it changes, a bad file never replaces
the last good view, and the ledger's own session records."""

from __future__ import annotations

import os
from pathlib import Path

from synod.api.providers import FileNodeView, GroupKey, Member, write_node_view
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, Requeue, Reserve, StartSign, WithdrawRequest


def test_file_node_view(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "l.db")
    ledger = Ledger(db)
    view = FileNodeView(ledger, path=tmp_path / "view.json")
    assert view.committee() == {"threshold": None, "members": [], "epoch": 0}  # no file yet
    write_node_view(
        tmp_path / "view.json",
        [GroupKey("bip340", "ab" * 32, {"btc": "bcrt1p..."})],
        3,
        [Member(1, "node 1"), Member(5, "node 5", None, 2)],
        {"w1": [5]},
        {"btc": 120},
    )
    assert view.committee()["threshold"] == 3 and view.culprits("w1") == [5]
    assert view.chain_height("btc") == 120 and view.public_keys()[0].addresses["btc"]
    (tmp_path / "view.json").write_text('{"members": [{"member_id": "x"}]}')
    os.utime(tmp_path / "view.json", (1, 1))  # a different stamp: it is read, and refused
    assert view.committee()["threshold"] == 3  # the last good view stays
    (tmp_path / "view.json").write_bytes(b" " * (2 << 20))
    assert view.culprits("w1") == [5]

    ledger.apply(DepositCredit("sol", "SOL", 10**10, "d", 1))
    wid = ledger.apply(WithdrawRequest("r", "sol", "SOL", "to", 1000)).result["withdraw_id"]
    ledger.apply(Reserve(wid))
    ledger.apply(StartSign(wid, "s-1"))
    ledger.apply(Requeue(wid, "timeout"))
    ledger.apply(Reserve(wid, attempt=1))
    ledger.apply(StartSign(wid, "s-2", attempt=1))
    sessions = view.sessions(10)
    assert [(s["session_id"], s["outcome"]) for s in sessions] == [
        ("s-2", "open"),
        ("s-1", "timed_out"),
    ]
    db.close()
