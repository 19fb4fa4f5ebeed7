"""Waiting, HTTP probes and process trees for the member tests."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from synod.processes import descendants

DEADLINE_S = 120.0


def http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def wait_for(check: Callable[[], object], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


children_of = descendants  # every live descendant of a pid
