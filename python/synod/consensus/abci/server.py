"""The ABCI socket server: CometBFT's four connections (consensus, mempool, info, snapshot) to
one `LedgerApp`.

Framing is CometBFT's: each message is a protobuf `Request`/`Response` preceded by its length
as an unsigned varint. Requests on one connection are answered in order. The consensus
methods run one at a time on the application's writer connection; CheckTx, queries and Info
run one at a time on its reader connection (committed state), so the mempool is not held up
by a block. A request too large, or bytes that do not parse, close that connection with a
logged reason; the application never sees them.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Any, Protocol

from synod.consensus.abci.proto.tendermint.abci import types_pb2 as pb
from synod.consensus.app import LedgerApp, state_digest

log = logging.getLogger("synod.consensus.abci")
MAX_MESSAGE = 64 << 20  # a block of transactions, bounded
VERSION = "synod-ledger/1"
READS = frozenset({"echo", "flush", "info", "query", "check_tx"})


class FramingError(ValueError):
    pass


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


def read_message(stream: _Readable) -> bytes | None:
    """One length-prefixed message; None at a clean end of stream."""
    length, shift = 0, 0
    while True:
        b = stream.read(1)
        if not b:
            if shift == 0:
                return None
            raise FramingError("stream ended inside a length prefix")
        length |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
        if shift > 63:
            raise FramingError("length prefix too long")
    if length > MAX_MESSAGE:
        raise FramingError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    data = stream.read(length)
    if len(data) != length:
        raise FramingError("stream ended inside a message")
    return data


def frame(payload: bytes) -> bytes:
    n, out = len(payload), bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out) + payload


class AbciHandlers:
    """Request -> Response for each ABCI method, over one application under one lock."""

    def __init__(self, app: LedgerApp) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.read_lock = threading.Lock()
        self._methods: dict[str, Callable[[Any], pb.Response]] = {
            "echo": lambda r: pb.Response(echo=pb.ResponseEcho(message=r.message)),
            "flush": lambda r: pb.Response(flush=pb.ResponseFlush()),
            "info": self._info,
            "init_chain": self._init_chain,
            "query": self._query,
            "check_tx": self._check_tx,
            "prepare_proposal": self._prepare,
            "process_proposal": self._process,
            "finalize_block": self._finalize,
            "commit": self._commit,
            "extend_vote": lambda r: pb.Response(extend_vote=pb.ResponseExtendVote()),
            "verify_vote_extension": lambda r: pb.Response(
                verify_vote_extension=pb.ResponseVerifyVoteExtension(
                    status=pb.ResponseVerifyVoteExtension.ACCEPT
                )
            ),
            "list_snapshots": lambda r: pb.Response(list_snapshots=pb.ResponseListSnapshots()),
            "offer_snapshot": lambda r: pb.Response(
                offer_snapshot=pb.ResponseOfferSnapshot(result=pb.ResponseOfferSnapshot.REJECT)
            ),
            "load_snapshot_chunk": lambda r: pb.Response(
                load_snapshot_chunk=pb.ResponseLoadSnapshotChunk()
            ),
            "apply_snapshot_chunk": lambda r: pb.Response(
                apply_snapshot_chunk=pb.ResponseApplySnapshotChunk(
                    result=pb.ResponseApplySnapshotChunk.REJECT_SNAPSHOT
                )
            ),
        }

    def handle(self, request: pb.Request) -> pb.Response:
        method = request.WhichOneof("value")
        handler = self._methods.get(method or "")
        if handler is None:
            return pb.Response(exception=pb.ResponseException(error=f"unknown request {method}"))
        # Reads (CheckTx, queries, Info) use the application's reader connection and never wait
        # behind a block being applied on the writer; consensus methods run one at a time.
        with self.read_lock if method in READS else self.lock:
            try:
                return handler(getattr(request, method or ""))
            except Exception as err:  # CometBFT stops on an exception answer: never silently
                log.exception("ABCI %s failed", method)
                return pb.Response(exception=pb.ResponseException(error=f"{method}: {err}"))

    def _info(self, r: pb.RequestInfo) -> pb.Response:
        height, app_hash = self.app.info()
        return pb.Response(
            info=pb.ResponseInfo(
                data="synod",
                version=VERSION,
                app_version=1,
                last_block_height=height,
                last_block_app_hash=app_hash,
            )
        )

    def _init_chain(self, r: pb.RequestInitChain) -> pb.Response:
        app_hash = self.app.init_chain(r.chain_id)
        return pb.Response(init_chain=pb.ResponseInitChain(app_hash=app_hash))

    def _query(self, r: pb.RequestQuery) -> pb.Response:
        height, _ = self.app.info()
        try:
            value = self._answer(r.path, bytes(r.data))
        except (KeyError, ValueError) as err:
            return pb.Response(query=pb.ResponseQuery(code=1, log=str(err), height=height))
        return pb.Response(query=pb.ResponseQuery(code=0, value=value, height=height))

    def _answer(self, path: str, data: bytes) -> bytes:
        """Read-only views of committed state, as JSON."""
        app, key = self.app, data.decode()
        if path == "/digest":
            return state_digest(app.reader).encode()
        if path == "/withdrawal":
            rows = app.reader.query(
                "SELECT status, attempt, txid, template_hash FROM withdrawals "
                "WHERE withdraw_id = ? OR request_id = ?",
                (key, key),
            )
            if not rows:
                raise KeyError(f"no withdrawal {key}")
            return json.dumps(
                dict(zip(("status", "attempt", "txid", "template_hash"), rows[0], strict=True))
            ).encode()
        if path == "/balance":
            chain, _, asset = key.partition("/")
            from synod.state.machine import Ledger

            return json.dumps(Ledger(app.reader).balance(chain, asset)).encode()
        if path == "/proof":
            return json.dumps({"status": app.proof_status(key)}).encode()
        if path == "/app_hashes":
            start, _, end = key.partition(":")
            return json.dumps(app.app_hashes(int(start or 1), int(end) if end else None)).encode()
        if path == "/strikes":
            return json.dumps(app.strikes()).encode()
        if path == "/witnesses":
            return json.dumps(app.witness_counts(), sort_keys=True).encode()
        raise KeyError(f"unknown query path {path!r}")

    def _check_tx(self, r: pb.RequestCheckTx) -> pb.Response:
        outcome = self.app.check_tx(bytes(r.tx))
        return pb.Response(
            check_tx=pb.ResponseCheckTx(code=int(outcome.code), log=outcome.log, data=outcome.data)
        )

    def _prepare(self, r: pb.RequestPrepareProposal) -> pb.Response:
        txs = self.app.prepare_proposal([bytes(t) for t in r.txs], int(r.max_tx_bytes))
        return pb.Response(prepare_proposal=pb.ResponsePrepareProposal(txs=txs))

    def _process(self, r: pb.RequestProcessProposal) -> pb.Response:
        ok = self.app.process_proposal([bytes(t) for t in r.txs])
        status = pb.ResponseProcessProposal.ACCEPT if ok else pb.ResponseProcessProposal.REJECT
        return pb.Response(process_proposal=pb.ResponseProcessProposal(status=status))

    def _finalize(self, r: pb.RequestFinalizeBlock) -> pb.Response:
        outcomes, app_hash = self.app.finalize_block(int(r.height), [bytes(t) for t in r.txs])
        results = [pb.ExecTxResult(code=int(o.code), log=o.log, data=o.data) for o in outcomes]
        return pb.Response(
            finalize_block=pb.ResponseFinalizeBlock(tx_results=results, app_hash=app_hash)
        )

    def _commit(self, r: pb.RequestCommit) -> pb.Response:
        self.app.commit()
        return pb.Response(commit=pb.ResponseCommit(retain_height=0))


class _Connection(socketserver.StreamRequestHandler):
    server: AbciServer

    def handle(self) -> None:
        peer = self.client_address
        try:
            while True:
                raw = read_message(self.rfile)
                if raw is None:
                    return
                request = pb.Request()
                try:
                    request.ParseFromString(raw)
                except Exception:  # protobuf's DecodeError; the bytes are the peer's
                    raise FramingError("not an ABCI request") from None
                response = self.server.handlers.handle(request)
                self.wfile.write(frame(response.SerializeToString()))
                if request.WhichOneof("value") == "flush":
                    self.wfile.flush()
        except FramingError as err:
            log.warning("ABCI connection %s closed: %s", peer, err)
        except (ConnectionError, OSError) as err:
            log.info("ABCI connection %s ended: %s", peer, err)


class AbciServer(socketserver.ThreadingTCPServer):
    """Listens on loopback (or a Unix socket path is not supported: CometBFT dials TCP)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: LedgerApp, host: str, port: int) -> None:
        self.handlers = AbciHandlers(app)
        super().__init__((host, port), _Connection)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def port(self) -> int:
        return int(self.server_address[1])
