"""`synod member init|install`, `synod operator init`: a member's (or an operator's) own keys
and enrolment request, made on its own host; installing the committee's bundle there.

The offline steps between them are `synod committee ca` and `synod committee assemble`
(`synod.cli.committee`). See docs/DEPLOY.md. Bad input is one error line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from synod.cli.node import passphrase_from
from synod.node.keystore import PASSPHRASE_ENV
from synod.processes import forbid_core_dumps


def add_parser(sub: Any) -> None:
    p = sub.add_parser("member", help="set up this host's committee member", description=__doc__)
    actions = p.add_subparsers(
        dest="member_command",
        required=True,
        metavar="{init,install,run,revoke-operator}",  # runtime: run's child
    )
    run = actions.add_parser(
        "run",
        help="run this member as one service until SIGTERM",
        description="Start the member described by the configuration file (TOML; format in "
        "docs/DEPLOY.md): its signer node and, on the replicated ledger, its ledger "
        "application and CometBFT validator, each restarted with back-off when it exits; "
        "/healthz, /readyz and /metrics on member.health. SIGTERM or SIGINT stops everything "
        "it started. A bad configuration, directory or passphrase is one error line naming "
        "the file and key, and exit status 2.",
    )
    run.add_argument("--config", required=True, type=Path, help="the member's TOML file")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(run=run_member)
    runtime = actions.add_parser(
        "runtime",
        description="The member's runtime (withdraw worker, deposit watchers, proof attester) "
        "on its replica: `member run` starts it as a child when the configuration names "
        "chains. The keystore passphrase comes in $SYNOD_PASSPHRASE.",
    )
    runtime.add_argument("--config", required=True, type=Path, help="the member's TOML file")
    runtime.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    runtime.set_defaults(run=run_runtime)
    init = actions.add_parser(
        "init",
        help="make this member's keys and its enrolment request",
        description="Create DIR (absent or empty) with an encrypted keystore holding the "
        "member's identity key and TLS key, DIR/node.json, and DIR/request.json: the public "
        "enrolment request (id, address, identity public keys, a certificate signing request "
        "for the TLS key) to send to whoever assembles the committee. No private key leaves "
        "DIR. With --cometbft and --p2p, also the member's CometBFT validator home in "
        "DIR/cometbft, its public key and node id going into the request.",
    )
    init.add_argument("--dir", required=True, type=Path, help="the member directory to create")
    init.add_argument("--id", required=True, type=int, help="this member's id (1..65535)")
    init.add_argument(
        "--address", required=True, help="HOST:PORT the other members dial (its peer service)"
    )
    init.add_argument(
        "--passphrase-file", type=Path, help=f"keystore passphrase file (else ${PASSPHRASE_ENV})"
    )
    init.add_argument("--cometbft", type=Path, help="the CometBFT binary (for a validator)")
    init.add_argument("--p2p", help="HOST:PORT of this member's validator for the others")
    init.add_argument("--json", action="store_true", help="print the request on stdout")
    init.set_defaults(run=run_init)
    install = actions.add_parser(
        "install",
        help="install the committee's bundle in this member's directory",
        description="Check that the committee CA signed the whole bundle (the CA given by "
        "--ca-fingerprint, or the one installed before), that its manifest names this member "
        "with the keys in its keystore and that its certificate is for this member's TLS "
        "key, that its ledger committee and genesis are exactly the members', then copy the "
        "manifest, the CA certificate, the member's certificate, the ledger's committee file "
        "and (with a validator) the CometBFT genesis and peers into DIR. Installing the same "
        "bundle again changes nothing.",
    )
    install.add_argument("--dir", required=True, type=Path, help="the member directory")
    install.add_argument("--bundle", required=True, type=Path, help="the assembled bundle")
    install.add_argument(
        "--ca-fingerprint",
        help="SHA-256 of the committee CA's certificate, learned out of band (from the "
        "assembler, not from the bundle); needed the first time, after which the member "
        "only accepts bundles signed by that CA",
    )
    install.add_argument(
        "--passphrase-file", type=Path, help=f"keystore passphrase file (else ${PASSPHRASE_ENV})"
    )
    install.set_defaults(run=run_install)

    revoke = actions.add_parser(
        "revoke-operator",
        help="stop admitting an operator certificate to this member's control service",
        description="Add the certificate's SHA-256 fingerprint to DIR/operators.json's revoked "
        "list. A running member refuses it from the next call on; installing a bundle again "
        "keeps it revoked.",
    )
    revoke.add_argument("--dir", required=True, type=Path, help="the member directory")
    revoke.add_argument(
        "--fingerprint",
        required=True,
        help="the operator's key fingerprint as operators.json lists it (SHA-256 of the "
        "certificate's SubjectPublicKeyInfo DER, 64 hex digits): every certificate for that "
        "key is refused",
    )
    revoke.set_defaults(run=run_revoke)

    op = sub.add_parser("operator", help="an operator's control-service key and request")
    op_actions = op.add_subparsers(
        dest="operator_command", required=True, metavar="{init,ledger-key}"
    )
    op_init = op_actions.add_parser(
        "init",
        help="make an operator key and its enrolment request",
        description="Create DIR/operator.key.pem (mode 0600; it stays on the operator's "
        "machine) and DIR/request.json, the request `synod committee assemble` issues the "
        "operator's control-service certificate from.",
    )
    op_init.add_argument("--dir", required=True, type=Path, help="the operator directory")
    op_init.add_argument("--name", required=True, help="lowercase letters, digits and '-'")
    op_init.set_defaults(run=run_operator_init)
    ledger_key = op_actions.add_parser(
        "ledger-key",
        help="make a ledger operator key (what a member's API signs requests with)",
        description="Create FILE (an Ed25519 key, PKCS#8 PEM, mode 0600; it stays on the host "
        "of the API that uses it, named by `[api] operator_key`) and print NAME=<public key "
        "hex> for `synod committee assemble --ledger-operator`.",
    )
    ledger_key.add_argument("--out", required=True, type=Path, help="the key file to create")
    ledger_key.add_argument("--name", required=True, help="its name in the ledger's committee")
    ledger_key.set_defaults(run=run_ledger_key)


def _fail(command: str, err: Exception | str) -> int:
    print(f"synod {command}: error: {err}", file=sys.stderr)
    return 2


def run_init(args: argparse.Namespace) -> int:
    from synod.node.enrol import EnrolmentError, init_member
    from synod.node.keystore import KeystoreError
    from synod.node.manifest import Endpoint, ManifestError

    forbid_core_dumps()  # the new keys pass through this process
    try:
        address = Endpoint.parse(args.address)
        p2p = Endpoint.parse(args.p2p) if args.p2p else None
        passphrase = passphrase_from(args.passphrase_file)
        request = init_member(
            args.dir, args.id, address, passphrase, cometbft=args.cometbft, p2p=p2p
        )
    except (EnrolmentError, KeystoreError, ManifestError, OSError) as err:
        return _fail("member init", err)
    if args.json:
        print(json.dumps(request.to_json()))
    else:
        print(f"member {args.id} at {address}: keys in {args.dir}/keystore (encrypted)")
        print(f"send {args.dir}/request.json to the committee's assembler (it is public)")
    return 0


def run_install(args: argparse.Namespace) -> int:
    from synod.node.committee import CommitteeError
    from synod.node.enrol import EnrolmentError, install_member
    from synod.node.keystore import KeystoreError

    try:
        manifest = install_member(
            args.dir, args.bundle, passphrase_from(args.passphrase_file), args.ca_fingerprint
        )
    except (EnrolmentError, CommitteeError, KeystoreError, OSError) as err:
        return _fail("member install", err)
    print(
        f"installed: committee of {len(manifest.members)}, threshold {manifest.threshold}, "
        f"epoch {manifest.epoch}"
    )
    return 0


def run_operator_init(args: argparse.Namespace) -> int:
    from synod.node.enrol import EnrolmentError, init_operator

    try:
        init_operator(args.dir, args.name)
    except (EnrolmentError, OSError) as err:
        return _fail("operator init", err)
    print(f"operator {args.name}: key in {args.dir}/operator.key.pem (stays here)")
    print(f"send {args.dir}/request.json to the committee's assembler (it is public)")
    return 0


def run_ledger_key(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from synod.consensus.committee import operator_key_pem, raw_public
    from synod.node.keystore import atomic_write

    if not (args.name.isascii() and args.name.isidentifier() and len(args.name) <= 32):
        return _fail("operator ledger-key", f"--name {args.name[:40]!r}: an identifier is needed")
    if args.out.exists():
        return _fail("operator ledger-key", f"{args.out} already exists")
    key = Ed25519PrivateKey.generate()
    try:
        atomic_write(args.out, operator_key_pem(key), 0o600)
    except OSError as err:
        return _fail("operator ledger-key", f"{args.out}: {err.strerror}")
    print(f"{args.name}={raw_public(key).hex()}")
    print(f"key in {args.out} (stays on this host); pass the line above to `synod committee "
          "assemble --ledger-operator`", file=sys.stderr)  # fmt: skip
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from synod.node.operators import OPERATORS, OperatorList, OperatorListError

    path = args.dir / OPERATORS
    try:
        listed = OperatorList.load(path)
        listed.revoke(args.fingerprint.lower()).save(path)
    except (OperatorListError, OSError) as err:
        return _fail("member revoke-operator", err)
    name = listed.allowed.get(args.fingerprint.lower(), "an unlisted certificate")
    print(f"revoked {args.fingerprint.lower()[:16]}… ({name}) in {path}")
    return 0


def run_member(args: argparse.Namespace) -> int:
    import logging

    from synod.cli.node import configure_logging, current_passphrase
    from synod.member.config import MemberConfigError, load_member_config
    from synod.member.service import PID_FILE, MemberService, MemberStartError
    from synod.node.committee import CommitteeError, load_node
    from synod.node.keystore import KeystoreError
    from synod.node.process import running_pid

    configure_logging(args.verbose)
    forbid_core_dumps()  # before the passphrase is read
    try:
        config = load_member_config(args.config)
        running = running_pid(config.directory, PID_FILE, (b"member", b"run"))
        if running is not None:
            raise MemberStartError(f"a member already runs in {config.directory} (pid {running})")
        passphrase, dev = current_passphrase(config.directory, config.passphrase_file)
        if dev is not None:
            logging.getLogger("synod.member").warning(
                "DEVELOPMENT: keystore passphrase read from %s", dev
            )
        service = MemberService(config, load_node(config.directory, passphrase), passphrase)
        service.start()
    except (MemberConfigError, MemberStartError, CommitteeError, KeystoreError, OSError) as err:
        return _fail("member run", err)
    return service.run()


def run_runtime(args: argparse.Namespace) -> int:
    import signal
    import threading

    from synod.cli.node import configure_logging
    from synod.consensus.committee import CommitteeError as LedgerCommitteeError
    from synod.member.config import MemberConfigError, load_member_config
    from synod.member.runtime import MemberRuntime, RuntimeStartError
    from synod.node.committee import CommitteeError, load_node
    from synod.node.keystore import KeystoreError

    configure_logging(args.verbose)
    forbid_core_dumps()
    try:
        config = load_member_config(args.config)
        runtime = MemberRuntime(config, load_node(config.directory, passphrase_from(None)))
    except (
        MemberConfigError,
        RuntimeStartError,
        CommitteeError,
        LedgerCommitteeError,
        KeystoreError,
        OSError,
    ) as err:
        return _fail("member runtime", err)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        runtime.run(stop)
    finally:
        runtime.close()
    return 0
