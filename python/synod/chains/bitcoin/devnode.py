"""A local btcd node in regtest mode, for the end-to-end tests and `synod demo`.

The binaries come from ``SYNOD_BTCD_DIR`` or from ``scripts/btcd.sh`` (a pinned
btcd built from the Go module proxy into a cache directory). The node listens for
RPC on 127.0.0.1 only (no TLS, which btcd allows on loopback), has no P2P
listener, keeps a transaction index, applies mainnet relay policy, and mines to
the given address. It is always stopped by `stop()` (and on Linux also when its
parent process dies).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from synod.chains.bitcoin.rpc import BitcoinError, BitcoinRpc

REPO = Path(__file__).resolve().parents[4]
BUILD_TIMEOUT_S = 900
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
TAPROOT_ACTIVE_HEIGHT = 432  # btcd regtest activates Taproot by signalling over 144-block periods


class BtcdUnavailable(RuntimeError):
    """btcd could not be found or built here; the caller says so instead of faking a chain."""


def btcd_dir() -> Path:
    """Where btcd lives: SYNOD_BTCD_DIR, else what scripts/btcd.sh builds (or finds cached)."""
    given = os.environ.get("SYNOD_BTCD_DIR", "").strip()
    if given:
        path = Path(given)
    else:
        script = REPO / "scripts" / "btcd.sh"
        try:
            proc = subprocess.Popen(
                [str(script)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # a timeout also stops the `go` processes it started
            )
        except OSError as err:
            raise BtcdUnavailable(f"cannot run {script.name}: {err}") from None
        try:
            stdout, stderr = proc.communicate(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise BtcdUnavailable(
                f"{script.name} did not finish within {BUILD_TIMEOUT_S} s"
            ) from None
        if proc.returncode != 0 or not stdout.strip():
            raise BtcdUnavailable(f"{script.name} failed: {stderr.strip()[-500:]}")
        path = Path(stdout.strip().splitlines()[-1])
    if not (path / "btcd").is_file():
        raise BtcdUnavailable(f"no btcd binary in {path}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class DevNode:
    rpc: BitcoinRpc
    mining_address: str
    home: Path
    proc: subprocess.Popen[bytes]

    def mine(self, blocks: int = 1) -> list[str]:
        hashes: list[str] = self.rpc.call("generate", blocks)
        return hashes

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)


def start_btcd(mining_address: str, home: Path, bindir: Path | None = None) -> DevNode:
    """Start btcd in regtest in `home` and wait for its RPC; raises `BtcdUnavailable`."""
    bindir = bindir or btcd_dir()
    home.mkdir(parents=True, exist_ok=True)
    (home / "btcd.conf").write_text("")  # keep any ~/.btcd/btcd.conf out of it
    port = _free_port()
    password = secrets.token_hex(16)
    args = [
        str(bindir / "btcd"),
        "--regtest",
        f"--configfile={home / 'btcd.conf'}",
        f"--datadir={home / 'data'}",
        f"--logdir={home / 'logs'}",
        f"--rpccert={home / 'rpc.cert'}",
        f"--rpckey={home / 'rpc.key'}",
        f"--rpclisten=127.0.0.1:{port}",
        "--notls",
        "--rpcuser=synod",
        f"--rpcpass={password}",
        "--nolisten",
        "--txindex",
        "--rejectnonstd",
        f"--miningaddr={mining_address}",
        "--debuglevel=info",
    ]
    log = (home / "stdout.log").open("wb")
    env = {**os.environ, "HOME": str(home)}  # btcd creates ~/.btcd even when told otherwise
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
    )
    log.close()
    node = DevNode(
        BitcoinRpc(f"http://127.0.0.1:{port}", "synod", password, timeout=20),
        mining_address,
        home,
        proc,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = (home / "stdout.log").read_text(errors="replace")[-2000:]
            raise BtcdUnavailable(f"btcd exited with {proc.returncode}: {tail}")
        try:
            node.rpc.get_block_count()
            return node
        except BitcoinError:
            if time.monotonic() > deadline:
                node.stop()
                raise BtcdUnavailable(f"btcd RPC not ready within {START_TIMEOUT_S} s") from None
            time.sleep(0.1)
