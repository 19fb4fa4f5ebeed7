"""`synod api run` in a subprocess on a free loopback port, for tests that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

import synod


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def api_server(db: str, *extra: str, log: Path | None = None) -> Iterator[str]:
    """Start the API on `db`; yields its base URL once /readyz answers; stops it after."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(synod.__file__).parents[1])}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synod.cli.main",
            "api",
            "run",
            "--db",
            db,
            "--port",
            str(port),
            *extra,
        ],
        env=env,
        stdout=out,
        stderr=out,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # readiness, not timing: up to a minute on a loaded machine
            if proc.poll() is not None:
                raise RuntimeError(f"synod api run exited with {proc.returncode}")
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
        if log:
            out.close()  # type: ignore[union-attr]
