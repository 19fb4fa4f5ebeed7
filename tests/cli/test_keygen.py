"""`synod keygen`: the JSON contract, independent verification of its output, and bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from synod.cli.main import main


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["keygen", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bip340_json(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, "--scheme", "bip340", "-t", "3", "-n", "5")
    assert (out["scheme"], out["threshold"], out["parties"]) == ("bip340", 3, 5)
    assert len(bytes.fromhex(out["group_public_key"])) == 32
    assert len(bytes.fromhex(out["signature"])) == 64
    assert len(out["signers"]) == 3 and set(out["signers"]) <= {1, 2, 3, 4, 5}
    assert out["addresses"]["bitcoin_mainnet"].startswith("bc1p")
    assert out["addresses"]["bitcoin_regtest"].startswith("bcrt1p")
    output_key = coincurve.PublicKeyXOnly(bytes.fromhex(out["output_key"]))
    assert output_key.verify(bytes.fromhex(out["signature"]), bytes.fromhex(out["message"]))


def test_ed25519_json(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, "--scheme", "ed25519", "-t", "2", "-n", "4", "--message", "68656c6c6f")
    assert out["message"] == "68656c6c6f"
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(out["group_public_key"]))
    key.verify(bytes.fromhex(out["signature"]), b"hello")
    assert "solana" in out["addresses"]


@pytest.mark.parametrize(
    "args",
    [
        ["--scheme", "bip340", "-t", "4", "-n", "3"],
        ["--scheme", "bip340", "-t", "1", "-n", "3"],
        ["--scheme", "rsa", "-t", "2", "-n", "3"],
        ["--scheme", "ed25519", "-t", "x", "-n", "3"],
        ["--scheme", "ed25519", "-t", "2", "-n", "3", "--message", "zz"],
    ],
)
def test_bad_arguments_one_line_nonzero(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synod.cli.main", "keygen", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "error" in proc.stderr


def test_ecdsa_json_verifies_and_recovers_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from synod.chains.evm.address import address_bytes, evm_address

    primes = Path(__file__).parent.parent / "data" / "cggmp_primes.json"
    out = run_json(capsys, "--scheme", "ecdsa", "-t", "2", "-n", "3", "--primes", str(primes))
    key = bytes.fromhex(out["group_public_key"])
    assert len(key) == 33 and len(out["signers"]) == 2
    sig = bytes.fromhex(out["signature"])
    assert len(sig) == 64 and out["recovery_id"] in (0, 1)
    digest = bytes.fromhex(out["digest"])
    recovered = coincurve.PublicKey.from_signature_and_message(
        sig + bytes([out["recovery_id"]]), digest, hasher=None
    )
    assert address_bytes(recovered.format()) == address_bytes(key)
    assert out["addresses"]["ethereum"] == evm_address(key)
    assert out["addresses"]["tron"].startswith("T")
