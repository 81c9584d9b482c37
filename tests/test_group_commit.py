"""db.GroupCommit: threads share a write, each gets its own result, only after its own write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.db import GroupCommit

ROOT = Path(__file__).resolve().parents[1]


class Writes:
    """A write function that records its batches; a batch can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Semaphore(0)
        self.hold: threading.Event | None = None
        self.fail_on: set[int] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.release()
        if self.hold is not None:
            assert self.hold.wait(10)
        if self.fail_on & set(items):
            raise RuntimeError("the database went away")
        return [item * 10 for item in items]


def call_in_thread(group: GroupCommit[int, int], item: int, results: dict[int, object]) -> threading.Thread:
    def run() -> None:
        try:
            results[item] = group(item)
        except RuntimeError as error:
            results[item] = error

    thread = threading.Thread(target=run, daemon=True)  # a stranded caller fails the test, not pytest
    thread.start()
    return thread


def wait_until_waiting(group: GroupCommit[int, int], count: int) -> None:
    for _ in range(1000):
        with group._lock:
            if len(group._waiting) == count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} callers never queued up")


def test_a_lone_caller_writes_at_once_and_alone() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    assert (group(1), group(2)) == (10, 20)
    assert writes.batches == [[1], [2]]


def test_callers_arriving_during_a_write_share_the_next_one_and_get_their_own_results() -> None:
    writes = Writes()
    writes.hold = threading.Event()
    group = GroupCommit(writes)
    results: dict[int, object] = {}
    threads = [call_in_thread(group, 1, results)]
    assert writes.entered.acquire(timeout=10)  # 1 is being written, and held there
    threads += [call_in_thread(group, n, results) for n in (2, 3, 4)]
    wait_until_waiting(group, 3)
    assert results == {}  # nobody returns before their write
    writes.hold.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert results == {1: 10, 2: 20, 3: 30, 4: 40}
    assert writes.batches[0] == [1] and sorted(writes.batches[1]) == [2, 3, 4] and len(writes.batches) == 2


def test_a_batch_holds_at_most_max_items_and_the_rest_wait_for_the_next() -> None:
    writes = Writes()
    writes.hold = threading.Event()
    group = GroupCommit(writes, max_items=2)
    results: dict[int, object] = {}
    threads = [call_in_thread(group, 1, results)]
    assert writes.entered.acquire(timeout=10)
    threads += [call_in_thread(group, n, results) for n in (2, 3, 4, 5, 6)]
    wait_until_waiting(group, 5)
    writes.hold.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert results == {n: n * 10 for n in range(1, 7)}
    assert [len(batch) for batch in writes.batches] == [1, 2, 2, 1]


def test_when_a_write_raises_its_callers_raise_and_the_next_batch_is_written() -> None:
    writes = Writes()
    writes.hold = threading.Event()
    writes.fail_on = {1, 2}  # 1's batch fails, and so does the batch 2 and 3 share
    group = GroupCommit(writes)
    results: dict[int, object] = {}
    first = call_in_thread(group, 1, results)
    assert writes.entered.acquire(timeout=10)
    later = [call_in_thread(group, n, results) for n in (2, 3)]
    wait_until_waiting(group, 2)
    writes.hold.set()
    for thread in [first, *later]:
        thread.join(10)
        assert not thread.is_alive()
    assert all(isinstance(results[n], RuntimeError) for n in (1, 2, 3))
    # In the batch 2 and 3 share, the writer raises the write's error; the other one of its
    # own, caused by it (one shared object would gather both callers' frames).
    writers_error, other = sorted((results[2], results[3]), key=lambda e: e.__cause__ is not None)  # type: ignore[union-attr]
    assert writers_error.__cause__ is None and other.__cause__ is writers_error  # type: ignore[union-attr]
    assert [sorted(batch) for batch in writes.batches] == [[1], [2, 3]]
    writes.fail_on, writes.hold = set(), None
    assert group(4) == 40


def test_equal_items_are_separate_callers() -> None:
    writes = Writes()
    writes.hold = threading.Event()
    group = GroupCommit(writes)
    results: list[object] = []
    lock = threading.Lock()

    def call() -> None:
        value = group(7)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(4)]
    threads[0].start()
    assert writes.entered.acquire(timeout=10)
    for thread in threads[1:]:
        thread.start()
    wait_until_waiting(group, 3)
    writes.hold.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert results == [70] * 4 and writes.batches == [[7], [7, 7, 7]]


@pytest.mark.parametrize("callers", [32])
def test_many_threads_each_get_exactly_their_own_result(callers: int) -> None:
    writes = Writes()
    group = GroupCommit(writes, max_items=5)
    results: dict[int, object] = {}
    threads = [call_in_thread(group, n, results) for n in range(callers)]
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert results == {n: n * 10 for n in range(callers)}
    assert sorted(item for batch in writes.batches for item in batch) == list(range(callers))
    assert max(len(batch) for batch in writes.batches) <= 5


def test_a_write_that_answers_the_wrong_number_of_results_fails_its_callers_not_the_next() -> None:
    answers = [[1, 2], [30]]
    group: GroupCommit[int, int] = GroupCommit(lambda items: answers.pop(0))
    with pytest.raises(RuntimeError, match="2 results for 1 items"):
        group(1)
    assert group(3) == 30  # not left waiting on a writer that never finished


