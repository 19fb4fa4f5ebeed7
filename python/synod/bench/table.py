"""One way to time things and print the result as a table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One benchmark line: what was measured, for which parameters, and how long it took."""

    suite: str
    operation: str
    params: str
    seconds: float
    repeats: int
    note: str = ""


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, int]:
    """Median wall time of `repeats` calls of `fn`."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), repeats


def format_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def render(rows: Sequence[Row]) -> str:
    """Render rows as a Markdown table (readable in a terminal, pasteable into docs)."""
    head = ["suite", "operation", "params", "median", "repeats", "note"]
    body = [
        [r.suite, r.operation, r.params, format_seconds(r.seconds), str(r.repeats), r.note]
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |")
    return "\n".join(lines)
