"""GET /v1/transitions: the operator's view of power transitions, for viewers and up."""

from __future__ import annotations

from synod.api.auth import Role
from synod.state.transactions import KeygenFailed, KeygenStart, SignerSetUpdate

from .conftest import Api


def test_transitions_view(api: Api) -> None:
    assert api.client.get("/v1/transitions").status_code == 401
    r = api.client.get("/v1/transitions", headers=api.headers(Role.VIEWER))
    assert r.status_code == 200
    assert r.json() == {"active_epoch": 0, "transitions": [], "strikes": {}, "strike_limit": 3}
    api.consensus.submit(SignerSetUpdate((1, 2, 3, 4), 3, "genesis"))
    api.consensus.submit(KeygenStart(1, "kg"))
    api.consensus.submit(KeygenFailed(1, "invalid DKG package", (4,)))
    data = api.client.get("/v1/transitions", headers=api.headers(Role.VIEWER)).json()
    (t,) = data["transitions"]
    assert (t["epoch"], t["state"], t["members"], t["culprits"]) == (1, "DETECTED", [1, 2, 3], [4])
    assert t["switch_window_ms"] is None and t["migrations"] == []
    assert data["strikes"] == {"4": 1}
