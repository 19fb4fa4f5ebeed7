"""Small helpers about OS processes, shared by the member processes and the validators."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")

log = logging.getLogger("synod.processes")

PR_SET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 3, 4  # <linux/prctl.h>


def die_with_parent() -> None:
    """`preexec_fn` for a child process: SIGTERM when the process that started it dies. Prefer
    `tied_to_me`: a preexec function runs Python in the forked child, which gRPC's fork
    handlers can abort once its threads run in the parent."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def tied_to_me(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) for a child that gets SIGTERM when this process dies: through
    util-linux's ``setpriv --pdeathsig`` when it is installed (nothing runs in the forked child,
    so the fork is safe beside gRPC's threads), else through `die_with_parent`."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None and sys.platform == "linux":
        return [setpriv, "--pdeathsig", "TERM", "--", *argv], None
    return argv, die_with_parent


def forbid_core_dumps() -> None:
    """For a process about to hold secrets (decrypted key shares, keys): no core file
    (RLIMIT_CORE 0, soft and hard, so it cannot be raised again) and, on Linux, not
    dumpable (PR_SET_DUMPABLE 0: no core either way, and no ptrace attach or reading
    of its memory by other processes of the same user). Raises `OSError` if Linux
    refuses; on another system only the limit is set, and a line says so."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not sys.platform.startswith("linux"):
        log.info(
            "core files off; %s has no PR_SET_DUMPABLE, the process stays dumpable", sys.platform
        )
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0): {os.strerror(errno)}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: int) -> bool:
    """Whether `pid` still runs; a child of this process that has exited is reaped here
    (else it would linger as a zombie that looks alive)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: ask the system
        return pid_alive(pid)
    return reaped == 0


def terminate(pids: Mapping[K, int], timeout: float) -> list[K]:
    """SIGTERM every process in `pids` at once, SIGKILL those still running after
    `timeout`; returns the keys of the killed ones."""
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(running(p) for p in pids.values()):
        time.sleep(0.05)
    killed = []
    for key, pid in pids.items():
        if running(pid):
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                os.kill(pid, signal.SIGKILL)
            killed.append(key)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return killed


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc; empty where there is none)."""
    parents: dict[int, int] = {}
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
