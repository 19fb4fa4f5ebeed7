"""Blocks of signed transactions that walk withdrawals through the ledger, for the tests."""

from __future__ import annotations

import random

from synod.state.machine import withdraw_id_for
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Fail,
    Reserve,
    Signed,
    StartSign,
    WithdrawRequest,
)
from tests.consensus.conftest import by_member, by_operator, witnessed

ETH_TO = "0x" + "11" * 20


withdraw_id = withdraw_id_for


def to_failed(request_id: str, amount: int = 10**17, deposit: str = "0xd1") -> list[list[bytes]]:
    """Blocks taking a fresh ETH withdrawal to FAILED (broadcast, then reported failed)."""
    w = withdraw_id(request_id)
    return [
        [
            *witnessed(DepositCredit("eth", "ETH", 10**18, deposit, 7)),
            by_operator(WithdrawRequest(request_id, "eth", "ETH", ETH_TO, amount)),
        ],
        [by_member(2, Reserve(w)), by_member(3, StartSign(w, "s1"))],
        [by_member(4, Signed(w, "s1", "sig")), by_member(1, Broadcast(w, "0xaa"))],
        [by_member(2, Fail(w, "dropped"))],
    ]


def random_blocks(seed: int, count: int) -> list[list[bytes]]:
    """Deposits, requests and their lifecycle in a seeded, shuffled mix: some transactions are
    refused (out of order, unfunded), which the replicas must agree on too."""
    rng = random.Random(seed)
    txs: list[bytes] = []
    for i in range(count):
        chain = rng.choice(["eth", "btc"])
        if chain == "btc":
            deposit = DepositCredit("btc", "BTC", 50_000 + i, f"{i:064x}:0", i, "51")
        else:
            deposit = DepositCredit("eth", "ETH", 10**17 + i, f"0x{i:x}", i)
        # Witnessed by three random members (sometimes a fourth, a harmless extra vote).
        txs.extend(witnessed(deposit, tuple(rng.sample(range(1, 5), rng.choice([3, 3, 4])))))
        r = f"req{i}"
        w = withdraw_id(r)
        amount = rng.randint(1, 40_000) if chain == "btc" else rng.randint(1, 10**17)
        to = ETH_TO if chain == "eth" else "bcrt1q" + "q" * 38
        asset = "ETH" if chain == "eth" else "BTC"
        steps = [
            by_operator(WithdrawRequest(r, chain, asset, to, amount)),
            by_member(rng.randint(1, 4), Reserve(w)),
            by_member(rng.randint(1, 4), StartSign(w, f"s{i}")),
            by_member(rng.randint(1, 4), Signed(w, f"s{i}", "sig")),
            by_member(rng.randint(1, 4), Broadcast(w, f"{i:064x}")),
        ]
        steps = steps[: rng.randint(1, len(steps))]
        if len(steps) == 5 and rng.random() < 0.8:  # confirmed by a quorum, or (now and then)
            # by too few members to count
            steps += witnessed(Confirm(w, f"{i:064x}", i), tuple(rng.sample(range(1, 5), 3)))
        elif len(steps) == 5:
            steps += witnessed(Confirm(w, f"{i:064x}", i), (rng.randint(1, 4),))
        txs.extend(steps)
    # Local disorder: neighbours swap, so some transitions arrive before their predecessor.
    for j in range(0, len(txs) - 1, 3):
        if rng.random() < 0.3:
            txs[j], txs[j + 1] = txs[j + 1], txs[j]
    blocks, k = [], 0
    while k < len(txs):
        n = rng.randint(0, 6)
        blocks.append(txs[k : k + n])
        k += n
    return blocks
