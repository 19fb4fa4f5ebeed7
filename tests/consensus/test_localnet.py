"""Four CometBFT validators on loopback, each with its own ledger application (one on
PostgreSQL when configured): agreement at every height, exactly-once withdrawals, crash and
replay, a halt without quorum, forged proofs and outsiders. Binaries from SYNOD_COMETBFT_DIR
(scripts/cometbft.sh); skipped without them unless SYNOD_REQUIRE_COMETBFT=1 (CI)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from synod.chains.localnode import NodeUnavailable, binary_dir
from synod.consensus.client import CometRpc, ReplicatedConsensus
from synod.consensus.localnet import LocalNet
from synod.consensus.signed import Attest, SignedTx, Unauthorized
from synod.processes import die_with_parent
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Requeue,
    Reserve,
    Signed,
    StartSign,
    Strike,
    Tx,
    WithdrawRequest,
)
from tests.consensus.blocks import ETH_TO, withdraw_id
from tests.consensus.conftest import (
    CHAIN_ID,
    COMMITTEE,
    IDENTITIES,
    OPERATOR,
    OUTSIDER,
    postgres_dsn,
)

pytestmark = pytest.mark.cometbft
DEADLINE_S = 180.0


@pytest.fixture(scope="module")
def binary() -> str:
    """$SYNOD_COMETBFT_DIR, else built once by scripts/cometbft.sh (about two minutes)."""
    try:
        return str(binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft")
    except NodeUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_COMETBFT") == "1":
            pytest.fail(f"SYNOD_REQUIRE_COMETBFT=1 but no cometbft: {err}")
        pytest.skip(f"cometbft unavailable: {err}")


@pytest.fixture
def net(binary: str, tmp_path: Path) -> Iterator[LocalNet]:
    """Member 2 keeps its ledger on PostgreSQL when a server is configured."""
    dsn, dbname = postgres_dsn(), ""
    urls = [f"sqlite:///{tmp_path / f'm{i}.db'}" for i in range(1, 5)]
    if dsn:
        import psycopg

        dbname = f"synod_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')  # type: ignore[arg-type]
        urls[1] = f"{dsn} dbname={dbname}"
    network = LocalNet.create(
        tmp_path / "net", binary, COMMITTEE, urls, timeout_commit_ms=150, preexec=die_with_parent
    )
    try:
        network.start_all()
        network.wait_height(1, deadline_s=DEADLINE_S)
        yield network
    finally:
        network.close()
        if dbname:
            import psycopg

            with psycopg.connect(dsn or "", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')  # type: ignore[arg-type]


def poll(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            value = check()
        except (ConnectionError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {deadline_s} s: {what}")


def member(net: LocalNet, i: int, via: int | None = None) -> ReplicatedConsensus:
    rpc = net.member(via or i).rpc
    return ReplicatedConsensus(rpc, f"member:{i}", IDENTITIES[i].sign_secret, CHAIN_ID)


def api(net: LocalNet, via: int) -> ReplicatedConsensus:
    return ReplicatedConsensus(net.member(via).rpc, "operator:api", OPERATOR, CHAIN_ID)


def status_everywhere(net: LocalNet, request_id: str, ids: list[int] | None = None) -> set[str]:
    return {
        net.member(i).rpc.query("/withdrawal", request_id.encode())["status"]
        for i in ids or [1, 2, 3, 4]
    }


def agree(net: LocalNet, ids: list[int] | None = None) -> int:
    """Every member's own app hash at every height it committed is the same, the block headers
    carry them, and the full state digests match; returns the common height."""
    ids = ids or [1, 2, 3, 4]
    rpcs: dict[int, CometRpc] = {i: net.member(i).rpc for i in ids}
    top = min(rpc.status().height for rpc in rpcs.values())
    hashes = {i: rpc.query("/app_hashes", f"1:{top}".encode()) for i, rpc in rpcs.items()}
    first = hashes[ids[0]]
    assert len(first) == top
    for i in ids:
        assert hashes[i] == first, f"member {i} diverged"
    for h in range(2, top + 1):  # block h's header carries the app hash after block h - 1
        assert rpcs[ids[-1]].header_app_hash(h).lower() == first[str(h - 1)]
    poll("same height for the digest", lambda: len({r.status().height for r in rpcs.values()}) == 1)
    assert len({rpc.query("/digest") for rpc in rpcs.values()}) == 1
    return top


def to_broadcast(w: str, txid: str) -> list[tuple[Tx, str]]:
    """A withdrawal's write-backs up to BROADCAST, each with the status it leads to."""
    return [
        (Reserve(w), "RESERVED"),
        (StartSign(w, "s1"), "SIGNING"),
        (Signed(w, "s1", "sig"), "SIGNED"),
        (Broadcast(w, txid), "BROADCAST"),
    ]


