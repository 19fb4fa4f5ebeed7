# Type stubs for the Rust extension `synod._core` (see rust/src/).
# Every object crosses the boundary as bytes; identifiers are ints in 1..65535.

class CoreError(Exception): ...

# --- FROST (rust/src/frost.rs); `suite` is "secp256k1-tr" or "ed25519" ---
def frost_dkg_part1(
    suite: str, id: int, max_signers: int, min_signers: int
) -> tuple[bytes, bytes]: ...
def frost_dkg_part2(
    suite: str, secret: bytes, round1: dict[int, bytes]
) -> tuple[bytes, dict[int, bytes]]: ...
def frost_dkg_part3(
    suite: str, secret: bytes, round1: dict[int, bytes], round2: dict[int, bytes]
) -> tuple[bytes, bytes]: ...
def frost_round1(suite: str, key_package: bytes) -> tuple[bytes, bytes]: ...
def frost_signing_package(suite: str, commitments: dict[int, bytes], message: bytes) -> bytes: ...
def frost_round2(
    suite: str,
    signing_package: bytes,
    nonces: bytes,
    key_package: bytes,
    taproot: bool = False,
    merkle_root: bytes | None = None,
) -> bytes: ...
def frost_aggregate(
    suite: str,
    signing_package: bytes,
    shares: dict[int, bytes],
    public_package: bytes,
    taproot: bool = False,
    merkle_root: bytes | None = None,
) -> bytes: ...
def frost_verifying_key(
    suite: str, public_package: bytes, taproot: bool = False, merkle_root: bytes | None = None
) -> bytes: ...
def frost_verify_share(
    suite: str,
    id: int,
    signing_package: bytes,
    share: bytes,
    public_package: bytes,
    taproot: bool = False,
    merkle_root: bytes | None = None,
) -> None: ...
def frost_verify(suite: str, verifying_key: bytes, message: bytes, signature: bytes) -> None: ...
def frost_signing_package_info(
    suite: str, signing_package: bytes
) -> tuple[bytes, dict[int, bytes]]: ...
def frost_key_package_info(suite: str, key_package: bytes) -> tuple[int, int, bytes, bytes]: ...
def frost_public_package_info(
    suite: str, public_package: bytes
) -> tuple[int | None, dict[int, bytes], bytes]: ...
def frost_check(suite: str, kind: str, data: bytes) -> None: ...
def frost_refresh_part1(
    suite: str, id: int, max_signers: int, min_signers: int
) -> tuple[bytes, bytes]: ...
def frost_refresh_part2(
    suite: str, secret: bytes, round1: dict[int, bytes]
) -> tuple[bytes, dict[int, bytes]]: ...
def frost_refresh_part3(
    suite: str,
    secret: bytes,
    round1: dict[int, bytes],
    round2: dict[int, bytes],
    public_package: bytes,
    key_package: bytes,
) -> tuple[bytes, bytes]: ...
def frost_repair_part1(
    suite: str, helpers: list[int], key_package: bytes, participant: int
) -> dict[int, bytes]: ...
def frost_repair_part2(suite: str, deltas: dict[int, bytes]) -> bytes: ...
def frost_repair_part3(
    suite: str, sigmas: dict[int, bytes], participant: int, public_package: bytes
) -> bytes: ...
def frost_reshare_part1(
    suite: str, key_package: bytes, old_signers: list[int], new_ids: list[int], new_min: int
) -> tuple[bytes, dict[int, bytes]]: ...
def frost_reshare_part2(
    suite: str,
    id: int,
    new_ids: list[int],
    new_min: int,
    old_public_package: bytes,
    commitments: dict[int, bytes],
    shares: dict[int, bytes],
) -> tuple[bytes, bytes]: ...
def frost_split(
    suite: str, max_signers: int, min_signers: int, secret: bytes | None = None
) -> tuple[dict[int, bytes], bytes]: ...
def frost_reconstruct(suite: str, key_packages: list[bytes]) -> bytes: ...
def frost_import_shares(
    suite: str, shares: dict[int, bytes], min_signers: int
) -> tuple[dict[int, bytes], bytes]: ...
def frost_raw_commitments(suite: str, hiding: bytes, binding: bytes) -> bytes: ...
def frost_raw_share(suite: str, scalar: bytes) -> bytes: ...

class FrostShareVerifier:
    def __init__(
        self,
        suite: str,
        signing_package: bytes,
        public_package: bytes,
        taproot: bool = False,
        merkle_root: bytes | None = None,
    ) -> None: ...
    def verify(self, id: int, share: bytes) -> None: ...

# --- CGGMP ECDSA (rust/src/ecdsa.rs) ---
