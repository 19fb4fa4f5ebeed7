from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Scheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEME_UNSPECIFIED: _ClassVar[Scheme]
    BIP340: _ClassVar[Scheme]
    ED25519: _ClassVar[Scheme]
    ECDSA: _ClassVar[Scheme]

class SessionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[SessionStatus]
    RUNNING: _ClassVar[SessionStatus]
    DONE: _ClassVar[SessionStatus]
    FAILED: _ClassVar[SessionStatus]
SCHEME_UNSPECIFIED: Scheme
BIP340: Scheme
ED25519: Scheme
ECDSA: Scheme
STATUS_UNSPECIFIED: SessionStatus
RUNNING: SessionStatus
DONE: SessionStatus
FAILED: SessionStatus

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Counter(_message.Message):
    __slots__ = ("name", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("member_id", "epoch", "key_ids", "running_sessions", "drops", "aux_info", "keys")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    AUX_INFO_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    epoch: int
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    running_sessions: int
    drops: _containers.RepeatedCompositeFieldContainer[Counter]
    aux_info: bool
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, member_id: _Optional[int] = ..., epoch: _Optional[int] = ..., key_ids: _Optional[_Iterable[str]] = ..., running_sessions: _Optional[int] = ..., drops: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., aux_info: _Optional[bool] = ..., keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "scheme", "public_key", "output_key")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    scheme: Scheme
    public_key: bytes
    output_key: bytes
    def __init__(self, key_id: _Optional[str] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., public_key: _Optional[bytes] = ..., output_key: _Optional[bytes] = ...) -> None: ...

class StartDkgRequest(_message.Message):
    __slots__ = ("key_id", "session_id", "scheme", "participants", "threshold", "timeout_s")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    session_id: bytes
    scheme: Scheme
    participants: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    timeout_s: float
    def __init__(self, key_id: _Optional[str] = ..., session_id: _Optional[bytes] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., participants: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class StartSignRequest(_message.Message):
    __slots__ = ("key_id", "session_id", "scheme", "message", "withdraw_id", "ledger_session", "input_index", "rotate_timeout_s", "timeout_s")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SESSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROTATE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    session_id: bytes
    scheme: Scheme
    message: bytes
    withdraw_id: str
    ledger_session: str
    input_index: int
    rotate_timeout_s: float
    timeout_s: float
    def __init__(self, key_id: _Optional[str] = ..., session_id: _Optional[bytes] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., message: _Optional[bytes] = ..., withdraw_id: _Optional[str] = ..., ledger_session: _Optional[str] = ..., input_index: _Optional[int] = ..., rotate_timeout_s: _Optional[float] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class StartReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PrepareAuxInfoRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    def __init__(self, session_id: _Optional[bytes] = ...) -> None: ...

class PrepareAuxInfoReply(_message.Message):
    __slots__ = ("primes_ready",)
    PRIMES_READY_FIELD_NUMBER: _ClassVar[int]
    primes_ready: bool
    def __init__(self, primes_ready: _Optional[bool] = ...) -> None: ...

class StartAuxInfoRequest(_message.Message):
    __slots__ = ("session_id", "participants", "timeout_s")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    participants: _containers.RepeatedScalarFieldContainer[int]
    timeout_s: float
    def __init__(self, session_id: _Optional[bytes] = ..., participants: _Optional[_Iterable[int]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("session_id", "wait_s")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    wait_s: float
    def __init__(self, session_id: _Optional[bytes] = ..., wait_s: _Optional[float] = ...) -> None: ...

class SessionResult(_message.Message):
    __slots__ = ("session_id", "kind", "key_id", "status", "signature", "public_key", "signers", "culprits", "sub_sessions", "aggregator", "reason", "output_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNERS_FIELD_NUMBER: _ClassVar[int]
    CULPRITS_FIELD_NUMBER: _ClassVar[int]
    SUB_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    kind: str
    key_id: str
    status: SessionStatus
    signature: bytes
    public_key: bytes
    signers: _containers.RepeatedScalarFieldContainer[int]
    culprits: _containers.RepeatedScalarFieldContainer[int]
    sub_sessions: int
    aggregator: int
    reason: str
    output_key: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., kind: _Optional[str] = ..., key_id: _Optional[str] = ..., status: _Optional[_Union[SessionStatus, str]] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., signers: _Optional[_Iterable[int]] = ..., culprits: _Optional[_Iterable[int]] = ..., sub_sessions: _Optional[int] = ..., aggregator: _Optional[int] = ..., reason: _Optional[str] = ..., output_key: _Optional[bytes] = ...) -> None: ...
