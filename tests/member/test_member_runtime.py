"""Withdrawals paid by members on their own hosts: four `synod member run`, each in its own
network namespace, each running its runtime (withdraw worker, deposit watcher, proof attester)
on its own replica and signing through its own node; btcd (regtest) on the hosts' bridge,
reached over TLS. The committee's coinbases are credited when a quorum of the members' watchers
report them; member 1's runtime also reports, alone, deposits that never happened, which no
replica ever credits. Withdrawals go in through member 2's REST API (a view over its replica
that signs each request with its own ledger operator key and sends it to member 2's
validator); a retry through member 3's API is the same withdrawal, deduplicated by the ledger.
One member's link is cut in the middle of the batch: the batch completes and every recipient is
paid exactly once; the link restored, the member catches up, its replica's app hash equals the
others', and it takes part in the next signing session.

Needs root, cometbft and btcd (skipped with the reason otherwise; CI requires them)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import coincurve
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.api.auth import Role, TokenStore
from synod.bench.netns import Hosts, unavailable
from synod.chains.bitcoin.address import Network, p2tr_address
from synod.chains.bitcoin.devnode import TAPROOT_ACTIVE_HEIGHT, BtcdUnavailable, DevNode, start_btcd
from synod.chains.localnode import free_port
from synod.consensus.committee import operator_key_pem, raw_public
from synod.member.local import (
    LocalMember,
    Site,
    app_hashes,
    create_members,
    is_ready,
    start_member,
    stop_members,
)
from synod.node.ceremony import GroupKey, run_dkg
from synod.node.control import ControlClient, ControlError, ControlTLS
from synod.node.keystore import atomic_write
from synod.node.manifest import Manifest
from synod.node.results import SessionResult, SessionStatus
from synod.node.templates import signing_session_id
from synod.state.db import open_database
from tests.member.helpers import wait_for
from tests.node.helpers import FAST_KDF
from tests.node.test_node_cli import synod_cmd

pytestmark = pytest.mark.cometbft
MEMBERS = (1, 2, 3, 4)
API_PORT = 8080
LIAR = 1  # its runtime reports a deposit that never happened beside every real one
ENTRY, RETRY, CUT = 2, 3, 4  # requests go in through member 2 (a retry through member 3);
# member 4's link is cut mid-batch
CHAIN_ID = "synod-runtime-hosts"
FIRST_DEPOSIT = TAPROOT_ACTIVE_HEIGHT - 101  # the watchers start here: three matured coinbases


@dataclass
class World:
    hosts: Hosts
    members: list[LocalMember]
    btcd: DevNode
    key: GroupKey
    tokens: dict[int, str]  # an operator token of members 2's and 3's APIs
    clients: dict[int, ControlClient]


def _required(name: str, reason: str) -> None:
    if os.environ.get(f"SYNOD_REQUIRE_{name}") == "1":
        pytest.fail(f"SYNOD_REQUIRE_{name}=1 but {reason}")
    pytest.skip(reason)


def _api(site: Site, keys: Path) -> str:
    return (
        "\n[api]\n"
        f'listen = "{site.host}:{API_PORT}"\n'
        'db = "api.db"\n'
        f'operator_key = "{keys / f"api-{site.member_id}.pem"}"\n'
        f'operator = "api{site.member_id}"\n'
    )


def _chains(btcd_url: str, cafile: Path) -> str:
    return (
        "\n[chains.btc]\n"
        'key = "btc-key"\n'
        f'rpc = "{btcd_url}"\n'
        f'cafile = "{cafile}"\n'
        'network = "regtest"\n'
        "confirmations = 1\n"
        f"from_height = {FIRST_DEPOSIT}\n"
    )


def _rows(member: LocalMember, sql: str) -> list[tuple[object, ...]]:
    """A read-only query of the member's replica (absent tables: nothing yet)."""
    path = member.directory / "ledger.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def _statuses(member: LocalMember) -> dict[str, str]:
    return {str(r): str(s) for r, s in _rows(member, "SELECT request_id, status FROM withdrawals")}


