"""`synod dkg` and `synod sign`: key ceremonies and signatures by the running member processes.

Both talk to every member's control service with the operator's client certificate
(``DIR/operator/``), begin the session on each member and poll until it ends: the
commands never see a key share. `synod dkg` records the new key's public data (scheme,
group key, members) in ``DIR/keys.json`` so `synod sign` knows how to ask for and check
a signature with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synod.cli.keygen import SCHEMES
from synod.cli.output import print_fields
from synod.cli.progress import Progress

KEYS_FILE = "keys.json"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_MESSAGE_LIMITS = {"bip340": (1, 64), "ed25519": (1, 1232), "ecdsa": (32, 32)}


class BadInput(ValueError):
    """Bad command-line input: one line, exit status 2."""


class Failed(RuntimeError):
    """The cluster did not deliver: one line, exit status 1."""


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "dkg",
        help="a key ceremony among the running members",
        description="Run a distributed key generation among every member of the committee in "
        "DIR (started with `synod cluster up`), threshold from the manifest. Each member keeps "
        "its own share in its keystore; this command sees only public data. Prints the key id, "
        "the group key and the addresses it controls, and records them in DIR/keys.json. ECDSA "
        "needs CGGMP aux info on every member.",
    )
    d.add_argument("--scheme", required=True, choices=SCHEMES, help="signature scheme")
    d.add_argument("--dir", required=True, type=Path, help="the committee directory")
    d.add_argument("--key-id", help="name of the new key (default: SCHEME-<random>)")
    d.add_argument("--timeout", type=float, default=120.0, help="seconds for the ceremony")
    d.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    d.set_defaults(run=run_dkg)
    a = sub.add_parser(
        "aux-info",
        help="the CGGMP aux-info ceremony among the running members",
        description="Before any ECDSA keygen (`synod dkg --scheme ecdsa`), every member needs "
        "CGGMP aux info: its Paillier key and ring-Pedersen parameters. Each member first "
        "generates two safe primes (tens of seconds, on its own host), then all run the "
        "aux-info protocol together; each keeps its result in its encrypted keystore. Needs "
        "every member of the committee running. Progress on stderr.",
    )
    a.add_argument("--dir", required=True, type=Path, help="the committee directory")
    a.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds for each step (default 1800)"
    )
    a.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a.set_defaults(run=run_aux_info_cmd)
    s = sub.add_parser(
        "sign",
        help="one signature from the running members",
        description="Ask every running member to sign MESSAGE with key KEYID (ROAST over FROST, "
        "or CGGMP for ECDSA, where MESSAGE is the 32-byte digest) and wait for the signature. "
        "Prints the signature (checked here against the group key), the signers, the number of "
        "sub-sessions and the culprits the members named.",
    )
    s.add_argument("--key", required=True, help="key id (from `synod dkg`)")
    s.add_argument("--message", required=True, help="hex message (ecdsa: 32-byte digest)")
    s.add_argument("--dir", required=True, type=Path, help="the committee directory")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds for the signature")
    s.add_argument("--rotate-timeout", type=float, default=5.0, help="seconds per aggregator turn")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(run=run_sign)


# -- shared ----------------------------------------------------------------------------


def _fail(command: str, err: Exception) -> int:
    print(f"synod {command}: error: {err}", file=sys.stderr)
    return 2 if isinstance(err, BadInput) else 1


Rows = list[tuple[str, str]]


def _report(
    command: str,
    args: argparse.Namespace,
    work: Callable[[argparse.Namespace, Progress], dict[str, Any]],
    rows: Callable[[dict[str, Any]], Rows],
) -> int:
    """Run one ceremony command: its result as one JSON object (--json) or aligned rows; bad
    input is exit status 2, a cluster that does not deliver 1, each one line."""
    try:
        result = work(args, Progress())
    except (BadInput, Failed) as err:
        return _fail(command, err)
    if args.json:
        print(json.dumps(result))
    else:
        print_fields(rows(result))
    return 0


def _positive(name: str, value: float) -> float:
    if not 0 < value <= 3600:
        raise BadInput(f"--{name} must be in (0, 3600] seconds")
    return value


def _clients(root: Path, timeout: float = 5.0) -> dict[int, Any]:
    from synod.node.control import ControlError, operator_clients
    from synod.node.manifest import ManifestError

    if not (root / "manifest.json").is_file():
        raise BadInput(f"{root} is not a committee directory (no manifest.json)")
    try:
        return operator_clients(root, timeout)
    except (ManifestError, ControlError) as err:
        raise BadInput(str(err)) from None


def _close(clients: dict[int, Any]) -> None:
    for client in clients.values():
        client.close()


def read_keys(root: Path) -> dict[str, dict[str, Any]]:
    """DIR/keys.json: public data of the keys `synod dkg` made (empty if none yet)."""
    try:
        doc = json.loads((root / KEYS_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise BadInput(f"{root / KEYS_FILE}: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
        raise BadInput(f"{root / KEYS_FILE} is not a key list")
    keys: dict[str, dict[str, Any]] = doc["keys"]
    return keys


def _record_key(root: Path, key_id: str, entry: dict[str, Any]) -> None:
    from synod.node.keystore import atomic_write

    keys = read_keys(root)
    keys[key_id] = entry
    doc = json.dumps({"keys": keys}, indent=2, sort_keys=True).encode() + b"\n"
    atomic_write(root / KEYS_FILE, doc, 0o644)


# -- dkg -------------------------------------------------------------------------------


def run_dkg(args: argparse.Namespace) -> int:
    return _report("dkg", args, _dkg, _dkg_rows)


def _dkg_rows(result: dict[str, Any]) -> Rows:
    rows = [
        ("key id", result["key_id"]),
        ("scheme", result["scheme"]),
        ("threshold", f"{result['threshold']} of {len(result['members'])}"),
        ("group public key", result["group_public_key"]),
    ]
    if result.get("output_key"):
        rows.append(("output key (BIP341)", result["output_key"]))
    return rows + [(f"address {k}", v) for k, v in result["addresses"].items()]


def _dkg(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from synod.cli.keygen import addresses
    from synod.node.ceremony import CeremonyFailed, run_dkg
    from synod.node.manifest import Manifest

    root: Path = args.dir
    timeout = _positive("timeout", args.timeout)
    key_id = args.key_id or f"{args.scheme}-{os.urandom(4).hex()}"
    if not _KEY_ID.fullmatch(key_id):
        raise BadInput("--key-id must be 1-100 of letters, digits and . _ : - (no spaces)")
    clients = _clients(root)
    try:
        if key_id in read_keys(root):
            raise BadInput(f"key {key_id!r} already exists in {root / KEYS_FILE}")
        threshold = Manifest.load(root / "manifest.json").threshold
        key = run_dkg(clients, key_id, args.scheme, threshold, timeout, progress.step)
    except CeremonyFailed as err:
        raise Failed(str(err)) from None
    finally:
        _close(clients)
    entry: dict[str, Any] = {
        "scheme": args.scheme,
        "threshold": threshold,
        "members": list(key.members),
        "group_public_key": key.public_key.hex(),
    }
    if key.output_key is not None:
        entry["output_key"] = key.output_key.hex()
    entry["addresses"] = addresses(args.scheme, key.verifying_key)
    _record_key(root, key_id, entry)
    return {"key_id": key_id, **entry}


def _with_signers(clients: dict[int, Any], sid: bytes, outcome: SignOutcome) -> SignOutcome:
    """A member that only saw the signature may not know who signed: the aggregator does."""
    from synod.node.control import ControlError

    if outcome.signers or outcome.aggregator not in clients:
        return outcome
    try:
        result = clients[outcome.aggregator].get_result(sid)
    except ControlError:
        return outcome
    if result.signature == outcome.signature:
        outcome.signers = result.signers
        outcome.culprits |= result.culprits
    return outcome


# -- aux info --------------------------------------------------------------------------


def run_aux_info_cmd(args: argparse.Namespace) -> int:
    return _report(
        "aux-info",
        args,
        _aux_info,
        lambda r: [
            ("members", ", ".join(map(str, r["members"]))),
            ("primes (slowest member)", f"{r['primes_s']:.1f} s"),
        ],
    )


def _aux_info(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from synod.node.ceremony import CeremonyFailed, run_aux_info

    timeout = _positive("timeout", args.timeout)
    clients = _clients(args.dir)
    try:
        primes_s = run_aux_info(clients, timeout, progress.step)
    except CeremonyFailed as err:
        raise Failed(str(err)) from None
    finally:
        _close(clients)
    return {"members": sorted(clients), "primes_s": round(primes_s, 1)}


# -- sign ------------------------------------------------------------------------------


@dataclass
class SignOutcome:
    signature: bytes | None = None
    aggregator: int | None = None
    signers: tuple[int, ...] = ()
    sub_sessions: int = 0
    culprits: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)


def run_sign(args: argparse.Namespace) -> int:
    return _report(
        "sign",
        args,
        _sign,
        lambda r: [
            ("key id", r["key_id"]),
            ("scheme", r["scheme"]),
            ("message", r["message"]),
            ("signature", r["signature"]),
            ("signers", ", ".join(map(str, r["signers"]))),
            ("aggregator", str(r["aggregator"])),
            ("sub-sessions", str(r["sub_sessions"])),
            ("culprits", ", ".join(map(str, r["culprits"])) or "none"),
        ],
    )


def _sign(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from synod.node.control import ControlError

    root: Path = args.dir
    timeout = _positive("timeout", args.timeout)
    rotate = _positive("rotate-timeout", args.rotate_timeout)
    try:
        message = bytes.fromhex(args.message)
    except ValueError:
        raise BadInput("--message must be hex") from None
    clients = _clients(root)
    try:
        key = read_keys(root).get(args.key)
        if key is None:
            raise BadInput(f"unknown key {args.key!r} (not in {root / KEYS_FILE}; run synod dkg)")
        scheme = str(key["scheme"])
        low, high = _MESSAGE_LIMITS[scheme]
        if not low <= len(message) <= high:
            size = f"{low}" if low == high else f"{low} to {high}"
            raise BadInput(f"a {scheme} message is {size} bytes (got {len(message)})")
        verifying = bytes.fromhex(key.get("output_key") or key["group_public_key"])
        sid = os.urandom(32)
        reached = []
        for member, client in sorted(clients.items()):
            try:
                client.start_sign(args.key, sid, scheme, message, None, rotate, timeout)
                reached.append(member)
            except ControlError as err:
                progress.step(f"member {member} did not start: {err}")
        if len(reached) < int(key["threshold"]):
            raise Failed(f"only members {reached} started: {key['threshold']} are needed")
        progress.step(f"signing with key {args.key!r}: members {reached} started")
        deadline = time.monotonic() + timeout + 10
        outcome = _poll_signature(clients, reached, sid, scheme, verifying, message, deadline)
    finally:
        _close(clients)
    assert outcome.signature is not None
    progress.step(f"signature by aggregator {outcome.aggregator}, verified")
    return {
        "key_id": args.key,
        "scheme": scheme,
        "message": message.hex(),
        "signature": outcome.signature.hex(),
        "signers": list(outcome.signers),
        "aggregator": outcome.aggregator,
        "sub_sessions": outcome.sub_sessions,
        "culprits": sorted(outcome.culprits),
        "session_id": sid.hex(),
    }


def _poll_signature(
    clients: dict[int, Any],
    members: list[int],
    sid: bytes,
    scheme: str,
    verifying: bytes,
    message: bytes,
    deadline: float,
) -> SignOutcome:
    """Ask the members until one reports a signature that verifies under the group key
    (a member's report is untrusted), or every member reports the session failed."""
    from synod.node.ceremony import POLL_S
    from synod.node.control import ControlError
    from synod.node.results import SessionStatus
    from synod.runtime.node_signer import verify_signature

    outcome = SignOutcome()
    while True:
        if time.monotonic() >= deadline:
            raise Failed("timed out: no member reported a signature")
        for member in members:
            try:
                result = clients[member].get_result(sid)
            except ControlError:
                continue  # down or restarted: the others carry on
            outcome.culprits |= result.culprits
            outcome.sub_sessions = max(outcome.sub_sessions, result.sub_sessions)
            if result.signature is not None and outcome.signature is None:
                if verify_signature(scheme, verifying, message, result.signature):
                    outcome.signature = result.signature
                    outcome.aggregator = result.aggregator
                    outcome.signers = result.signers
                else:
                    outcome.failed[member] = "reported a signature that does not verify"
            elif result.status is SessionStatus.FAILED:
                outcome.failed[member] = result.reason or "failed"
        if outcome.signature is not None:
            return _with_signers(clients, sid, outcome)
        if len(outcome.failed) == len(members):
            why = "; ".join(f"member {m}: {r}" for m, r in sorted(outcome.failed.items()))
            raise Failed(f"no signature: {why}")
        time.sleep(POLL_S)
