"""One committee member as one service: `synod member run --config member.toml`.

The composition root of a member. From one configuration file it checks the member's material
(keystore, manifest, certificates: a wrong passphrase or a missing file ends the start with
exit status 2), prepares the member's replica of the ledger, and runs, supervised
(`synod.member.supervisor`):

- the signer node (`synod node run`), which reads the replica as its ledger view and signs
  only what it recorded;
- on the replicated ledger, the ledger application over the replica and the member's CometBFT
  validator (restarted with back-off when they exit; a missing binary, home or genesis is a
  clear error at start). In solo mode the replica is ordered in-process (`SoloOrderer`) by
  whoever writes through this member.

It serves ``/healthz`` (the service runs), ``/readyz`` (ready only when the replica has caught
up, the signer node has opened its keystore and is linked to at least t−1 peers) and
``/metrics`` (readiness, each child's restarts, the replica's height and witness counts) on
the configured address, and stops cleanly on SIGTERM or SIGINT with nothing left running.

- when the configuration names chains (``[chains.<chain>]``), the member's runtime
  (`synod.member.runtime`: withdraw worker, deposit watchers and proof attester on every
  block of the replica, signing through this member's own node).

- with ``[api]``, the REST API (`synod api run`): on the replicated ledger a view over the
  replica with a store of its own, sending requests to this member's validator signed with
  the ledger operator's key; solo, the one writer of the member's ledger.

Not composed here yet: the transition worker; see docs/DEPLOY.md.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from synod.consensus.app import MIGRATIONS
from synod.consensus.client import CometRpc, RpcError
from synod.consensus.committee import Committee, CommitteeError
from synod.consensus.metrics import LedgerCollector
from synod.member.config import REPLICATED, MemberConfig
from synod.member.supervisor import ChildSpec, Supervisor
from synod.node.committee import NodeMaterial
from synod.node.enrol import LEDGER_COMMITTEE
from synod.node.faults import TEST_FAULTS
from synod.node.keystore import PASSPHRASE_ENV, atomic_write
from synod.node.process import STATUS_FILE
from synod.state.db import migrate, open_database

log = logging.getLogger("synod.member")
PID_FILE = "member.pid"
POLL_S = 0.2
STATUS_FRESH_S = 10.0  # the node rewrites status.json every second or so
STALL_S = 30.0  # no new block for this long: the replica is not current (CometBFT makes
# empty blocks, so a live chain moves every few seconds)
READY_CACHE_S = 1.0
HEALTH_TIMEOUT_S = 5.0
HEALTH_CONNECTIONS = 16
LEDGER_ENV = "SYNOD_LEDGER_DB"
API_ENV = "SYNOD_API_DB"


class MemberStartError(RuntimeError):
    """The member cannot start as configured (one line, naming the file or key)."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # check -> "ok" or why not

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


