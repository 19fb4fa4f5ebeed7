"""Settings for every test: hypothesis keeps its database of failing examples in the user's
cache, outside the checkout, and prints a failing example's reproduction blob. The `cometbft`
fixture is the validator binary for the tests that make validators of their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from synod.chains.localnode import NodeUnavailable, binary_dir


def _cache_root() -> Path:
    explicit = os.environ.get("SYNOD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "synod"


settings.register_profile(
    "synod",
    database=DirectoryBasedExampleDatabase(_cache_root() / "hypothesis"),
    print_blob=True,
)
settings.load_profile("synod")


@pytest.fixture(scope="module")
def cometbft() -> Path:
    """$SYNOD_COMETBFT_DIR, else built once by scripts/cometbft.sh (about two minutes)."""
    try:
        return binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
    except NodeUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_COMETBFT") == "1":
            pytest.fail(f"SYNOD_REQUIRE_COMETBFT=1 but no cometbft: {err}")
        pytest.skip(f"cometbft unavailable: {err}")
