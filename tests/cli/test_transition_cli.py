"""`synod transition start|status` against a SQLite store: a transition opens, bad input exits
2 with one line, and status shows states, migrations, the window and strikes (text and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synod.cli.main import main
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import KeygenFailed, KeygenStart


def test_start_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "ledger.db")
    assert main(["transition", "start", "--db", db, "--members", "1,2,3", "--threshold", "2"]) == 0
    assert "epoch 1 opened" in capsys.readouterr().out
    assert main(["transition", "start", "--db", db, "--members", "1,x", "--threshold", "2"]) == 2
    assert "--members" in capsys.readouterr().err
    assert main(["transition", "start", "--db", db, "--members", "1,2", "--threshold", "3"]) == 2
    assert "threshold" in capsys.readouterr().err
    # Another while one is open: refused, named.
    assert main(["transition", "start", "--db", db, "--members", "1,2", "--threshold", "2"]) == 2
    assert "transition_open" in capsys.readouterr().err
    ledger = Ledger(SqliteDatabase(db))
    ledger.apply(KeygenStart(1, "kg"))
    ledger.apply(KeygenFailed(1, "invalid DKG package", (3,)))
    assert main(["transition", "status", "--db", db, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (t,) = data["transitions"]
    assert (
        t["state"] == "DETECTED"
        and t["attempt"] == 1
        and t["culprits"] == [3]
        and data["strikes"] == {"3": 1}
    )
    assert main(["transition", "status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "epoch 1 (from 0): DETECTED" in out and "strikes (limit 3)" in out
