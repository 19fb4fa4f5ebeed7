"""Bitcoin Core's consensus code (libbitcoinkernel, via py-bitcoinkernel) as the judge of
every spend the tests sign: our own BIP341 sighash code is never trusted to check itself."""

from __future__ import annotations

from collections.abc import Sequence

import pbk
from pbk.script import PrecomputedTransactionData

from synod.chains.bitcoin.tx import Transaction, TxOut

# Mainnet script rules as of Taproot: P2SH, DERSIG, NULLDUMMY, CLTV, CSV, WITNESS, TAPROOT.
FLAGS = pbk.ScriptVerificationFlags.ALL


def verify_inputs(tx: Transaction | bytes, spent: Sequence[TxOut] | None = None) -> list[bool]:
    """Per input: does libbitcoinkernel accept it against the outputs it spends?

    `spent` defaults to what the transaction says it spends; pass the true outputs to check
    a transaction signed under a lie about them.
    """
    raw = tx.serialize() if isinstance(tx, Transaction) else tx
    if spent is None:
        assert isinstance(tx, Transaction)
        spent = tx.spent_outputs
    ktx = pbk.Transaction(raw)
    outputs = [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in spent]
    precomputed = PrecomputedTransactionData(ktx, outputs)
    return [
        bool(pbk.ScriptPubkey(o.script_pubkey).verify(o.value, ktx, precomputed, n, FLAGS))
        for n, o in enumerate(spent)
    ]


def kernel_txid(raw: bytes) -> str:
    return str(pbk.Transaction(raw).txid)
