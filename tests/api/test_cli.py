"""The CLI over a real API server (uvicorn in a subprocess, loopback): tokens, withdrawals,
deposits, balances, exit statuses, and `synod audit verify` on the trail the run left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synod.cli.main import main
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit

from .addresses import VALID
from .server import api_server


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_over_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "ledger.db")
    code, out, err = run(capsys, "api", "token", "create", "--role", "operator", "--db", db)
    assert code == 0 and out.startswith("synod_") and "shown once" in err
    token = out.strip()
    ledger_db = SqliteDatabase(db)
    Ledger(ledger_db).apply(DepositCredit("sol", "SOL", 10**12, "sig-1", 5))
    ledger_db.close()

    with api_server(db, "--btc-network", "regtest", log=tmp_path / "api.log") as url:
        monkeypatch.setenv("SYNOD_API_URL", url)
        code, _, err = run(capsys, "balances")
        assert code == 2 and "no API token" in err
        monkeypatch.setenv("SYNOD_API_TOKEN", token)
        create = ["withdraw", "create", "--chain", "sol", "--asset", "SOL", "--to", VALID["sol"]]
        code, out, _ = run(capsys, *create, "--amount", "5000", "--external-id", "e-1", "--json")
        assert code == 0
        w = json.loads(out)
        assert w["state"] == "QUEUED" and w["amount"] == "5000"
        code, _, err = run(capsys, *create, "--amount", "5.5", "--external-id", "e-2")
        assert code == 2 and "amount" in err and err.count("\n") == 1
        code, _, err = run(capsys, *create, "--amount", "7", "--external-id", "e-1")
        assert code == 2 and "already used" in err
        code, out, _ = run(capsys, "withdraw", "get", w["id"])
        assert code == 0 and "QUEUED" in out and w["id"] in out
        code, out, _ = run(capsys, "withdraw", "list", "--chain", "sol", "--json")
        assert code == 0 and [i["id"] for i in json.loads(out)["items"]] == [w["id"]]
        code, out, _ = run(capsys, "withdraw", "cancel", w["id"], "--json")
        assert code == 0 and json.loads(out)["state"] == "CANCELLED"
        code, out, _ = run(capsys, "withdraw", "cancel", w["id"])
        assert code == 0 and "CANCELLED" in out  # a retried cancel is safe
        code, out, _ = run(capsys, "deposits", "--json")
        assert code == 0 and json.loads(out)["items"][0]["ref"] == "sig-1"
        code, out, _ = run(capsys, "balances")
        assert code == 0 and "sol/SOL: deposited 1000000000000 = available" in out
        log_lines = [json.loads(x) for x in (tmp_path / "api.log").read_text().splitlines() if x]
        submitted = [x for x in log_lines if x.get("event") == "withdrawal submitted"]
        assert submitted and submitted[0]["withdraw_id"] == w["id"]
        assert token not in (tmp_path / "api.log").read_text()
    monkeypatch.setenv("SYNOD_API_URL", "http://127.0.0.1:9")
    code, _, err = run(capsys, "balances")
    assert code == 1 and "cannot reach" in err

    code, out, _ = run(capsys, "audit", "verify", "--db", db, "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["rows"] >= 10
    tampered = SqliteDatabase(db)
    with tampered.transaction():
        tampered.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4")
    tampered.close()
    code, _, err = run(capsys, "audit", "verify", "--db", db)
    assert code == 1 and "row 4 does not match" in err


def test_api_run_over_a_replica_refuses_half_the_flags_and_a_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Serving a member's replica needs all four of its flags, an http(s) validator URL and
    the operator's key file kept private; each refusal is one line and exit status 2, before
    anything is opened."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from synod.consensus.committee import operator_key_pem

    key = tmp_path / "operator.pem"
    key.write_bytes(operator_key_pem(Ed25519PrivateKey.generate()))
    key.chmod(0o600)
    base = ["api", "run", "--db", str(tmp_path / "api.db"), "--metrics-listen", "off"]
    full = ["--replica", str(tmp_path / "replica.db"), "--ledger-rpc", "http://127.0.0.1:1"]
    full += ["--chain-id", "c", "--operator-key", str(key)]
    cases = [
        (full[:2], "a replica needs --ledger-rpc, --chain-id, --operator-key too"),
        ([*full[:2], "--ledger-rpc", "ftp://x", *full[4:]], "--ledger-rpc must be an http"),
    ]
    for extra, words in cases:
        code, _, err = run(capsys, *base, *extra)
        assert code == 2 and words in err and err.count("\n") == 1, err
    key.chmod(0o644)
    code, _, err = run(capsys, *base, *full)
    assert code == 2 and "readable by others" in err and err.count("\n") == 1, err
    key.chmod(0o600)
    key.write_text("not a key")
    code, _, err = run(capsys, *base, *full)
    assert code == 2 and "not an unencrypted Ed25519 private key" in err, err
    assert not (tmp_path / "api.db").exists()  # refused before any store was opened
