"""Engine configuration: committee sizes, timeouts, withdrawal limits and fixed chain fees.

Three layers, each later one winning:

1. the packaged default, ``default_config.json`` next to this module (the same content as
   ``config/default.json`` in the repository);
2. an optional JSON file, deep-merged over it (objects merge key by key, anything else
   replaces);
3. environment variables ``SYNOD__<SECTION>__<KEY>[__<SUBKEY>...]``: double underscores separate
   the parts of the path, each part matched case-insensitively against the camelCase key
   (``SYNOD__WITHDRAW__MAXINFLIGHTPERCHAIN=10``, ``SYNOD__CHAINS__BTC__FEESATSPERVBYTE=30``).
   A value is parsed as JSON when it can be, else taken as a string; keys whose type is a
   string always take the value as written. An unknown path is an error.

Fees are fixed values sized for a 300% yearly rise in network fees. They change by governance
or an upgrade, never from what the network is charging at the moment.

Every problem raises :class:`ConfigError`. Its message names the key as a dotted path and where
the offending value came from.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import os
import types
from collections.abc import Mapping
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

__all__ = [
    "CHAIN_NAMES",
    "ENV_PREFIX",
    "ApiConfig",
    "BtcChainConfig",
    "ChainConfig",
    "ChainName",
    "ChainsConfig",
    "CommitteeConfig",
    "ConfigError",
    "EvmChainConfig",
    "FeePolicyConfig",
    "RetryPolicyConfig",
    "RuntimeConfig",
    "SolanaChainConfig",
    "StoreConfig",
    "SynodConfig",
    "TimeoutsConfig",
    "TransitionConfig",
    "TronChainConfig",
    "WebhooksConfig",
    "WithdrawConfig",
    "default_config_text",
    "is_loopback",
    "load_config",
    "parse_listen",
]

ENV_PREFIX = "SYNOD__"
DEFAULT_SOURCE = "packaged default"
_DEFAULT_RESOURCE = "default_config.json"


class ConfigError(ValueError):
    """The configuration cannot be read or is invalid.

    The message is one line, naming the dotted key and the source of the value: the packaged
    default, a file, or an environment variable.
    """


def _cross_field(key: str, message: str, *related: str) -> PydanticCustomError:
    """An error about `key` (a sibling field) that also depends on the `related` siblings."""
    return PydanticCustomError("cross_field", message, {"key": key, "related": ",".join(related)})


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        alias_generator=to_camel,
    )


_Positive = Annotated[int, Field(ge=1)]
_NonNegative = Annotated[int, Field(ge=0)]
_Fee = Annotated[float, Field(ge=0)]


def _exact(value: float) -> Fraction:
    """The decimal a config author wrote (0.7 is 7/10, not the nearest binary float)."""
    return Fraction(repr(value))


class CommitteeConfig(_Model):
    top_n: _Positive
    active_n: _Positive
    threshold_ratio: Annotated[float, Field(gt=0.5, le=1)]
    epoch_blocks: _Positive

    @model_validator(mode="after")
    def _active_within_top(self) -> Self:
        if self.active_n > self.top_n:
            raise _cross_field(
                "activeN", f"must not exceed topN ({self.top_n}), got {self.active_n}", "topN"
            )
        return self

    @property
    def threshold(self) -> int:
        """Signers needed in the active committee: ceil(activeN × thresholdRatio)."""
        return math.ceil(self.active_n * _exact(self.threshold_ratio))


class TimeoutsConfig(_Model):
    """How long signing may take. ROAST needs no per-phase timeout (an unresponsive signer
    only keeps its own sub-sessions open): the aggregator turn bounds every phase, and the
    session limit bounds the whole."""

    aggregator_rotate_ms: _Positive
    session_max_ms: _Positive
    rtt_bound_ms: _Positive = 300  # round trip between committee members the turns are sized for

    def aggregator_turn_s(self, n: int, t: int) -> float:
        """The aggregator turn for a committee of n with threshold t: aggregatorRotateMs, or
        longer when an honest aggregator needs more to finish against n − t misbehaving
        signers at rttBoundMs (`synod.protocols.roast.turn_length`)."""
        from synod.protocols.roast import turn_length

        return max(self.aggregator_rotate_s, turn_length(n, t, self.rtt_bound_ms / 1000))

    def session_limit_s(self, n: int, t: int) -> float:
        """How long a signing session may run: sessionMaxMs, and at least three turns."""
        return max(self.session_max_s, 3 * self.aggregator_turn_s(n, t))

    @model_validator(mode="after")
    def _within_session(self) -> Self:
        limit = self.session_max_ms
        if self.aggregator_rotate_ms >= limit:
            raise _cross_field(
                "aggregatorRotateMs",
                f"must be less than sessionMaxMs ({limit}), got {self.aggregator_rotate_ms}",
                "sessionMaxMs",
            )
        return self

    @property
    def aggregator_rotate_s(self) -> float:
        return self.aggregator_rotate_ms / 1000

    @property
    def session_max_s(self) -> float:
        return self.session_max_ms / 1000


class RetryPolicyConfig(_Model):
    max_retry: _NonNegative
    backoff_ms: _NonNegative

    @property
    def backoff_s(self) -> float:
        return self.backoff_ms / 1000


class WithdrawConfig(_Model):
    max_in_flight_per_chain: _Positive
    retry_policy: RetryPolicyConfig
    # Largest amount one request may ask for, per asset, in base units (satoshi, wei, ...);
    # an asset not listed has no maximum. The ledger refuses larger requests on arrival.
    max_request: dict[str, _Positive] = Field(default_factory=dict)


class TransitionConfig(_Model):
    trigger_change_ratio: Annotated[float, Field(gt=0, le=1)]
    pause_withdraw_during_switch: bool
    # How FROST keys (BIP340, Ed25519) change hands: "reshare" keeps the group key (no funds
    # move); "fresh" runs a new DKG and migrates the funds. CGGMP keys are always fresh.
    frost_handover: Literal["reshare", "fresh"] = "reshare"
    strike_limit: _Positive = 3  # proven misbehaviours that exclude a member from committees
    sweep_batch_inputs: Annotated[int, Field(ge=1, le=500)] = 50  # UTXOs per Bitcoin sweep


class _ChainBase(_Model):
    enabled: bool
    confirmations: _Positive


class BtcChainConfig(_ChainBase):
    fee_sats_per_v_byte: _Fee
    # Blocks a conflicting spend of an input must be buried under before the withdrawal's
    # template counts as unspendable (its funds then go back to the pool).
    conflict_depth: Annotated[int, Field(ge=6)] = 6


class EvmChainConfig(_ChainBase):
    chain_id: _Positive
    # "contract": the custody contract pays, authorised by a FROST signature (the default);
    # "eoa": the CGGMP group address pays with ordinary transactions and ledger-kept nonces.
    custody: Literal["contract", "eoa"] = "contract"
    gas_price_gwei: _Fee
    gas_limit: Annotated[int, Field(ge=21_000)]

    @property
    def gas_price_wei(self) -> int:
        return round(_exact(self.gas_price_gwei) * 10**9)


class TronChainConfig(_ChainBase):
    fee_limit_sun: _NonNegative


class SolanaChainConfig(_ChainBase):
    priority_fee_micro_lamports: _NonNegative


ChainName = Literal["btc", "eth", "bnb", "trx", "sol"]
CHAIN_NAMES: tuple[ChainName, ...] = get_args(ChainName)
ChainConfig = BtcChainConfig | EvmChainConfig | TronChainConfig | SolanaChainConfig


class ChainsConfig(_Model):
    btc: BtcChainConfig
    eth: EvmChainConfig
    bnb: EvmChainConfig
    trx: TronChainConfig
    sol: SolanaChainConfig

    @property
    def nonce_chains(self) -> frozenset[str]:
        """EVM chains in EOA mode: the ledger fixes their account nonces (`Ledger`)."""
        return frozenset(name for name in ("eth", "bnb") if getattr(self, name).custody == "eoa")


class FeePolicyConfig(_Model):
    """Documents how the fixed fees were sized; 3.0 means a 300% yearly rise."""

    yearly_rise_sized_for: Annotated[float, Field(gt=0)]
    changed_by: Annotated[str, Field(min_length=1)]


class StoreConfig(_Model):
    backend: Literal["sqlite", "postgres"]
    sqlite_path: Annotated[str, Field(min_length=1)]
    postgres_dsn: str | None

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> Self:
        if self.backend == "postgres" and not self.postgres_dsn:
            raise _cross_field("postgresDsn", "required when backend is 'postgres'", "backend")
        return self


class RuntimeConfig(_Model):
    poll_interval_ms: _Positive

    @property
    def poll_interval_s(self) -> float:
        return self.poll_interval_ms / 1000


class WebhooksConfig(_Model):
    """Delivery of signed webhooks: attempts per event, exponential backoff, HTTP timeout, the
    delivery pool, the networks an administrator allows besides public addresses, and where
    the key that encrypts the subscriptions' secrets lives."""

    max_attempts: _Positive
    backoff_ms: _Positive
    max_backoff_ms: _Positive
    timeout_ms: _Positive
    workers: Annotated[int, Field(ge=1, le=64)] = 4  # deliveries in flight at once
    queue_size: Annotated[int, Field(ge=0, le=10_000)] = 64  # claimed, waiting for a worker
    # Destinations in these networks (CIDR) are allowed even though they are loopback,
    # link-local, private or otherwise not public; nothing else that is not public is.
    allow_networks: list[str] = Field(default_factory=list)
    # The key file that encrypts subscription secrets (null: beside the SQLite store, or
    # `synod-webhook.key` in the working directory for PostgreSQL); SYNOD_WEBHOOK_KEY wins.
    secret_key_file: str | None = None

    @model_validator(mode="after")
    def _backoff_within_max(self) -> Self:
        if self.backoff_ms > self.max_backoff_ms:
            raise _cross_field(
                "backoffMs",
                f"must not exceed maxBackoffMs ({self.max_backoff_ms}), got {self.backoff_ms}",
                "maxBackoffMs",
            )
        return self

    @model_validator(mode="after")
    def _networks_are_cidrs(self) -> Self:
        for i, text in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(text)
            except ValueError as err:
                raise _cross_field(
                    "allowNetworks", f"entry {i} is not a CIDR network: {err}"
                ) from None
        return self

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """`allowNetworks`, parsed."""
        return tuple(ipaddress.ip_network(text) for text in self.allow_networks)


