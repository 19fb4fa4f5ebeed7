"""A small mixed workload used by the runtime tests and the worker subprocess."""

from __future__ import annotations

from synod.state.fees import FeeSchedule
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, WithdrawRequest

SCRIPT = "5120" + "cd" * 32


def load(ledger: Ledger, withdrawals: int = 6) -> None:
    fees = FeeSchedule()
    for i in range(3):
        ledger.apply(DepositCredit("btc", "BTC", 400_000, f"{i + 1:064x}:0", 10 + i, SCRIPT))
    ledger.apply(DepositCredit("eth", "ETH", 50 * fees.account_fee("eth"), "0xfund", 5))
    for i in range(withdrawals):
        if i % 2:
            ledger.apply(WithdrawRequest(f"req-{i}", "btc", "BTC", f"bc1pdest{i}", 50_000 + i))
        else:
            ledger.apply(WithdrawRequest(f"req-{i}", "eth", "ETH", f"0xdest{i}", 10**15 + i))
