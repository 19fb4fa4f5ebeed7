"""`synod node run|passwd`: run one committee member; change its keystore passphrase.

The keystore passphrase comes from ``--passphrase-file``, else the environment
variable SYNOD_PASSPHRASE, else (development committees only) the member
directory's ``passphrase`` file. It is never an argument.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from synod.node.faults import TEST_FAULTS
from synod.node.keystore import NEW_PASSPHRASE_ENV, PASSPHRASE_ENV
from synod.processes import forbid_core_dumps


def add_parser(sub: Any) -> None:
    p = sub.add_parser("node", help="run one committee member", description=__doc__)
    actions = p.add_subparsers(dest="node_command", required=True, metavar="{run,passwd}")
    run = actions.add_parser(
        "run",
        help="run one member until SIGTERM",
        description="Open the member's keystore, serve the peer (and control) service on its "
        "manifest endpoint over mutual TLS, link to the other members and run the node. Logs "
        "go to stderr; DIR/node.pid exists while it runs and DIR/status.json shows its links "
        "and counters. SIGTERM or SIGINT stops it cleanly. A bad directory or passphrase is "
        "one error line and exit status 2.",
    )
    run.add_argument("--dir", required=True, type=Path, help="the member directory")
    run.add_argument(
        "--passphrase-file", type=Path, help=f"keystore passphrase file (else ${PASSPHRASE_ENV})"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (drops, links, signing)",
    )
    run.add_argument(
        "--ledger",
        metavar="URL",
        help="this member's view of the ledger (a SQLite path or a PostgreSQL URL, or env:NAME "
        "for the environment variable that holds it): with it the "
        "member signs only withdrawals whose recorded template gives the message, and refuses "
        "an operator's ad-hoc message; without it, only ad-hoc messages (synod sign), and "
        "only with --adhoc-signing",
    )
    run.add_argument(
        "--chains",
        type=Path,
        help="the signing view: per chain the public parameters that, with a template, give "
        "the signed message (default DIR/chains.json; re-read when it changes)",
    )
    run.add_argument(
        "--adhoc-signing",
        action="store_true",
        help="DEVELOPMENT TOOL: without --ledger, sign the messages an admitted operator asks "
        "for (synod sign); each such session is logged. Off by default: a member without "
        "--ledger then signs nothing",
    )
    run.add_argument(
        "--test-fault",
        choices=TEST_FAULTS,
        help="TEST ONLY: misbehave on purpose (invalid-shares: send signature shares that "
        "do not verify), to show the committee signing around a lying member",
    )
    run.add_argument(
        "--test-primes",
        type=Path,
        help="TEST ONLY: take this member's Paillier primes for an aux-info ceremony from a "
        "file of pregenerated primes (entry <member id - 1>) instead of generating them",
    )
    pool = run.add_argument_group(
        "presignature pool",
        "per ECDSA key this member holds, CGGMP presignatures made in the background with "
        "the members it is linked to, so that signing from one takes one round (seed 003: "
        "target 100, minimum 20, pruned after 24 h; --presign-target 0 turns it off)",
    )
    pool.add_argument("--presign-target", type=int, default=100, help="fresh ones to keep")
    pool.add_argument(
        "--presign-min",
        type=int,
        help="below it, make --presign-batch at once (default 20, or the target if smaller)",
    )
    pool.add_argument("--presign-batch", type=int, default=1, help="runs led at once")
    pool.add_argument("--presign-ttl", type=float, default=86400.0, help="seconds a one lives")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(run=run_node_cmd)
    pw = actions.add_parser(
        "passwd",
        help="re-encrypt a member's keystore under a new passphrase",
        description="Open the keystore with the current passphrase (--passphrase-file, "
        f"${PASSPHRASE_ENV} or the development passphrase file) and re-encrypt every entry "
        f"under the new one (--new-passphrase-file or ${NEW_PASSPHRASE_ENV}) with a fresh salt. "
        "The member must not be running. Nothing is written if anything fails.",
    )
    pw.add_argument("--dir", required=True, type=Path, help="the member directory")
    pw.add_argument("--passphrase-file", type=Path, help="current passphrase file")
    pw.add_argument("--new-passphrase-file", type=Path, help="new passphrase file")
    pw.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    pw.set_defaults(run=run_passwd)


def passphrase_from(file: Path | None, env: str = PASSPHRASE_ENV) -> bytes:
    """A passphrase from `file` (refused when others may read it), else the variable `env`."""
    from synod.node.committee import check_mode
    from synod.node.keystore import read_passphrase

    if file is not None:
        check_mode(file)
    return read_passphrase(file, env)


def current_passphrase(directory: Path, file: Path | None) -> tuple[bytes, Path | None]:
    """The passphrase and, when it came from the development file, that file's path."""
    import os

    from synod.node.committee import dev_passphrase_path

    if file is not None or PASSPHRASE_ENV in os.environ:
        return passphrase_from(file), None
    dev = dev_passphrase_path(directory)
    if dev is None:
        return passphrase_from(None), None  # the "no passphrase" error
    return passphrase_from(dev), dev


