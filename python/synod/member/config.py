"""A member's configuration file (TOML), every key checked; an error names the file, the key
and the expected form.

```toml
[member]
dir = "/var/lib/synod/member"      # the member directory (`synod member init` + `install`)
passphrase_file = "/etc/synod/passphrase"   # optional: else $SYNOD_PASSPHRASE
health = "127.0.0.1:9100"          # /healthz, /readyz and /metrics
chains = "chains.json"             # optional: the signing view, relative to dir
# test_fault = "invalid-shares"    # TEST ONLY: the signer node (invalid-shares) or the
#                                  # runtime (fake-deposits) misbehaves on purpose

[ledger]
mode = "replicated"                # or "solo": a chain of one validator in this process
db = "ledger.db"                   # this member's replica: a path relative to dir, or a URL
# replicated only:
cometbft = "/usr/local/bin/cometbft"
home = "cometbft"                  # the validator home, relative to dir
abci = 26658                       # the ledger application's port on 127.0.0.1
rpc = 26657                        # the validator's RPC port on 127.0.0.1

[api]                              # optional: the REST API over this member's replica
listen = "10.0.0.11:8080"          # where clients reach it
db = "api.db"                      # the API's own store (tokens, idempotency, its audit)
operator_key = "ledger-operator.key.pem"   # signs requests (the ledger's operator; 0600)
operator = "api"                   # that key's name in the ledger's committee file

[chains.btc]                       # the runtime's chains (replicated ledger; Bitcoin for now)
key = "btc-key"                    # the committee key's id (its DKG's key id)
rpc = "https://user:password@10.0.0.1:18334"   # the chain node's RPC, or "env:NAME"
cafile = "btcd-rpc.cert"           # optional: the node's TLS certificate, relative to dir
network = "regtest"                # mainnet, testnet, signet or regtest
confirmations = 6                  # optional: else synod's default for the chain
from_height = 0                    # optional: where the deposit watcher starts
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synod.node.faults import TEST_FAULTS
from synod.node.manifest import Endpoint, ManifestError
from synod.state.db import is_dsn

SOLO, REPLICATED = "solo", "replicated"
RUNTIME_FAULTS = ("fake-deposits",)  # TEST ONLY: `synod.member.runtime`
MAX_CONFIG_BYTES = 1 << 20
SECTIONS: dict[str, frozenset[str]] = {
    "member": frozenset({"dir", "passphrase_file", "health", "chains", "test_fault"}),
    "ledger": frozenset({"mode", "db", "cometbft", "home", "abci", "rpc"}),
    "chains": frozenset({"btc"}),  # the chains the member's runtime can serve so far
    "api": frozenset({"listen", "db", "operator_key", "operator"}),
}
CHAIN_KEYS = frozenset({"key", "rpc", "cafile", "network", "confirmations", "from_height"})
NETWORKS = ("mainnet", "testnet", "signet", "regtest")


class MemberConfigError(ValueError):
    """``<file>: <section>.<key>: <what was expected>``."""


@dataclass(frozen=True)
class LedgerConfig:
    mode: str
    db: str  # a URL (sqlite:///… or PostgreSQL)
    cometbft: Path | None = None
    home: Path | None = None
    abci_port: int = 26658
    rpc_port: int = 26657

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"


@dataclass(frozen=True)
class ChainConfig:
    """One chain the member's runtime serves: its withdrawals and its deposits."""

    chain: str
    key_id: str
    rpc: str = field(repr=False)  # may carry the node's credentials
    network: str
    cafile: Path | None = None
    confirmations: int | None = None
    from_height: int = 0


@dataclass(frozen=True)
class ApiConfig:
    """The REST API as a view over the member's replica (`synod api run --replica`)."""

    listen: Endpoint
    db: str  # the API's own store: a URL
    operator_key: Path | None  # replicated: the ledger operator's request-signing key
    operator: str = "api"


@dataclass(frozen=True)
class MemberConfig:
    path: Path
    directory: Path
    health: Endpoint
    ledger: LedgerConfig
    passphrase_file: Path | None = None
    chains: Path | None = None  # the signing view the signer node reads
    runtime: tuple[ChainConfig, ...] = ()
    api: ApiConfig | None = None
    test_fault: str | None = None  # TEST ONLY: a node's or a runtime's fault


