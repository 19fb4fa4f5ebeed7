"""A committee set up across hosts: each member makes its keys on its own host, an offline
assembler sees only the public requests, each member installs the bundle after checking it.
No private key is ever in a file that leaves the host that made it."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from synod.consensus.localnet import LocalNet, free_ports, set_toml
from synod.consensus.localnet import Member as NetMember
from synod.node.committee import load_node
from synod.node.enrol import (
    CA_KEY,
    EnrolmentError,
    MemberRequest,
    OperatorRequest,
    _csr,
    assemble,
    create_ca,
    init_member,
    init_operator,
    install_member,
    load_ca,
    parse_request,
    read_request,
)
from synod.node.manifest import Endpoint
from synod.node.operators import OPERATORS, OperatorList, OperatorListError
from synod.node.pki import Role, cert_from_pem, fingerprint, identify, key_fingerprint, new_key
from tests.node.helpers import FAST_KDF
from tests.node.test_node_cli import synod_cmd

HOSTS = {1: "10.40.0.11", 2: "10.40.0.12", 3: "10.40.0.13", 4: "member-4.example.net"}
CA_PASSPHRASE = b"offline ca passphrase"


def secret_bytes(root: Path) -> list[Path]:
    """Files under `root` that hold a private key in the clear (PEM, or CometBFT's JSON key
    files), or a keystore."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"PRIVATE KEY" in data or b'"priv_key"' in data or path.name == "keystore":
            found.append(path)
    return found


@pytest.fixture
def hosts(tmp_path: Path) -> dict[int, Path]:
    """Each member's directory, as if on its own host."""
    dirs = {}
    for i, host in HOSTS.items():
        d = tmp_path / f"host-{i}" / "member"
        init_member(d, i, Endpoint(host, 7100 + i), f"pass {i}".encode(), FAST_KDF)
        dirs[i] = d
    return dirs


def test_assembled_from_public_requests_and_installed_on_each_host(
    tmp_path: Path, hosts: dict[int, Path]
) -> None:
    offline = tmp_path / "offline"
    create_ca(offline / "ca", CA_PASSPHRASE)
    init_operator(tmp_path / "operator-laptop", "alice")
    inbox = offline / "requests"  # all the assembler ever receives
    inbox.mkdir()
    for i, d in hosts.items():
        shutil.copy(d / "request.json", inbox / f"member-{i}.json")
    shutil.copy(tmp_path / "operator-laptop" / "request.json", inbox / "alice.json")
    assert secret_bytes(inbox) == []
    requests = [read_request(p) for p in sorted(inbox.iterdir())]
    ca = load_ca(offline / "ca", CA_PASSPHRASE)
    bundle = assemble(requests, 3, ca, offline / "bundle", chain_id="synod-prod")
    assert secret_bytes(offline / "bundle") == []
    assert bundle.manifest.threshold == 3 and bundle.genesis is False
    assert [str(m.endpoint) for m in bundle.manifest.members] == [
        f"{HOSTS[i]}:{7100 + i}" for i in (1, 2, 3, 4)
    ]
    assert bundle.ledger is not None and sorted(bundle.ledger.members) == [1, 2, 3, 4]
    op_cert = cert_from_pem((offline / "bundle" / "operator-alice" / "operator.pem").read_bytes())
    assert identify(op_cert, ca.cert).role is Role.OPERATOR

    ca_fp = fingerprint(ca.cert)  # told to each member out of band
    for i, d in hosts.items():
        install_member(d, offline / "bundle", f"pass {i}".encode(), ca_fp)
        install_member(d, offline / "bundle", f"pass {i}".encode())  # again: no change
        material = load_node(d, f"pass {i}".encode())
        assert material.member_id == i and material.manifest == bundle.manifest
        assert not (d / CA_KEY).exists() and not list(d.rglob(CA_KEY))
        assert (d / "ledger-committee.json").is_file()
    key_mode = stat.S_IMODE((offline / "ca" / CA_KEY).stat().st_mode)
    assert key_mode == 0o600 and b"ENCRYPTED" in (offline / "ca" / CA_KEY).read_bytes()
    with pytest.raises(EnrolmentError, match="wrong passphrase"):
        load_ca(offline / "ca", b"not it")


