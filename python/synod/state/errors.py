"""Why the state machine refused a transaction: every refusal is one of these, with a reason."""

from __future__ import annotations


class Rejected(Exception):
    """A well-formed transaction the current state does not allow."""

    reason = "rejected"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.reason}: {message}")
        self.message = message


class MalformedTransaction(Rejected):
    reason = "malformed"


class UnknownWithdrawal(Rejected):
    reason = "unknown_withdrawal"


class DuplicateRequest(Rejected):
    reason = "duplicate_request"


class DuplicateDeposit(Rejected):
    reason = "duplicate_deposit"


class InvalidTransition(Rejected):
    """The withdrawal is not in a state this transaction applies to."""

    reason = "invalid_transition"


class InsufficientFunds(Rejected):
    reason = "insufficient_funds"


class AboveMaximum(Rejected):
    """The request asks for more than the configured maximum of its asset."""

    reason = "above_maximum"


class FifoViolation(Rejected):
    """An earlier queued withdrawal of the same chain and asset fits and must go first."""

    reason = "fifo_violation"


class SessionMismatch(Rejected):
    reason = "session_mismatch"


class SessionActive(Rejected):
    """At most one signing session per withdrawal."""

    reason = "session_active"


class TemplateLocked(Rejected):
    """The template may change only after the old one is provably unspendable."""

    reason = "template_locked"


class StaleAttempt(Rejected):
    """A transaction for an earlier attempt of a re-queued withdrawal."""

    reason = "stale_attempt"


class SwitchWindow(Rejected):
    """A power transition's switch window (KEY_READY until ACTIVE) holds this back."""

    reason = "switch_window"


class TransitionOpen(Rejected):
    """Another power transition is still running."""

    reason = "transition_open"


class InvalidCommittee(Rejected):
    """The proposed committee cannot sign (too few eligible members for its threshold)."""

    reason = "invalid_committee"


class InvalidTransitionState(Rejected):
    """The power transition is not in a state this transaction applies to."""

    reason = "invalid_transition_state"


class TooManyPending(Rejected):
    """A member proposed more witnessed transactions than may wait for a quorum at once."""

    reason = "too_many_pending"


class InvalidProof(Rejected):
    """A reported key whose proof signature over the ledger's challenge does not verify."""

    reason = "invalid_proof"


class ApplyFailed(Rejected):
    """Applying it raised an error that is not a refusal (a bug, never content): the ledger
    undid it and recorded it as failed, the same on every replica."""

    reason = "failed"


def _subclasses(cls: type[Rejected]) -> list[type[Rejected]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def rejection(reason: str, text: str) -> Rejected:
    """The refusal a ledger outcome reports (its `reason` and its log, ``"<reason>: ..."``) as
    the exception the state machine raised, so a caller of an orderer catches what a caller of
    the state machine would."""
    message = text.removeprefix(f"{reason}: ")
    for cls in _subclasses(Rejected):
        if cls.reason == reason:
            return cls(message)
    err = Rejected(text)
    err.reason = reason  # an outcome of the application itself ("invariant")
    return err
