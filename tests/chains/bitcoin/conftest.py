"""A real btcd node on loopback for the end-to-end tests.

The binaries come from ``scripts/btcd.sh`` (pinned, built once into a cache directory), or
from ``SYNOD_BTCD_DIR``. Without them the end-to-end tests are skipped, unless
``SYNOD_REQUIRE_BTCD=1`` (CI), which turns the skip into a failure.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from synod.chains.bitcoin.address import Network, p2tr_address
from synod.chains.bitcoin.rpc import BitcoinError, BitcoinRpc
from synod.crypto import frost

REPO = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT_S = 900  # a cold `go install` downloads modules and compiles (~1 min here)
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class FrostGroup:
    keys: dict[int, frost.KeyPackage]
    public: frost.PublicKeyPackage

    @property
    def output_key(self) -> bytes:
        return self.public.group_public_key(frost.KEY_PATH)

    def sign(self, message: bytes, signers: list[int] | None = None) -> bytes:
        chosen = signers or sorted(self.keys)[: self.public.min_signers]
        return frost.local_sign(self.keys, self.public, message, chosen, frost.KEY_PATH).raw


@dataclass(frozen=True)
class Node:
    rpc: BitcoinRpc
    mining_address: str
    datadir: Path


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SYNOD_REQUIRE_BTCD") == "1":
        pytest.fail(f"SYNOD_REQUIRE_BTCD=1 but btcd is unavailable: {reason}")
    pytest.skip(f"btcd unavailable: {reason}")


def btcd_dir() -> Path:
    """Where btcd lives: SYNOD_BTCD_DIR, else what scripts/btcd.sh builds (or finds cached)."""
    given = os.environ.get("SYNOD_BTCD_DIR", "").strip()
    if given:
        path = Path(given)
    else:
        # Own process group, so a timeout also stops the `go` processes the script started.
        try:
            proc = subprocess.Popen(
                [str(REPO / "scripts" / "btcd.sh")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as err:
            _unavailable(f"cannot run scripts/btcd.sh: {err}")
        try:
            stdout, stderr = proc.communicate(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            _unavailable(f"scripts/btcd.sh did not finish within {BUILD_TIMEOUT_S} s")
        if proc.returncode != 0 or not stdout.strip():
            _unavailable(f"scripts/btcd.sh failed: {stderr.strip()[-500:]}")
        path = Path(stdout.strip().splitlines()[-1])
    if not (path / "btcd").is_file():
        _unavailable(f"no btcd binary in {path}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: btcd gets SIGTERM if the test process dies without running its finalizers."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def frost_group() -> FrostGroup:
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    return FrostGroup(keys, public)


@pytest.fixture(scope="module")
def btcd(frost_group: FrostGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """btcd in regtest mode: RPC (no TLS) and nothing else, on 127.0.0.1 only, in a temp dir,
    mining to the FROST group's P2TR address. Always stopped at the end of the module."""
    bindir = btcd_dir()
    home = tmp_path_factory.mktemp("btcd")
    (home / "btcd.conf").write_text("")  # keep any ~/.btcd/btcd.conf out of the test
    port = _free_port()
    password = secrets.token_hex(16)
    mining_address = p2tr_address(frost_group.output_key, Network.REGTEST)
    args = [
        str(bindir / "btcd"),
        "--regtest",
        f"--configfile={home / 'btcd.conf'}",
        f"--datadir={home / 'data'}",
        f"--logdir={home / 'logs'}",
        f"--rpccert={home / 'rpc.cert'}",
        f"--rpckey={home / 'rpc.key'}",
        f"--rpclisten=127.0.0.1:{port}",
        "--notls",  # allowed by btcd only on loopback
        "--rpcuser=synod",
        f"--rpcpass={password}",
        "--nolisten",  # no P2P listener at all
        "--txindex",
        "--rejectnonstd",  # mainnet relay policy (regtest would relay dust and the like)
        f"--miningaddr={mining_address}",
        "--debuglevel=info",
    ]
    log = (home / "stdout.log").open("wb")
    env = {**os.environ, "HOME": str(home)}  # btcd creates ~/.btcd even when told otherwise
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
    )
    try:
        rpc = BitcoinRpc(f"http://127.0.0.1:{port}", "synod", password, timeout=20)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = (home / "stdout.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"btcd exited with {proc.returncode}:\n{tail}")
            try:
                rpc.get_block_count()
                break
            except BitcoinError:
                if time.monotonic() > deadline:
                    pytest.fail(f"btcd RPC not ready within {START_TIMEOUT_S} s")
                time.sleep(0.1)
        yield Node(rpc, mining_address, home)
    finally:
        _stop(proc)
        log.close()
