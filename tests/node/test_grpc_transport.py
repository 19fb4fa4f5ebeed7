"""gRPC peer transport over mutual TLS, with real sockets on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from synod.node.committee import NodeMaterial
from synod.node.grpc_transport import GrpcTransport, Limits, PeerState, TlsMaterial
from synod.node.pki import CommitteeCA, cert_to_pem, key_to_pem, new_key
from tests.node.helpers import Rogue, envelope, make_committee, wait_for


@pytest.fixture
def committee(tmp_path: Path) -> dict[int, NodeMaterial]:
    return make_committee(tmp_path / "c", 2, 3)


def transport(m: NodeMaterial, limits: Limits | None = None) -> GrpcTransport:
    return GrpcTransport(m.manifest, m.member_id, m.tls, limits)


@pytest.fixture
def started() -> Iterator[list[GrpcTransport]]:
    running: list[GrpcTransport] = []
    yield running
    for t in running:
        t.stop()


def collect(t: GrpcTransport, want: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    wait_for(lambda: bool(got.extend(t.receive(0.05))) or len(got) >= want, f"{want} frames")
    return got


def test_links_carry_envelopes_both_ways(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    ts = {i: transport(m) for i, m in committee.items()}
    for t in ts.values():
        t.start()
        started.append(t)
    for t in ts.values():
        wait_for(
            lambda t=t: set(t.peers().values()) == {PeerState.CONNECTED},
            "every link connected",
        )
    sent = {}
    for i, t in ts.items():
        for j in ts:
            if j != i:
                sent[(i, j)] = envelope(committee[i].identity, j, f"{i}->{j}".encode())
                t.send(j, sent[(i, j)], "test")
    for j, t in ts.items():
        got = collect(t, 2)
        assert sorted(got) == sorted((i, sent[(i, j)]) for i in ts if i != j)
    assert all(not t.counters for t in ts.values())


def test_reconnects_after_peer_restart_and_flushes_queue(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    a, b = transport(committee[1]), transport(committee[2])
    a.start()
    started.append(a)
    b.start()
    wait_for(lambda: a.peers()[2] is PeerState.CONNECTED, "link 1-2 up")
    b.stop()
    wait_for(lambda: a.peers()[2] is not PeerState.CONNECTED, "link 1-2 seen down")
    queued = [envelope(committee[1].identity, 2, bytes([k])) for k in range(5)]
    for data in queued:
        a.send(2, data, "test")
    b2 = transport(committee[2])
    b2.start()
    started.append(b2)
    assert [d for _, d in collect(b2, 5)] == queued
    assert a.links()[2] >= 2


def test_queues_are_bounded_and_drops_counted(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    limits = Limits(max_message=2048, send_queue=8, recv_queue=4)
    a, b = transport(committee[1], limits), transport(committee[2], limits)
    a.send(2, b"x" * 4096, "test")  # larger than the maximum message
    a.send(9, b"x", "test")  # not a member
    for k in range(20):  # nobody is connected yet: the queue fills
        a.send(2, envelope(committee[1].identity, 2, bytes([k])), "test")
    assert a.counters == {"oversize": 1, "unknown_peer": 1, "send_queue_full": 12}
    b.start()
    started.append(b)
    a.start()
    started.append(a)
    wait_for(lambda: b.counters["recv_queue_full"] == 4, "4 frames over b's receive buffer")
    assert len(b.receive(0.1)) == 4


def test_queues_are_bounded_in_bytes(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    limits = Limits(max_message=4096, send_queue_bytes=10_000, recv_queue_bytes=7_000)
    a, b = transport(committee[1], limits), transport(committee[2], limits)
    frames = [envelope(committee[1].identity, 2, bytes([k]) * 3000) for k in range(5)]
    for data in frames:  # about 3.2 kB each: three fit in 10 kB
        a.send(2, data, "test")
    assert a.counters == {"send_queue_full": 2}
    b.start()
    started.append(b)
    a.start()
    started.append(a)
    wait_for(lambda: b.counters["recv_queue_full"] == 1, "one frame over b's 7 kB buffer")
    assert [d for _, d in b.receive(0.1)] == frames[:2]


def test_valid_certificate_but_envelopes_of_another_member_dropped(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    """Member 1's own certificate, envelopes signed as member 2: dropped as peer_mismatch."""
    c = transport(committee[3])
    c.start()
    started.append(c)
    one, two = committee[1], committee[2]
    rogue = Rogue(c.manifest, 3, one.tls.key_pem, one.tls.cert_pem, one.tls.ca_pem)
    forged = envelope(two.identity, 3, b"as member 2")
    honest = envelope(one.identity, 3, b"as member 1")
    rogue.send([forged, forged, b"not an envelope", honest])
    got = collect(c, 1)
    assert got == [(1, honest)]
    wait_for(lambda: c.counters["peer_mismatch"] == 2, "two peer_mismatch drops")
    assert c.counters["malformed"] == 1


