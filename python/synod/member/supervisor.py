"""The processes a member runs, kept running.

Each child (the signer node, the ledger application, the CometBFT validator) is started with
its output in its own log file and dies with the member (PR_SET_PDEATHSIG). A child that exits
is started again after a back-off that doubles from `initial_backoff_s` up to `max_backoff_s`,
and returns to the initial value once a run lasted `stable_s`; its restarts are counted (a
start that fails, say a binary replaced during an upgrade, is logged and tried again after the
next back-off). `stop` ends the children one after another in the order given, each with
SIGTERM and SIGKILL if it still runs after the timeout, so nothing is left running.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synod.processes import terminate, tied_to_me

log = logging.getLogger("synod.member.supervisor")


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    log: Path
    env: Mapping[bytes, bytes] | None = field(default=None, repr=False)  # may hold a passphrase


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    backoff_s: float = 0.0
    restarts: int = 0
    last_exit: int | None = None


class Supervisor:
    def __init__(
        self,
        specs: list[ChildSpec],
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("two children share a name")
        self._children = {s.name: _Child(s, backoff_s=initial_backoff_s) for s in specs}
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.clock = clock
        self.stopping = False

    def _start(self, child: _Child) -> None:
        spec = child.spec
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as out:
            argv, preexec = tied_to_me(spec.argv)
            child.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(spec.env) if spec.env is not None else None,
                preexec_fn=preexec,
                close_fds=True,
            )
        child.started_at = self.clock()
        log.info("%s started (pid %d)", spec.name, child.proc.pid)

    def start(self) -> None:
        for child in self._children.values():
            self._start(child)

    def poll(self) -> list[str]:
        """Notice exited children and start each again when its back-off has passed; returns
        the names started again now."""
        restarted = []
        now = self.clock()
        for name, child in self._children.items():
            if self.stopping or child.proc is None:
                continue
            code = child.proc.poll()
            if code is None:
                if now - child.started_at >= self.stable_s:
                    child.backoff_s = self.initial_backoff_s
                continue
            if child.next_start <= child.started_at:  # just noticed: schedule the restart
                child.last_exit = code
                child.next_start = now + child.backoff_s
                log.warning(
                    "%s exited with status %d; starting it again in %.1f s (see %s)",
                    name,
                    code,
                    child.backoff_s,
                    child.spec.log,
                )
                child.backoff_s = min(child.backoff_s * 2, self.max_backoff_s)
            if now >= child.next_start:
                child.restarts += 1
                try:
                    self._start(child)
                except (OSError, ValueError, subprocess.SubprocessError) as err:
                    child.started_at = now  # failed at once: wait out the next back-off
                    child.next_start = now + child.backoff_s
                    child.backoff_s = min(child.backoff_s * 2, self.max_backoff_s)
                    log.error("%s could not be started again: %s", name, err)
                    continue
                restarted.append(name)
        return restarted

    def running(self, name: str) -> bool:
        proc = self._children[name].proc
        return proc is not None and proc.poll() is None

    def pids(self) -> dict[str, int]:
        return {
            name: c.proc.pid
            for name, c in self._children.items()
            if c.proc is not None and c.proc.poll() is None
        }

    def restarts(self) -> dict[str, int]:
        return {name: c.restarts for name, c in self._children.items()}

    def stop(self, timeout: float = 30.0, order: list[str] | None = None) -> list[str]:
        """SIGTERM the children one by one, those named in `order` first and in that order
        (names it does not run are skipped), SIGKILL after `timeout`; returns the names that
        had to be killed."""
        self.stopping = True
        killed: list[str] = []
        first = [n for n in order or [] if n in self._children]
        for name in first + [n for n in self._children if n not in first]:
            child = self._children[name]
            if child.proc is None or child.proc.poll() is not None:
                continue
            killed += terminate({name: child.proc.pid}, timeout)  # reaps it too
        return killed
