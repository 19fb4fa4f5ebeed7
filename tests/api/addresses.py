"""Valid destination addresses per chain, and malformed ones (checksums included)."""

from __future__ import annotations

import base58

from synod.chains.bitcoin.address import Network, p2tr_address
from synod.chains.evm.address import checksum_address

BTC = p2tr_address(bytes(range(1, 33)), Network.REGTEST)
ETH = checksum_address(bytes(range(100, 120)))
TRX = base58.b58encode_check(b"\x41" + bytes(range(20))).decode()
SOL = base58.b58encode(bytes(range(7, 39))).decode()
VALID = {"btc": BTC, "eth": ETH, "bnb": ETH, "trx": TRX, "sol": SOL}


def _flip_last(text: str, alphabet: str) -> str:
    last = text[-1]
    return text[:-1] + next(c for c in alphabet if c != last)


def _case_flip(evm: str) -> str:
    """Change the case of one letter of an EIP-55 address: its checksum no longer holds."""
    body = evm[2:]
    i = next(i for i, c in enumerate(body) if c.isalpha())
    return "0x" + body[:i] + body[i].swapcase() + body[i + 1 :]


MALFORMED = {
    "btc": [
        _flip_last(BTC, "qpzry9x8gf2tvdw0s3jn54khce6mua7l"),  # bech32m checksum
        p2tr_address(bytes(range(1, 33)), Network.MAINNET),  # another network
        "bcrt1" + "q" * 20,
    ],
    "eth": [_case_flip(ETH), ETH[:-1], "0x" + "g" * 40],
    "bnb": [_case_flip(ETH)],
    "trx": [_flip_last(TRX, "123456789ABCDEFGHJKLMNPQRSTUVWXYZ"), ETH],
    "sol": [base58.b58encode(bytes(31)).decode(), SOL + "0", "1" + SOL],
}
