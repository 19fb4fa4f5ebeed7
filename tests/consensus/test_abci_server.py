"""The ABCI socket server on loopback: CometBFT's framing, in-order answers, and hostile bytes
closing only their own connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from synod.consensus.abci.proto.tendermint.abci import types_pb2 as pb
from synod.consensus.abci.server import AbciServer, frame, read_message
from synod.consensus.app import LedgerApp
from synod.state.transactions import DepositCredit
from tests.consensus.conftest import by_member


@pytest.fixture
def server(sqlite_app: LedgerApp) -> Iterator[AbciServer]:
    srv = AbciServer(sqlite_app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def exchange(sock: socket.socket, *requests: pb.Request) -> list[pb.Response]:
    sock.sendall(b"".join(frame(r.SerializeToString()) for r in requests))
    stream = sock.makefile("rb")
    out = []
    for _ in requests:
        raw = read_message(stream)
        assert raw is not None
        resp = pb.Response()
        resp.ParseFromString(raw)
        out.append(resp)
    return out


def test_requests_are_answered_in_order_over_cometbft_framing(server: AbciServer) -> None:
    deposit = by_member(1, DepositCredit("eth", "ETH", 5, "0x1", 1))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        echo, info, check, block, committed, info2, flush = exchange(
            sock,
            pb.Request(echo=pb.RequestEcho(message="hi")),
            pb.Request(info=pb.RequestInfo()),
            pb.Request(check_tx=pb.RequestCheckTx(tx=deposit)),
            pb.Request(finalize_block=pb.RequestFinalizeBlock(height=1, txs=[deposit])),
            pb.Request(commit=pb.RequestCommit()),
            pb.Request(info=pb.RequestInfo()),
            pb.Request(flush=pb.RequestFlush()),
        )
    assert echo.echo.message == "hi"
    assert info.info.last_block_height == 0
    assert check.check_tx.code == 0
    assert [r.code for r in block.finalize_block.tx_results] == [0]
    assert committed.WhichOneof("value") == "commit"
    assert info2.info.last_block_height == 1
    assert info2.info.last_block_app_hash == block.finalize_block.app_hash
    assert flush.WhichOneof("value") == "flush"


def test_hostile_bytes_close_only_their_connection(server: AbciServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as bad:
        bad.sendall(b"\xff" * 11)  # a length prefix that never ends
        assert bad.recv(1) == b""  # closed by the server
    with socket.create_connection(("127.0.0.1", server.port)) as bad:
        bad.sendall(b"\xff\xff\xff\xff\x7f")  # a length far over the bound
        assert bad.recv(1) == b""
    with socket.create_connection(("127.0.0.1", server.port)) as bad:
        bad.sendall(frame(b"\x0a\x05\xff"))  # not a protobuf Request
        assert bad.recv(1) == b""
    with socket.create_connection(("127.0.0.1", server.port)) as good:
        (echo,) = exchange(good, pb.Request(echo=pb.RequestEcho(message="still here")))
    assert echo.echo.message == "still here"
