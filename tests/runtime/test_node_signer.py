"""`NodeSigner` against members' control answers (fake clients at the edge): a signature is
accepted only if it verifies against the group key, a member that lies is ignored, a
session every member reports failed is a `SigningTimeout`, and an unreachable member does
not stop the others."""

from __future__ import annotations

import hashlib

import pytest

from synod import metrics
from synod.crypto import frost
from synod.node.control import ControlError
from synod.node.results import SessionKind, SessionResult, SessionStatus
from synod.node.templates import SignContext, signing_session_id
from synod.runtime.interfaces import SigningTimeout
from synod.runtime.node_signer import NodeSigner
from synod.state.machine import Withdrawal
from tests.fixtures import withdrawal

KEYS, PUBLIC = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
X_ONLY = PUBLIC.group_public_key(frost.KEY_PATH)


def message_for(w: Withdrawal) -> bytes:
    return hashlib.sha256(str(w.template).encode()).digest()


class Member:
    """What one member's control service answers."""

    def __init__(self, answer: str, reachable: bool = True) -> None:
        self.answer = answer
        self.reachable = reachable
        self.started: list[tuple[bytes, SignContext | None]] = []

    def start_sign(
        self,
        key_id: str,
        session_id: bytes,
        scheme: str,
        message: bytes,
        context: SignContext | None = None,
        rotate_timeout: float = 0.0,
        timeout: float = 0.0,
    ) -> None:
        if not self.reachable:
            raise ControlError("UNAVAILABLE", "connection refused")
        self.started.append((session_id, context))
        self.message = message

    def get_result(self, session_id: bytes) -> SessionResult:
        if not self.reachable:
            raise ControlError("UNAVAILABLE", "connection refused")
        result = SessionResult(session_id, SessionKind.FROST_SIGN, "k", 0.0, 1e9)
        if self.answer == "running":
            return result
        if self.answer == "failed":
            result.status = SessionStatus.FAILED
            return result
        result.status = SessionStatus.DONE
        sig = frost.local_sign(KEYS, PUBLIC, self.message, [1, 2], frost.KEY_PATH).raw
        result.signature = sig if self.answer == "good" else sig[:-1] + bytes([sig[-1] ^ 1])
        return result


def signer(*members: Member) -> NodeSigner:
    clients = dict(enumerate(members, start=1))
    return NodeSigner(clients, "k", "bip340", X_ONLY, message_for, timeout=60.0)


def test_only_a_verifying_signature_is_accepted() -> None:
    liar, down, honest = Member("bad"), Member("good", reachable=False), Member("good")
    s = signer(liar, down, honest)
    w = withdrawal()
    s.begin(w, "sess")
    ref = s.poll("sess")
    assert ref is not None
    frost.verify(PUBLIC.suite, X_ONLY, message_for(w), bytes.fromhex(ref))
    expected = signing_session_id("sess", 0)
    assert honest.started == [(expected, SignContext(w.withdraw_id, "sess", 0))]
    assert "UNAVAILABLE" in s.errors[2]


def test_running_then_failed_everywhere_is_a_timeout() -> None:
    a, b = Member("running"), Member("running")
    s = signer(a, b)
    s.begin(withdrawal(), "sess")
    s.begin(withdrawal(), "sess")  # idempotent: nothing started twice
    assert len(a.started) == 1
    assert s.poll("sess") is None
    a.answer = b.answer = "failed"
    with pytest.raises(SigningTimeout):
        s.poll("sess")


def test_a_lie_alone_never_signs_and_no_member_reached_is_an_error() -> None:
    s = signer(Member("bad"), Member("failed"))
    s.begin(withdrawal(), "sess")
    with pytest.raises(SigningTimeout):
        s.poll("sess")
    with pytest.raises(ControlError, match="no committee member"):
        signer(Member("good", reachable=False)).begin(withdrawal(), "other")


def test_a_signature_is_measured_with_its_sub_sessions_and_culprits() -> None:
    class Reporting(Member):
        def get_result(self, session_id: bytes) -> SessionResult:
            result = super().get_result(session_id)
            result.sub_sessions, result.culprits = 2, {3}
            return result

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0

    before = (
        sample("synod_signing_seconds_count", {"scheme": "bip340"}),
        sample("synod_signing_sub_sessions_sum"),
        sample("synod_culprits_total", {"member": "3"}),
    )
    s = signer(Reporting("good"))
    s.begin(withdrawal(), "measured")
    assert s.poll("measured") is not None
    after = (
        sample("synod_signing_seconds_count", {"scheme": "bip340"}),
        sample("synod_signing_sub_sessions_sum"),
        sample("synod_culprits_total", {"member": "3"}),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 2, 1]
