"""Progress lines on stderr, so stdout stays clean for results and --json."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `[elapsed] step` lines to stderr unless quiet."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()

    def step(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:6.2f}s] {message}", file=sys.stderr, flush=True)