def advance(net: LocalNet, request_id: str, steps: list[tuple[Tx, str]]) -> None:
    """Member 2 writes back each step; each waits until every replica shows its status."""
    for tx, status in steps:
        member(net, 2).submit(tx)
        poll(status, lambda s=status: status_everywhere(net, request_id) == {s})


def walk(net: LocalNet, request_id: str, submit_all: Callable[[Tx], None]) -> None:
    w = withdraw_id(request_id)
    for tx, status in (
        (Reserve(w), "RESERVED"),
        (StartSign(w, f"session-{request_id}"), "SIGNING"),
        (Signed(w, f"session-{request_id}", "sig"), "SIGNED"),
        (Broadcast(w, "0x" + "ab" * 32), "BROADCAST"),
        (Confirm(w, "0x" + "ab" * 32, 9), "CONFIRMED"),
    ):
        submit_all(tx)
        poll(f"{request_id} {status}", lambda s=status: status_everywhere(net, request_id) == {s})


def witness(net: LocalNet, tx: Tx, members: tuple[int, ...] = (1, 2, 3)) -> None:
    """What each member's watcher does: submit the fact it saw, through its own node."""
    for i in members:
        member(net, i).submit(tx)


def test_withdrawal_applied_once_and_a_killed_validator_replays(net: LocalNet) -> None:
    witness(net, DepositCredit("eth", "ETH", 10**18, "0xd1", 5))
    request = WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17)
    api(net, 3).submit(request)  # the same request through two nodes
    api(net, 4).submit(request)

    def every_member(tx: Tx) -> None:  # each member's runtime writes back what it saw
        for i in (1, 2, 3, 4):
            member(net, i).submit(tx)

    walk(net, "r1", every_member)
    for i in (1, 2, 3, 4):
        balance = net.member(i).rpc.query("/balance", b"eth/ETH")
        assert balance["withdrawn"] == 10**17 and balance["reserved"] == 0, i
    agree(net)

    net.kill(4)  # a crash: no clean shutdown of the validator or its application
    for k in range(5):  # the three that are up are the quorum
        witness(net, DepositCredit("eth", "ETH", 1000 + k, f"0xe{k}", 6))
    poll(
        "deposits while 4 is down",
        lambda: net.member(1).rpc.query("/balance", b"eth/ETH")["deposited"] == 10**18 + 5010,
    )
    target = net.height(1) + 2
    net.wait_height(target, [1, 2, 3])
    net.start(4)
    net.wait_height(target, deadline_s=DEADLINE_S)
    agree(net)