# Under gunicorn's gevent workers a waiting greenlet can be killed (a timeout, a dropped
# client). Greenlets need gevent's monkey-patching, so this runs in a process of its own.
GEVENT_CALLERS = """
from gevent import monkey

monkey.patch_all()
import json
import sys

import gevent
import gevent.event

from app.db import GroupCommit

when = sys.argv[1]
first_write, second_write, second_started = (gevent.event.Event() for _ in range(3))
batches, active, most = [], [0], [0]
greenlets = {}


def write(items):
    batches.append(list(items))
    active[0] += 1
    most[0] = max(most[0], active[0])
    try:
        if items == [1]:
            first_write.wait()
            if when == "handed-the-lead":
                greenlets[2].kill(block=False)  # runs once this writer has handed the lead to 2
        elif 2 in items:
            second_started.set()
            second_write.wait()
    finally:
        active[0] -= 1
    return [item * 10 for item in items]


group = GroupCommit(write)
results = {}


def call(item):
    try:
        results[item] = group(item)
    except Exception as error:
        results[item] = type(error).__name__


def spawn(*items):
    for item in items:
        greenlets[item] = gevent.spawn(call, item)
    gevent.sleep(0)


spawn(1)
spawn(2)
spawn(3, 4)
doomed = 3 if when == "in-a-batch" else 2
if when == "queued":
    greenlets[2].kill()
first_write.set()
if when in ("in-a-batch", "leader-in-a-batch"):
    assert second_started.wait(5)  # 2 is writing [2, 3, 4]
    greenlets[doomed].kill()
    spawn(5)  # comes while that write is held: it must wait for it
second_write.set()
gevent.joinall(list(greenlets.values()), timeout=5)
killed = greenlets[doomed]
print(json.dumps({"results": results, "batches": batches, "most": most[0], "clean": killed.dead and killed.successful()}))
"""


@pytest.mark.parametrize(
    ("when", "results", "batches"),
    [
        ("queued", {"1": 10, "3": 30, "4": 40}, [[1], [3, 4]]),
        ("handed-the-lead", {"1": 10, "3": 30, "4": 40}, [[1], [3, 4]]),
        # A caller of a batch being written gives up: the write goes on, nobody else starts one.
        ("in-a-batch", {"1": 10, "2": 20, "4": 40, "5": 50}, [[1], [2, 3, 4], [5]]),
        # The writer itself is killed: its batch learns the write failed, not of the kill.
        ("leader-in-a-batch", {"1": 10, "3": "RuntimeError", "4": "RuntimeError", "5": 50}, [[1], [2, 3, 4], [5]]),
    ],
)
def test_under_gevent_a_caller_killed_while_waiting_holds_up_nobody(when: str, results: dict, batches: list, tmp_path) -> None:  # type: ignore[type-arg]
    script = tmp_path / "callers.py"
    script.write_text(GEVENT_CALLERS)
    finished = subprocess.run(
        [sys.executable, str(script), when],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    outcome = json.loads(finished.stdout)
    assert outcome["clean"]  # the killed caller died of the kill alone
    assert outcome["results"] == results
    assert outcome["batches"] == batches
    assert outcome["most"] == 1  # never two writes at once


GEVENT_READY_CALLERS = """
from gevent import monkey

monkey.patch_all()
import json

import gevent

from app.db import GroupCommit

batches = []


def write(items):
    batches.append(list(items))
    return [item * 10 for item in items]


group = GroupCommit(write)
results = {}


def call(item):
    results[item] = group(item)


gevent.joinall([gevent.spawn(call, item) for item in (1, 2, 3, 4)], timeout=5)
print(json.dumps({"results": results, "batches": batches}))
"""


def test_under_gevent_callers_ready_to_run_join_the_first_write(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Four requests ready at once: the first yields before it takes its batch, so all four
    share one write instead of four (nothing waits for time to pass)."""
    script = tmp_path / "ready.py"
    script.write_text(GEVENT_READY_CALLERS)
    finished = subprocess.run(
        [sys.executable, str(script)],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    outcome = json.loads(finished.stdout)
    assert outcome["results"] == {"1": 10, "2": 20, "3": 30, "4": 40}
    assert outcome["batches"] == [[1, 2, 3, 4]]


def test_a_writer_interrupted_before_it_writes_hands_the_lead_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill or timeout can reach the writer while it yields to let others join its batch."""
    from app import db

    interrupted: list[bool] = []

    def interrupt_once() -> None:
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # a BaseException, as gevent's kill and Timeout are

    monkeypatch.setattr(db, "_let_others_run", interrupt_once)
    writes = Writes()
    group = GroupCommit(writes)
    with pytest.raises(KeyboardInterrupt):
        group(1)
    results: dict[int, object] = {}
    thread = call_in_thread(group, 2, results)
    thread.join(5)
    assert not thread.is_alive()
    assert results == {2: 20}  # not left waiting on a lead nobody holds
    assert writes.batches == [[2]]
