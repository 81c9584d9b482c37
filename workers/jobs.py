"""rq jobs: each takes row ids, opens a session, calls one domain function, commits, then
enqueues what follows. Exceptions propagate so rq records the failure and applies Retry."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime

from rq.timeouts import JobTimeoutException
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app import clock, jobs, mail
from app.asks.tick import tick as _asks_tick
from app.cycles import tick as _tick
from app.db import session_scope
from app.inbox import Outcome
from app.meeting.schedule import tick as _meeting_tick
from app.models import InboundMessage, InboundStatus, Packet
from app.packets import compile_packet as _compile_packet
from app.packets import write_packet_files
from app.replies import process_inbound as _process_inbound
from app.settings import Settings, current_settings

log = logging.getLogger(__name__)


def process_inbound(inbound_id: int) -> None:
    """Read one stored message and act on it. Safe to run twice.

    A failure is counted on the row (see `_record_failure`) and raised, so rq's Retry applies
    until the row is final.
    """
    settings = current_settings()
    started = time.monotonic()
    try:
        with session_scope(settings.database_url) as session:
            outcome = _process_inbound(session, settings, inbound_id, clock.now())
            session.commit()
    except Exception as error:
        timeout = _timeout_in(error)
        _record_failure(settings, inbound_id, timeout or error, time.monotonic() - started)
        raise
    _after_processing(outcome)


def _after_processing(outcome: Outcome) -> None:
    jobs.enqueue_sends(outcome.outbound_ids)
    for cycle_id in outcome.recompile_cycle_ids:
        jobs.enqueue_compile(cycle_id)


DRAIN_SECONDS = 60  # then a fresh job takes over, so that no job runs near its timeout


def process_pending() -> None:
    """Read every stored message not read yet, oldest first, each in its own transaction: the
    webhook's nudge (app.jobs.nudge_inbound).

    Several may run at once: each claims a row with SKIP LOCKED. A message whose processing
    raises is counted on its row (see `_record_failure`) and, until that makes it final, left
    `received` for the sweep, which gives it a job of its own with rq's retries; this job goes
    on with the others. rq's job timeout is no such failure: the message it stopped is made
    final and the timeout raised, so that rq ends this job and the messages left get a new one.
    """
    settings = current_settings()
    jobs.clear_inbound_nudge(settings)  # before looking: see nudge_inbound
    failed: set[int] = set()
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        inbound_id: int | None = None
        started = time.monotonic()
        try:
            with session_scope(settings.database_url) as session:
                inbound_id = _claim_pending(session, failed)
                if inbound_id is None:
                    return
                outcome = _process_inbound(session, settings, inbound_id, clock.now())
                session.commit()
        except Exception as error:
            if inbound_id is None:
                raise  # the claim failed: the database's trouble, not a message's
            # The session is rolled back and closed by now: the claim's row lock is gone.
            timeout = _timeout_in(error)
            _record_failure(settings, inbound_id, timeout or error, time.monotonic() - started)
            if timeout is not None:
                raise
            log.exception(
                "inbound message %s could not be processed; the sweep will retry it", inbound_id
            )
            failed.add(inbound_id)
            continue
        _after_processing(outcome)
    jobs.enqueue(jobs.DRAIN_JOB)  # time is up and there may be more


# Reading a message raised this many times: it is given up as unreadable (status failed).
MAX_READ_FAILURES = 3
# A job timeout after this long on one message is that message's doing: it is given up at once.
# After less, the job's time went on the messages before it, and the timeout counts as a failure.
TIMEOUT_BLAME_S = 60
# While the row is still `received`, its reason counts the failures: the count is kept in the
# database without a column of its own, so a lost Redis or a fresh rq job does not reset it.
_FAILURES = re.compile(r"reading it failed (\d+) times? ")


def failure_count(reason: str | None) -> int:
    """How many times reading a still-`received` message failed, from its reason."""
    m = _FAILURES.match(reason or "")
    return int(m.group(1)) if m else 0


def after_failure(
    reason: str | None, error: BaseException, seconds: float
) -> tuple[InboundStatus, str] | None:
    """The row's status and reason after reading it raised `error` after `seconds`; None when the
    error says nothing about the message (the database went away: it is retried, uncounted)."""
    if isinstance(error, JobTimeoutException) and seconds >= TIMEOUT_BLAME_S:
        return (
            InboundStatus.FAILED,
            f"reading it took longer than {seconds:.0f} s; kept for the facilitator",
        )
    if isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        return None
    failures = failure_count(reason) + 1
    error_text = f"{type(error).__name__}: {error}"[:200]
    said = f"reading it failed {failures} {'time' if failures == 1 else 'times'} ({error_text})"
    if failures >= MAX_READ_FAILURES:
        return InboundStatus.FAILED, f"{said}; kept for the facilitator"
    return InboundStatus.RECEIVED, f"{said}; it will be tried again"


def _timeout_in(error: BaseException | None) -> JobTimeoutException | None:
    """rq's job timeout, also when it is the context of another error: rolling back a query the
    timeout interrupted can raise again, and the job must still stop."""
    while error is not None:
        if isinstance(error, JobTimeoutException):
            return error
        error = error.__context__
    return None


def _record_failure(
    settings: Settings, inbound_id: int, error: BaseException, seconds: float
) -> None:
    """Count a failed reading on the row, in a transaction of its own; the last allowed failure,
    or a job timeout, makes the row final (failed) so no sweep retries it. Commits."""
    with session_scope(settings.database_url) as session:
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update()
        ).one_or_none()
        if row is None or row.status != InboundStatus.RECEIVED:
            return  # read after all (the timeout came after the commit), or by another job
        change = after_failure(row.reason, error, seconds)
        if change is None:
            return
        row.status, row.reason = change
        if row.status == InboundStatus.FAILED:
            row.processed_at = clock.now()
            log.error("inbound message %s given up: %s", inbound_id, row.reason)
        session.commit()


def _claim_pending(session: Session, skip: set[int]) -> int | None:
    """Lock the oldest unread message no other drain holds; its id, or None."""
    return session.scalar(
        select(InboundMessage.id)
        .where(InboundMessage.status == InboundStatus.RECEIVED, InboundMessage.id.not_in(skip))
        .order_by(InboundMessage.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def tick_asks(settings: Settings, now: datetime) -> tuple[list[int], bool]:
    """The asks' share of the tick (app.asks.tick): digests due, follow-ups; then enqueue them.
    Returns the emails queued and whether Redis took them."""
    with session_scope(settings.database_url) as session:
        queued = _asks_tick(session, settings, now)
        session.commit()
    return queued, jobs.enqueue_sends(queued)


def send_outbound(*outbound_ids: int) -> None:
    """Send these queued emails, each in its own transaction. Safe to run twice: a sent row is
    left alone.

    The first transient failure (429, 5xx, a timeout) ends the job with that error, and rq
    retries the whole job after its backoff: hammering a provider that asks us to wait helps
    nobody, and the emails already sent are skipped on the retry.
    """
    settings = current_settings()
    with session_scope(settings.database_url) as session:
        for outbound_id in outbound_ids:
            mail.deliver(session, settings, outbound_id)


def compile_packet(cycle_id: int) -> dict[str, object]:
    """Compile the cycle's packet (a new version only if it changed) and mail it; returns what
    happened (version, whether it is new, the emails queued) for `roundtable compile`."""
    settings = current_settings()
    with session_scope(settings.database_url) as session:
        compiled = _compile_packet(session, settings, cycle_id, clock.now())
        session.commit()
        packet = session.get_one(Packet, compiled.packet_id)
        write_packet_files(packet, settings.packets_dir)
    sent = jobs.enqueue_sends(compiled.outbound_ids)
    return {"version": compiled.version, "is_new": compiled.is_new, "outbound_ids": compiled.outbound_ids, "enqueued": sent}


TICK_CHUNK = 200  # cycles per transaction: workers start sending while a big tick goes on


def tick() -> dict[str, object]:
    """Queue whatever is due for every group, chunk by chunk, then sweep up lost nudges; returns
    what it did, for `roundtable tick`.

    Safe to run twice, and two at once: see app.cycles.tick.
    """
    settings = current_settings()
    now = clock.now()
    with session_scope(settings.database_url) as session:  # first: it may make cycles whose requests are due
        meeting_ids = _meeting_tick(session, settings, now)
        session.commit()
    asks_ids, asks_reached = tick_asks(settings, now)
    after_id = 0
    queued: list[int] = meeting_ids + asks_ids
    compiled: list[int] = []
    reached = jobs.enqueue_sends(meeting_ids) and asks_reached
    while True:
        with session_scope(settings.database_url) as session:
            result = _tick(session, settings, now, after_id=after_id, limit=TICK_CHUNK)
            session.commit()
        queued += result.outbound_ids
        reached = jobs.enqueue_sends(result.outbound_ids) and reached
        for cycle_id in result.compile_cycle_ids:
            compiled.append(cycle_id)
            reached = jobs.enqueue_compile(cycle_id) and reached
        if result.last_cycle_id is None:
            break
        after_id = result.last_cycle_id
    inbound, outbound = jobs.sweep(settings)
    return {"outbound_ids": queued, "compile_cycle_ids": compiled, "swept": [inbound, outbound], "enqueued": reached}
