"""The member's supervisor: a child that exits is started again after a back-off that doubles
up to its cap and resets after a stable run; stop ends everything, killing what ignores
SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

from synod.member.supervisor import ChildSpec, Supervisor
from tests.member.helpers import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_exiting_child_is_restarted_with_a_doubling_back_off(tmp_path: Path) -> None:
    clock = Clock()
    crash = ChildSpec("crash", ["sh", "-c", "exit 3"], tmp_path / "crash.log")
    sup = Supervisor([crash], initial_backoff_s=1.0, max_backoff_s=4.0, stable_s=10.0, clock=clock)
    sup.start()
    starts = []
    for _ in range(5):
        wait_for(lambda: not sup.running("crash"), "the child to exit", 10)
        sup.poll()  # noticed: the restart is scheduled, not done
        assert sup.restarts()["crash"] == len(starts)
        waited = 0.0
        while not sup.poll():
            clock.now += 0.5
            waited += 0.5
        starts.append(waited)
    assert starts == [1.0, 2.0, 4.0, 4.0, 4.0]  # doubling, capped
    assert sup.restarts()["crash"] == 5
    sup.stop(timeout=5)


def test_stop_ends_every_child_and_kills_one_that_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = ChildSpec(
        "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], tmp_path / "s.log"
    )
    polite = ChildSpec("polite", ["sleep", "100"], tmp_path / "p.log")
    sup = Supervisor([stubborn, polite])
    sup.start()
    time.sleep(0.3)  # the trap is set
    pids = sup.pids()
    assert set(pids) == {"stubborn", "polite"}
    assert sup.stop(timeout=1.0, order=["polite", "absent"]) == ["stubborn"]
    assert sup.pids() == {}
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    sup.poll()  # stopping: nothing is started again
    assert sup.pids() == {}
