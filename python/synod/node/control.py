"""The control service of a node (gRPC `synod.node.Control`) and its client.

Begin/poll for operators and the withdraw worker: `StartDkg`, `StartSign` and
`StartAuxInfo` begin a session on this member and return at once (starting the same
session again is a no-op), `PrepareAuxInfo` begins and reports the prime generation
an aux-info session needs first (`synod.node.aux_info`); `GetResult` reports how it
stands; `Status` says who the member is, which
keys it holds and what its router dropped. Requests are untrusted input: sizes and
values are checked and a bad request is an INVALID_ARGUMENT with a one-line reason.
In a member process the service shares the peer service's mutual-TLS port and
accepts only the operator's client certificate (`OperatorOnly`): a member
certificate, though issued by the same CA, is refused and counted. `ControlClient`
takes the operator's PEM material (`ControlTLS.from_dir` reads ``DIR/operator/``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import grpc
from cryptography import x509

from synod.crypto import frost
from synod.node.aux_info import AuxInfoCeremony, AuxInfoRefused
from synod.node.grpc_transport import TlsMaterial
from synod.node.keyring import PublicKey, UnknownKey
from synod.node.manifest import Manifest
from synod.node.operators import OperatorFile
from synod.node.pki import (
    PkiError,
    Role,
    cert_from_pem,
    identify,
    key_fingerprint,
    member_dns_name,
    peer_certificate,
)
from synod.node.proto import control_pb2 as pb
from synod.node.results import SessionKind, SessionResult, SessionStatus
from synod.node.runner import NodeRunner
from synod.node.signer_node import SignerNode
from synod.node.templates import SignContext

log = logging.getLogger("synod.node.control")

MAX_ID = 128  # key ids, withdrawal ids, ledger session ids
MAX_SESSION_ID = 64
MAX_MESSAGE = 64  # signing messages are 32-byte digests (Ed25519: up to a Solana message)
MAX_SOLANA_MESSAGE = 1232
MAX_TIMEOUT_S = 3600.0
MAX_WAIT_S = 30.0  # GetResult's wait_s
# GetResult calls that may wait at once; the others answer at once, so waiting callers
# never hold every thread of the control service (`grpc_transport.CONTROL_THREADS`).
MAX_WAITERS = 2

SCHEMES = {"bip340": pb.BIP340, "ed25519": pb.ED25519, "ecdsa": pb.ECDSA}
_SCHEME_NAMES = {v: k for k, v in SCHEMES.items()}
_SUITES = {pb.BIP340: frost.Ciphersuite.SECP256K1_TR, pb.ED25519: frost.Ciphersuite.ED25519}
_STATUS = {
    SessionStatus.RUNNING: pb.RUNNING,
    SessionStatus.DONE: pb.DONE,
    SessionStatus.FAILED: pb.FAILED,
}


# The service of control.proto: method name -> (request, reply) message types. Served and
# called through these handlers directly (no generated servicer base classes).
SERVICE = "synod.node.Control"
METHODS: dict[str, tuple[Any, Any]] = {
    "Status": (pb.StatusRequest, pb.StatusReply),
    "StartDkg": (pb.StartDkgRequest, pb.StartReply),
    "StartSign": (pb.StartSignRequest, pb.StartReply),
    "GetResult": (pb.GetResultRequest, pb.SessionResult),
    "PrepareAuxInfo": (pb.PrepareAuxInfoRequest, pb.PrepareAuxInfoReply),
    "StartAuxInfo": (pb.StartAuxInfoRequest, pb.StartReply),
}


AdhocRecorder = Callable[[str, dict[str, str]], None]
"""(caller, detail) -> an audit row for an ad-hoc signing session, or an exception."""


class BadRequest(ValueError):
    """A control request this node refuses (the reason is safe to show the caller)."""


def _check_text(name: str, value: str, required: bool = True) -> str:
    if required and not value:
        raise BadRequest(f"{name} is required")
    if len(value) > MAX_ID or not value.isprintable():
        raise BadRequest(f"{name} must be printable and at most {MAX_ID} characters")
    return value


def _check_session_id(value: bytes) -> bytes:
    if not 1 <= len(value) <= MAX_SESSION_ID:
        raise BadRequest(f"session_id must be 1..{MAX_SESSION_ID} bytes")
    return value


def _check_members(values: Any) -> list[int]:
    members = sorted(set(values))
    if len(members) != len(values) or not 2 <= len(members) <= 1000:
        raise BadRequest("participants must be 2..1000 distinct member ids")
    return members


def _check_timeout(name: str, value: float, default: float) -> float:
    if value == 0:
        return default
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        raise BadRequest(f"{name} must be in (0, {MAX_TIMEOUT_S:g}] seconds")
    return value


class OperatorOnly:
    """Admits a control call only from a client certificate of the committee CA that names
    an operator (``synod-operator:<name>``) and whose fingerprint the member's operators file
    lists and has not revoked (`synod.node.operators`; with no readable file, nobody); a member
    certificate, which TLS accepts on the same port for the peer service, is refused, except
    this member's own (`own_cert_pem`: the member's runtime, which holds the same keystore as
    the node, asks its own node to sign what the replica recorded). Refusals are counted by
    reason. `operators` None admits any operator the CA issued (tests only)."""

    def __init__(
        self,
        ca_pem: bytes,
        operators: OperatorFile | None = None,
        own_cert_pem: bytes | None = None,
    ) -> None:
        self._ca = cert_from_pem(ca_pem)
        self._operators = operators
        self._own = None if own_cert_pem is None else key_fingerprint(cert_from_pem(own_cert_pem))
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()

    @property
    def counters(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counters)

    def refusal(self, cert: x509.Certificate | None) -> str | None:
        """Why a caller presenting `cert` is refused, or None when it is an operator."""
        if cert is None:
            return self._count("no_certificate")
        try:
            who = identify(cert, self._ca)
        except PkiError:
            return self._count("bad_certificate")
        if who.role is not Role.OPERATOR:
            if self._own is not None and key_fingerprint(cert) == self._own:
                return None  # this member's own runtime
            return self._count("not_an_operator")
        if self._operators is not None:
            listed = self._operators.current()
            if listed is None:
                return self._count("no_operator_list")
            why = listed.admits(key_fingerprint(cert))
            if why is not None:
                return self._count(why)
        return None

    def _count(self, reason: str) -> str:
        with self._lock:
            self._counters[f"control_refused_{reason}"] += 1
        return reason

    def caller(self, cert: x509.Certificate | None) -> str:
        """Who an admitted caller is, for the audit trail: ``operator:<name>`` or
        ``member:<id>`` (this member's own runtime)."""
        if cert is None:
            return "unknown"
        try:
            who = identify(cert, self._ca)
        except PkiError:
            return "unknown"
        return f"{who.role.value}:{who.name}"


class ControlServicer:
    def __init__(
        self,
        runner: NodeRunner,
        authorize: OperatorOnly | None = None,
        aux: AuxInfoCeremony | None = None,
        record_adhoc: AdhocRecorder | None = None,
    ) -> None:
        self.runner = runner
        self.authorize = authorize
        self.aux = aux
        self.record_adhoc = record_adhoc
        self._waiters = threading.BoundedSemaphore(MAX_WAITERS)

    def _abort(self, context: Any, code: grpc.StatusCode, detail: str) -> NoReturn:
        context.abort(code, detail)
        raise AssertionError("unreachable")  # context.abort raises

    def _audit_adhoc(self, context: Any, detail: dict[str, str]) -> None:
        """An ad-hoc session's row in the member's audit trail, before it starts: a session
        that cannot be recorded does not run."""
        if self.record_adhoc is None:
            return
        caller = "unknown"
        if self.authorize is not None:
            caller = self.authorize.caller(peer_certificate(context.auth_context()))
        try:
            self.record_adhoc(caller, detail)
        except Exception as err:  # the store's failure: refuse rather than sign unrecorded
            log.error("cannot audit an ad-hoc signing session: %s", type(err).__name__)
            self._abort(context, grpc.StatusCode.UNAVAILABLE, "cannot record the session")

    def _admit(self, context: Any) -> None:
        if self.authorize is None:  # loopback tests over an insecure channel
            return
        refused = self.authorize.refusal(peer_certificate(context.auth_context()))
        if refused is not None:
            self._abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"operator certificate required ({refused})",
            )

    def Status(self, request: Any, context: Any) -> Any:
        self._admit(context)

        def read(node: SignerNode, now: float) -> Any:
            running = sum(1 for r in node.results() if not r.finished)
            drops = [
                pb.Counter(name=k, count=v)
                for k, v in sorted(node.router.counters.items())
                if k != "delivered"
            ]
            return pb.StatusReply(
                member_id=node.node_id,
                epoch=node.epoch,
                key_ids=node.keys.key_ids(),
                running_sessions=running,
                drops=drops,
                aux_info=self.runner.aux_info is not None,
                keys=[
                    pb.KeyInfo(
                        key_id=k.key_id,
                        scheme=SCHEMES[k.scheme],
                        public_key=k.public_key,
                        output_key=k.output_key or b"",
                    )
                    for k in node.keys.public_keys()
                ],
            )

        return self.runner.call(read)

    def StartDkg(self, request: Any, context: Any) -> Any:
        self._admit(context)
        try:
            key_id = _check_text("key_id", request.key_id)
            if not all(0x21 <= ord(c) <= 0x7E for c in key_id):
                raise BadRequest("a new key id must be printable ASCII without spaces")
            sid = _check_session_id(request.session_id)
            members = _check_members(request.participants)
            if not 2 <= request.threshold <= len(members):
                raise BadRequest("threshold must be in 2..len(participants)")
            timeout = _check_timeout("timeout_s", request.timeout_s, 30.0)
            scheme = request.scheme
            if scheme not in (pb.BIP340, pb.ED25519, pb.ECDSA):
                raise BadRequest("scheme must be BIP340, ED25519 or ECDSA")
        except BadRequest as err:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))

        def begin(node: SignerNode, now: float) -> str | None:
            if node.node_id not in members:
                return f"member {node.node_id} is not a participant"
            if key_id in node.keys.key_ids() and node.result(sid) is None:
                return f"key {key_id!r} already exists on this member"
            try:
                return start(node, now)
            except ValueError as err:
                return str(err)

        def start(node: SignerNode, now: float) -> str | None:
            if scheme == pb.ECDSA:
                if self.runner.aux_info is None:
                    return "no CGGMP aux info on this member: it cannot run an ECDSA keygen"
                node.start_ecdsa_keygen(
                    key_id,
                    sid,
                    members,
                    request.threshold,
                    self.runner.aux_info,
                    now,
                    timeout=timeout,
                )
            else:
                node.start_dkg(
                    key_id, sid, members, request.threshold, _SUITES[scheme], now, timeout=timeout
                )
            return None

        refused = self.runner.call(begin)
        if refused:
            self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, refused)
        return pb.StartReply()

    def StartSign(self, request: Any, context: Any) -> Any:
        self._admit(context)
        try:
            key_id = _check_text("key_id", request.key_id)
            sid = _check_session_id(request.session_id)
            scheme = request.scheme
            if scheme not in (pb.BIP340, pb.ED25519, pb.ECDSA):
                raise BadRequest("scheme must be BIP340, ED25519 or ECDSA")
            limit = MAX_SOLANA_MESSAGE if scheme == pb.ED25519 else MAX_MESSAGE
            message = bytes(request.message)
            if not 1 <= len(message) <= limit or (scheme == pb.ECDSA and len(message) != 32):
                raise BadRequest(f"message must be 1..{limit} bytes (ECDSA: a 32-byte digest)")
            rotate = _check_timeout("rotate_timeout_s", request.rotate_timeout_s, 5.0)
            timeout = _check_timeout("timeout_s", request.timeout_s, 120.0)
            context_ = None
            if request.withdraw_id:
                context_ = SignContext(
                    _check_text("withdraw_id", request.withdraw_id),
                    _check_text("ledger_session", request.ledger_session),
                    int(request.input_index),
                )
        except BadRequest as err:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if context_ is None and not self.runner.operator_signing:
            self._abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "this member signs only withdrawals recorded in its ledger "
                "(ad-hoc signing is a development tool, off)",
            )
        if context_ is None:  # a development tool: every such session leaves a trace
            digest = hashlib.sha256(message).hexdigest()
            log.warning(
                "ad-hoc signing: key %s, session %s, message sha256 %s",
                key_id,
                sid.hex()[:16],
                digest[:16],
            )
            self._audit_adhoc(context, {"key_id": key_id, "session": sid.hex(), "sha256": digest})
        validator = self.runner.validator(context_, message)

        def begin(node: SignerNode, now: float) -> str | None:
            try:
                if scheme == pb.ECDSA:
                    node.start_ecdsa_signing(
                        key_id,
                        sid,
                        message,
                        validator,
                        now,
                        attempt_timeout=rotate,
                        timeout=timeout,
                    )
                else:
                    tweak = frost.KEY_PATH if scheme == pb.BIP340 else None
                    node.start_signing(
                        key_id,
                        sid,
                        message,
                        validator,
                        now,
                        tweak=tweak,
                        rotate_timeout=rotate,
                        timeout=timeout,
                    )
            except UnknownKey as err:
                return str(err.args[0])
            except ValueError as err:  # e.g. a member outside the key's committee
                return str(err)
            return None

        refused = self.runner.call(begin)
        if refused:
            self._abort(context, grpc.StatusCode.NOT_FOUND, refused)
        return pb.StartReply()

    def _ceremony(self, context: Any) -> AuxInfoCeremony:
        if self.aux is None:
            self._abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "no aux-info ceremony on this node"
            )
        return self.aux

    def PrepareAuxInfo(self, request: Any, context: Any) -> Any:
        self._admit(context)
        try:
            sid = _check_session_id(request.session_id)
        except BadRequest as err:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            ready = self._ceremony(context).prepare(sid)
        except AuxInfoRefused as err:
            self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return pb.PrepareAuxInfoReply(primes_ready=ready)

    def StartAuxInfo(self, request: Any, context: Any) -> Any:
        self._admit(context)
        try:
            sid = _check_session_id(request.session_id)
            members = _check_members(request.participants)
            timeout = _check_timeout("timeout_s", request.timeout_s, 600.0)
        except BadRequest as err:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            self._ceremony(context).start(sid, members, timeout)
        except AuxInfoRefused as err:
            self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return pb.StartReply()

    def GetResult(self, request: Any, context: Any) -> Any:
        self._admit(context)
        try:
            sid = _check_session_id(request.session_id)
            wait = request.wait_s
            if not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT_S):
                raise BadRequest(f"wait_s must be in [0, {MAX_WAIT_S:g}] seconds")
        except BadRequest as err:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if wait > 0 and self._waiters.acquire(blocking=False):
            try:
                result = self.runner.wait_finished(sid, wait)
            finally:
                self._waiters.release()
        else:
            result = self.runner.call(lambda node, _now: node.result(sid))
        if result is None:
            self._abort(context, grpc.StatusCode.NOT_FOUND, "no such session on this member")
        return pb.SessionResult(
            session_id=result.session_id,
            kind=result.kind.value,
            key_id=result.key_id,
            status=_STATUS[result.status],
            signature=result.signature or b"",
            public_key=result.public_key or b"",
            output_key=result.output_key or b"",
            signers=list(result.signers),
            culprits=sorted(result.culprits),
            sub_sessions=result.sub_sessions,
            aggregator=result.aggregator or 0,
            reason=result.reason,
        )


