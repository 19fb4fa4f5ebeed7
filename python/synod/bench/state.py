"""State machine throughput: full withdrawal lifecycles per second on SQLite and PostgreSQL.

Each withdrawal is seven transactions (deposit, request, reserve, start_sign, signed,
broadcast, confirm), half on Bitcoin (one UTXO each) and half on Ethereum (lots),
applied one transaction per database transaction, as a node applies finalized blocks.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from synod.state.db import PostgresDatabase, SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import Ledger
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Reserve,
    Signed,
    StartSign,
    WithdrawRequest,
)

SCRIPT = "5120" + "ef" * 32


def run_lifecycles(
    ledger: Ledger, count: int, progress: Callable[[str], None]
) -> tuple[float, int]:
    fee = FeeSchedule().account_fee("eth")
    txs = 0
    start = time.perf_counter()
    for i in range(count):
        if i % 2:
            ledger.apply(DepositCredit("btc", "BTC", 100_000, f"{i:064x}:0", i, SCRIPT))
            wid = ledger.apply(WithdrawRequest(f"r{i}", "btc", "BTC", "bc1pdest", 50_000)).result[
                "withdraw_id"
            ]
        else:
            ledger.apply(DepositCredit("eth", "ETH", 10**16 + fee, f"0xdep{i}", i))
            wid = ledger.apply(WithdrawRequest(f"r{i}", "eth", "ETH", "0xdest", 10**16)).result[
                "withdraw_id"
            ]
        ledger.apply(Reserve(wid))
        ledger.apply(StartSign(wid, f"s{i}"))
        ledger.apply(Signed(wid, f"s{i}", "sig"))
        ledger.apply(Broadcast(wid, f"{i:064x}"))
        ledger.apply(Confirm(wid, f"{i:064x}", i + 1))
        txs += 7
        if (i + 1) % 1000 == 0:
            progress(f"{i + 1}/{count} withdrawals")
    return time.perf_counter() - start, txs


def state_table(count: int = 10_000, progress: Callable[[str], None] = lambda _: None) -> str:
    lines = [
        "| store | withdrawals | transactions | seconds | withdrawals/s | transactions/s |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        progress("SQLite (WAL, synchronous=FULL)")
        db = SqliteDatabase(Path(tmp) / "bench.db")
        secs, txs = run_lifecycles(Ledger(db), count, progress)
        db.close()
        lines.append(
            f"| SQLite | {count} | {txs} | {secs:.1f} | {count / secs:.0f} | {txs / secs:.0f} |"
        )
    dsn = os.environ.get("SYNOD_BENCH_POSTGRES_DSN") or os.environ.get("SYNOD_TEST_POSTGRES_DSN")
    if dsn:
        import psycopg

        name = f"synod_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            progress("PostgreSQL (SERIALIZABLE)")
            pg = PostgresDatabase(f"{dsn} dbname={name}")
            secs, txs = run_lifecycles(Ledger(pg), count, progress)
            pg.close()
            rate = f"{count / secs:.0f} | {txs / secs:.0f}"
            lines.append(f"| PostgreSQL | {count} | {txs} | {secs:.1f} | {rate} |")
        finally:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        lines.append("| PostgreSQL | - | - | - | - | - | (set SYNOD_BENCH_POSTGRES_DSN) |")
    return "\n".join(lines)