def test_no_quorum_no_blocks_and_forged_proof_and_outsider_refused(net: LocalNet) -> None:
    outsider = ReplicatedConsensus(net.member(1).rpc, "member:9", OUTSIDER, CHAIN_ID)
    with pytest.raises(Unauthorized):
        outsider.submit(DepositCredit("eth", "ETH", 10**18, "0xbad", 5))
    forged_member = SignedTx.sign(
        DepositCredit("eth", "ETH", 10**18, "0xbad", 5), "member:1", OUTSIDER, CHAIN_ID
    )
    code, _, _ = net.member(2).rpc.broadcast_tx_sync(forged_member.encode())
    assert code != 0  # member 1's name, someone else's key

    # Two of four stopped: 20 of 40 voting power is not more than 2/3, no block is made.
    net.stop(3)
    net.stop(4)
    halted = max(net.height(1), net.height(2))
    deposit = DepositCredit("eth", "ETH", 10**18, "0xd1", 5)
    witness(net, deposit, (1, 2))  # CheckTx still runs
    time.sleep(3.0)  # many block times: with a quorum, blocks would have come
    for i in (1, 2):
        assert net.height(i) <= halted + 1  # at most a block that was in flight at the stop
        assert net.member(i).rpc.query("/balance", b"eth/ETH")["deposited"] == 0
    net.start(3)
    net.start(4)
    member(net, 3, via=1).submit(deposit)  # the third witness
    poll(
        "deposit applied after the halt",
        lambda: all(
            net.member(i).rpc.query("/balance", b"eth/ETH")["deposited"] == 10**18
            for i in (1, 2, 3, 4)
        ),
    )

    # A withdrawal broadcast and reported failed; member 1 then claims, falsely, that its
    # transaction can never be mined, to release the funds for a second payment.
    api(net, 2).submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17))
    poll("request", lambda: status_everywhere(net, "r1") == {"QUEUED"})
    w = withdraw_id("r1")
    from synod.state.transactions import Fail

    advance(net, "r1", [*to_broadcast(w, "0x" + "cd" * 32), (Fail(w, "not seen"), "FAILED")])
    forged = Requeue(w, "replaced", "forged: nonce used by 0xbeef")
    member(net, 1).submit(forged)
    poll(  # each member attests from its own replica, once it holds the proof
        "proof pending everywhere",
        lambda: all(
            net.member(i).rpc.query("/proof", forged.tx_id.encode()) == {"status": "pending"}
            for i in (1, 2, 3, 4)
        ),
    )
    for i in (2, 3):  # the honest members' own chain nodes show no such thing
        member(net, i).submit(Attest(forged.tx_id, "forged"))
    poll(
        "proof refused everywhere",
        lambda: all(
            net.member(i).rpc.query("/proof", forged.tx_id.encode())["status"] == "forged"
            for i in (1, 2, 3, 4)
        ),
    )
    assert status_everywhere(net, "r1") == {"FAILED"}
    for i in (1, 2, 3, 4):
        assert net.member(i).rpc.query("/balance", b"eth/ETH")["reserved"] > 0
        assert net.member(i).rpc.query("/strikes") == {"1": 1}
    agree(net)


def test_one_lying_member_moves_nothing_alone_and_the_rest_go_on_without_it(
    net: LocalNet,
) -> None:
    """Member 1 lies on real validators: it credits a deposit that never happened, confirms a
    withdrawal that was never mined and strikes every other member three times. None of it
    changes a balance, a withdrawal's state or a strike on any replica. Silenced, it is not
    needed: the other three witness a deposit and a payment, which complete."""
    honest = (2, 3, 4)
    witness(net, DepositCredit("eth", "ETH", 10**18, "0xreal", 5), honest)
    api(net, 2).submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17))
    poll("request", lambda: status_everywhere(net, "r1") == {"QUEUED"})
    w = withdraw_id("r1")
    advance(net, "r1", to_broadcast(w, "0x" + "ab" * 32))

    liar = member(net, 1)
    liar.submit(DepositCredit("eth", "ETH", 5000 * 10**18, "0xinvented", 5))
    liar.submit(Confirm(w, "0x" + "ab" * 32, 9))  # not mined (it will be, at 12)
    for m in honest:
        for k in range(3):
            liar.submit(Strike(m, "invalid signature share", f"session s{k}"))
    poll(  # every lie is in a block, pending: 1 deposit, 1 confirmation, 9 strikes
        "the lies recorded",
        lambda: all(
            net.member(i).rpc.query("/witnesses").get("pending") == 11 for i in (1, 2, 3, 4)
        ),
    )
    for i in (1, 2, 3, 4):
        assert net.member(i).rpc.query("/balance", b"eth/ETH")["deposited"] == 10**18
        assert net.member(i).rpc.query("/strikes") == {}
    assert status_everywhere(net, "r1") == {"BROADCAST"}

    net.stop(1)  # silent now: the honest three are a quorum without it
    witness(net, Confirm(w, "0x" + "ab" * 32, 12), honest)
    witness(net, DepositCredit("eth", "ETH", 7, "0xlater", 6), honest)
    poll("paid without member 1", lambda: status_everywhere(net, "r1", [2, 3, 4]) == {"CONFIRMED"})
    poll(
        "credited without member 1",
        lambda: net.member(2).rpc.query("/balance", b"eth/ETH")["deposited"] == 10**18 + 7,
    )
    agree(net, [2, 3, 4])
