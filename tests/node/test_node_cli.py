"""`synod committee init` and `synod node run|passwd` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import synod
from synod.node.committee import load_node
from synod.node.keystore import Keystore

PYTHONPATH = str(Path(synod.__file__).resolve().parents[1])


def synod_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.endswith("PASSPHRASE")}
    full = {**inherited, "PYTHONPATH": PYTHONPATH, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "synod.cli.main", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
        check=False,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def committee(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "c"
    done = synod_cmd("committee", "init", "-t", "2", "-n", "3", "--dir", str(root), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [m["id"] for m in out["members"]] == [1, 2, 3]
    assert "member 3" in done.stderr  # progress on stderr
    return root


def test_init_layout(committee: Path) -> None:
    for i in (1, 2, 3):
        d = committee / f"node-{i}"
        assert {p.name for p in d.iterdir()} == {
            "keystore",
            "cert.pem",
            "ca.pem",
            "manifest.json",
            "node.json",
            "passphrase",
            "request.json",  # its enrolment request: public
            "operators.json",  # the operator certificates its control service admits
        }
        for secret in ("keystore", "passphrase"):
            assert stat.S_IMODE((d / secret).stat().st_mode) == 0o600
        assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in d.iterdir())
        material = load_node(d, (d / "passphrase").read_bytes().strip())
        assert material.member_id == i
    assert stat.S_IMODE((committee / "ca" / "ca.key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((committee / "operator" / "operator.key.pem").stat().st_mode) == 0o600


def test_init_refuses_bad_input(tmp_path: Path, committee: Path) -> None:
    bad = synod_cmd("committee", "init", "-t", "4", "-n", "3", "--dir", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "threshold" in bad.stderr
    again = synod_cmd("committee", "init", "-t", "2", "-n", "3", "--dir", str(committee))
    assert again.returncode == 2 and "not empty" in again.stderr
    for command in ("run", "passwd"):
        nowhere = synod_cmd("node", command, "--dir", str(tmp_path))
        assert nowhere.returncode == 2 and "not a member directory" in nowhere.stderr


@pytest.mark.parametrize("damage", ["wrong passphrase", "truncated", "flipped byte"])
def test_damaged_keystore_is_one_line_exit_2_nothing_written(
    tmp_path: Path, committee: Path, damage: str
) -> None:
    d = committee / "node-2"
    original = (d / "keystore").read_bytes()
    args: list[str] = []
    try:
        if damage == "wrong passphrase":
            wrong = tmp_path / "wrong"
            wrong.write_text("not the passphrase\n")
            wrong.chmod(0o600)
            args = ["--passphrase-file", str(wrong)]
        elif damage == "truncated":
            (d / "keystore").write_bytes(original[: len(original) * 2 // 3])
        else:
            flipped = bytearray(original)
            flipped[len(flipped) // 2] ^= 0x04
            (d / "keystore").write_bytes(bytes(flipped))
        before = snapshot(d)
        for command in (["node", "run"], ["node", "passwd"]):
            env = {"SYNOD_NEW_PASSPHRASE": "another one"}
            done = synod_cmd(*command, "--dir", str(d), *args, env=env)
            assert done.returncode == 2, (command, done.stderr)
            errors = [line for line in done.stderr.splitlines() if "error" in line]
            assert len(errors) == 1 and "keystore" in errors[0], done.stderr
            assert snapshot(d) == before
    finally:
        (d / "keystore").write_bytes(original)


def test_passwd_reencrypts(tmp_path: Path, committee: Path) -> None:
    d = committee / "node-3"
    old = (d / "passphrase").read_bytes().strip()
    secrets = {
        i.key_id: Keystore.open(d / "keystore", old).get(i.key_id)
        for i in Keystore.open(d / "keystore", old).items()
    }
    running = synod_cmd("node", "passwd", "--dir", str(d))  # no new passphrase given
    assert running.returncode == 2 and "SYNOD_NEW_PASSPHRASE" in running.stderr
    new = tmp_path / "new"
    new.write_text("correct horse battery staple\n")
    new.chmod(0o644)
    loose = synod_cmd("node", "passwd", "--dir", str(d), "--new-passphrase-file", str(new))
    assert loose.returncode == 2 and "readable by others" in loose.stderr
    new.chmod(0o600)
    done = synod_cmd("node", "passwd", "--dir", str(d), "--new-passphrase-file", str(new))
    assert done.returncode == 0, done.stderr
    assert not (d / "passphrase").exists()  # the development file no longer matches: removed
    store = Keystore.open(d / "keystore", b"correct horse battery staple")
    assert {i.key_id: store.get(i.key_id) for i in store.items()} == secrets
    refused = synod_cmd("node", "run", "--dir", str(d), env={"SYNOD_PASSPHRASE": old.decode()})
    assert refused.returncode == 2 and "wrong passphrase" in refused.stderr


def test_metrics_port_serves_links_and_drops(committee: Path) -> None:
    """Two members with --metrics-port: each one's /metrics shows its link to the other (the
    value read from what the member publishes) and the drop counters' family."""
    from synod.chains.localnode import free_port
    from tests.node.helpers import wait_for

    refused = synod_cmd("node", "run", "--dir", str(committee / "node-1"), "--metrics-port", "0")
    assert refused.returncode == 2 and "--metrics-port" in refused.stderr

    ports = {1: free_port(), 2: free_port()}
    run = [sys.executable, "-m", "synod.cli.main", "node", "run"]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    procs = [
        subprocess.Popen(
            [*run, "--dir", str(committee / f"node-{i}"), "--metrics-port", str(port)],
            env={k: v for k, v in env.items() if not k.endswith("PASSPHRASE")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, port in ports.items()
    ]

    def scrape(port: int) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    try:
        for port in ports.values():
            wait_for(lambda p=port: "synod_peers_connected 1.0" in scrape(p), f"a link on {port}")
        text = scrape(ports[1])
        assert "# TYPE synod_envelope_drops_total counter" in text
        assert "synod_signing_seconds" in text  # the process-wide signing metrics beside them
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=60) == 0


def test_a_member_process_can_write_no_core_file(committee: Path) -> None:
    """`synod node run` sets its core file size to 0, soft and hard, before it reads a secret."""
    from synod.node.process import PID_FILE
    from tests.node.helpers import wait_for

    d = committee / "node-2"
    env = {k: v for k, v in os.environ.items() if not k.endswith("PASSPHRASE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "synod.cli.main", "node", "run", "--dir", str(d)],
        env={**env, "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def started() -> bool:
        pid = d / PID_FILE
        return proc.poll() is not None or (
            pid.exists() and pid.read_text().strip() == str(proc.pid)
        )

    try:
        wait_for(started, "the member to start")
        assert proc.poll() is None
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        (core,) = [line for line in limits if line.startswith("Max core file size")]
        assert core.split()[4:6] == ["0", "0"], core
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE is Linux's")
def test_member_hardening_makes_the_process_not_dumpable() -> None:
    """What `synod node run`, `node passwd` and `committee init` call first, in a process of
    its own: dumpable before, not after, and no core file at any size."""
    code = (
        "import ctypes, resource\n"
        "from synod.processes import PR_GET_DUMPABLE, forbid_core_dumps\n"
        "libc = ctypes.CDLL(None)\n"
        "before = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)\n"
        "forbid_core_dumps()\n"
        "after = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)\n"
        "print(before, after, *resource.getrlimit(resource.RLIMIT_CORE))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0", "0", "0"]