class MemberService:
    """`material` is the member's directory, opened once to check it (the service keeps only
    its id and the threshold, no key); `passphrase` and the replica's URL go to the children
    through their environment, never their arguments."""

    def __init__(
        self,
        config: MemberConfig,
        material: NodeMaterial,
        passphrase: bytes,
        python: str = sys.executable,
    ) -> None:
        self.config = config
        self.member_id = material.member_id
        self.threshold = material.manifest.threshold
        if b"\0" in passphrase:
            raise MemberStartError("the keystore passphrase holds a NUL byte")
        self.python = python
        self.committee = self._check_ledger()
        self.supervisor = Supervisor(self._children(passphrase))
        self._stop = threading.Event()
        self._health: ThreadingHTTPServer | None = None
        self._reader: Any = None
        self._ready_lock = threading.Lock()
        self._ready: tuple[float, Readiness] | None = None
        self._height: tuple[int, float] = (-1, time.monotonic())  # last height, when it moved

    # ------------------------------------------------------------------ start-up checks
    def _check_ledger(self) -> Committee | None:
        ledger = self.config.ledger
        if ledger.mode != REPLICATED:
            return None
        assert ledger.cometbft is not None and ledger.home is not None
        if not (ledger.cometbft.is_file() and os.access(ledger.cometbft, os.X_OK)):
            raise MemberStartError(
                f"{self.config.path}: ledger.cometbft: no executable at {ledger.cometbft}"
            )
        for needed in ("config/genesis.json", "config/priv_validator_key.json"):
            if not (ledger.home / needed).is_file():
                raise MemberStartError(
                    f"{self.config.path}: ledger.home: {ledger.home} has no {needed} "
                    "(run `synod member init --cometbft` and `synod member install`)"
                )
        try:
            return Committee.load(self.config.directory / LEDGER_COMMITTEE)
        except (CommitteeError, OSError, ValueError) as err:
            raise MemberStartError(
                f"{self.config.directory / LEDGER_COMMITTEE}: {err} "
                "(assemble with --chain-id and install the bundle)"
            ) from None

    def _children(self, passphrase: bytes) -> list[ChildSpec]:
        d, ledger = self.config.directory, self.config.ledger
        base = {k: v for k, v in os.environb.items() if k != PASSPHRASE_ENV.encode()}
        base[LEDGER_ENV.encode()] = ledger.db.encode()  # a password in it stays off `ps`
        env = {**base, PASSPHRASE_ENV.encode(): passphrase}
        node = [self.python, "-m", "synod.cli.main", "node", "run", "--dir", str(d)]
        node += ["--ledger", f"env:{LEDGER_ENV}"]
        if self.config.chains is not None:
            node += ["--chains", str(self.config.chains)]
        if self.config.test_fault in TEST_FAULTS:  # the node logs it loudly, and its status
            node += ["--test-fault", str(self.config.test_fault)]  # shows it
        children = [ChildSpec("node", node, d / "node.log", env)]
        if self.config.runtime:  # the chains it serves: the runtime on every block
            runtime = [self.python, "-m", "synod.cli.main", "member", "runtime"]
            runtime += ["--config", str(self.config.path)]
            children.append(ChildSpec("runtime", runtime, d / "runtime.log", env))
        if self.config.api is not None:
            children.append(self._api_child(base))
        if ledger.mode == REPLICATED:
            assert ledger.cometbft is not None and ledger.home is not None
            app = [self.python, "-m", "synod.consensus", "serve", "--db", f"env:{LEDGER_ENV}"]
            app += ["--committee", str(d / LEDGER_COMMITTEE), "--port", str(ledger.abci_port)]
            children.append(ChildSpec("app", app, d / "app.log", base))
            quiet = {k: v for k, v in base.items() if k != LEDGER_ENV.encode()}
            validator = [str(ledger.cometbft), "node", "--home", str(ledger.home)]
            validator += ["--proxy_app", f"tcp://127.0.0.1:{ledger.abci_port}"]
            validator += ["--rpc.laddr", f"tcp://127.0.0.1:{ledger.rpc_port}"]
            children.append(ChildSpec("cometbft", validator, d / "cometbft.log", quiet))
        return children

    def _api_child(self, base: dict[bytes, bytes]) -> ChildSpec:
        """`synod api run` over this member's replica (or, solo, its one writer)."""
        api, d, ledger = self.config.api, self.config.directory, self.config.ledger
        assert api is not None
        argv = [self.python, "-m", "synod.cli.main", "api", "run", "--db", f"env:{API_ENV}"]
        argv += ["--host", api.listen.host, "--port", str(api.listen.port)]
        argv += ["--metrics-listen", "off", "--journal", str(d / "api-journal.db")]
        argv += ["--node-id", f"api-{self.member_id}", "--btc-network", self._btc_network()]
        if ledger.mode == REPLICATED:
            assert self.committee is not None and api.operator_key is not None
            argv += ["--replica", f"env:{LEDGER_ENV}", "--ledger-rpc", ledger.rpc_url]
            argv += ["--chain-id", self.committee.chain_id, "--operator", api.operator]
            argv += ["--operator-key", str(api.operator_key)]
        return ChildSpec("api", argv, d / "api.log", {**base, API_ENV.encode(): api.db.encode()})

    def _btc_network(self) -> str:
        chains = {c.chain: c for c in self.config.runtime}
        return chains["btc"].network if "btc" in chains else "mainnet"

    def _prepare_replica(self) -> None:
        """The replica's tables exist before anything reads them (the signer node's view)."""
        db = open_database(self.config.ledger.db)
        try:
            migrate(db, MIGRATIONS, "consensus_schema_version")
        finally:
            db.close()
        self._reader = open_database(self.config.ledger.db)

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> Readiness:
        """The checks, at most once a second whoever asks (probes, scrapes)."""
        with self._ready_lock:
            now = time.monotonic()
            if self._ready is None or now - self._ready[0] >= READY_CACHE_S:
                checks = {"node": self._node_check(), "replica": self._replica_check()}
                self._ready = (now, Readiness(all(v == "ok" for v in checks.values()), checks))
            return self._ready[1]

    def _node_check(self) -> str:
        pid = self.supervisor.pids().get("node")
        if pid is None:
            return "the signer node is not running"
        try:
            status = json.loads((self.config.directory / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return "the signer node has not published its status yet"
        if status.get("pid") != pid or status.get("state") != "ready":
            return "the signer node is starting (keystore and keys not loaded yet)"
        if time.time() - float(status.get("updated", 0)) > STATUS_FRESH_S:
            return "the signer node's status is stale"
        linked = sum(1 for v in status.get("peers", {}).values() if v == "connected")
        needed = self.threshold - 1
        if linked < needed:
            return f"linked to {linked} peers, needs at least {needed} (t-1)"
        return "ok"

    def _replica_check(self) -> str:
        ledger = self.config.ledger
        if ledger.mode != REPLICATED:
            return "ok"  # solo: ordered here, never behind
        try:
            status = CometRpc(ledger.rpc_url, timeout_s=2.0).status()
        except (RpcError, KeyError, TypeError, ValueError):
            return "the validator does not answer"
        if status.catching_up or status.height < 1:
            return f"the replica is catching up (height {status.height})"
        now = time.monotonic()
        if status.height != self._height[0]:
            self._height = (status.height, now)
        elif now - self._height[1] > STALL_S:  # a halted chain: its replica is not current
            return f"no new block for {now - self._height[1]:.0f} s (height {status.height})"
        return "ok"

    # ------------------------------------------------------------------ health endpoints
    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_MemberCollector(self))
        if self._reader is not None:
            registry.register(LedgerCollector(self._reader))
        return registry

    def _serve_health(self) -> ThreadingHTTPServer:
        service = self
        registry = self.registry()

        class Handler(BaseHTTPRequestHandler):
            timeout = HEALTH_TIMEOUT_S  # a client that sends nothing is dropped

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._json(200, {"status": "ok", "member_id": service.member_id})
                elif self.path == "/readyz":
                    ready = service.readiness()
                    self._json(200 if ready.ready else 503, ready.as_dict())
                elif self.path == "/metrics":
                    body = generate_latest(registry)
                    self._send(200, body, CONTENT_TYPE_LATEST)
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, code: int, doc: dict[str, Any]) -> None:
                self._send(code, json.dumps(doc).encode(), "application/json")

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds: not worth a log line each

        endpoint = self.config.health
        server = _BoundedServer((endpoint.host, endpoint.port), Handler)
        threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
        return server

    # ------------------------------------------------------------------ run
    def request_stop(self, signum: int = 0, _frame: FrameType | None = None) -> None:
        if signum:
            log.info("signal %d: stopping", signum)
        self._stop.set()

    def start(self) -> None:
        """Open the replica and the health endpoint; `MemberStartError` if either cannot be
        (the store unreachable, the address taken), before any child is started."""
        try:
            self._prepare_replica()
        except Exception as err:  # any store's error: one line, exit status 2
            raise MemberStartError(
                f"{self.config.path}: ledger.db: cannot open the replica: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}"
            ) from None
        try:
            self._health = self._serve_health()
        except OSError as err:
            self._reader.close()
            raise MemberStartError(
                f"{self.config.path}: member.health: cannot listen on {self.config.health}: "
                f"{err.strerror}"
            ) from None

    def run(self) -> int:
        """After `start`, until SIGTERM/SIGINT (or `request_stop`); returns the exit status."""
        pid_file = self.config.directory / PID_FILE
        previous = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            atomic_write(pid_file, f"{os.getpid()}\n".encode(), 0o644)
            self.supervisor.start()
            log.info(
                "member %d running: %s ledger, health on %s",
                self.member_id,
                self.config.ledger.mode,
                self.config.health,
            )
            while not self._stop.wait(POLL_S):
                self.supervisor.poll()
        finally:
            if self._health is not None:  # no probe reads the children while they stop
                self._health.shutdown()
                self._health.server_close()
            # the API and the runtime first (they write through the validator, and the
            # runtime asks the node), the signer node (it reads the replica), then the
            # validator, then the app
            killed = self.supervisor.stop(order=["api", "runtime", "node", "cometbft", "app"])
            if killed:
                log.warning("had to kill %s", ", ".join(killed))
            if self._reader is not None:
                self._reader.close()
            pid_file.unlink(missing_ok=True)
            for sig, old in previous.items():
                signal.signal(sig, old)
        log.info("member %d stopped", self.member_id)
        return 0


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `HEALTH_CONNECTIONS` at once: more are closed."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(HEALTH_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _MemberCollector(Collector):
    def __init__(self, service: MemberService) -> None:
        self.service = service

    def collect(self) -> Any:
        ready = GaugeMetricFamily("synod_member_ready", "1 when /readyz answers ready.")
        ready.add_metric([], 1.0 if self.service.readiness().ready else 0.0)
        yield ready
        up = GaugeMetricFamily("synod_member_child_up", "1 while the child runs.", labels=["child"])
        restarts = GaugeMetricFamily(
            "synod_member_child_restarts", "Times the child was started again.", labels=["child"]
        )
        pids = self.service.supervisor.pids()
        for name, count in self.service.supervisor.restarts().items():
            up.add_metric([name], 1.0 if name in pids else 0.0)
            restarts.add_metric([name], float(count))
        yield up
        yield restarts
