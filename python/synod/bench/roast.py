"""ROAST benchmark: sessions, virtual time and CPU over the (t, n) × f × attacker-level grid."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from synod.sim.roast import RoastResult, RoastRun

GRID = ((3, 5), (11, 15), (34, 50), (67, 100))
LEVELS = ("static", "coordinated", "adaptive")


@dataclass(frozen=True)
class GridRow:
    t: int
    n: int
    f: int
    level: str
    runs: int
    ok: int
    sessions_median: float
    sessions_max: int
    virtual_s_median: float
    cpu_s_median: float


def grid_rows(
    sizes: Sequence[tuple[int, int]] = GRID,
    seeds: int = 10,
    rtt: float = 0.153,
    rotate_timeout: float = 60.0,
    progress: Callable[[str], None] = lambda _: None,
) -> list[GridRow]:
    rows = []
    for t, n in sizes:
        for f in sorted({0, (n - t) // 2, n - t}):
            for level in LEVELS:
                results: list[RoastResult] = []
                for seed in range(1, seeds + 1):
                    progress(f"{t}/{n} f={f} {level} seed {seed}")
                    results.append(
                        RoastRun(
                            t, n, f, level, seed, rtt=rtt, rotate_timeout=rotate_timeout
                        ).execute()
                    )
                ok = [r for r in results if r.ok]
                rows.append(
                    GridRow(
                        t,
                        n,
                        f,
                        level,
                        len(results),
                        len(ok),
                        statistics.median(r.sessions_started for r in results),
                        max(r.sessions_started for r in results),
                        statistics.median(r.virtual_elapsed_s for r in results),
                        statistics.median(r.cpu_s for r in results),
                    )
                )
    return rows


def render_grid(rows: Sequence[GridRow]) -> str:
    head = (
        "| t/n | f | attacker | ok | sessions (median / max / bound n−t+1) "
        "| virtual time (median) | CPU per run (median) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.t}/{r.n} | {r.f} | {r.level} | {r.ok}/{r.runs} | "
            f"{r.sessions_median:g} / {r.sessions_max} / {r.n - r.t + 1} | "
            f"{r.virtual_s_median:.3f} s | {r.cpu_s_median:.2f} s |"
        )
    return "\n".join(lines)


def large_rows(
    t: int = 800,
    n: int = 1000,
    silent: Sequence[int] = (0, 200),
    progress: Callable[[str], None] = lambda _: None,
) -> str:
    lines = [
        "| t/n | silent | ok | sessions | virtual time | CPU total | CPU coordinator "
        "| CPU per signer (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in silent:
        progress(f"{t}/{n} with {f} silent signers")
        r = RoastRun(t, n, f, "silent", seed=1, rotate_timeout=60.0).execute()
        lines.append(
            f"| {t}/{n} | {f} | {r.ok} | {r.sessions_started} | {r.virtual_elapsed_s:.3f} s | "
            f"{r.cpu_s:.1f} s | {r.cpu_coordinator_s:.2f} s | {r.cpu_signer_mean_s * 1e3:.1f} ms |"
        )
    return "\n".join(lines)
