"""The validator binary for the member tests: $SYNOD_COMETBFT_DIR, else built once by
scripts/cometbft.sh (about two minutes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synod.chains.localnode import NodeUnavailable, binary_dir


@pytest.fixture(scope="module")
def cometbft() -> Path:
    try:
        return binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
    except NodeUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_COMETBFT") == "1":
            pytest.fail(f"SYNOD_REQUIRE_COMETBFT=1 but no cometbft: {err}")
        pytest.skip(f"cometbft unavailable: {err}")