@pytest.fixture(scope="module")
def world(cometbft: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    why = unavailable()
    if why is not None:
        _required("NETNS", why)
    root = tmp_path_factory.mktemp("runtime-hosts")
    hosts = Hosts(len(MEMBERS))
    procs: list[subprocess.Popen[bytes]] = []
    clients: dict[int, ControlClient] = {}
    btcd: DevNode | None = None
    try:
        # btcd on the bridge, where every host reaches it; it starts once the committee's key
        # exists (it mines to it), so its address, port and password are chosen now.
        gateway, port, password = f"10.{hosts.net}.0.1", free_port(), os.urandom(12).hex()
        btcd_home = root / "btcd"
        # Each member's API signs requests with a ledger operator key of its own.
        keys = root / "keys"
        keys.mkdir(mode=0o700)
        operators = {}
        for i in MEMBERS:
            key = Ed25519PrivateKey.generate()
            atomic_write(keys / f"api-{i}.pem", operator_key_pem(key), 0o600)
            operators[f"api{i}"] = raw_public(key)
        members = create_members(
            root / "hosts",
            [Site(i, hosts.address(i)) for i in MEMBERS],
            3,
            cometbft,
            CHAIN_ID,
            FAST_KDF,
            ledger_operators=operators,
            extra_config=lambda site: (
                _api(site, keys)
                + _chains(f"https://synod:{password}@{gateway}:{port}", btcd_home / "rpc.cert")
            ),
            signing_view={"btc": {"network": "regtest"}},
            test_faults={LIAR: "fake-deposits"},
        )
        tokens = {}
        for m in (ENTRY, RETRY):
            api_db = open_database(f"sqlite:///{members[m - 1].directory / 'api.db'}")
            tokens[m], _ = TokenStore(api_db).create(Role.OPERATOR, "test")  # before it starts
            api_db.close()
        procs = [start_member(m, lambda argv, i=m.member_id: hosts.argv(i, argv)) for m in members]
        wait_for(lambda: all(is_ready(m) for m in members), "every member ready", 180)
        manifest = Manifest.load(members[0].directory / "manifest.json")
        clients = {
            m.id: ControlClient(
                str(m.endpoint), ControlTLS.from_dir(root / "hosts" / "operator", m.id), 30.0
            )
            for m in manifest.members
        }
        key = run_dkg(clients, "btc-key", "bip340", 3, 120.0)
        address = p2tr_address(key.verifying_key, Network.REGTEST)
        try:
            btcd = start_btcd(address, btcd_home, host=gateway, port=port, password=password)
        except BtcdUnavailable as err:
            _required("BTCD", f"btcd unavailable: {err}")
        btcd.mine(TAPROOT_ACTIVE_HEIGHT)
        yield World(hosts, members, btcd, key, tokens, clients)
    finally:
        for client in clients.values():
            client.close()
        stop_members(procs)
        if btcd is not None:
            btcd.stop()
        hosts.close()


def submit(world: World, requests: list[tuple[str, str, int]], entry: int = ENTRY) -> list[int]:
    """The withdrawal requests through member `entry`'s API, from outside its host; the
    statuses (202 while a request waits for its block, 201 once `?wait=` saw it in one, 409
    for an `external_id` the ledger already holds)."""
    member = world.members[entry - 1]
    url = f"http://{member.site.host}:{API_PORT}/v1/withdrawals"
    statuses = []
    for request_id, to, amount in requests:
        answer = httpx.post(
            url,
            params={"wait": 20},
            json={
                "chain": "btc",
                "asset": "BTC",
                "destination": to,
                "amount": str(amount),
                "external_id": request_id,
            },
            headers={
                "Authorization": f"Bearer {world.tokens[entry]}",
                "Idempotency-Key": request_id,
            },
            timeout=60,
        )
        assert answer.status_code in (201, 202, 409), answer.text
        if answer.status_code != 409:
            assert int(answer.headers["synod-ledger-height"]) > 0
        statuses.append(answer.status_code)
    return statuses


class Miner:
    """A block every half second while a test waits for confirmations."""

    def __init__(self, btcd: DevNode) -> None:
        self.btcd, self.stop = btcd, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self.btcd.mine(1)

    def __enter__(self) -> Miner:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()


def received(btcd: DevNode, address: str, since: int) -> list[tuple[str, int]]:
    """Every output paying `address` in the blocks from `since` (txid, satoshis)."""
    out = []
    for height in range(since, btcd.rpc.get_block_count() + 1):
        block = btcd.rpc.get_block(btcd.rpc.get_block_hash(height), 2)
        for tx in block.get("rawtx") or block["tx"]:
            for vout in tx["vout"]:
                spk = vout.get("scriptPubKey", {})
                if address in (spk.get("addresses") or [spk.get("address")]):
                    out.append((tx["txid"], round(vout["value"] * 10**8)))
    return out


def _metrics(member: LocalMember) -> str:
    try:
        return httpx.get(f"{member.health_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


def _pending(member: LocalMember) -> float:
    for line in _metrics(member).splitlines():
        if line.startswith('synod_ledger_witnessed{status="pending"}'):
            return float(line.split()[-1])
    return 0.0


def _recipient() -> str:
    return p2tr_address(coincurve.PrivateKey().public_key.format()[1:], Network.REGTEST)


def test_members_pay_once_through_a_cut_and_the_cut_member_signs_again(world: World) -> None:
    members, cut = world.members, world.members[CUT - 1]
    others = [m for m in members if m is not cut]
    # The committee's matured coinbases: credited on every replica by a quorum of watchers.
    wait_for(
        lambda: all(len(_rows(m, "SELECT * FROM utxos")) >= 3 for m in members),
        "three deposits credited on every replica",
        180,
    )
    # Member 1's runtime also reports a deposit in every block that never happened: alone, it
    # is a pending report the ledger never acts on, on any replica.
    wait_for(lambda: _pending(members[0]) >= 1, "member 1's lone reports pending")
    for m in members:
        assert _rows(m, f"SELECT * FROM utxos WHERE outpoint LIKE '{'0' * 64}:%'") == []
        assert _rows(m, "SELECT * FROM lots WHERE lot_id LIKE '%" + "0" * 64 + "%'") == []
    since = world.btcd.rpc.get_block_count() + 1
    batch = [(f"w{i}", _recipient(), 10_000_000 * (i + 1)) for i in range(3)]
    with Miner(world.btcd):
        assert 201 in submit(world, batch)  # `?wait=` saw them in a block
        wait_for(
            lambda: any(s != "QUEUED" for s in _statuses(members[0]).values()),
            "the batch under way",
            120,
        )
        world.hosts.cut(CUT)  # in the middle of the batch
        at_cut = _statuses(members[0])
        assert list(at_cut.values()).count("CONFIRMED") < len(batch), at_cut
        try:
            wait_for(
                lambda: all(_statuses(m) == {r: "CONFIRMED" for r, _, _ in batch} for m in others),
                "the batch confirmed on the three connected replicas",
                300,
            )
        finally:
            world.hosts.restore(CUT)
    for request_id, to, amount in batch:
        assert [sats for _, sats in received(world.btcd, to, since)] == [amount], request_id
    # A client retrying with the CLI through another member's API: the ledger refuses a second
    # request with the same external id, so it stays one withdrawal, paid once.
    api3 = f"http://{members[RETRY - 1].site.host}:{API_PORT}"
    env = {"SYNOD_API_TOKEN": world.tokens[RETRY]}
    request_id, to, amount = batch[0]
    retry = synod_cmd(
        "withdraw", "create", "--api", api3, "--chain", "btc", "--asset", "BTC", "--to", to,
        "--amount", str(amount), "--external-id", request_id, env=env,
    )  # fmt: skip
    assert retry.returncode == 2 and "already used" in retry.stderr, retry.stderr
    rows = _rows(members[0], "SELECT COUNT(*) FROM withdrawals WHERE request_id = 'w0'")
    assert rows == [(1,)]
    listed = synod_cmd("withdraw", "list", "--api", api3, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    states = {w["external_id"]: w["state"] for w in json.loads(listed.stdout)["items"]}
    assert states == {r: "CONFIRMED" for r, _, _ in batch}  # member 3's replica, via its API

    # The cut member catches up; its replica agrees with the others' by app hash.
    target = max(max(app_hashes(m)) for m in others)
    wait_for(lambda: max(app_hashes(cut), default=0) >= target, "the cut member catching up", 180)
    assert len({app_hashes(m)[target] for m in members}) == 1
    wait_for(lambda: is_ready(cut), "the restored member ready again", 120)

    # The next session: the restored member takes part and sees it through.
    late = ("w-next", _recipient(), 5_000_000)
    with Miner(world.btcd):
        submit(world, [late])
        wait_for(
            lambda: all(_statuses(m).get("w-next") == "CONFIRMED" for m in members),
            "the next withdrawal confirmed on every replica",
            300,
        )
    rows = _rows(cut, "SELECT session_id FROM withdrawals WHERE request_id = 'w-next'")
    session = str(rows[0][0])
    results: list[SessionResult] = []

    def ask() -> bool:  # the operator's channel to it was reset by the cut: it reconnects
        try:
            results.append(world.clients[CUT].get_result(signing_session_id(session, 0)))
        except ControlError:
            return False
        return True

    wait_for(ask, "the restored member's answer")
    assert results[-1].status is SessionStatus.DONE, results[-1].reason
    assert [sats for _, sats in received(world.btcd, late[1], since)] == [late[2]]
