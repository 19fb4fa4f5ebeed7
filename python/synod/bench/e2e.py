"""End-to-end withdrawals per minute per chain, in the demo setup (`synod.demo.pipeline`).

Each chain runs alone: a 3-of-5 committee of member processes on loopback, one stopped
and one sending invalid shares, signs, and the chain's local engine executes and
confirms. Wall time covers reservation, signing (all members' CPU on this one machine),
broadcast and confirmation; the signing sessions' own wall time is reported beside it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

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
