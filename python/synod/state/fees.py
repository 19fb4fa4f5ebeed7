"""Fixed fees from configuration (seed 000 §10): sized for a 300% yearly rise, changed only by
governance or upgrade, so every node computes the same fee for the same template."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synod.config import ChainsConfig

SOL_BASE_FEE_LAMPORTS = 5000
SOL_COMPUTE_UNITS = 200_000
# The rent-exempt minimum of a 165-byte SPL token account at the current rent parameters: what
# the custody pays when a token withdrawal has to create the recipient's token account.
SOL_TOKEN_ACCOUNT_RENT_LAMPORTS = 2_039_280


@dataclass(frozen=True)
class FeeSchedule:
    btc_sats_per_vbyte: int = 25
    eth_gas_price_gwei: int = 30
    eth_gas_limit: int = 180_000
    bnb_gas_price_gwei: int = 3
    bnb_gas_limit: int = 180_000
    trx_fee_limit_sun: int = 30_000_000
    sol_priority_micro_lamports: int = 2000

    def btc_fee(self, inputs: int, outputs: int) -> int:
        """Key-path P2TR spend: 10.5 + 57.5 per input + 43 per output vbytes, rounded up."""
        vbytes_x2 = 21 + 115 * inputs + 86 * outputs
        return (vbytes_x2 + 1) // 2 * self.btc_sats_per_vbyte

    def account_fee(self, chain: str, asset: str | None = None) -> int:
        """The fee in the chain's native unit (wei, sun, lamports) for withdrawing `asset`.

        A Solana token withdrawal also reserves the rent of the recipient's token account,
        which the transaction creates when it does not exist yet (the worst case)."""
        if chain == "eth":
            return self.eth_gas_price_gwei * 10**9 * self.eth_gas_limit
        if chain == "bnb":
            return self.bnb_gas_price_gwei * 10**9 * self.bnb_gas_limit
        if chain == "trx":
            return self.trx_fee_limit_sun
        if chain == "sol":
            rent = SOL_TOKEN_ACCOUNT_RENT_LAMPORTS if asset not in (None, "SOL") else 0
            return (
                SOL_BASE_FEE_LAMPORTS
                + self.sol_priority_micro_lamports * SOL_COMPUTE_UNITS // 10**6
                + rent
            )
        raise ValueError(f"no account fee for chain {chain!r}")

    @classmethod
    def from_config(cls, chains: ChainsConfig) -> FeeSchedule:
        """From the `chains` section of the configuration."""
        return cls(
            btc_sats_per_vbyte=math.ceil(chains.btc.fee_sats_per_v_byte),
            eth_gas_price_gwei=math.ceil(chains.eth.gas_price_gwei),
            eth_gas_limit=chains.eth.gas_limit,
            bnb_gas_price_gwei=math.ceil(chains.bnb.gas_price_gwei),
            bnb_gas_limit=chains.bnb.gas_limit,
            trx_fee_limit_sun=chains.trx.fee_limit_sun,
            sol_priority_micro_lamports=chains.sol.priority_fee_micro_lamports,
        )