def test_certificate_from_another_ca_refused(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport], tmp_path: Path
) -> None:
    """A certificate naming member 1 but issued by another CA: no link either way."""
    other = CommitteeCA.create("not the committee")
    key = new_key()
    fake = TlsMaterial(
        key_to_pem(key),
        cert_to_pem(other.issue_member(1, key.public_key())),
        cert_to_pem(other.cert),
    )
    c = transport(committee[3])
    c.start()
    started.append(c)
    # Dialing member 3 with it: the TLS handshake fails, nothing reaches the node.
    rogue = Rogue(c.manifest, 3, fake.key_pem, fake.cert_pem, committee[3].tls.ca_pem)
    code, seen = rogue.send([envelope(committee[1].identity, 3, b"x")])
    assert code is grpc.StatusCode.UNAVAILABLE and seen == []
    assert c.receive(0.2) == []
    # Serving as member 2 with another CA's certificate: member 1 refuses and counts it.
    fake2_key = new_key()
    fake2 = TlsMaterial(
        key_to_pem(fake2_key),
        cert_to_pem(other.issue_member(2, fake2_key.public_key())),
        cert_to_pem(other.cert),
    )
    impostor = GrpcTransport(committee[2].manifest, 2, fake2)
    impostor.start()
    started.append(impostor)
    a = transport(committee[1])
    a.start()
    started.append(a)
    wait_for(lambda: a.counters["refused_tls"] >= 1, "member 1 refusing the impostor")
    assert a.peers()[2] is not PeerState.CONNECTED


def test_unlisted_or_operator_certificate_refused(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport], tmp_path: Path
) -> None:
    """Issued by the committee CA but not the manifest's certificate: refused and counted."""
    c = transport(committee[3])
    c.start()
    started.append(c)
    ca_key = (tmp_path / "c" / "ca" / "ca.key.pem").read_bytes()
    from synod.node.pki import cert_from_pem, key_from_pem

    ca = CommitteeCA(key_from_pem(ca_key), cert_from_pem(committee[3].tls.ca_pem))
    k1, k2 = new_key(), new_key()
    second = cert_to_pem(ca.issue_member(1, k1.public_key()))
    operator = cert_to_pem(ca.issue_operator("operator", k2.public_key()))
    ca_pem = committee[3].tls.ca_pem
    code, _ = Rogue(c.manifest, 3, key_to_pem(k1), second, ca_pem).send([])
    assert code is grpc.StatusCode.PERMISSION_DENIED
    code, _ = Rogue(c.manifest, 3, key_to_pem(k2), operator, ca_pem).send([])
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert c.counters["refused_fingerprint"] == 1
    assert c.counters["refused_not_a_member"] == 1


