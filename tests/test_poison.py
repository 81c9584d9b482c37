"""A message no worker can read ends in a final state; it never stalls a drain or loops forever.

Two ways a message can poison the workers: its reading runs until rq's job timeout stops it, or
it raises every time. The first is made final at once (status failed, the reason says how long
it ran) and the timeout still ends the job; the second is counted on its row and made final at
the third failure. Both are kept for the facilitator, and the sweep leaves them alone.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import clock, db, jobs
from app.cycles import queue_requests
from app.models import Cycle, InboundMessage, UpdateRequest
from app.settings import Settings
from tests.mails import reply
from workers import jobs as worker_jobs
from workers.jobs import MAX_READ_FAILURES, after_failure, failure_count

ALICE = "alice@northwind.example"
BEN = "ben@okafor.example"


# --- the decision, alone -------------------------------------------------------------------------


def test_a_message_that_raises_is_counted_and_given_up_at_the_third_failure() -> None:
    reason = None
    for failures in range(1, MAX_READ_FAILURES):
        status, reason = after_failure(reason, RuntimeError("a parser bug"), 0.2) or ("", "")
        assert status == "received"
        assert (
            reason == f"reading it failed {failures} {'time' if failures == 1 else 'times'}"
            " (RuntimeError: a parser bug); it will be tried again"
        )
        assert failure_count(reason) == failures
    assert after_failure(reason, KeyError("x"), 0.2) == (
        "failed",
        "reading it failed 3 times (KeyError: 'x'); kept for the facilitator",
    )


def test_a_timeout_after_a_long_reading_is_final_at_once_and_a_short_one_counts_once() -> None:
    timeout = JobTimeoutException("Task exceeded maximum timeout value (180 seconds)")
    assert after_failure(None, timeout, 180.4) == (
        "failed",
        "reading it took longer than 180 s; kept for the facilitator",
    )
    # The job's time went on the messages before this one: it gets its own try later.
    status, reason = after_failure(None, timeout, 3.0) or ("", "")
    assert status == "received" and failure_count(reason) == 1


def test_the_database_going_away_is_no_fault_of_the_message() -> None:
    down = OperationalError("SELECT", {}, Exception("connection refused"))
    assert (
        after_failure(
            "reading it failed 2 times (ValueError: x); it will be tried again", down, 0.1
        )
        is None
    )
    assert failure_count(None) == 0
    assert failure_count("update version 1 (whole)") == 0


def test_a_timeout_hidden_behind_a_failed_rollback_still_counts_as_the_timeout() -> None:
    timeout = JobTimeoutException("Task exceeded maximum timeout value (180 seconds)")
    try:
        try:
            raise timeout
        except JobTimeoutException:
            raise OperationalError(
                "ROLLBACK", {}, Exception("another command is already in progress")
            )
    except OperationalError as error:
        assert worker_jobs._timeout_in(error) is timeout
    assert worker_jobs._timeout_in(RuntimeError("no")) is None


# --- the drain, in this process ------------------------------------------------------------------


def store(session: Session, request: UpdateRequest, body: str, sender: str) -> int:
    """A stored, unread reply, as the webhook leaves it."""
    message = reply(request.token, body, sender=("", sender))
    row = InboundMessage(
        dedupe_key=f"<{secrets.token_hex(8)}@mail.example>",
        source="raw",
        raw=bytes(message),
        fields={"SPF": "pass"},
        envelope_from=sender,
        envelope_to=f"reply+{request.token}@in.forum.example",
    )
    session.add(row)
    session.commit()
    return row.id


def stored_pair(session: Session, settings: Settings, cycle: Cycle) -> tuple[int, int]:
    """Two unread replies: Alice's (the poisoned one, stored first) and Ben's."""
    queue_requests(session, settings, cycle)
    session.commit()
    requests = {r.member.email: r for r in cycle.requests}
    first = store(session, requests[ALICE], "WINS\nThe bad one.", ALICE)
    second = store(session, requests[BEN], "WINS\nThe good one.", BEN)
    return first, second


def row(settings: Settings, inbound_id: int) -> InboundMessage:
    with db.session_scope(settings.database_url) as session:
        return session.scalars(select(InboundMessage).where(InboundMessage.id == inbound_id)).one()


def poisoned(first: int, poison: Any) -> Any:
    """`_process_inbound`, with `poison` for the first message while it is unread."""
    real = worker_jobs._process_inbound

    def process(session: Session, settings: Settings, inbound_id: int, now: datetime) -> Any:
        if inbound_id == first and session.get_one(InboundMessage, inbound_id).status == "received":
            return poison()
        return real(session, settings, inbound_id, now)

    return process


def sweep_later(settings: Settings) -> tuple[int, int]:
    return jobs.sweep(settings, now=clock.now() + jobs.SWEEP_GRACE + timedelta(minutes=1))


def test_a_timeout_in_the_drain_makes_that_message_final_and_ends_the_job(
    settings: Settings, session: Session, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = stored_pair(session, settings, cycle)
    monkeypatch.setattr(worker_jobs, "TIMEOUT_BLAME_S", 0.5)
    monkeypatch.setattr(worker_jobs, "_process_inbound", poisoned(first, lambda: time.sleep(30)))

    started = time.monotonic()
    # rq's own alarm, as a work horse sets it around the job.
    with pytest.raises(JobTimeoutException), UnixSignalDeathPenalty(1, JobTimeoutException):
        worker_jobs.process_pending()
    assert time.monotonic() - started < 10

    bad = row(settings, first)
    assert bad.status == "failed"
    assert bad.reason == "reading it took longer than 1 s; kept for the facilitator"
    assert bad.processed_at is not None
    # The drain stopped with the timeout: the next message waits for the next job, not for no limit.
    assert row(settings, second).status == "received"

    worker_jobs.process_pending()
    assert row(settings, second).status == "accepted"
    assert sweep_later(settings)[0] == 0  # the failed message is never retried
    assert row(settings, first).status == "failed"


def test_a_message_that_always_raises_is_given_up_after_three_drains_and_the_rest_go_on(
    settings: Settings, session: Session, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = stored_pair(session, settings, cycle)

    def parser_bug() -> None:
        raise RuntimeError("a parser bug")

    monkeypatch.setattr(worker_jobs, "_process_inbound", poisoned(first, parser_bug))
    worker_jobs.process_pending()  # the drain goes on past it
    assert row(settings, second).status == "accepted"
    bad = row(settings, first)
    assert (bad.status, bad.reason) == (
        "received",
        "reading it failed 1 time (RuntimeError: a parser bug); it will be tried again",
    )

    worker_jobs.process_pending()
    assert failure_count(row(settings, first).reason) == 2
    assert sweep_later(settings)[0] == 1  # its own job (in this process: the third failure)
    bad = row(settings, first)
    assert bad.status == "failed"
    assert (
        bad.reason
        == "reading it failed 3 times (RuntimeError: a parser bug); kept for the facilitator"
    )

    worker_jobs.process_pending()
    assert sweep_later(settings)[0] == 0
    assert row(settings, first).reason == bad.reason  # no fourth try


def test_a_message_read_after_a_failure_loses_the_count(
    settings: Settings, session: Session, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = stored_pair(session, settings, cycle)

    def parser_bug() -> None:
        raise RuntimeError("a parser bug")

    with monkeypatch.context() as patch:
        patch.setattr(worker_jobs, "_process_inbound", poisoned(first, parser_bug))
        worker_jobs.process_pending()
    worker_jobs.process_pending()
    read = row(settings, first)
    assert read.status == "accepted" and failure_count(read.reason) == 0


def test_the_own_job_raises_for_rq_until_the_message_is_final_then_returns(
    settings: Settings, session: Session, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = stored_pair(session, settings, cycle)

    def parser_bug() -> None:
        raise RuntimeError("a parser bug")

    monkeypatch.setattr(worker_jobs, "_process_inbound", poisoned(first, parser_bug))
    for _ in range(MAX_READ_FAILURES):
        with pytest.raises(RuntimeError):
            worker_jobs.process_inbound(first)  # raised: rq records it and applies Retry
    assert row(settings, first).status == "failed"
    worker_jobs.process_inbound(first)  # rq's next retry finds it done


def test_a_database_outage_is_retried_without_counting(
    settings: Settings, session: Session, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = stored_pair(session, settings, cycle)

    def database_down() -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(worker_jobs, "_process_inbound", poisoned(first, database_down))
    for _ in range(MAX_READ_FAILURES + 1):
        worker_jobs.process_pending()
    bad = row(settings, first)
    assert (bad.status, bad.reason) == ("received", None)


def test_a_reply_full_of_hostile_lines_is_read_in_seconds(
    settings: Settings, session: Session, cycle: Cycle
) -> None:
    """Lines that each held a worker for minutes to hours before issue 11 (see
    test_regex_safety.py): a closing pattern on 50k spaces, a quoted rating label, 40 digits
    under RATINGS."""
    queue_requests(session, settings, cycle)
    session.commit()
    alice = next(r for r in cycle.requests if r.member.email == ALICE)
    hostile = [
        " " * 50_000 + "x",
        "\xa0" * 50_000 + "x",
        "> business" + " " * 190 + "x",
        "1" * 40 + "x",
    ]
    body = (
        "RATINGS\n"
        + "\n".join(hostile)
        + "\n\nWINS\nOpened the Ohio plant.\n\n"
        + "\n".join(hostile)
    )
    inbound_id = store(session, alice, body, ALICE)

    started = time.monotonic()
    worker_jobs.process_pending()
    assert time.monotonic() - started < 10
    assert row(settings, inbound_id).status == "accepted"


# --- a real rq worker -----------------------------------------------------------------------------


def test_a_real_worker_gives_up_the_message_its_timeout_stopped_and_reads_the_next(
    redis_settings: Settings, session: Session, cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rq's SimpleWorker runs the drain under its own alarm (JobTimeoutException is an
    Exception: the drain used to swallow it and go on with no limit)."""
    from rq import SimpleWorker

    first, second = stored_pair(session, redis_settings, cycle)
    monkeypatch.setattr(worker_jobs, "TIMEOUT_BLAME_S", 1)
    monkeypatch.setattr(worker_jobs, "_process_inbound", poisoned(first, lambda: time.sleep(60)))
    queue = jobs.queue(redis_settings)
    drain = queue.enqueue_call(jobs.DRAIN_JOB, timeout=2, failure_ttl=jobs.FAILURE_TTL)

    started = time.monotonic()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert time.monotonic() - started < 30
    assert queue.failed_job_registry.get_job_ids() == [drain.id]
    assert "JobTimeoutException" in (drain.latest_result().exc_string or "")
    bad = row(redis_settings, first)
    assert (bad.status, bad.reason) == (
        "failed",
        "reading it took longer than 2 s; kept for the facilitator",
    )

    assert jobs.enqueue(jobs.DRAIN_JOB)  # the next nudge
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert row(redis_settings, second).status == "accepted"
    assert sweep_later(redis_settings)[0] == 0
