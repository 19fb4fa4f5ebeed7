"""How commands print a result for a person: one aligned `name  value` line per field."""

from __future__ import annotations

from collections.abc import Sequence


def print_fields(rows: Sequence[tuple[str, str]]) -> None:
    """Print the rows on stdout, the values aligned in one column."""
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
