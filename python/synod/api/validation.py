"""Checks on a withdrawal request before anything is written: chain, asset, amount, address.

Each failure is a `Problem` naming the offending field, so a client sees exactly what to fix
and the ledger never sees a request that could not be paid as asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from synod.api.problems import Problem, ProblemType
from synod.chains.bitcoin.address import Network, address_script
from synod.chains.evm.address import parse_address as parse_evm
from synod.chains.solana.address import parse_address as parse_solana
from synod.chains.tron.address import parse_address as parse_tron
from synod.state.transactions import CHAINS, MAX_AMOUNT

_DIGITS = re.compile(r"[0-9]{1,80}")


def check_chain(chain: str) -> str:
    if chain not in CHAINS:
        raise Problem(
            ProblemType.UNKNOWN_CHAIN,
            f"unknown chain {chain!r} (known: {', '.join(CHAINS)})",
            "body.chain",
        )
    return chain


def check_asset(chain: str, asset: str, held: Collection[str]) -> str:
    """The chain's native asset, or a token the custody has been credited on that chain."""
    if asset != CHAINS[chain] and asset not in held:
        known = ", ".join(sorted({CHAINS[chain], *held}))
        raise Problem(
            ProblemType.UNKNOWN_ASSET,
            f"asset {asset!r} is not held on {chain} (known: {known})",
            "body.asset",
        )
    return asset


def check_amount(chain: str, text: str) -> int:
    """A positive whole number of base units, as a decimal string, that fits the chain."""
    field = "body.amount"
    stripped = text.strip()
    if stripped.startswith("-"):
        raise Problem(ProblemType.INVALID_AMOUNT, "amount must be positive", field)
    if "." in stripped or "e" in stripped.lower():
        raise Problem(
            ProblemType.INVALID_AMOUNT,
            "amount is a whole number of base units (no fraction or exponent)",
            field,
        )
    if not _DIGITS.fullmatch(text):
        raise Problem(
            ProblemType.INVALID_AMOUNT, "amount must be a decimal string of digits", field
        )
    amount = int(text)
    if amount == 0:
        raise Problem(ProblemType.INVALID_AMOUNT, "amount must be positive", field)
    if amount > MAX_AMOUNT[chain]:
        raise Problem(
            ProblemType.INVALID_AMOUNT,
            f"amount exceeds the largest {chain} amount ({MAX_AMOUNT[chain]})",
            field,
        )
    return amount


def _address_checker(chain: str, btc_network: Network) -> Callable[[str], object]:
    if chain == "btc":
        return lambda text: address_script(text, btc_network)
    if chain in ("eth", "bnb"):
        return parse_evm
    if chain == "trx":
        return parse_tron
    return parse_solana


def check_destination(chain: str, text: str, btc_network: Network) -> str:
    try:
        _address_checker(chain, btc_network)(text)
    except ValueError as err:
        raise Problem(
            ProblemType.INVALID_ADDRESS, f"not a valid {chain} address: {err}", "body.destination"
        ) from None
    return text
