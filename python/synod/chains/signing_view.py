"""A member's signing view: what it needs, beyond its ledger, to check on its own that a
message it is asked to sign is exactly what a withdrawal's recorded template gives.

The template fixes what is paid (recipient, amount, inputs, fee); the rest of the
signed bytes comes from the chain's public parameters, which the operator writes once
per committee key into a JSON file each member reads (``synod node run --chains``)::

    {"version": 1, "chains": {
        "btc": {"network": "regtest"},
        "eth": {"chain_id": 1337, "contract": "0x...", "fee_cap": 1000000000,
                "deadline": 1099511627776, "epoch": 1, "tokens": {"USDC": "0x..."}},
        "sol": {"group_key": "<32-byte Ed25519 group key, hex>"}}}

Per chain the rule is:

- Bitcoin: the BIP341 key-path sighash of input *i* of the transaction the template
  describes;
- EVM (eth, bnb): the digest of the custody contract call for the template (`withdraw`,
  or a power transition's `updatePubkey`);
- Solana: the transfer message the template describes, under the recent blockhash the
  ledger agreed for the template with its `StartSign` (``sign_context``). The blockhash
  bounds only how long the message stays valid, never what it pays; agreeing on it keeps
  every member on one message, so a template never has two live messages.

`SigningView` re-reads the file when it changes, so a member started before the keys
exist (the demo) picks the parameters up without a restart; a file that does not parse
is logged and refuses everything until it is fixed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synod.node.keystore import atomic_write
from synod.runtime.node_signer import MessageRule, derived
from synod.state.machine import Withdrawal

if TYPE_CHECKING:
    from synod.chains.evm.custody import UpdatePubkeyCall, WithdrawCall

    CustodyCall = WithdrawCall | UpdatePubkeyCall

log = logging.getLogger("synod.chains.signing_view")

VERSION = 1
MAX_FILE = 1 << 20
EVM_CHAINS = ("eth", "bnb")


class SigningViewError(ValueError):
    """A signing view that does not parse (the message names the chain and field)."""


def _field(params: Mapping[str, Any], chain: str, name: str, kind: type) -> Any:
    value = params.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SigningViewError(f"chains.{chain}.{name}: expected {kind.__name__}")
    return value


def _bitcoin(chain: str, params: Mapping[str, Any]) -> MessageRule:
    from synod.chains.bitcoin.address import Network
    from synod.chains.bitcoin.tx import build_transaction
    from synod.state.machine import recorded_template

    name = _field(params, chain, "network", str)
    try:
        network = Network[name.upper()]
    except KeyError:
        raise SigningViewError(f"chains.{chain}.network: unknown network {name!r}") from None
    op_return = bool(params.get("op_return", False))
    return derived(
        lambda w: build_transaction(recorded_template(w), network, op_return=op_return).sighashes()
    )


def evm_call(chain: str, params: Mapping[str, Any]) -> Callable[[Withdrawal], CustodyCall]:
    """The custody contract call (`withdraw`, or a transition's `updatePubkey`) that a
    withdrawal's recorded template gives under a view's EVM parameters, which are checked
    here; what the members sign is its digest. The worker's side derives it the same way."""
    from synod.chains.evm.custody import build_call

    chain_id = _field(params, chain, "chain_id", int)
    contract = _field(params, chain, "contract", str)
    fee_cap = _field(params, chain, "fee_cap", int)
    deadline = _field(params, chain, "deadline", int)
    epoch = _field(params, chain, "epoch", int)
    tokens = params.get("tokens", {})
    if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
        raise SigningViewError(f"chains.{chain}.tokens: expected an object of addresses")

    def call(w: Withdrawal) -> CustodyCall:
        assert w.template is not None
        return build_call(
            json.loads(w.template),
            chain_id=chain_id,
            contract=contract,
            fee_cap=fee_cap,
            deadline=deadline,
            epoch=epoch,
            tokens=tokens,
        )

    return call


def _evm(chain: str, params: Mapping[str, Any]) -> MessageRule:
    call = evm_call(chain, params)
    return derived(lambda w: bytes(call(w).digest()))


def _solana(chain: str, params: Mapping[str, Any]) -> MessageRule:
    from solders.message import Message

    from synod.chains.solana.tx import SolanaTransfer

    try:
        group_key = bytes.fromhex(_field(params, chain, "group_key", str))
    except ValueError:
        raise SigningViewError(f"chains.{chain}.group_key: expected hex") from None
    if len(group_key) != 32:
        raise SigningViewError(f"chains.{chain}.group_key: expected 32 bytes")

    def rule(w: Withdrawal, index: int, message: bytes) -> bool:
        if index != 0 or w.template is None or not w.sign_context:
            return False
        blockhash = Message.from_bytes(message).recent_blockhash
        if str(blockhash) != w.sign_context:
            return False  # only under the blockhash the ledger agreed for this template
        return SolanaTransfer.build(w.template, group_key, blockhash).message_bytes() == message

    return rule


_FAMILIES = {"btc": _bitcoin, "eth": _evm, "bnb": _evm, "sol": _solana}


def parse(doc: Any) -> dict[str, MessageRule]:
    """The rules of a signing view document."""
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise SigningViewError(f"not a signing view (expected version {VERSION})")
    chains = doc.get("chains")
    if not isinstance(chains, dict):
        raise SigningViewError("chains: expected an object")
    rules = {}
    for chain, params in chains.items():
        family = _FAMILIES.get(chain)
        if family is None:
            raise SigningViewError(f"chains.{chain}: no signing rule for this chain")
        if not isinstance(params, dict):
            raise SigningViewError(f"chains.{chain}: expected an object")
        rules[chain] = family(chain, params)
    return rules


def write(path: Path, chains: Mapping[str, Mapping[str, Any]]) -> None:
    """Write a signing view (checked first, so a member never reads one that does not parse)."""
    doc = {"version": VERSION, "chains": chains}
    parse(doc)
    atomic_write(path, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n", 0o644)


class SigningView:
    """The rules from the file at `path`, re-read whenever it changes (none while it is
    missing or does not parse)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._rules: dict[str, MessageRule] = {}

    def __call__(self) -> Mapping[str, MessageRule]:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._rules = None, {}
            return self._rules
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            self._rules = {}
            try:
                if st.st_size > MAX_FILE:
                    raise SigningViewError(f"larger than {MAX_FILE} bytes")
                self._rules = parse(json.loads(self.path.read_bytes()))
                log.info("signing view %s: chains %s", self.path, sorted(self._rules))
            except (OSError, ValueError) as err:
                log.error("signing view %s refused: %s", self.path, err)
        return self._rules