def test_a_request_for_someone_elses_tls_key_cannot_be_installed(
    tmp_path: Path, hosts: dict[int, Path]
) -> None:
    """A CSR copied from another request names someone else, so assembly refuses it; a CSR for
    a key the member does not hold yields a certificate install refuses; so does a manifest
    with other identity keys for the member."""
    requests = [read_request(d / "request.json") for d in hosts.values()]
    one, two = requests[0], requests[1]
    assert isinstance(one, MemberRequest) and isinstance(two, MemberRequest)
    ca = create_ca(tmp_path / "ca", CA_PASSPHRASE)
    ca_fp = fingerprint(ca.cert)
    swapped = MemberRequest(one.member_id, one.endpoint, one.sign_key, one.seal_key, two.csr_pem)
    with pytest.raises(EnrolmentError, match="must name 'synod member 1'"):
        assemble([swapped, *requests[1:]], 3, ca, tmp_path / "bundle-0")
    as_operator = OperatorRequest("mallory", two.csr_pem)  # member 2's key as an operator
    with pytest.raises(EnrolmentError, match="must name 'synod operator mallory'"):
        assemble([*requests, as_operator], 3, ca, tmp_path / "bundle-00")
    foreign = MemberRequest(
        one.member_id, one.endpoint, one.sign_key, one.seal_key, _csr(new_key(), "synod member 1")
    )
    assemble([foreign, *requests[1:]], 3, ca, tmp_path / "bundle")
    with pytest.raises(EnrolmentError, match="certificate is for another key"):
        install_member(hosts[1], tmp_path / "bundle", b"pass 1", ca_fp)
    other = tmp_path / "other-host"
    init_member(other, 1, Endpoint("10.40.0.99", 7101), b"x", FAST_KDF)
    assemble([read_request(other / "request.json"), *requests[1:]], 3, ca, tmp_path / "bundle-2")
    with pytest.raises(EnrolmentError, match="other identity keys"):
        install_member(hosts[1], tmp_path / "bundle-2", b"pass 1", ca_fp)


def test_only_a_bundle_the_committee_ca_signed_is_installed(
    tmp_path: Path, hosts: dict[int, Path]
) -> None:
    """Requests are public: anyone can assemble a bundle for them with a CA of their own, or
    edit a genuine bundle on its way (a quorum of one in the ledger's committee). A member
    installs only what the CA it was told of signed, and never changes CAs."""
    requests = [read_request(d / "request.json") for d in hosts.values()]
    ca = create_ca(tmp_path / "ca", CA_PASSPHRASE)
    rogue = create_ca(tmp_path / "rogue-ca", b"rogue")
    assemble(requests, 3, ca, tmp_path / "bundle", chain_id="synod-prod")
    assemble(requests, 3, rogue, tmp_path / "rogue", chain_id="synod-prod")
    with pytest.raises(EnrolmentError, match="fingerprint"):
        install_member(hosts[1], tmp_path / "bundle", b"pass 1")  # trust must come first
    with pytest.raises(EnrolmentError, match="is not the committee CA"):
        install_member(hosts[1], tmp_path / "rogue", b"pass 1", fingerprint(ca.cert))
    edited = tmp_path / "edited"
    shutil.copytree(tmp_path / "bundle", edited)
    doc = json.loads((edited / "ledger-committee.json").read_text())
    doc["quorum"] = 1  # one member's word would credit a deposit
    (edited / "ledger-committee.json").write_text(json.dumps(doc))
    with pytest.raises(EnrolmentError, match="not signed by the committee CA"):
        install_member(hosts[1], edited, b"pass 1", fingerprint(ca.cert))
    assert not (hosts[1] / "manifest.json").exists()  # nothing written by a refused install
    install_member(hosts[1], tmp_path / "bundle", b"pass 1", fingerprint(ca.cert))
    with pytest.raises(EnrolmentError, match="already trusts another committee CA"):
        install_member(hosts[1], tmp_path / "rogue", b"pass 1", fingerprint(rogue.cert))
    with pytest.raises(EnrolmentError, match="is not the committee CA"):
        install_member(hosts[1], tmp_path / "rogue", b"pass 1")


