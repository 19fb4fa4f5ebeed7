"""`synod committee init --validators` and `synod cluster up|status|down`: per member a
CometBFT validator with the ledger application over the member's own replica, started
detached beside its signer node (which reads that replica as its ledger view); a request
signed with the development operator key is applied on every replica; `cluster down` ends
every process. Needs cometbft (skipped without it unless SYNOD_REQUIRE_COMETBFT=1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.chains.localnode import NodeUnavailable, binary_dir, free_base_port
from synod.consensus.client import ReplicatedConsensus
from synod.node.local_cluster import LEDGER_CHAIN_ID, ledger_view, member_dirs, validators
from synod.node.process import running_pid
from synod.state.db import open_database
from synod.state.machine import Ledger
from synod.state.transactions import WithdrawRequest
from tests.node.helpers import wait_for
from tests.node.test_node_cli import synod_cmd

pytestmark = pytest.mark.cometbft


def test_validators_beside_the_signer_nodes(tmp_path: Path) -> None:
    try:
        bindir = binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft")
    except NodeUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_COMETBFT") == "1":
            pytest.fail(f"SYNOD_REQUIRE_COMETBFT=1 but no cometbft: {err}")
        pytest.skip(f"cometbft unavailable: {err}")
    root = tmp_path / "c"
    env = {"SYNOD_COMETBFT_DIR": str(bindir)}
    done = synod_cmd("committee", "init", "-t", "2", "-n", "3", "--dir", str(root),
                     "--base-port", str(free_base_port(3)), "--validators", "--json",
                     env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ledger_info = json.loads(done.stdout)["ledger"]
    members = member_dirs(root)
    try:
        up = synod_cmd("cluster", "up", "--dir", str(root), env=env)
        assert up.returncode == 0, up.stderr
        status = synod_cmd("cluster", "status", "--dir", str(root), "--json")
        rows = json.loads(status.stdout)["members"]
        assert all(r["running"] and r["ledger_height"] >= 1 for r in rows), rows

        key = serialization.load_pem_private_key(
            Path(ledger_info["operator_key"]).read_bytes(), None
        )
        assert isinstance(key, Ed25519PrivateKey)
        net = validators(root)
        assert net is not None
        api = ReplicatedConsensus(net.member(2).rpc, "operator:api", key, LEDGER_CHAIN_ID)
        api.submit(WithdrawRequest("r1", "sol", "SOL", "11111111111111111111111111111112", 5))
        replicas = {m: Ledger(open_database(str(ledger_view(d)))) for m, d in members}
        try:
            wait_for(
                lambda: all(
                    [w.status for w in r.withdrawals()] == ["QUEUED"] for r in replicas.values()
                ),
                "the request on every member's replica",
            )
        finally:
            for r in replicas.values():
                r.db.close()
    finally:
        down = synod_cmd("cluster", "down", "--dir", str(root))
    assert down.returncode == 0, down.stderr
    net = validators(root)
    assert net is not None
    for member, directory in members:
        assert running_pid(directory) is None
        assert net.detached_pids(member) == {}
