"""`synod member run`: one service per member, from one configuration file.

Four members set up as across hosts (each one's keys and validator made in its own
directory, the bundle assembled from the public requests), each started as one `synod member
run` process: all become ready (replica caught up, keystore open, linked to t-1 peers), a
killed validator is restarted by its member, the replicas agree by app hash, and SIGTERM
stops a member with nothing it started left running. Bad configuration is one line naming
the file and the key, exit status 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from synod.api.auth import Role, TokenStore
from synod.chains.localnode import binary_dir
from synod.consensus.client import CometRpc
from synod.consensus.localnet import free_ports
from synod.member.local import LocalMember, Site, create_members, is_ready, start_member
from synod.state.db import open_database
from tests.member.helpers import children_of, http, wait_for
from tests.node.helpers import FAST_KDF
from tests.node.test_node_cli import synod_cmd

pytestmark = pytest.mark.cometbft
MEMBERS = (1, 2, 3, 4)
DEADLINE_S = 120.0


class Member:
    def __init__(self, local: LocalMember) -> None:
        self.local = local
        self.member_id = local.member_id
        self.directory, self.config = local.directory, local.config
        self.health, self.rpc = local.site.health_port, local.site.rpc_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_member(self.local)

    def ready(self) -> bool:
        return is_ready(self.local)

    def metrics(self) -> str:
        return http(f"{self.local.health_url}/metrics")[1].decode()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in children_of(self.proc.pid):
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()


def loopback_sites(ids: tuple[int, ...]) -> list[Site]:
    sites = []
    for i in ids:
        peer, p2p, rpc, abci, health = free_ports(5)
        sites.append(Site(i, "127.0.0.1", peer, p2p, rpc, abci, health))
    return sites


@pytest.fixture(scope="module")
def members(cometbft: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    root = tmp_path_factory.mktemp("members")
    local = create_members(
        root, loopback_sites(MEMBERS), 3, cometbft, "synod-members", FAST_KDF, 300
    )
    out = [Member(m) for m in local]
    for m in out:
        m.start()
    try:
        yield out
    finally:
        for m in out:
            m.stop()


def test_one_member_on_a_solo_ledger_is_ready_and_stops_cleanly(tmp_path: Path) -> None:
    """A committee of one on the solo ledger (the laptop's embedded default): no validator,
    no peers to link to."""
    (api_port,) = free_ports(1)
    (local,) = create_members(
        tmp_path,
        loopback_sites((1,)),
        1,
        None,
        kdf=FAST_KDF,
        extra_config=lambda _site: f"\n[api]\nlisten = '127.0.0.1:{api_port}'\n",
    )
    store = open_database(f"sqlite:///{local.directory / 'ledger.db'}")
    token, _ = TokenStore(store).create(Role.VIEWER, "test")  # solo: the ledger's own store
    store.close()
    member = Member(local)
    member.start()
    try:
        wait_for(member.ready, "the solo member ready")
        assert 'synod_member_child_up{child="node"} 1.0' in member.metrics()
        # Its API, the solo ledger's one writer, answers and says which block it read.
        url = f"http://127.0.0.1:{api_port}/v1/balances"
        wait_for(lambda: http(f"http://127.0.0.1:{api_port}/healthz")[0] == 200, "the API up")
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200 and "synod-ledger-height" in answer.headers
        assert member.proc is not None
        started = children_of(member.proc.pid)
        member.proc.send_signal(signal.SIGTERM)
        assert member.proc.wait(timeout=60) == 0
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in started), "children gone")
    finally:
        member.stop()


def test_every_member_becomes_ready_and_the_replicas_agree(members: list[Member]) -> None:
    wait_for(lambda: all(m.ready() for m in members), "every member ready")
    status, body = http(f"http://127.0.0.1:{members[0].health}/readyz")
    assert status == 200 and json.loads(body)["checks"] == {"node": "ok", "replica": "ok"}
    assert http(f"http://127.0.0.1:{members[0].health}/healthz")[0] == 200
    rpcs = [CometRpc(f"http://127.0.0.1:{m.rpc}") for m in members]
    wait_for(lambda: all(r.status().height >= 4 for r in rpcs), "four blocks everywhere")
    assert len({r.header_app_hash(4) for r in rpcs}) == 1
    scraped = members[0].metrics()
    assert "synod_member_ready 1.0" in scraped
    assert 'synod_member_child_up{child="cometbft"} 1.0' in scraped
    assert "synod_ledger_height" in scraped


def test_a_killed_validator_is_started_again_by_its_member(members: list[Member]) -> None:
    m = members[1]
    assert m.proc is not None
    validator = [
        pid
        for pid in children_of(m.proc.pid)
        if b"cometbft" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    ]
    assert len(validator) == 1
    os.kill(validator[0], signal.SIGKILL)
    wait_for(
        lambda: 'synod_member_child_restarts{child="cometbft"} 1.0' in m.metrics(),
        "the member restarting its validator",
    )
    wait_for(m.ready, "member 2 ready again")


def test_sigterm_stops_a_member_and_everything_it_started(members: list[Member]) -> None:
    m = members[3]
    assert m.proc is not None
    started = children_of(m.proc.pid)
    assert len(started) >= 3  # signer node, ledger application, validator
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=60) == 0
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in started), "children gone")
    assert not (m.directory / "member.pid").exists()
    others = members[:3]  # three of four: still a quorum, blocks go on
    rpc = CometRpc(f"http://127.0.0.1:{others[0].rpc}")
    height = rpc.status().height
    wait_for(lambda: rpc.status().height > height + 2, "blocks without member 4")


REPLICATED = "[member]\ndir = 'm'\n[ledger]\nmode = 'replicated'\ncometbft = '/x'\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[member]\ndir = 'm'\n", "[ledger]: a table is required"),
        ("[member]\ndir = 'm'\ncolour = 1\n[ledger]\nmode = 'solo'\n", "member.colour: unknown"),
        ("[member]\ndir = 'm'\n[ledger]\nmode = 'paxos'\n", "ledger.mode: 'solo' or"),
        ("[member]\ndir = 'm'\n[ledger]\nmode = 'solo'\nrpc = 1\n", "ledger.rpc: only for"),
        (
            "[member]\ndir = 'm'\n[ledger]\nmode = 'replicated'\ncometbft = '/x'\nrpc = 70000\n",
            "ledger.rpc: a port number",
        ),
        ("[member\n", "not TOML"),
        (
            "[member]\ndir = 'm'\n[ledger]\nmode = 'solo'\n[chains.btc]\nkey = 'k'\n",
            "[chains]: the runtime runs on the replicated ledger",
        ),
        (REPLICATED + "[chains.doge]\nkey = 'k'\n", "chains.doge: unknown key"),
        (REPLICATED + "[chains.btc]\nkey = 'k'\nrpc = 'ftp://x'\n", "chains.btc.rpc: an http"),
        (REPLICATED + "[chains.btc]\nrpc = 'http://x'\n", "chains.btc.key: a non-empty"),
        (
            REPLICATED + "[chains.btc]\nkey = 'k'\nrpc = 'http://x'\nnetwork = 'moon'\n",
            "chains.btc.network: one of mainnet",
        ),
        (
            REPLICATED + "[chains.btc]\nkey = 'k'\nrpc = 'http://x'\nconfirmations = 0\n",
            "chains.btc.confirmations: an integer of at least 1",
        ),
        (REPLICATED + "[api]\nlisten = '127.0.0.1:8080'\n", "api.operator_key: the ledger"),
        (
            REPLICATED + "[api]\nlisten = '127.0.0.1:8080'\noperator_key = 'k'\ndb = 'ledger.db'\n",
            "api.db: a store other than the replica",
        ),
        (REPLICATED + "[api]\nlisten = '127.0.0.1:9100'\n", "api.listen: an address other"),
        (
            "[member]\ndir = 'm'\n[ledger]\nmode = 'solo'\n[api]\nlisten = 'h:1'\ndb = 'a'\n",
            "api.db: only for mode = 'replicated'",
        ),
        ("[member]\ndir = 'm'\n[ledger]\nmode = 'solo'\n[api]\nlisten = 'x'\n", "HOST:PORT"),
    ],
)
def test_a_bad_configuration_is_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, words: str
) -> None:
    config = tmp_path / "member.toml"
    config.write_text(text)
    done = synod_cmd("member", "run", "--config", str(config))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert str(config) in done.stderr and words in done.stderr


def test_a_missing_validator_binary_or_wrong_passphrase_stops_the_start(
    members: list[Member], tmp_path: Path
) -> None:
    m = members[0]
    config = tmp_path / "member.toml"
    text = m.config.read_text().replace('dir = "member"', f'dir = "{m.directory}"')
    config.write_text(text.replace('passphrase_file = "passphrase"\n', ""))
    done = synod_cmd("member", "run", "--config", str(config), env={"SYNOD_PASSPHRASE": "wrong"})
    assert done.returncode == 2 and "already runs" in done.stderr  # member 1 is running
    idle = members[3]  # stopped by the previous test
    config.write_text(
        idle.config.read_text()
        .replace('dir = "member"', f'dir = "{idle.directory}"')
        .replace('passphrase_file = "passphrase"\n', "")
    )
    done = synod_cmd("member", "run", "--config", str(config), env={"SYNOD_PASSPHRASE": "wrong"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    secret = idle.directory.parent / "passphrase"
    binary = str(binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft"))
    config.write_text(
        idle.config.read_text()
        .replace('dir = "member"', f'dir = "{idle.directory}"')
        .replace('passphrase_file = "passphrase"', f'passphrase_file = "{secret}"')
        .replace(binary, "/nonexistent")
    )
    done = synod_cmd("member", "run", "--config", str(config))
    assert done.returncode == 2 and "ledger.cometbft: no executable" in done.stderr, done.stderr


def test_a_taken_health_address_stops_the_start_before_any_child(tmp_path: Path) -> None:
    (local,) = create_members(tmp_path, loopback_sites((1,)), 1, None, kdf=FAST_KDF)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", local.site.health_port))
        taken.listen()
        done = synod_cmd("member", "run", "--config", str(local.config))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "member.health: cannot listen" in done.stderr
    assert not (local.directory / "node.log").exists()  # no child was started


def test_a_ledger_operator_key_is_made_private_and_its_public_half_printed(
    tmp_path: Path,
) -> None:
    """`synod operator ledger-key`: the key file is 0600 and reads back as the key whose
    public half is printed for `committee assemble --ledger-operator`; a bad name or an
    existing file is one error line, exit status 2."""
    from synod.consensus.committee import raw_public, read_operator_key

    out = tmp_path / "api1.pem"
    done = synod_cmd("operator", "ledger-key", "--out", str(out), "--name", "api1")
    assert done.returncode == 0, done.stderr
    name, hexkey = done.stdout.strip().split("=")
    assert name == "api1" and os.stat(out).st_mode & 0o777 == 0o600
    assert raw_public(read_operator_key(out)).hex() == hexkey
    again = synod_cmd("operator", "ledger-key", "--out", str(out), "--name", "api1")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = synod_cmd("operator", "ledger-key", "--out", str(tmp_path / "x"), "--name", "a-b")
    assert bad.returncode == 2 and "identifier" in bad.stderr and bad.stderr.count("\n") == 1
