"""What the local chain nodes (btcd, geth) share: finding or building their binaries, a free
loopback port, and a process that dies with its parent and always stops.

Binaries come from an environment variable naming their directory, or from a script in
`scripts/` that builds a pinned version from the Go module proxy into a cache directory and
prints that directory. A node that cannot be had raises `NodeUnavailable`, so callers name the
missing engine instead of faking a chain.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from synod.processes import tied_to_me

REPO = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT_S = 900
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
T = TypeVar("T")


class NodeUnavailable(RuntimeError):
    """A local node could not be found, built or started here."""


def binary_dir(
    env_var: str, script: str, binary: str, unavailable: type[NodeUnavailable] = NodeUnavailable
) -> Path:
    """The directory holding `binary`: `$env_var` if set, else what `scripts/<script>` prints
    (it builds the pinned version on first use and finds it cached afterwards)."""
    given = os.environ.get(env_var, "").strip()
    path = Path(given or _run_build_script(REPO / "scripts" / script, unavailable))
    if not (path / binary).is_file():
        raise unavailable(f"no {binary} binary in {path}")
    return path


def launch(
    args: list[str],
    home: Path,
    ready: Callable[[], T],
    not_yet: type[Exception] | tuple[type[Exception], ...],
    unavailable: type[NodeUnavailable] = NodeUnavailable,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], T]:
    """Start a node (output to `home/stdout.log`) and call `ready()` until it answers instead
    of raising `not_yet`. A node that exits or stays unready raises `unavailable`."""
    name = Path(args[0]).name
    log = (home / "stdout.log").open("wb")
    argv, preexec = tied_to_me(args)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = (home / "stdout.log").read_text(errors="replace")[-2000:]
            raise unavailable(f"{name} exited with {proc.returncode}: {tail}")
        try:
            return proc, ready()
        except not_yet:
            if time.monotonic() > deadline:
                stop_process(proc)
                raise unavailable(f"{name} RPC not ready within {START_TIMEOUT_S} s") from None
            time.sleep(0.1)


def _run_build_script(script: Path, unavailable: type[NodeUnavailable]) -> str:
    """Its stderr goes straight to ours: a first build takes minutes, and says so as it goes."""
    try:
        proc = subprocess.Popen(
            [str(script)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a timeout also stops the `go` processes it started
        )
    except OSError as err:
        raise unavailable(f"cannot run {script.name}: {err}") from None
    try:
        stdout, _ = proc.communicate(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise unavailable(f"{script.name} did not finish within {BUILD_TIMEOUT_S} s") from None
    if proc.returncode != 0 or not stdout.strip():
        raise unavailable(f"{script.name} failed (exit {proc.returncode}; its messages above)")
    return stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_base_port(n: int) -> int:
    """A base port P with P+1..P+n free on 127.0.0.1 right now (a local committee's
    members listen on consecutive ports)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        socks: list[socket.socket] = []
        try:
            for i in range(1, n + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range on 127.0.0.1")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
