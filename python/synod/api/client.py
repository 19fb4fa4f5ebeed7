"""A small client of the REST API (httpx): what the CLI and the benchmark use.

Errors come back as `ApiError` carrying the problem document, so callers can branch on its
`type` and show its `detail`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class ApiError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        field = f" ({problem['field']})" if problem.get("field") else ""
        super().__init__(
            f"{status} {problem.get('title', 'error')}: {problem.get('detail', '')}{field}"
        )


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:200]}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
        return response.json()

    def create_withdrawal(
        self,
        chain: str,
        asset: str,
        destination: str,
        amount: str,
        external_id: str,
        idempotency_key: str | None = None,
        wait: float = 0.0,
    ) -> dict[str, Any]:
        """The withdrawal (201), or while it waits for its block `state` PENDING (202);
        `wait` seconds (at most 30) lets the API wait for the block first."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {
            "chain": chain,
            "asset": asset,
            "destination": destination,
            "amount": amount,
            "external_id": external_id,
        }
        params = {"wait": wait} if wait > 0 else {}
        result: dict[str, Any] = self._call(
            "POST", "/v1/withdrawals", json=body, headers=headers, params=params,
            timeout=self.timeout + wait,
        )  # fmt: skip
        return result

    def withdrawal(self, withdrawal_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/withdrawals/{withdrawal_id}")
        return result

    def withdrawals(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/withdrawals", params=params)
        return result

    def cancel(self, withdrawal_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else None
        result: dict[str, Any] = self._call(
            "POST", f"/v1/withdrawals/{withdrawal_id}/cancel", json=body
        )
        return result

    def deposits(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/deposits", params=params)
        return result

    def balances(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/balances")
        return result

    def create_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        """A new subscription; the answer holds its signing secret (shown this once)."""
        result: dict[str, Any] = self._call(
            "POST", "/v1/webhooks", json={"url": url, "events": events}
        )
        return result

    def webhooks(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/webhooks")
        return result

    def delete_webhook(self, subscription_id: str) -> dict[str, Any]:
        path = f"/v1/webhooks/{quote(subscription_id, safe='')}"
        result: dict[str, Any] = self._call("DELETE", path)
        return result

    def webhook_log(self, subscription_id: str, what: str, limit: int) -> dict[str, Any]:
        """`what` is `deliveries` or `attempts`."""
        result: dict[str, Any] = self._call(
            "GET", f"/v1/webhooks/{quote(subscription_id, safe='')}/{what}", params={"limit": limit}
        )
        return result
