"""Node tests share one process: CGGMP sessions made on the main thread by one module
(in the simulator) must be released there, not by a later module's runner thread whose
garbage collection happens to find them (the crate's sessions refuse to be dropped on
another thread). Collect before each module, on the main thread."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _collect_on_the_main_thread() -> Iterator[None]:
    gc.collect()
    yield