def add_control_service(
    server: grpc.Server,
    runner: NodeRunner,
    authorize: OperatorOnly | None = None,
    aux: AuxInfoCeremony | None = None,
    record_adhoc: AdhocRecorder | None = None,
) -> ControlServicer:
    """Serve `synod.node.Control` for `runner` on `server` (the caller owns the server);
    with `authorize`, only operator certificates are admitted; `aux` runs this member's
    part of an aux-info ceremony (without it, one is refused)."""
    servicer = ControlServicer(runner, authorize, aux, record_adhoc)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=reply.SerializeToString,
        )
        for name, (request, reply) in METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return servicer


# -- client --------------------------------------------------------------------------


class ControlError(RuntimeError):
    """A control call failed: the node refused it or could not be reached."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ControlTLS:
    """The operator's side of mutual TLS: the committee CA, its own certificate and key."""

    root_certificates: bytes
    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    server_name: str | None = None  # the name the member's certificate carries

    @classmethod
    def from_dir(cls, operator_dir: Path, member_id: int) -> ControlTLS:
        """The operator material `synod committee init` writes (DIR/operator/), for calling
        member `member_id` (its certificate's TLS name is checked)."""
        try:
            return cls(
                (operator_dir / "ca.pem").read_bytes(),
                (operator_dir / "operator.pem").read_bytes(),
                (operator_dir / "operator.key.pem").read_bytes(),
                member_dns_name(member_id),
            )
        except OSError as err:
            raise ControlError("NO_OPERATOR", f"{err.filename}: {err.strerror}") from None

    @classmethod
    def own(cls, tls: TlsMaterial, member_id: int) -> ControlTLS:
        """A member calling its own node (its runtime): the member's own certificate and key."""
        return cls(tls.ca_pem, tls.cert_pem, tls.key_pem, member_dns_name(member_id))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def operator_clients(root: Path, timeout: float = 5.0) -> dict[int, ControlClient]:
    """A control client, with the operator's certificate, for every member of the committee
    in `root` (the directory `synod committee init` made)."""
    manifest = Manifest.load(root / "manifest.json")
    return {
        m.id: ControlClient(
            str(m.endpoint), ControlTLS.from_dir(root / "operator", m.id), timeout=timeout
        )
        for m in manifest.members
    }


