"""rq jobs: each takes row ids, opens a session, calls one domain function, commits, then
enqueues what follows. Exceptions propagate so rq records the failure and applies Retry."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, jobs, mail
from app.cycles import tick as _tick
from app.db import session_scope
from app.models import InboundMessage, InboundStatus, Packet
from app.packets import compile_packet as _compile_packet
from app.packets import write_packet_files
from app.replies import Outcome
from app.replies import process_inbound as _process_inbound
from app.settings import current_settings

log = logging.getLogger(__name__)


def process_inbound(inbound_id: int) -> None:
    """Read one stored message and act on it. Safe to run twice."""
    settings = current_settings()
    with session_scope(settings.database_url) as session:
        outcome = _process_inbound(session, settings, inbound_id, clock.now())
        session.commit()
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
    raises is logged and left `received` for the sweep, which gives it a job of its own with
    rq's retries; this job goes on with the others.
    """
    settings = current_settings()
    jobs.clear_inbound_nudge(settings)  # before looking: see nudge_inbound
    failed: set[int] = set()
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as session:
            inbound_id = _claim_pending(session, failed)
            if inbound_id is None:
                return
            try:
                outcome = _process_inbound(session, settings, inbound_id, clock.now())
                session.commit()
            except Exception:
                session.rollback()
                log.exception("inbound message %s could not be processed; the sweep will retry it", inbound_id)
                failed.add(inbound_id)
                continue
        _after_processing(outcome)
    jobs.enqueue(jobs.DRAIN_JOB)  # time is up and there may be more


def _claim_pending(session: Session, skip: set[int]) -> int | None:
    """Lock the oldest unread message no other drain holds; its id, or None."""
    return session.scalar(
        select(InboundMessage.id)
        .where(InboundMessage.status == InboundStatus.RECEIVED, InboundMessage.id.not_in(skip))
        .order_by(InboundMessage.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


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


def compile_packet(cycle_id: int) -> None:
    """Compile the cycle's packet (a new version only if it changed) and mail it."""
    settings = current_settings()
    with session_scope(settings.database_url) as session:
        compiled = _compile_packet(session, settings, cycle_id, clock.now())
        session.commit()
        packet = session.get_one(Packet, compiled.packet_id)
        write_packet_files(packet, settings.packets_dir)
    jobs.enqueue_sends(compiled.outbound_ids)


TICK_CHUNK = 200  # cycles per transaction: workers start sending while a big tick goes on


def tick() -> None:
    """Queue whatever is due for every group, chunk by chunk, then sweep up lost nudges.

    Safe to run twice, and two at once: see app.cycles.tick.
    """
    settings = current_settings()
    now = clock.now()
    after_id = 0
    while True:
        with session_scope(settings.database_url) as session:
            result = _tick(session, settings, now, after_id=after_id, limit=TICK_CHUNK)
            session.commit()
        jobs.enqueue_sends(result.outbound_ids)
        for cycle_id in result.compile_cycle_ids:
            jobs.enqueue_compile(cycle_id)
        if result.last_cycle_id is None:
            break
        after_id = result.last_cycle_id
    jobs.sweep(settings)
