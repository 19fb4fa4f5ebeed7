"""The demo on `synod member run` processes (`synod demo --members`, part of `make demo`).

Five members, each set up by the enrolment steps in a directory of its own (its own keys, its
validator, its `member.toml`) and started as one `synod member run` process on loopback: its
signer node, its replica of the replicated ledger behind its own CometBFT validator, its runtime
(withdraw worker, deposit watcher, proof attester) and its REST API. The members run the DKG of
the committee's Bitcoin key; btcd (regtest) mines to the committee's Taproot address, and the
members' watchers credit the matured coinbases (a deposit counts when a quorum reports it).
Member 4 is then stopped and member 5 runs with the test-only fault that makes it send invalid
signature shares. The withdrawals go in through member 2's API, each signed there with member
2's ledger operator key; every member's runtime drives them through its own replica, asking only
its own node to sign. The report is the withdrawal table (each paid exactly once, as btcd shows),
the culprits the signing sessions named (checked against the signature the chain accepted), and
the running replicas' agreement by app hash.

Bitcoin is the chain `member run` serves so far: the EVM and Solana engines of `synod demo`
run inside the demo's process, which the members' runtimes cannot reach.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coincurve
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.api.auth import Role, TokenStore
from synod.chains.bitcoin.address import Network, p2tr_address
from synod.chains.bitcoin.devnode import TAPROOT_ACTIVE_HEIGHT, DevNode, btcd_dir, start_btcd
from synod.chains.localnode import binary_dir
from synod.consensus.committee import operator_key_pem, raw_public
from synod.consensus.localnet import free_ports
from synod.member.local import (
    LocalMember,
    Site,
    app_hashes,
    create_members,
    is_ready,
    start_member,
    stop_members,
)
from synod.node.ceremony import run_dkg
from synod.node.control import ControlClient, ControlError, ControlTLS
from synod.node.keystore import atomic_write
from synod.node.manifest import Manifest
from synod.node.results import SessionStatus
from synod.node.templates import signing_session_id
from synod.processes import tied_to_me
from synod.state.db import open_database

THRESHOLD, PARTIES = 3, 5
ENTRY, STOPPED, LYING = 2, 4, 5  # requests through member 2; 4 stopped; 5 sends invalid shares
CHAIN_ID = "synod-demo-members"
KEY_ID = "btc-key"
READY_S, DEADLINE_S = 240.0, 600.0
MINE_EVERY_S = 0.5
TIMEOUT_PROPOSE_MS = 1000  # loopback: the stopped member's turn to propose costs this, not 3 s
Progress = Callable[[str], None]


@dataclass
class MembersReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    culprits: list[int] = field(default_factory=list)
    replicas: str | None = None
    unavailable: dict[str, str] = field(
        default_factory=lambda: {
            chain: "not served by `member run` yet (its engine runs in-process in `synod demo`)"
            for chain in ("eth", "bnb", "sol")
        }
    )
    elapsed_s: float = 0.0
    processing_s: float = 0.0

    @property
    def all_confirmed(self) -> bool:
        return bool(self.rows) and all(
            r["state"] == "CONFIRMED" and r["received"] == r["amount_base_units"] for r in self.rows
        )


@dataclass
class _Committee:
    members: list[LocalMember]
    procs: dict[int, subprocess.Popen[bytes]]
    clients: dict[int, ControlClient]
    token: str
    api_ports: dict[int, int]

    def api(self, member: int) -> str:
        return f"http://127.0.0.1:{self.api_ports[member]}"


def run_member_demo(
    workdir: Path, count: int = 3, progress: Progress = lambda _msg: None
) -> MembersReport:
    """The whole run in `workdir`; `NodeUnavailable` when cometbft or btcd cannot be had."""
    started = time.perf_counter()
    cometbft = binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
    btcd_bin = btcd_dir()
    report = MembersReport()
    btc_port, btc_password = free_ports(1)[0], os.urandom(12).hex()
    node: DevNode | None = None
    try:
        with _committee(workdir, cometbft, btc_port, btc_password, progress) as committee:
            key = run_dkg(committee.clients, KEY_ID, "bip340", THRESHOLD, 120.0)
            address = p2tr_address(key.verifying_key, Network.REGTEST)
            progress(f"btc: BIP340 DKG among the five members; committee address {address}")
            node = start_btcd(
                address, workdir / "btcd", btcd_bin, port=btc_port, password=btc_password
            )
            node.mine(TAPROOT_ACTIVE_HEIGHT)  # Taproot active; the first coinbases matured
            progress("btc: btcd (regtest) mining to the committee; the members' watchers credit")
            _wait(lambda: _available(committee) > 0, "the deposits credited by a quorum", 180)
            stop_members([committee.procs.pop(STOPPED)])
            committee.clients.pop(STOPPED).close()
            progress(f"member {STOPPED} stopped: the committee signs without it")
            processing = time.perf_counter()
            confirmed_at: dict[str, float] = {}
            with _miner(node):
                ids = _submit(committee, count, progress)
                _wait(lambda: _all_confirmed(committee, ids, confirmed_at), "all confirmed")
            report.processing_s = time.perf_counter() - processing
            report.rows = [_row(committee, node, wid) for wid in ids]
            for row, wid in zip(report.rows, ids, strict=True):
                row["latency_s"] = confirmed_at[wid] - ids[wid]
            named = {c for r in report.rows for c in r["culprits"]}
            report.culprits = sorted(named)
            report.replicas = _agreement([m for m in committee.members if m.member_id != STOPPED])
    finally:  # after the members: their watchers would only find it gone
        if node is not None:
            node.stop()
    report.elapsed_s = time.perf_counter() - started
    return report


# ----------------------------------------------------------------------------- the committee


@contextmanager
def _committee(
    workdir: Path, cometbft: Path, btc_port: int, btc_password: str, progress: Progress
) -> Iterator[_Committee]:
    ids = range(1, PARTIES + 1)
    keys = workdir / "operator-keys"  # each member's API signs with a ledger operator key
    keys.mkdir(parents=True, mode=0o700)
    operators, sites, api_ports = {}, [], {}
    for i in ids:
        key = Ed25519PrivateKey.generate()
        atomic_write(keys / f"api{i}.pem", operator_key_pem(key), 0o600)
        operators[f"api{i}"] = raw_public(key)
        peer, p2p, rpc, abci, health, api = free_ports(6)
        sites.append(Site(i, "127.0.0.1", peer, p2p, rpc, abci, health))
        api_ports[i] = api

    def extra(site: Site) -> str:
        i = site.member_id
        return (
            f'\n[api]\nlisten = "127.0.0.1:{api_ports[i]}"\ndb = "api.db"\n'
            f'operator_key = "{keys / f"api{i}.pem"}"\noperator = "api{i}"\n'
            f'\n[chains.btc]\nkey = "{KEY_ID}"\n'
            f'rpc = "http://synod:{btc_password}@127.0.0.1:{btc_port}"\n'
            'network = "regtest"\nconfirmations = 1\n'
            f"from_height = {TAPROOT_ACTIVE_HEIGHT - 101}\n"  # three matured coinbases
        )

    root = workdir / "members"
    progress(f"enrolment: {PARTIES} members, each its own keys and validator; CA assembles")
    members = create_members(
        root,
        sites,
        THRESHOLD,
        cometbft,
        CHAIN_ID,
        timeout_commit_ms=200,
        timeout_propose_ms=TIMEOUT_PROPOSE_MS,
        ledger_operators=operators,
        extra_config=extra,
        signing_view={"btc": {"network": "regtest"}},
        test_faults={LYING: "invalid-shares"},
    )
    store = open_database(f"sqlite:///{members[ENTRY - 1].directory / 'api.db'}")
    token, _ = TokenStore(store).create(Role.OPERATOR, "demo")
    store.close()
    procs = {m.member_id: start_member(m, lambda argv: tied_to_me(argv)[0]) for m in members}
    clients: dict[int, ControlClient] = {}
    try:
        _wait(lambda: all(is_ready(m, 1.0) for m in members), "every member ready", READY_S)
        progress(
            f"{PARTIES} `synod member run` processes ready: signer node, replica and validator, "
            f"runtime and API each; member {LYING} sends invalid shares (test fault)"
        )
        manifest = Manifest.load(members[0].directory / "manifest.json")
        clients = {
            m.id: ControlClient(
                str(m.endpoint), ControlTLS.from_dir(root / "operator", m.id), timeout=30.0
            )
            for m in manifest.members
        }
        yield _Committee(members, procs, clients, token, api_ports)
    finally:
        for client in clients.values():
            client.close()
        stop_members(list(procs.values()))


def _wait(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"not within {deadline_s:.0f} s: {what}")
        time.sleep(0.2)


@contextmanager
def _miner(node: DevNode) -> Iterator[None]:
    """A block every half second while the withdrawals go through (regtest mines on demand)."""
    stop = threading.Event()

    def mine() -> None:
        while not stop.wait(MINE_EVERY_S):
            node.mine(1)

    thread = threading.Thread(target=mine, name="btc-miner", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ----------------------------------------------------------------------------- through the API


def _get(committee: _Committee, path: str) -> Any:
    answer = httpx.get(
        committee.api(ENTRY) + path,
        headers={"Authorization": f"Bearer {committee.token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()


def _available(committee: _Committee) -> int:
    try:
        items = _get(committee, "/v1/balances")["items"]
    except httpx.HTTPError:
        return 0
    return sum(int(i["available"]) for i in items if i["chain"] == "btc")


def _submit(committee: _Committee, count: int, progress: Progress) -> dict[str, float]:
    """Withdrawal id -> when it was submitted."""
    ids = {}
    for i in range(count):
        to = p2tr_address(coincurve.PrivateKey().public_key.format()[1:], Network.REGTEST)
        sent = time.perf_counter()
        answer = httpx.post(
            committee.api(ENTRY) + "/v1/withdrawals",
            params={"wait": 20},
            json={
                "chain": "btc",
                "asset": "BTC",
                "destination": to,
                "amount": str(10_000_000 * (i + 1)),
                "external_id": f"demo-btc-{i}",
            },
            headers={
                "Authorization": f"Bearer {committee.token}",
                "Idempotency-Key": f"demo-btc-{i}",
            },
            timeout=60,
        )
        if answer.status_code not in (201, 202):
            raise RuntimeError(f"member {ENTRY}'s API refused a withdrawal: {answer.text}")
        ids[answer.json()["id"]] = sent
    progress(
        f"{count} withdrawals in through member {ENTRY}'s API; each member's runtime drives "
        "them on its own replica"
    )
    return ids


def _all_confirmed(committee: _Committee, ids: dict[str, float], seen: dict[str, float]) -> bool:
    """Whether the API shows every one confirmed; `seen` keeps when each first was."""
    for wid in ids:
        if wid in seen:
            continue
        try:
            state = _get(committee, f"/v1/withdrawals/{wid}")["state"]
        except httpx.HTTPError:
            return False
        if state == "CONFIRMED":
            seen[wid] = time.perf_counter()
    return len(seen) == len(ids)


# ----------------------------------------------------------------------------- the report


def _row(committee: _Committee, node: DevNode, wid: str) -> dict[str, Any]:
    w = _get(committee, f"/v1/withdrawals/{wid}")
    tx = node.rpc.get_raw_transaction(w["txid"]) if w.get("txid") else None
    received = 0
    for out in (tx or {}).get("vout", []):
        spk = out["scriptPubKey"]
        if w["destination"] in (spk.get("addresses") or [spk.get("address")]):
            received += round(out["value"] * 10**8)
    session = (w.get("signing_sessions") or [None])[-1]  # the one that signed
    culprits, rounds = _culprits(committee, session, tx) if session and tx else ([], 0)
    return {
        "chain": "btc",
        "amount": f"{int(w['amount']) / 10**8:g} BTC",
        "to": w["destination"],
        "state": w["state"],
        "txid": w.get("txid"),
        "confirmations": int((tx or {}).get("confirmations", 0)),  # as btcd counts them
        "sessions": rounds,  # ROAST sub-sessions the signing took
        "culprits": culprits,
        "received": received,
        "amount_base_units": int(w["amount"]),
    }


def _culprits(committee: _Committee, session: str, tx: dict[str, Any]) -> tuple[list[int], int]:
    """The members named by each input's signing session, and its ROAST sub-sessions, as
    reported by a member whose signature is the one the chain accepted in that input's
    witness (a member's word alone is not taken)."""
    named: set[int] = set()
    rounds = 0
    for index, vin in enumerate(tx["vin"]):
        on_chain = bytes.fromhex((vin.get("txinwitness") or [""])[0])
        for client in committee.clients.values():
            try:
                result = client.get_result(signing_session_id(session, index))
            except ControlError:
                continue
            if result.status is SessionStatus.DONE and result.signature == on_chain:
                named.update(result.culprits)
                rounds = max(rounds, result.sub_sessions)
    return sorted(named), rounds


def _agreement(members: list[LocalMember]) -> str:
    """The running replicas at one height with one app hash (raises when they differ)."""
    end = time.monotonic() + 60
    while True:
        hashes = [app_hashes(m) for m in members]
        common = min(max(h, default=0) for h in hashes)
        at = {h.get(common) for h in hashes}
        agreed = at.pop() if len(at) == 1 else None
        if common > 0 and agreed is not None:
            return f"{len(members)} replicas agree at height {common} (app hash {agreed[:16]}…)"
        if time.monotonic() > end:
            raise RuntimeError(f"the replicas differ at height {common}: {at}")
        time.sleep(0.2)