def configure_logging(verbose: bool) -> None:
    """A long-running command's logs: stderr, with time, level and logger."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(command: str, err: Exception) -> int:
    print(f"synod node {command}: error: {err}", file=sys.stderr)
    return 2


def run_node_cmd(args: argparse.Namespace) -> int:
    from synod.node.committee import CommitteeError, load_node, read_member_id
    from synod.node.keystore import KeystoreError
    from synod.node.process import run_node, running_pid
    from synod.state.db import resolve_url

    configure_logging(args.verbose)
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        print("synod node run: error: --metrics-port must be within 1..65535", file=sys.stderr)
        return 2
    from synod.node.presign_pool import PoolPolicy

    try:
        minimum = min(20, args.presign_target) if args.presign_min is None else args.presign_min
        policy = PoolPolicy(args.presign_target, minimum, args.presign_batch, args.presign_ttl)
    except ValueError as err:
        print(f"synod node run: error: {err}", file=sys.stderr)
        return 2
    if args.adhoc_signing and args.ledger is not None:
        print("synod node run: error: --adhoc-signing is for a member without --ledger",
              file=sys.stderr)  # fmt: skip
        return 2
    pid = running_pid(args.dir)
    if pid is not None:
        return _fail("run", RuntimeError(f"member in {args.dir} is already running (pid {pid})"))
    try:
        forbid_core_dumps()  # before any passphrase or share is read: no core file holds one
        read_member_id(args.dir)
        passphrase, dev = current_passphrase(args.dir, args.passphrase_file)
        if dev is not None:
            logging.getLogger("synod.node").warning(
                "DEVELOPMENT: keystore passphrase read from %s", dev
            )
        material = load_node(args.dir, passphrase)
    except (KeystoreError, CommitteeError, OSError) as err:
        return _fail("run", err)
    if args.chains is not None and args.ledger is None:
        print("synod node run: error: --chains needs --ledger", file=sys.stderr)
        return 2
    try:
        check = None
        if args.ledger is not None:
            check = _template_check(resolve_url(args.ledger), args.chains, args.dir)
    except (OSError, ValueError) as err:
        return _fail("run", RuntimeError(f"--ledger: {err}"))
    primes = None
    if args.test_primes is not None:
        try:
            primes = _test_primes(args.test_primes, material.member_id)
        except (OSError, ValueError) as err:
            return _fail("run", RuntimeError(f"--test-primes: {err}"))
    try:
        return run_node(
            material,
            metrics_port=args.metrics_port,
            template_check=check,
            fault=args.test_fault,
            primes=primes,
            pool_policy=policy,
            adhoc_signing=args.adhoc_signing,
        )
    except KeystoreError as err:  # a share entry that does not parse
        return _fail("run", err)
    except OSError as err:  # e.g. the endpoint is taken: not bad input, exit status 1
        print(f"synod node run: error: {err}", file=sys.stderr)
        return 1


def _test_primes(path: Path, member_id: int) -> Any:
    from synod.crypto import ecdsa
    from synod.crypto.errors import CryptoError

    try:
        every = ecdsa.load_primes(path)
    except CryptoError as err:
        raise ValueError(str(err)) from None
    if member_id > len(every):
        raise ValueError(f"{path} holds primes for {len(every)} members, not member {member_id}")
    return every[member_id - 1]


def _template_check(ledger_url: str, chains: Path | None, directory: Path) -> Any:
    """The member's template check: its ledger view and its signing view."""
    from synod.chains.signing_view import SigningView
    from synod.runtime.node_signer import RecordedTemplates
    from synod.state.db import open_database
    from synod.state.machine import Ledger

    path = ledger_url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if "://" not in path and "=" not in path and not Path(path).exists():
        raise ValueError(f"no ledger database at {path}")
    view = SigningView(chains if chains is not None else directory / "chains.json")
    return RecordedTemplates(Ledger(open_database(ledger_url)), view)


def run_passwd(args: argparse.Namespace) -> int:
    import json

    from synod.node.committee import check_mode, read_member_id
    from synod.node.keystore import Keystore, KeystoreError, read_passphrase
    from synod.node.process import running_pid

    directory: Path = args.dir
    try:
        forbid_core_dumps()  # before any passphrase or share is read
        read_member_id(directory)
        pid = running_pid(directory)
        if pid is not None:
            raise KeystoreError(f"member in {directory} is running (pid {pid}); stop it first")
        old, dev = current_passphrase(directory, args.passphrase_file)
        if args.new_passphrase_file is not None:
            check_mode(args.new_passphrase_file)
        new = read_passphrase(args.new_passphrase_file, NEW_PASSPHRASE_ENV)
        store = Keystore.open(directory / "keystore", old)
        store.change_passphrase(new)
    except (KeystoreError, ValueError, OSError) as err:
        return _fail("passwd", err)
    if dev is not None:
        dev.unlink()
    note = (
        f"the development passphrase file {dev} was removed: give the new passphrase with "
        f"--passphrase-file or ${PASSPHRASE_ENV}"
        if dev is not None
        else None
    )
    if args.json:
        print(json.dumps({"dir": str(directory), "entries": len(store.items()), "note": note}))
    else:
        print(f"keystore of {directory} re-encrypted ({len(store.items())} entries)")
        if note:
            print(note, file=sys.stderr)
    return 0
