"""A local btcd node in regtest mode, for the end-to-end tests and `synod demo`.

The binaries come from ``SYNOD_BTCD_DIR`` or from ``scripts/btcd.sh`` (a pinned
btcd built from the Go module proxy into a cache directory). The node listens for
RPC on 127.0.0.1 (no TLS, which btcd allows on loopback only) or, for members on other
hosts, on a given address with TLS (btcd's self-signed certificate, `DevNode.cafile`,
which names every address of the machine), has no P2P listener, keeps a transaction
index, applies mainnet relay policy, and mines to the given address. It is always stopped
by `stop()` (and on Linux also when its parent process dies).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from synod.chains.bitcoin.rpc import BitcoinError, BitcoinRpc
from synod.chains.localnode import (
    NodeUnavailable,
    binary_dir,
    free_port,
    launch,
    stop_process,
)

TAPROOT_ACTIVE_HEIGHT = 432  # btcd regtest activates Taproot by signalling over 144-block periods


class BtcdUnavailable(NodeUnavailable):
    """btcd could not be found or built here; the caller says so instead of faking a chain."""


def btcd_dir() -> Path:
    """Where btcd lives: SYNOD_BTCD_DIR, else what scripts/btcd.sh builds (or finds cached)."""
    return binary_dir("SYNOD_BTCD_DIR", "btcd.sh", "btcd", BtcdUnavailable)


@dataclass
class DevNode:
    rpc: BitcoinRpc
    mining_address: str
    home: Path
    proc: subprocess.Popen[bytes]
    url: str = ""  # the RPC's URL with its credentials (for members' configuration)
    cafile: Path | None = None  # the RPC's TLS certificate, when not on loopback

    def mine(self, blocks: int = 1) -> list[str]:
        hashes: list[str] = self.rpc.call("generate", blocks)
        return hashes

    def stop(self) -> None:
        stop_process(self.proc)


def start_btcd(
    mining_address: str,
    home: Path,
    bindir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    password: str | None = None,
) -> DevNode:
    """Start btcd in regtest in `home` and wait for its RPC on `host` (TLS unless loopback);
    raises `BtcdUnavailable`."""
    bindir = bindir or btcd_dir()
    home.mkdir(parents=True, exist_ok=True)
    (home / "btcd.conf").write_text("")  # keep any ~/.btcd/btcd.conf out of it
    port = port or free_port()
    password = password or secrets.token_hex(16)
    tls = host != "127.0.0.1"
    args = [
        str(bindir / "btcd"),
        "--regtest",
        f"--configfile={home / 'btcd.conf'}",
        f"--datadir={home / 'data'}",
        f"--logdir={home / 'logs'}",
        f"--rpccert={home / 'rpc.cert'}",
        f"--rpckey={home / 'rpc.key'}",
        f"--rpclisten={host}:{port}",
        *([] if tls else ["--notls"]),
        "--rpcuser=synod",
        f"--rpcpass={password}",
        "--nolisten",
        "--txindex",
        "--rejectnonstd",
        f"--miningaddr={mining_address}",
        "--debuglevel=info",
    ]
    url = f"{'https' if tls else 'http'}://{host}:{port}"
    cafile = home / "rpc.cert" if tls else None

    def client() -> BitcoinRpc:  # btcd writes its certificate as it starts
        if cafile is not None and not cafile.is_file():
            raise BitcoinError("no RPC certificate yet")
        return BitcoinRpc(
            url, "synod", password, timeout=20, cafile=None if cafile is None else str(cafile)
        )

    env = {**os.environ, "HOME": str(home)}  # btcd creates ~/.btcd even when told otherwise
    answers = (BitcoinError, OSError)  # the certificate half-written
    proc, rpc = launch(args, home, lambda: _ready(client()), answers, BtcdUnavailable, env)
    authority = f"synod:{password}@{host}:{port}"
    return DevNode(rpc, mining_address, home, proc, f"{url.split('://')[0]}://{authority}", cafile)


def _ready(rpc: BitcoinRpc) -> BitcoinRpc:
    rpc.get_block_count()
    return rpc
