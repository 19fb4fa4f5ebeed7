"""A development committee of members on one machine, made by the same steps as across hosts.

`create_members` runs `synod member init` for every member (each in its own directory, as on
its own host, at the address its `Site` gives: loopback, or a network namespace's address),
creates a committee CA, assembles the bundle from the public requests only, installs it in
every member and writes each member's `member.toml`. DEVELOPMENT ONLY: each member's keystore
passphrase sits in a file beside its directory (mode 0600), and so does the CA's. The
committee's operator (`root/operator`: its key, certificate and the CA certificate, as
`ControlTLS.from_dir` reads them) can call every member's control service.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synod.chains.signing_view import write as write_signing_view
from synod.consensus.localnet import set_toml
from synod.member.config import REPLICATED, SOLO
from synod.node.enrol import (
    CA_CERT,
    MemberRequest,
    OperatorRequest,
    assemble,
    create_ca,
    init_member,
    init_operator,
    install_member,
)
from synod.node.keystore import RFC9106_SECOND, KdfParams, atomic_write
from synod.node.manifest import Endpoint
from synod.node.pki import fingerprint
from synod.processes import descendants

PASSPHRASE = "passphrase"
CONFIG = "member.toml"
OPERATOR = "ops"  # the development committee's operator
SIGNING_VIEW = "chains.json"


@dataclass(frozen=True)
class Site:
    """Where a member runs: its address and its ports (peer service, CometBFT P2P, the
    validator's RPC and the ledger application on its loopback, its health endpoint)."""

    member_id: int
    host: str
    peer_port: int = 7100
    p2p_port: int = 26656
    rpc_port: int = 26657
    abci_port: int = 26658
    health_port: int = 9100


@dataclass(frozen=True)
class LocalMember:
    site: Site
    home: Path  # the host's directory: member/, passphrase, member.toml
    config: Path

    @property
    def member_id(self) -> int:
        return self.site.member_id

    @property
    def directory(self) -> Path:
        return self.home / "member"

    @property
    def health_url(self) -> str:
        return f"http://{self.site.host}:{self.site.health_port}"


def _secret(path: Path) -> bytes:
    value = secrets.token_urlsafe(24).encode()
    atomic_write(path, value + b"\n", 0o600)
    return value


def create_members(
    root: Path,
    sites: Sequence[Site],
    threshold: int,
    cometbft: Path | None,
    chain_id: str = "synod-local",
    kdf: KdfParams = RFC9106_SECOND,
    timeout_commit_ms: int | None = None,
    timeout_propose_ms: int | None = None,
    ledger_operators: dict[str, bytes] | None = None,
    extra_config: Callable[[Site], str] = lambda site: "",
    signing_view: Mapping[str, Mapping[str, Any]] | None = None,
    test_faults: Mapping[int, str] | None = None,
) -> list[LocalMember]:
    """Members under `root/host-<i>`; with `cometbft`, each with a validator and the
    replicated ledger, else one member on a solo ledger (`sites` must then be one).
    `ledger_operators` are the ledger's request-signing keys (name -> raw Ed25519 public
    key); `extra_config` is appended to each member's `member.toml` (e.g. its chains);
    `signing_view` is each member's signing view (`synod.chains.signing_view`);
    `test_faults` makes members misbehave on purpose (TEST ONLY: member id -> fault)."""
    if cometbft is None and len(sites) != 1:
        raise ValueError("a solo ledger has one member: give cometbft for a committee")
    root.mkdir(parents=True, exist_ok=True)
    made = []
    for site in sites:
        home = root / f"host-{site.member_id}"
        home.mkdir()
        passphrase = _secret(home / PASSPHRASE)
        p2p = Endpoint(site.host, site.p2p_port) if cometbft is not None else None
        request = init_member(
            home / "member",
            site.member_id,
            Endpoint(site.host, site.peer_port),
            passphrase,
            kdf,
            cometbft=cometbft,
            p2p=p2p,
        )
        made.append((site, home, passphrase, request))
    operator = init_operator(root / "operator", OPERATOR)
    (root / "ca").mkdir(mode=0o700)
    ca = create_ca(root / "ca", _secret(root / "ca" / PASSPHRASE))
    bundle = root / "bundle"
    requests: list[MemberRequest | OperatorRequest] = [r for *_, r in made]
    requests.append(operator)
    assemble(requests, threshold, ca, bundle, chain_id if cometbft else None, ledger_operators)
    for name in (CA_CERT, f"operator-{OPERATOR}/operator.pem"):
        (root / "operator" / Path(name).name).write_bytes((bundle / name).read_bytes())
    shared_host = len({site.host for site in sites}) < len(sites)
    out = []
    for site, home, passphrase, _ in made:
        install_member(home / "member", bundle, passphrase, fingerprint(ca.cert))
        if cometbft is not None:
            _tune_validator(
                home / "member" / "cometbft", shared_host, timeout_commit_ms, timeout_propose_ms
            )
        config = home / CONFIG
        if signing_view is not None:
            write_signing_view(home / "member" / SIGNING_VIEW, signing_view)
        fault = (test_faults or {}).get(site.member_id)
        text = _config(site, cometbft, signing_view is not None, fault) + extra_config(site)
        config.write_text(text)
        out.append(LocalMember(site, home, config))
    return out


def _tune_validator(
    home: Path, shared_host: bool, timeout_commit_ms: int | None, timeout_propose_ms: int | None
) -> None:
    """Loopback tuning: a stopped validator's turn to propose costs `timeout_propose` (3 s
    by default, sized for real networks) before the others move to the next round."""
    path = home / "config" / "config.toml"
    text = path.read_text()
    if shared_host:  # several members behind one address: CometBFT must accept that
        text = set_toml(text, "p2p", "allow_duplicate_ip", "true")
    if timeout_commit_ms is not None:
        text = set_toml(text, "consensus", "timeout_commit", f'"{timeout_commit_ms}ms"')
    if timeout_propose_ms is not None:
        text = set_toml(text, "consensus", "timeout_propose", f'"{timeout_propose_ms}ms"')
    path.write_text(text)


def _config(site: Site, cometbft: Path | None, signing_view: bool, fault: str | None) -> str:
    lines = [
        "[member]",
        'dir = "member"',
        f'passphrase_file = "{PASSPHRASE}"',
        f'health = "{site.host}:{site.health_port}"',
        *([f'chains = "{SIGNING_VIEW}"'] if signing_view else []),
        *([f'test_fault = "{fault}"'] if fault else []),
        "",
        "[ledger]",
        f'mode = "{REPLICATED if cometbft is not None else SOLO}"',
        'db = "ledger.db"',
    ]
    if cometbft is not None:
        lines += [
            f'cometbft = "{cometbft}"',
            f"rpc = {site.rpc_port}",
            f"abci = {site.abci_port}",
        ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- running them
def start_member(
    member: LocalMember, wrap: Callable[[list[str]], list[str]] = lambda argv: argv
) -> subprocess.Popen[bytes]:
    """`synod member run` for `member` (its output in `home/member.log`); `wrap` runs it
    elsewhere, e.g. inside the member's network namespace."""
    argv = [sys.executable, "-m", "synod.cli.main", "member", "run", "--config", str(member.config)]
    with open(member.home / "member.log", "ab") as log:
        return subprocess.Popen(wrap(argv), stdout=log, stderr=subprocess.STDOUT)


def stop_members(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    """SIGTERM every `synod member run` at once (each stops what it started); one still
    running after `timeout_s` is SIGKILLed with everything under it."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for pid in descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()


def is_ready(member: LocalMember, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{member.health_url}/readyz", timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def app_hashes(member: LocalMember) -> dict[int, str]:
    """The member's replica's own app hash per committed height (read-only)."""
    path = member.directory / "ledger.db"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT height, app_hash FROM block_hashes").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {int(h): str(a) for h, a in rows}
