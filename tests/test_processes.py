"""A child tied to its starter gets SIGTERM when the starter dies, even SIGKILLed, and nothing
Python runs in the forked child on the way (a fork beside gRPC's threads stays safe)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from synod.processes import running, tied_to_me

STARTER = """
import subprocess, sys, time
from synod.processes import tied_to_me
argv, preexec = tied_to_me(["sleep", "300"])
child = subprocess.Popen(argv, preexec_fn=preexec)
print(child.pid, preexec is None, flush=True)
time.sleep(300)
"""


def test_a_tied_child_dies_with_its_sigkilled_starter() -> None:
    if sys.platform != "linux":
        pytest.skip("parent-death signals are Linux's")
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    pid_text, no_preexec = starter.stdout.readline().split()
    child = int(pid_text)
    assert no_preexec == str(tied_to_me(["x"])[1] is None)  # setpriv where installed
    assert Path(f"/proc/{child}").exists()
    # setpriv asks for the signal, then becomes `sleep`: kill the starter only once it has
    # (killed before, the request is never made: a window of microseconds, wide under load)
    end = time.monotonic() + 30
    while _comm(child) != "sleep" and time.monotonic() < end:
        time.sleep(0.01)
    assert _comm(child) == "sleep"
    starter.kill()
    starter.wait()
    end = time.monotonic() + 10
    while time.monotonic() < end and Path(f"/proc/{child}").exists() and running(child):
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or not running(child)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