def test_a_revoked_operator_stays_revoked_when_its_certificate_is_issued_again(
    tmp_path: Path, hosts: dict[int, Path]
) -> None:
    requests = [read_request(d / "request.json") for d in hosts.values()]
    alice = init_operator(tmp_path / "alice", "alice")
    ca = create_ca(tmp_path / "ca", CA_PASSPHRASE)
    assemble([*requests, alice], 3, ca, tmp_path / "b1")
    assemble([*requests, alice], 3, ca, tmp_path / "b2")  # re-assembled: a new certificate
    first, second = (
        cert_from_pem((tmp_path / b / "operator-alice" / "operator.pem").read_bytes())
        for b in ("b1", "b2")
    )
    assert fingerprint(first) != fingerprint(second)
    install_member(hosts[1], tmp_path / "b1", b"pass 1", fingerprint(ca.cert))
    path = hosts[1] / OPERATORS
    OperatorList.load(path).revoke(key_fingerprint(first)).save(path)
    install_member(hosts[1], tmp_path / "b2", b"pass 1")
    assert OperatorList.load(path).admits(key_fingerprint(second)) == "revoked_operator"
    for bad in (b'{"version":1,"operators":5}', b'{"version":1,"revoked":"x"}', b"[]"):
        with pytest.raises(OperatorListError):
            OperatorList.parse(bad, "operators.json")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: d.update(id=0), "id must be in 1..65535"),
        (lambda d: d.update(id=True), "id must be a int"),
        (lambda d: d.update(endpoint="no-port"), "endpoint must be host:port"),
        (lambda d: d.update(sign_key="zz" * 32), "sign_key must be 64 lowercase hex"),
        (lambda d: d.update(tls_csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"), "not a PEM"),
        (lambda d: d.update(role="admin"), "not an enrolment request"),
        (lambda d: d.update(version=2), "not an enrolment request"),
        (lambda d: d.update(validator={"node_id": "x"}), "node_id must be 40"),
        (
            lambda d: d.update(
                validator={"node_id": "a" * 40, "p2p": "h:1", "pub_key": "eA==", "address": "A"}
            ),
            "pub_key must be 32 bytes",
        ),
        (
            lambda d: d.update(
                validator={
                    "node_id": "a" * 40,
                    "p2p": "h:1",
                    "pub_key": "A" * 43 + "=",
                    "address": "AB",
                }
            ),
            "address is not the address of pub_key",
        ),
    ],
)
def test_a_malformed_request_is_refused_with_its_field_named(
    hosts: dict[int, Path], change: object, error: str
) -> None:
    doc = json.loads((hosts[1] / "request.json").read_text())
    change(doc)  # type: ignore[operator]
    with pytest.raises(EnrolmentError, match=error):
        parse_request(json.dumps(doc).encode(), "member-1.json")


def test_a_tampered_csr_signature_and_oversized_or_duplicate_requests_are_refused(
    tmp_path: Path, hosts: dict[int, Path]
) -> None:
    doc = json.loads((hosts[1] / "request.json").read_text())
    lines = doc["tls_csr"].splitlines()
    body = "".join(lines[1:-1])
    flipped = body[:-8] + ("A" if body[-8] != "A" else "B") + body[-7:]
    doc["tls_csr"] = "\n".join([lines[0], flipped, lines[-1]]) + "\n"
    with pytest.raises(EnrolmentError, match="member 1: tls_csr"):
        parse_request(json.dumps(doc).encode(), "member-1.json")
    with pytest.raises(EnrolmentError, match="larger than"):
        parse_request(b" " * (1 << 20), "big.json")
    request = read_request(hosts[1] / "request.json")
    ca = create_ca(tmp_path / "ca", CA_PASSPHRASE)
    with pytest.raises(EnrolmentError, match="same id"):
        assemble([request, request], 1, ca, tmp_path / "bundle")
    with pytest.raises(EnrolmentError, match="not empty"):
        init_member(hosts[1], 1, Endpoint("10.40.0.11", 7101), b"x", FAST_KDF)