class ApiConfig(_Model):
    """`synod api run`: its token-free Prometheus listener, "HOST:PORT" (an IPv6 host in
    brackets) or "off"; a host that is not loopback is refused unless `metricsAllowRemote`."""

    metrics_listen: str = "127.0.0.1:9464"
    metrics_allow_remote: bool = False

    @model_validator(mode="after")
    def _listen_form(self) -> Self:
        try:
            parse_listen(self.metrics_listen)
        except ValueError as err:
            raise _cross_field("metricsListen", str(err)) from None
        return self


def parse_listen(text: str) -> tuple[str, int] | None:
    """`HOST:PORT` as (host, port), the host of an IPv6 address without its brackets; None for
    "off". ValueError for anything else."""
    if text == "off":
        return None
    host, colon, port = text.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit()):
        raise ValueError(f"expected HOST:PORT or off, got {text[:80]!r}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"the port must be within 1..65535, got {port[:10]}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host goes in brackets: [::1]:PORT")
    if not host or not host.isascii() or not all(c.isalnum() or c in ".-:" for c in host):
        raise ValueError(f"not a host name or address: {host[:80]!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SynodConfig(_Model):
    committee: CommitteeConfig
    timeouts: TimeoutsConfig
    withdraw: WithdrawConfig
    transition: TransitionConfig
    chains: ChainsConfig
    fee_policy: FeePolicyConfig
    store: StoreConfig
    runtime: RuntimeConfig
    webhooks: WebhooksConfig
    api: ApiConfig

    @overload
    def chain(self, name: Literal["btc"]) -> BtcChainConfig: ...
    @overload
    def chain(self, name: Literal["eth", "bnb"]) -> EvmChainConfig: ...
    @overload
    def chain(self, name: Literal["trx"]) -> TronChainConfig: ...
    @overload
    def chain(self, name: Literal["sol"]) -> SolanaChainConfig: ...
    @overload
    def chain(self, name: str) -> ChainConfig: ...
    def chain(self, name: str) -> ChainConfig:
        """The settings of one chain; KeyError for a name not in CHAIN_NAMES."""
        if name not in CHAIN_NAMES:
            raise KeyError(f"unknown chain {name!r} (known: {', '.join(CHAIN_NAMES)})")
        found: ChainConfig = getattr(self.chains, name)
        return found

    def enabled_chains(self) -> tuple[ChainName, ...]:
        return tuple(name for name in CHAIN_NAMES if self.chain(name).enabled)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready data with its camelCase keys."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data


# --- loading -----------------------------------------------------------------------------------

_Sources = dict[tuple[str, ...], str]


def default_config_text() -> str:
    """The packaged default configuration, as JSON text."""
    return resources.files("synod").joinpath(_DEFAULT_RESOURCE).read_text(encoding="utf-8")


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> SynodConfig:
    """The effective configuration: packaged default, then the file at `path`, then `env`.

    `env` defaults to ``os.environ``; only variables starting with ``SYNOD__`` are read.
    """
    data = _parse_json(default_config_text(), DEFAULT_SOURCE)
    sources: _Sources = {}
    if path is not None:
        where = f"file {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{where}: cannot read: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{where}: not UTF-8 text: {err.reason}") from None
        _merge(data, _parse_json(text, where), (), where, sources)
    for name, keys, value in _env_overrides(os.environ if env is None else env):
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        _merge(data, nested, (), f"env {name}", sources)
    try:
        return SynodConfig.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        problems = [_describe(err, sources) for err in exc.errors(include_url=False)]
        raise ConfigError("; ".join(problems)) from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_json(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{where}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")
    return data


def _merge(
    base: dict[str, Any],
    over: Mapping[str, Any],
    prefix: tuple[str, ...],
    source: str,
    sources: _Sources,
) -> None:
    """Deep-merge `over` into `base`, recording `source` for every value it replaces."""
    for key, value in over.items():
        here = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, here, source, sources)
            continue
        base[key] = copy.deepcopy(value)
        for stale in [p for p in sources if p[: len(here)] == here]:
            del sources[stale]
        sources[here] = source


def _source_of(loc: tuple[str, ...], sources: _Sources) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in sources:
            return sources[loc[:end]]
    return DEFAULT_SOURCE


def _describe(err: Mapping[str, Any], sources: _Sources) -> str:
    loc = tuple(str(part) for part in err["loc"])
    involved = [loc]
    ctx = err.get("ctx") or {}
    if err["type"] == "cross_field":
        related = [r for r in str(ctx["related"]).split(",") if r]
        involved = [(*loc, str(ctx["key"]))] + [(*loc, r) for r in related]
        loc = involved[0]
    named = list(dict.fromkeys(_source_of(key, sources) for key in involved))
    return f"{'.'.join(loc) or '(top level)'}: {err['msg']} (from {' and '.join(named)})"


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], Any]]:
    """(variable, key path, parsed value) for each SYNOD__ variable, general before specific."""
    found: list[tuple[str, tuple[str, ...], Any]] = []
    claimed: dict[tuple[str, ...], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        if not all(parts):
            raise ConfigError(f"env {name}: empty key in path (use SYNOD__<SECTION>__<KEY>)")
        keys, annotation = _resolve(name, parts)
        if keys in claimed:
            raise ConfigError(f"env {name}: {'.'.join(keys)} is also set by {claimed[keys]}")
        claimed[keys] = name
        found.append((name, keys, _parse_env_value(environ[name], annotation)))
    found.sort(key=lambda item: len(item[1]))
    return found


def _resolve(name: str, parts: list[str]) -> tuple[tuple[str, ...], Any]:
    """The camelCase key path an environment variable names, and the type found there."""
    keys: list[str] = []
    annotation: Any = SynodConfig
    for part in parts:
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise ConfigError(
                f"env {name}: unknown key {'.'.join([*keys, part])} "
                f"({'.'.join(keys)} is a value, not a section)"
            )
        fields = {(info.alias or f): (f, info) for f, info in annotation.model_fields.items()}
        match = [
            alias
            for alias, (field, _) in fields.items()
            if part.lower() in (alias.lower(), field.lower())
        ]
        if not match:
            where = ".".join(keys) or "the top level"
            raise ConfigError(
                f"env {name}: unknown key {'.'.join([*keys, part])} "
                f"({where} has {', '.join(fields)})"
            )
        keys.append(match[0])
        annotation = fields[match[0]][1].annotation
    return tuple(keys), annotation


def _parse_env_value(raw: str, annotation: Any) -> Any:
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    if annotation is str or str in options:
        return None if raw == "null" and type(None) in options else raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw
