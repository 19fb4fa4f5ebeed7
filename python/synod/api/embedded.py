"""`synod api run` as a child process on a loopback port: what the demo, the benchmark and the
tests start when they need a real server over a store they also use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

import synod

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def api_process(
    db: str,
    port: int | None = None,
    args: Sequence[str] = (),
    log: Path | None = None,
    ready_checks: int = 600,
) -> Iterator[str]:
    """Start the API over `db`; yield its base URL once `/readyz` answers; stop it after.

    Readiness is polled every 0.1 s up to `ready_checks` times (a loaded machine can take
    seconds to import and start); the child's output goes to `log`, else nowhere. The
    token-free metrics listener is off unless `args` ask for one (several children would
    contend for its default port)."""
    port = port or free_port()
    if not any(a.partition("=")[0] == "--metrics-listen" for a in args):
        args = [*args, "--metrics-listen", "off"]
    env = {**os.environ, "PYTHONPATH": str(Path(synod.__file__).parents[1])}
    out: IO[bytes] | int = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    cmd = [sys.executable, "-m", "synod.cli.main", "api", "run", "--db", db, "--host", HOST]
    proc = subprocess.Popen([*cmd, "--port", str(port), *args], env=env, stdout=out, stderr=out)
    url = f"http://{HOST}:{port}"
    try:
        for _ in range(ready_checks):
            if proc.poll() is not None:
                raise RuntimeError(f"synod api run exited with status {proc.returncode}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("synod api run did not become ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not isinstance(out, int):
            out.close()
