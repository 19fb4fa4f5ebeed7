"""`synod api run` in a subprocess on a free loopback port, for tests that need a real server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synod.api.embedded import api_process, free_port

__all__ = ["api_server", "free_port"]


@contextmanager
def api_server(db: str, *extra: str, log: Path | None = None) -> Iterator[str]:
    with api_process(db, args=extra, log=log) as url:
        yield url
