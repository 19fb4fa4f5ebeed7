"""Clients for a Bitcoin node: JSON-RPC (Bitcoin Core, btcd) and Esplora's HTTP API.

Standard library only (`urllib`), so the custody's node access has no dependency to audit.
Every call has a timeout. Failures split in two, because the caller reacts differently:

* `TransportError`: no usable answer (connection refused, timeout, HTTP error without an RPC
  error body, bad credentials, not JSON). Nothing is known; try again later.
* `RpcError` / `EsploraError`: the node answered and said no (with its code and message), e.g.
  a transaction refused by policy or consensus.

Credentials go in an ``Authorization`` header and never into an exception message.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_TIMEOUT = 30.0


class BitcoinError(Exception):
    """Any failure talking to a Bitcoin node."""


class TransportError(BitcoinError):
    """The node gave no usable answer; the request may or may not have been processed."""


class RpcError(BitcoinError):
    """A JSON-RPC error returned by the node (Bitcoin Core codes, e.g. -26 = rejected)."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class EsploraError(BitcoinError):
    """An Esplora endpoint answered with an HTTP error status and a message."""

    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"{path}: HTTP {status}: {message}")
        self.path = path
        self.status = status
        self.message = message


def _strip_credentials(url: str) -> tuple[str, str | None, str | None]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http(s) URL, got scheme {parts.scheme!r}")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return (
        urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")),
        user,
        password,
    )


def _ssl_context(cafile: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=cafile) if cafile else None


def _fetch(
    request: urllib.request.Request, timeout: float, context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    """(status, body) of an HTTP exchange; HTTP error statuses are returned, not raised."""
    where = f"{request.get_method()} {request.full_url}"
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        try:
            body = err.read()
        except (OSError, http.client.HTTPException):
            body = b""
        return int(err.code), bytes(body)
    except urllib.error.URLError as err:
        raise TransportError(f"{where}: {err.reason}") from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets, bad responses
        raise TransportError(f"{where}: {type(err).__name__}: {err}") from None


class BitcoinRpc:
    """A Bitcoin Core-compatible JSON-RPC client (also speaks to btcd).

    `url` is e.g. ``http://127.0.0.1:8332`` (credentials may be given in the URL or as
    `user`/`password`; a cookie file's content is ``user:password``). For a node with a
    self-signed TLS certificate (btcd's default), pass ``https://...`` and its `cafile`.
    """

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cafile: str | None = None,
    ) -> None:
        self.url, url_user, url_password = _strip_credentials(url)
        user = user if user is not None else url_user
        password = password if password is not None else url_password
        self._auth = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        self.timeout = timeout
        self._context = _ssl_context(cafile)
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"BitcoinRpc({self.url!r})"

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; returns its result or raises `RpcError` / `TransportError`."""
        payload = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": params}
        headers = {"Content-Type": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        status, body = _fetch(request, self.timeout, self._context)
        if status == 401:
            raise TransportError(f"{method}: authentication failed (HTTP 401)")
        try:
            reply = json.loads(body)
        except ValueError:
            raise TransportError(f"{method}: HTTP {status}, not a JSON-RPC reply") from None
        if not isinstance(reply, dict):
            raise TransportError(f"{method}: HTTP {status}, not a JSON-RPC reply")
        error = reply.get("error")
        if error:
            if isinstance(error, dict):
                raise RpcError(method, int(error.get("code", 0)), str(error.get("message", "")))
            raise RpcError(method, 0, str(error))
        if status != 200 or "result" not in reply:
            raise TransportError(f"{method}: HTTP {status} without a result")
        return reply["result"]

    # -- the calls the adapter and the tests use ------------------------------------------------
    def send_raw_transaction(self, raw_hex: str) -> str:
        return str(self.call("sendrawtransaction", raw_hex))

    def get_raw_transaction(self, txid: str) -> dict[str, Any]:
        """Verbose transaction (the node needs a transaction index for confirmed ones)."""
        result: dict[str, Any] = self.call("getrawtransaction", txid, 1)
        return result

    def get_tx_out(self, txid: str, vout: int, include_mempool: bool = True) -> Any:
        """The unspent output, or None when it is spent (or never existed)."""
        return self.call("gettxout", txid, vout, include_mempool)

    def get_block_count(self) -> int:
        return int(self.call("getblockcount"))

    def get_best_block_hash(self) -> str:
        return str(self.call("getbestblockhash"))

    def get_block_hash(self, height: int) -> str:
        return str(self.call("getblockhash", height))

    def get_block(self, block_hash: str, verbosity: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getblock", block_hash, verbosity)
        return result

    def get_block_header(self, block_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getblockheader", block_hash, True)
        return result

    def get_blockchain_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getblockchaininfo")
        return result

    def generate(self, blocks: int) -> list[str]:
        """Mine blocks to the node's configured mining address (btcd, regtest/simnet)."""
        return [str(h) for h in self.call("generate", blocks)]

    def generate_to_address(self, blocks: int, address: str) -> list[str]:
        """Mine blocks paying `address` (Bitcoin Core, regtest)."""
        return [str(h) for h in self.call("generatetoaddress", blocks, address)]


class EsploraClient:
    """Client of an Esplora (Blockstream electrs / mempool.space) HTTP API."""

    def __init__(
        self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, cafile: str | None = None
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"expected an http(s) URL, got scheme {parts.scheme!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._context = _ssl_context(cafile)

    def __repr__(self) -> str:
        return f"EsploraClient({self.base_url!r})"

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        headers = {"Content-Type": "text/plain"} if body is not None else {}
        request = urllib.request.Request(
            self.base_url + path, data=body, headers=headers, method=method
        )
        status, raw = _fetch(request, self.timeout, self._context)
        text = raw.decode("utf-8", "replace").strip()
        if status >= 500:
            raise TransportError(f"{method} {path}: HTTP {status}: {text[:200]}")
        return status, text

    def _get_json(self, path: str) -> Any:
        status, text = self._request("GET", path)
        if status != 200:
            raise EsploraError(path, status, text[:500])
        try:
            return json.loads(text)
        except ValueError:
            raise TransportError(f"GET {path}: not JSON") from None

    def broadcast(self, raw_hex: str) -> str:
        """``POST /tx``: the txid, or `EsploraError` (HTTP 400) with the node's reason."""
        status, text = self._request("POST", "/tx", raw_hex.encode())
        if status != 200:
            raise EsploraError("/tx", status, text[:500])
        return text

    def tx_status(self, txid: str) -> dict[str, Any] | None:
        """``GET /tx/:txid/status``: ``{"confirmed": bool, "block_height": ...}``, None if
        the transaction is unknown."""
        status, text = self._request("GET", f"/tx/{txid}/status")
        if status in (400, 404):
            return None
        if status != 200:
            raise EsploraError(f"/tx/{txid}/status", status, text[:500])
        try:
            result: dict[str, Any] = json.loads(text)
        except ValueError:
            raise TransportError(f"GET /tx/{txid}/status: not JSON") from None
        return result

    def tip_height(self) -> int:
        """``GET /blocks/tip/height``."""
        status, text = self._request("GET", "/blocks/tip/height")
        if status != 200 or not (text.isascii() and text.isdigit()):
            raise TransportError(f"GET /blocks/tip/height: HTTP {status}: {text[:200]}")
        return int(text)

    def outspend(self, txid: str, vout: int) -> dict[str, Any]:
        """``GET /tx/:txid/outspend/:vout``: who spent an output, and whether confirmed."""
        result: dict[str, Any] = self._get_json(f"/tx/{txid}/outspend/{vout}")
        return result