@pytest.mark.cometbft
def test_validators_made_on_their_hosts_form_one_ledger_from_the_assembled_genesis(
    tmp_path: Path, cometbft: Path
) -> None:
    """Each member's `cometbft init` runs on its host; the genesis and the peers come only
    from the requests; the four validators then make blocks and agree on the app hash."""
    ports = {i: free_ports(3) for i in (1, 2, 3, 4)}  # p2p, rpc, app
    dirs = {}
    for i in ports:
        dirs[i] = tmp_path / f"host-{i}" / "member"
        init_member(
            dirs[i],
            i,
            Endpoint("127.0.0.1", 7100 + i),
            b"pw",
            FAST_KDF,
            cometbft=cometbft,
            p2p=Endpoint("127.0.0.1", ports[i][0]),
        )
    assert secret_bytes(tmp_path / "host-1" / "member" / "cometbft") != []  # stays on its host
    requests = [read_request(d / "request.json") for d in dirs.values()]
    ca = create_ca(tmp_path / "ca", CA_PASSPHRASE)
    bundle = assemble(requests, 3, ca, tmp_path / "bundle", chain_id="synod-across-hosts")
    ca_fp = fingerprint(ca.cert)
    assert bundle.genesis and secret_bytes(tmp_path / "bundle") == []
    members = []
    for i, d in dirs.items():
        install_member(d, tmp_path / "bundle", b"pw", ca_fp)
        home = d / "cometbft"
        config = home / "config" / "config.toml"
        peers = 'persistent_peers = "'
        assert config.read_text().count("@127.0.0.1:") == 3 and peers in config.read_text()
        text = config.read_text()
        for section, key, value in (  # one machine stands in for four: loopback settings
            ("", "proxy_app", f'"tcp://127.0.0.1:{ports[i][2]}"'),
            ("rpc", "laddr", f'"tcp://127.0.0.1:{ports[i][1]}"'),
            ("p2p", "allow_duplicate_ip", "true"),
            ("consensus", "timeout_commit", '"200ms"'),
        ):
            text = set_toml(text, section, key, value)
        config.write_text(text)
        db = f"sqlite:///{d / 'ledger.db'}"
        members.append(NetMember(i, home, db, ports[i][2], ports[i][1], ports[i][0]))
    shutil.copy(tmp_path / "bundle" / "ledger-committee.json", tmp_path / "committee.json")
    assert bundle.ledger is not None
    net = LocalNet(tmp_path, str(cometbft), bundle.ledger, members)
    try:
        net.start_all()
        net.wait_height(3)
        hashes = {net.member(i).rpc.header_app_hash(3) for i in dirs}
        assert len(hashes) == 1
    finally:
        net.close()


def test_the_cli_steps_exit_2_with_one_line_on_bad_input(tmp_path: Path) -> None:
    env = {"SYNOD_PASSPHRASE": "member pass", "SYNOD_CA_PASSPHRASE": "ca pass"}

    def synod(*args: str) -> subprocess.CompletedProcess[str]:
        return synod_cmd(*args, env=env)

    for i in (1, 2):
        done = synod("member", "init", "--dir", str(tmp_path / f"m{i}"), "--id", str(i),
                     "--address", f"10.1.0.{i}:7100")  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert synod("committee", "ca", "--dir", str(tmp_path / "ca")).returncode == 0
    reqs = [str(tmp_path / f"m{i}" / "request.json") for i in (1, 2)]
    done = synod("committee", "assemble", "--ca", str(tmp_path / "ca"), "-t", "2",
                 "--out", str(tmp_path / "b"), "--json", *reqs)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assembled = json.loads(done.stdout)
    assert assembled["members"][1] == {"id": 2, "endpoint": "10.1.0.2:7100"}
    for i in (1, 2):
        done = synod("member", "install", "--dir", str(tmp_path / f"m{i}"),
                     "--bundle", str(tmp_path / "b"),
                     "--ca-fingerprint", assembled["ca_fingerprint"])  # fmt: skip
        assert done.returncode == 0, done.stderr
    for bad, words in (
        (("member", "init", "--dir", str(tmp_path / "m3"), "--id", "3", "--address", "nope"),
         "host:port"),
        (("member", "install", "--dir", str(tmp_path / "m1"), "--bundle", str(tmp_path / "x")),
         "no manifest.json"),
        (("member", "install", "--dir", str(tmp_path / "nope"), "--bundle", str(tmp_path / "b")),
         "not a member directory"),
        (("committee", "assemble", "--ca", str(tmp_path / "ca"), "-t", "2", "--out",
          str(tmp_path / "b2"), str(tmp_path / "m1" / "keystore")), "not an enrolment request"),
    ):  # fmt: skip
        done = synod(*bad)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert words in done.stderr
    done = synod_cmd("committee", "assemble", "--ca", str(tmp_path / "ca"), "-t", "2",
                     "--out", str(tmp_path / "b3"), *reqs,
                     env={**env, "SYNOD_CA_PASSPHRASE": "not it"})  # fmt: skip
    assert done.returncode == 2 and "wrong passphrase" in done.stderr
