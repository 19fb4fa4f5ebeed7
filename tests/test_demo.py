"""`synod demo` end to end over five member processes: every withdrawal confirmed on its engine
and paid exactly once, nobody but the lying member ever named (whether it is named depends on
which members answer first; `tests/node/test_ledger_view.py` shows the naming itself), the
stopped one never blamed, TRON named as having no local engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synod.demo.pipeline import run_demo


def test_demo_pays_every_withdrawal_once(tmp_path: Path) -> None:
    report = run_demo(tmp_path, per_chain=1)
    chains = {r["chain"] for r in report.rows}
    if os.environ.get("SYNOD_REQUIRE_BTCD") == "1":
        assert "btc" in chains, report.unavailable.get("btc")
    assert {"eth", "bnb", "sol"} <= chains
    assert "trx" in report.unavailable and "no local engine" in report.unavailable["trx"]
    assert report.all_confirmed, report.rows
    for row in report.rows:
        assert row["confirmations"] >= 1 and row["received"] == row["amount_base_units"]
        assert set(row["culprits"]) <= {5}, "an honest or merely silent member was blamed"
    liar = json.loads((tmp_path / "committee" / "node-5" / "status.json").read_text())
    assert liar["fault"] == "invalid-shares"
    stopped = json.loads((tmp_path / "committee" / "node-4" / "status.json").read_text())
    assert stopped["state"] == "stopped"


def test_demo_refuses_a_config_it_does_not_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid or unsupported configuration ends at start: exit 2, the key named."""
    from synod.cli.main import main

    monkeypatch.setenv("SYNOD__CHAINS__BNB__CUSTODY", "eoa")
    assert main(["demo", "--per-chain", "1"]) == 2
    assert "chains.bnb.custody" in capsys.readouterr().err
    monkeypatch.setenv("SYNOD__CHAINS__BNB__CUSTODY", "multisig")
    assert main(["demo", "--per-chain", "1"]) == 2
    assert "chains.bnb.custody" in capsys.readouterr().err


def test_transition_demo_hands_over_between_batches(tmp_path: Path) -> None:
    from synod.sim.transition_demo import run_transition_demo

    report = run_transition_demo(tmp_path, per_batch=1)
    assert report.all_confirmed
    assert report.transition["state"] == "ACTIVE" and report.transition["old_shares_erased"]
    assert report.transition["switch_window_ms"] is not None
    epochs = [r["key_epoch"] for r in report.rows]
    assert epochs == [1, 1, 2, 2]  # batch 1 under the old committee, batch 2 under the new


@pytest.mark.cometbft
def test_demo_on_the_replicated_ledger(tmp_path: Path) -> None:
    """`synod demo --replicated`: five validators, each member's signer node reading its own
    replica; every withdrawal paid once, the replicas in the same state."""
    from synod.chains.localnode import NodeUnavailable, binary_dir

    try:
        binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft")
    except NodeUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_COMETBFT") == "1":
            pytest.fail(f"SYNOD_REQUIRE_COMETBFT=1 but no cometbft: {err}")
        pytest.skip(f"cometbft unavailable: {err}")
    report = run_demo(tmp_path, per_chain=1, replicated=True)
    assert report.all_confirmed, report.rows
    assert {"eth", "bnb", "sol"} <= {r["chain"] for r in report.rows}
    for row in report.rows:
        assert row["received"] == row["amount_base_units"]
        assert set(row["culprits"]) <= {5}
    assert report.replicas is not None and report.replicas.startswith("4 replicas")
    for member in (1, 2, 3, 5):  # each signer node read its own replica
        assert (tmp_path / f"replica-{member}.db").is_file()


@pytest.mark.cometbft
def test_demo_on_member_run_processes(tmp_path: Path) -> None:
    """`synod demo --members`: five `synod member run` processes; withdrawals through member
    2's API paid once on btcd by the members' runtimes, member 4 stopped, member 5 lying (only
    ever named, and only from a report whose signature is the one the chain accepted), the
    four running replicas agreeing by app hash."""
    from synod.chains.localnode import NodeUnavailable
    from synod.demo.members import run_member_demo

    try:
        report = run_member_demo(tmp_path, count=2)
    except NodeUnavailable as err:
        for name in ("COMETBFT", "BTCD"):
            if os.environ.get(f"SYNOD_REQUIRE_{name}") == "1":
                pytest.fail(f"SYNOD_REQUIRE_{name}=1 but {err}")
        pytest.skip(str(err))
    assert report.all_confirmed, report.rows
    assert [r["received"] for r in report.rows] == [10_000_000, 20_000_000]
    assert set(report.culprits) <= {5}, "an honest or merely silent member was blamed"
    assert report.replicas is not None and report.replicas.startswith("4 replicas agree")
    liar = json.loads((tmp_path / "members" / "host-5" / "member" / "status.json").read_text())
    assert liar["fault"] == "invalid-shares"