_STATUS_BACK = {v: k for k, v in _STATUS.items()}
MAX_REPLY = 64 * 1024


class ControlClient:
    """Calls one member's control service; every call has a deadline (`timeout`)."""

    def __init__(self, endpoint: str, tls: ControlTLS | None, timeout: float = 5.0) -> None:
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_REPLY)]
        if tls is None:  # loopback tests only
            self.channel = grpc.insecure_channel(endpoint, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self.channel = grpc.secure_channel(endpoint, tls.credentials(), options=options)
        self.endpoint = endpoint
        self.timeout = timeout
        self._methods = {
            name: self.channel.unary_unary(
                f"/{SERVICE}/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=reply.FromString,
            )
            for name, (request, reply) in METHODS.items()
        }

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, request: Any, wait: float = 0.0) -> Any:
        """`wait`: how long the member may hold the call before answering (out-of-range
        values are the member's to refuse)."""
        extra = min(wait, MAX_WAIT_S) if math.isfinite(wait) and wait > 0 else 0.0
        try:
            return self._methods[method](request, timeout=self.timeout + extra)
        except grpc.RpcError as err:
            code = err.code().name if err.code() is not None else "UNKNOWN"
            raise ControlError(code, err.details() or "no detail") from None

    def status(self) -> dict[str, Any]:
        reply = self._call("Status", pb.StatusRequest())
        return {
            "member_id": reply.member_id,
            "epoch": reply.epoch,
            "key_ids": list(reply.key_ids),
            "running_sessions": reply.running_sessions,
            "drops": {c.name: c.count for c in reply.drops},
            "aux_info": reply.aux_info,
            "keys": {
                k.key_id: PublicKey(
                    k.key_id,
                    _SCHEME_NAMES[k.scheme],
                    bytes(k.public_key),
                    bytes(k.output_key) or None,
                )
                for k in reply.keys
                if k.scheme in _SCHEME_NAMES
            },
        }

    def start_dkg(
        self,
        key_id: str,
        session_id: bytes,
        scheme: str,
        participants: list[int],
        threshold: int,
        timeout: float = 0.0,
    ) -> None:
        self._call(
            "StartDkg",
            pb.StartDkgRequest(
                key_id=key_id,
                session_id=session_id,
                scheme=SCHEMES[scheme],
                participants=participants,
                threshold=threshold,
                timeout_s=timeout,
            ),
        )

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
        request = pb.StartSignRequest(
            key_id=key_id,
            session_id=session_id,
            scheme=SCHEMES[scheme],
            message=message,
            rotate_timeout_s=rotate_timeout,
            timeout_s=timeout,
        )
        if context is not None:
            request.withdraw_id = context.withdraw_id
            request.ledger_session = context.ledger_session
            request.input_index = context.input_index
        self._call("StartSign", request)

    def prepare_aux_info(self, session_id: bytes) -> bool:
        """Begin this member's prime generation (idempotent); whether the primes are ready."""
        reply = self._call("PrepareAuxInfo", pb.PrepareAuxInfoRequest(session_id=session_id))
        return bool(reply.primes_ready)

    def start_aux_info(
        self, session_id: bytes, participants: list[int], timeout: float = 0.0
    ) -> None:
        self._call(
            "StartAuxInfo",
            pb.StartAuxInfoRequest(
                session_id=session_id, participants=participants, timeout_s=timeout
            ),
        )

    def get_result(self, session_id: bytes, wait: float = 0.0) -> SessionResult:
        """How the session stands; with `wait` (seconds, at most `MAX_WAIT_S`), once it has
        ended or `wait` has passed (a member with too many waiting callers answers at once)."""
        r = self._call("GetResult", pb.GetResultRequest(session_id=session_id, wait_s=wait), wait)
        if r.status not in _STATUS_BACK:
            raise ControlError("INVALID", "the member reported no status")
        try:
            kind = SessionKind(r.kind)
        except ValueError:
            raise ControlError("INVALID", f"unknown session kind {r.kind!r}") from None
        result = SessionResult(bytes(r.session_id), kind, r.key_id, 0.0, math.inf)
        result.status = _STATUS_BACK[r.status]
        result.signature = bytes(r.signature) or None
        result.public_key = bytes(r.public_key) or None
        result.output_key = bytes(r.output_key) or None
        result.signers = tuple(r.signers)
        result.culprits = set(r.culprits)
        result.sub_sessions = r.sub_sessions
        result.aggregator = r.aggregator or None
        result.reason = r.reason
        return result
