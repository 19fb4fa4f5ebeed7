"""`synod keygen`: a local in-process key ceremony, its addresses, and a verified test signature.

Every participant runs in this process and the key shares are discarded at
the end: the command shows what a committee gets, it does not store keys.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from typing import Any

from synod.cli.output import print_fields
from synod.cli.progress import Progress

SCHEMES = ("bip340", "ed25519", "ecdsa")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="run a local key ceremony and sign a test message",
        description="Run a local distributed key generation, print the group key and the "
        "addresses it controls, then sign a test message with a random t-subset and verify it.",
    )
    p.add_argument("--scheme", required=True, choices=SCHEMES, help="signature scheme")
    p.add_argument("-t", "--threshold", type=int, required=True, help="signers needed (t >= 2)")
    p.add_argument("-n", "--parties", type=int, required=True, help="committee size (n >= t)")
    p.add_argument("--message", help="hex message to sign (default: 32 random bytes)")
    p.add_argument(
        "--primes",
        metavar="FILE",
        help="ecdsa only: pregenerated Paillier primes (secret; tests and demos only) "
        "instead of generating fresh ones",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)


def addresses(scheme: str, key: bytes) -> dict[str, str]:
    """The addresses a group key controls: `key` is the BIP341 output key (x-only) for
    bip340, the Ed25519 key for ed25519, the 33-byte SEC1 key for ecdsa."""
    if scheme == "bip340":
        from synod.chains.bitcoin.address import Network, p2tr_address

        return {
            "bitcoin_mainnet": p2tr_address(key, Network.MAINNET),
            "bitcoin_regtest": p2tr_address(key, Network.REGTEST),
        }
    if scheme == "ed25519":
        from synod.chains.solana.address import solana_address

        return {"solana": solana_address(key)}
    from synod.chains.evm.address import evm_address
    from synod.chains.tron.address import tron_address

    address = evm_address(key)
    return {"ethereum": address, "bnb": address, "tron": tron_address(key)}


def _check(args: argparse.Namespace) -> str | None:
    t, n = args.threshold, args.parties
    if t < 2:
        return f"threshold must be at least 2 (got {t})"
    if t > n:
        return f"threshold {t} is larger than the committee size {n}"
    if n > 255:
        return f"at most 255 parties in a local ceremony (got {n})"
    if args.primes is not None and args.scheme != "ecdsa":
        return "--primes applies only to --scheme ecdsa"
    if args.message is not None:
        try:
            bytes.fromhex(args.message)
        except ValueError:
            return "--message must be hex"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"synod keygen: error: {problem}", file=sys.stderr)
        return 2
    progress = Progress(quiet=False)
    message = bytes.fromhex(args.message) if args.message is not None else os.urandom(32)
    signers = sorted(random.SystemRandom().sample(range(1, args.parties + 1), args.threshold))
    if args.scheme == "ecdsa":
        from synod.cli.keygen_ecdsa import ecdsa_ceremony

        body = ecdsa_ceremony(args.threshold, args.parties, message, signers, progress, args.primes)
    else:
        ceremony = _bip340 if args.scheme == "bip340" else _ed25519
        body = ceremony(args.threshold, args.parties, message, signers, progress)
    result = {"scheme": args.scheme, "threshold": args.threshold, "parties": args.parties, **body}
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=False))
    else:
        _print_human(result)
    return 0


def _bip340(
    t: int, n: int, message: bytes, signers: list[int], progress: Progress
) -> dict[str, Any]:
    import coincurve

    from synod.crypto import frost

    suite = frost.Ciphersuite.SECP256K1_TR
    progress.step(f"FROST(secp256k1, BIP340) DKG among {n} parties, threshold {t}")
    keys, public = frost.local_dkg(suite, t, n)
    internal = public.group_public_key()
    output = public.group_public_key(frost.KEY_PATH)
    progress.step(f"signing with parties {signers} (Taproot key-path tweak)")
    sig = frost.local_sign(keys, public, message, signers, frost.KEY_PATH)
    frost.verify(suite, output, message, sig)
    if not coincurve.PublicKeyXOnly(output).verify(sig.raw, message):
        raise RuntimeError("libsecp256k1 rejected the aggregate signature")
    progress.step("signature verified by the crate and by libsecp256k1")
    return {
        "group_public_key": internal.hex(),
        "output_key": output.hex(),
        "addresses": addresses("bip340", output),
        "message": message.hex(),
        "signature": sig.raw.hex(),
        "signers": signers,
        "verified_by": ["frost-secp256k1-tr", "libsecp256k1"],
    }


def _ed25519(
    t: int, n: int, message: bytes, signers: list[int], progress: Progress
) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from synod.crypto import frost

    suite = frost.Ciphersuite.ED25519
    progress.step(f"FROST(Ed25519, SHA-512) DKG among {n} parties, threshold {t}")
    keys, public = frost.local_dkg(suite, t, n)
    key = public.group_public_key()
    progress.step(f"signing with parties {signers}")
    sig = frost.local_sign(keys, public, message, signers)
    frost.verify(suite, key, message, sig)
    Ed25519PublicKey.from_public_bytes(key).verify(sig.raw, message)  # raises if invalid
    progress.step("signature verified by the crate and by OpenSSL")
    return {
        "group_public_key": key.hex(),
        "addresses": addresses("ed25519", key),
        "message": message.hex(),
        "signature": sig.raw.hex(),
        "signers": signers,
        "verified_by": ["frost-ed25519", "openssl"],
    }


def _ecdsa(
    t: int, n: int, message: bytes, signers: list[int], progress: Progress
) -> dict[str, Any]:
    from synod.cli.keygen_ecdsa import ecdsa_ceremony

    return ecdsa_ceremony(t, n, message, signers, progress)


def _print_human(result: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = [
        ("scheme", result["scheme"]),
        ("threshold", f"{result['threshold']} of {result['parties']}"),
        ("group public key", result["group_public_key"]),
    ]
    if "output_key" in result:
        rows.append(("output key (BIP341)", result["output_key"]))
    for name, addr in result["addresses"].items():
        rows.append((f"address {name}", addr))
    rows += [
        ("message", result["message"]),
        ("signers", ", ".join(map(str, result["signers"]))),
        ("signature", result["signature"]),
    ]
    if "recovery_id" in result:
        rows.append(("recovery id", str(result["recovery_id"])))
    rows.append(("verified by", ", ".join(result["verified_by"])))
    print_fields(rows)
