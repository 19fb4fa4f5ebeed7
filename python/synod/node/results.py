"""What a node reports about each session it takes part in: a begin/poll view.

Callers start a session (`SignerNode.start_*`) and later read its `SessionResult`;
nothing blocks. The result is built from the sessions' events, so it says what this
node saw: the signature (from its own aggregator turn or from another aggregator's
`done`), the signers, the culprits it named, or why it failed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from synod.crypto import ecdsa, frost
from synod.protocols.base import Event


class SessionKind(enum.Enum):
    FROST_SIGN = "frost-sign"
    ECDSA_SIGN = "ecdsa-sign"
    FROST_DKG = "frost-dkg"
    ECDSA_AUX_INFO = "ecdsa-aux-info"
    ECDSA_KEYGEN = "ecdsa-keygen"
    ECDSA_PRESIGN = "ecdsa-presign"
    RESHARE = "reshare"


class SessionStatus(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class SessionResult:
    session_id: bytes
    kind: SessionKind
    key_id: str
    started_at: float
    deadline: float
    status: SessionStatus = SessionStatus.RUNNING
    signature: bytes | None = None  # FROST: 64 bytes; ECDSA: r ‖ s ‖ recovery id
    public_key: bytes | None = None  # a DKG's group key, an ECDSA key's public key
    output_key: bytes | None = None  # a BIP340 key: x-only, after the BIP341 key-path tweak
    signers: tuple[int, ...] = ()
    culprits: set[int] = field(default_factory=set)
    sub_sessions: int = 0  # ROAST sub-sessions / CGGMP attempts this node saw opened
    aggregator: int | None = None  # who produced the signature
    reason: str = ""
    finished_at: float | None = None
    output: Any = field(default=None, repr=False)  # aux info / presignature: SECRET

    @property
    def finished(self) -> bool:
        return self.status is not SessionStatus.RUNNING

    def finish(self, status: SessionStatus, now: float, reason: str = "") -> None:
        if self.finished:
            return
        self.status = status
        if reason:  # keep what was seen before the end: "timeout: template_mismatch"
            self.reason = f"{reason}: {self.reason}" if self.reason else reason
        self.finished_at = now

    def observe(self, node: int, event: Event, now: float) -> None:
        """Fold one session event into the result (events after the end change nothing)."""
        if self.finished:
            return
        name, data = event.name, event.data
        if name == "culprit":
            self.culprits.add(int(data["signer"]))
        elif name in ("sub_session", "attempt"):
            self.sub_sessions += 1
        elif name == "attempt_timeout":
            self.culprits.update(int(s) for s in data.get("suspects", ()))
        elif name == "signed":
            self._on_signed(node, data, now)
        elif name == "aborted":
            self.culprits.update(int(c) for c in data.get("culprits", ()))
            self.finish(SessionStatus.FAILED, now, str(data.get("reason", "aborted")))
        elif name == "refused" and data.get("reason") == "template_mismatch":
            self.reason = "template_mismatch"

    def _on_signed(self, node: int, data: dict[str, Any], now: float) -> None:
        sig = data["signature"]
        if isinstance(sig, frost.Signature):
            self.signature = sig.raw
        elif isinstance(sig, ecdsa.Signature):
            self.signature = sig.to_recoverable()
        if "signers" in data:
            self.signers = tuple(data["signers"])
        self.aggregator = int(data.get("aggregator", data.get("reported_by", node)))
        for c in data.get("culprits", ()):
            self.culprits.add(int(c))
        self.finish(SessionStatus.DONE, now)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (never the secret `output`)."""
        return {
            "session_id": self.session_id.hex(),
            "kind": self.kind.value,
            "key_id": self.key_id,
            "status": self.status.value,
            "signature": None if self.signature is None else self.signature.hex(),
            "public_key": None if self.public_key is None else self.public_key.hex(),
            "output_key": None if self.output_key is None else self.output_key.hex(),
            "signers": list(self.signers),
            "culprits": sorted(self.culprits),
            "sub_sessions": self.sub_sessions,
            "aggregator": self.aggregator,
            "reason": self.reason,
        }