def test_higher_id_may_not_dial_and_oversize_frames_end_the_stream(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    b = transport(committee[2], Limits(max_message=2048))
    b.start()
    started.append(b)
    three, one = committee[3].tls, committee[1].tls
    code, _ = Rogue(b.manifest, 2, three.key_pem, three.cert_pem, three.ca_pem).send([])
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert b.counters["refused_direction"] == 1
    rogue = Rogue(b.manifest, 2, one.key_pem, one.cert_pem, one.ca_pem)
    big = envelope(committee[1].identity, 2, b"x" * 3000)
    small = envelope(committee[1].identity, 2, b"fits")
    assert rogue.send([big, small]) == (None, ["hello"])
    assert collect(b, 1) == [(1, small)]
    assert b.counters["oversize"] == 1
    huge = envelope(committee[1].identity, 2, b"x" * 10_000)  # over gRPC's own cut
    code, _ = rogue.send([huge, small])
    assert code is not None
    assert b.receive(0.2) == []


def test_emulated_link_delay_holds_frames_back(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    """With `link_delay` no frame arrives before its delay has passed (a lower bound only)."""
    delay = 0.3
    a, b = transport(committee[1], Limits(link_delay=delay)), transport(committee[2])
    for t in (a, b):
        t.start()
        started.append(t)
    wait_for(lambda: a.peers()[2] is PeerState.CONNECTED, "link 1-2 up")
    frames = [envelope(committee[1].identity, 2, bytes([k])) for k in range(3)]
    sent_at = time.monotonic()
    for data in frames:
        a.send(2, data, "test")
    assert [d for _, d in collect(b, 3)] == frames
    assert time.monotonic() - sent_at >= delay


def test_idle_link_survives_keepalive_pings(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    """The serving side accepts the dialer's keepalive pings (gRPC sends them at most every
    10 s; with the server's default policy the third one drew a GOAWAY and a reconnect)."""
    a, b = transport(committee[1]), transport(committee[2])
    for t in (a, b):
        t.start()
        started.append(t)
    wait_for(lambda: a.peers()[2] is PeerState.CONNECTED, "link 1-2 up")
    end = time.monotonic() + 50.0  # five keepalive periods, idle
    while time.monotonic() < end:
        assert a.links()[2] == 1 and a.peers()[2] is PeerState.CONNECTED, "link was redialled"
        time.sleep(0.5)
    a.send(2, envelope(committee[1].identity, 2, b"still there"), "test")
    assert len(collect(b, 1)) == 1


def test_replaced_stream_is_closed_for_the_other_side_too(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport]
) -> None:
    """A newer stream for member 1 (here a rogue with 1's certificate) replaces 1's link on
    member 3; member 1 must see its stream end and redial, not keep a half-open link."""
    a, c = transport(committee[1]), transport(committee[3])
    for t in (a, c):
        t.start()
        started.append(t)
    wait_for(lambda: a.peers()[3] is PeerState.CONNECTED, "link 1-3 up")
    one = committee[1].tls
    Rogue(a.manifest, 3, one.key_pem, one.cert_pem, one.ca_pem).send([])
    wait_for(
        lambda: a.links()[3] >= 2 and a.peers()[3] is PeerState.CONNECTED,
        "member 1 redialling after its stream was replaced",
    )
    a.send(3, envelope(committee[1].identity, 3, b"over the new link"), "test")
    assert len(collect(c, 1)) == 1


def test_dialer_refuses_a_server_certificate_the_manifest_does_not_list(
    committee: dict[int, NodeMaterial], started: list[GrpcTransport], tmp_path: Path
) -> None:
    """Member 2 serving a certificate the committee CA issued for its name but the manifest
    does not list: member 1 never links to it (counted). The listed one links; from then on
    the channel trusts that certificate alone, so the unlisted one fails in gRPC's own TLS
    handshake."""
    from synod.node.pki import cert_from_pem, key_from_pem

    ca_key = key_from_pem((tmp_path / "c" / "ca" / "ca.key.pem").read_bytes())
    ca = CommitteeCA(ca_key, cert_from_pem(committee[2].tls.ca_pem))
    key = new_key()
    cert = cert_to_pem(ca.issue_member(2, key.public_key()))
    unlisted = TlsMaterial(key_to_pem(key), cert, committee[2].tls.ca_pem)
    impostor = GrpcTransport(committee[2].manifest, 2, unlisted)
    impostor.start()
    started.append(impostor)
    a = transport(committee[1], Limits(backoff_max=0.2))
    a.start()
    started.append(a)
    wait_for(lambda: a.counters["refused_fingerprint"] >= 2, "two refusals of the impostor")
    assert a.links()[2] == 0 and impostor.links()[1] == 0
    impostor.stop()

    b = transport(committee[2])
    b.start()
    started.append(b)
    wait_for(lambda: a.peers()[2] is PeerState.CONNECTED, "link 1-2 up with the listed cert")
    honest = envelope(committee[1].identity, 2, b"to the listed member")
    a.send(2, honest, "test")
    assert collect(b, 1) == [(1, honest)]
    b.stop()

    refused_tls, refused_fingerprint = a.counters["refused_tls"], a.counters["refused_fingerprint"]
    again = GrpcTransport(committee[2].manifest, 2, unlisted)
    again.start()
    started.append(again)
    wait_for(lambda: a.counters["refused_tls"] > refused_tls, "the pinned channel refusing it")
    assert a.links()[2] == 1 and again.links()[1] == 0
    assert a.counters["refused_fingerprint"] == refused_fingerprint  # no second fetch
