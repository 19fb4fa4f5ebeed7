"""End-to-end withdrawals per minute per chain, in the demo setup (`synod.demo.pipeline`).

Each chain runs alone: a 3-of-5 committee of member processes on loopback, one stopped
and one sending invalid shares, signs, and the chain's local engine executes and
confirms. Wall time covers reservation, signing (all members' CPU on this one machine),
broadcast and confirmation; the signing sessions' own wall time is reported beside it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synod.demo.members import run_member_demo
from synod.demo.pipeline import run_demo


def e2e_table(per_chain: int = 20, progress: Callable[[str], None] = lambda _: None) -> str:
    lines = [
        "| chain | engine | withdrawals | wall time (processing) | withdrawals/min (wall) "
        "| signing time (summed) | sub-sessions |",
        "|---|---|---|---|---|---|---|",
    ]
    engines = {
        "btc": "btcd v0.24.2 regtest",
        "eth": "py-evm (eth-tester)",
        "bnb": "py-evm (eth-tester)",
        "sol": "Solana runtime (LiteSVM)",
    }
    for chain in ("btc", "eth", "bnb", "sol"):
        progress(f"e2e {chain}: {per_chain} withdrawals")
        with tempfile.TemporaryDirectory(prefix="synod-bench-") as tmp:
            report = run_demo(Path(tmp), per_chain, progress=lambda _: None, chains=(chain,))
        if chain in report.unavailable:
            lines.append(f"| {chain} | {report.unavailable[chain]} | - | - | - | - | - |")
            continue
        done = sum(r["state"] == "CONFIRMED" for r in report.rows)
        sessions = sum(r["sessions"] for r in report.rows)
        rate = done / report.processing_s * 60 if report.processing_s else 0.0
        lines.append(
            f"| {chain} | {engines[chain]} | {done}/{len(report.rows)} | "
            f"{report.processing_s:.1f} s | {rate:.0f} | "
            f"{report.signing_s:.1f} s | {sessions} |"
        )
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100) of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def e2e_members_table(count: int = 20, progress: Callable[[str], None] = lambda _: None) -> str:
    """Bitcoin withdrawals end to end through the REST API on five `synod member run`
    services over the replicated ledger (`synod.demo.members`: member 4 stopped, member 5
    lying), beside the same chain in the demo pipeline on the solo orderer. Latency is from
    the API's answer to the submission (solo: from its submission, or from when the worker
    started if later) to the first time the withdrawal is seen confirmed."""
    lines = [
        "| ledger | setup | withdrawals | wall time | withdrawals/min | "
        "p50 submitted→confirmed | p99 |",
        "|---|---|---|---|---|---|---|",
    ]

    def members(tmp: Path) -> Any:
        return run_member_demo(tmp, count, lambda _: None)

    def solo(tmp: Path) -> Any:
        return run_demo(tmp, count, progress=lambda _: None, chains=("btc",))

    runs: list[tuple[str, str, Callable[[Path], Any]]] = [
        (
            "replicated (5 validators)",
            "5 `synod member run`, API on member 2, every member's runtime",
            members,
        ),
        ("solo orderer", "demo pipeline: 5 signer nodes, one worker, the solo ledger", solo),
    ]
    for ledger, setup, run in runs:
        progress(f"e2e btc on the {ledger} ledger: {count} withdrawals")
        with tempfile.TemporaryDirectory(prefix="synod-bench-") as tmp:
            report = run(Path(tmp))
        if "btc" in getattr(report, "unavailable", {}) and not report.rows:
            lines.append(f"| {ledger} | {report.unavailable['btc']} | - | - | - | - | - |")
            continue
        done = sum(r["state"] == "CONFIRMED" for r in report.rows)
        latencies = [r["latency_s"] for r in report.rows if r.get("latency_s") is not None]
        rate = done / report.processing_s * 60 if report.processing_s else 0.0
        p50 = f"{_percentile(latencies, 50):.2f} s" if latencies else "-"
        p99 = f"{_percentile(latencies, 99):.2f} s" if latencies else "-"
        lines.append(
            f"| {ledger} | {setup} | {done}/{len(report.rows)} | "
            f"{report.processing_s:.1f} s | {rate:.0f} | {p50} | {p99} |"
        )
    return "\n".join(lines)