class _Reader:
    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path, self.doc = path, doc

    def fail(self, key: str, expected: str) -> MemberConfigError:
        return MemberConfigError(f"{self.path}: {key}: {expected}")

    def section(self, name: str, required: bool = True) -> dict[str, Any]:
        value = self.doc.get(name)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "a table is required")
        unknown = sorted(set(value) - SECTIONS[name])
        if unknown:
            raise self.fail(
                f"{name}.{unknown[0]}", f"unknown key (known: {sorted(SECTIONS[name])})"
            )
        return value

    def text(
        self, table: dict[str, Any], section: str, key: str, default: str | None = None
    ) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{section}.{key}", "a non-empty string is required")
        return value

    def port(self, table: dict[str, Any], section: str, key: str, default: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise self.fail(f"{section}.{key}", "a port number 1..65535 is required")
        return value

    def count(
        self, table: dict[str, Any], section: str, key: str, default: int | None, least: int
    ) -> int | None:
        value = table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.fail(f"{section}.{key}", f"an integer of at least {least} is required")
        return int(value)

    def path_in(self, base: Path, table: dict[str, Any], section: str, key: str) -> Path | None:
        if key not in table:
            return None
        return base / self.text(table, section, key)


def _db_url(base: Path, value: str) -> str:
    if is_dsn(value):
        return value  # a URL or a libpq keyword DSN
    return f"sqlite:///{base / value}"


def load_member_config(path: Path) -> MemberConfig:
    """Parse and check `path`; relative paths inside are relative to the member directory
    (which is itself relative to the file's directory)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise MemberConfigError(f"{path}: cannot read: {err.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise MemberConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MemberConfigError(f"{path}: not TOML: {err}") from None
    r = _Reader(path, doc)
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise r.fail(f"[{unknown[0]}]", f"unknown section (known: {sorted(SECTIONS)})")
    member = r.section("member")
    directory = (path.parent / r.text(member, "member", "dir")).resolve()
    try:
        health = Endpoint.parse(r.text(member, "member", "health", "127.0.0.1:9100"))
    except ManifestError:
        raise r.fail("member.health", "HOST:PORT is required") from None
    ledger = r.section("ledger")
    mode = r.text(ledger, "ledger", "mode")
    if mode not in (SOLO, REPLICATED):
        raise r.fail("ledger.mode", f"{SOLO!r} or {REPLICATED!r} is required")
    db = _db_url(directory, r.text(ledger, "ledger", "db", "ledger.db"))
    if mode == SOLO:
        extra = sorted(set(ledger) & {"cometbft", "home", "abci", "rpc"})
        if extra:
            raise r.fail(f"ledger.{extra[0]}", "only for mode = 'replicated'")
        ledger_config = LedgerConfig(SOLO, db)
    else:
        cometbft = Path(r.text(ledger, "ledger", "cometbft"))
        home = directory / r.text(ledger, "ledger", "home", "cometbft")
        abci = r.port(ledger, "ledger", "abci", 26658)
        rpc = r.port(ledger, "ledger", "rpc", 26657)
        if abci == rpc:
            raise r.fail("ledger.rpc", "a port other than ledger.abci is required")
        ledger_config = LedgerConfig(REPLICATED, db, cometbft, home, abci, rpc)
    runtime = _chains(r, directory, ledger_config)
    return MemberConfig(
        path,
        directory,
        health,
        ledger_config,
        r.path_in(path.parent, member, "member", "passphrase_file"),
        r.path_in(directory, member, "member", "chains"),
        runtime,
        _api(r, directory, ledger_config, health),
        _test_fault(r, member),
    )


def _test_fault(r: _Reader, member: dict[str, Any]) -> str | None:
    if "test_fault" not in member:
        return None
    fault = r.text(member, "member", "test_fault")
    known = (*TEST_FAULTS, *RUNTIME_FAULTS)
    if fault not in known:
        raise r.fail("member.test_fault", f"one of {', '.join(known)} (TEST ONLY)")
    return fault


def _api(r: _Reader, directory: Path, ledger: LedgerConfig, health: Endpoint) -> ApiConfig | None:
    table = r.section("api", required=False)
    if not table:
        return None
    try:
        listen = Endpoint.parse(r.text(table, "api", "listen"))
    except ManifestError:
        raise r.fail("api.listen", "HOST:PORT is required") from None
    if listen == health:
        raise r.fail("api.listen", "an address other than member.health is required")
    key = r.path_in(directory, table, "api", "operator_key")
    if ledger.mode == REPLICATED and key is None:
        raise r.fail("api.operator_key", "the ledger operator's key file is required")
    if ledger.mode != REPLICATED and key is not None:
        raise r.fail("api.operator_key", "only for mode = 'replicated' (solo signs in-process)")
    if ledger.mode != REPLICATED:  # the API is the solo ledger's one writer, in its store
        if "db" in table:
            raise r.fail("api.db", "only for mode = 'replicated' (solo: the ledger's store)")
        return ApiConfig(listen, ledger.db, None, r.text(table, "api", "operator", "api"))
    db = _db_url(directory, r.text(table, "api", "db", "api.db"))
    if db == ledger.db:
        raise r.fail("api.db", "a store other than the replica (ledger.db) is required")
    return ApiConfig(listen, db, key, r.text(table, "api", "operator", "api"))


def _chains(r: _Reader, directory: Path, ledger: LedgerConfig) -> tuple[ChainConfig, ...]:
    chains = r.section("chains", required=False)
    if chains and ledger.mode != REPLICATED:
        raise r.fail("[chains]", "the runtime runs on the replicated ledger (mode = 'replicated')")
    out = []
    for chain, table in sorted(chains.items()):
        where = f"chains.{chain}"
        if not isinstance(table, dict):
            raise r.fail(f"[{where}]", "a table is required")
        unknown = sorted(set(table) - CHAIN_KEYS)
        if unknown:
            raise r.fail(f"{where}.{unknown[0]}", f"unknown key (known: {sorted(CHAIN_KEYS)})")
        network = r.text(table, where, "network", "mainnet")
        if network not in NETWORKS:
            raise r.fail(f"{where}.network", f"one of {', '.join(NETWORKS)} is required")
        rpc = r.text(table, where, "rpc")
        if not rpc.startswith(("http://", "https://", "env:")):
            raise r.fail(f"{where}.rpc", "an http:// or https:// URL, or env:NAME, is required")
        out.append(
            ChainConfig(
                chain,
                r.text(table, where, "key"),
                rpc,
                network,
                r.path_in(directory, table, where, "cafile"),
                r.count(table, where, "confirmations", None, 1),
                r.count(table, where, "from_height", 0, 0) or 0,
            )
        )
    return tuple(out)
