"""Background jobs: rq on Redis when REDIS_URL is set, otherwise run in-process.

The web side names jobs by dotted path (``workers.jobs.process_inbound``) so that `app/` never
imports `workers/`. Callers enqueue only after their commit: a job is a nudge to look at a row
that already exists, and a lost nudge is made good by the sweep (`roundtable requeue`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from importlib import import_module
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from app import clock
from app.db import session_scope
from app.models import InboundMessage, InboundStatus, OutboundMessage, OutboundStatus
from app.settings import Settings, current_settings

log = logging.getLogger(__name__)

QUEUE_NAME = "roundtable"
# The jobs, by dotted path: `app/` names them, `workers/` defines them.
PROCESS_JOB = "workers.jobs.process_inbound"
DRAIN_JOB = "workers.jobs.process_pending"
SEND_JOB = "workers.jobs.send_outbound"
COMPILE_JOB = "workers.jobs.compile_packet"
TICK_JOB = "workers.jobs.tick"
FAILURE_TTL = 30 * 24 * 3600  # a failed job stays visible (rq info, the failed registry) a month
# Jobs return nothing worth keeping: the row is the result. result_ttl=0 saves Redis writes.
# 429/5xx/timeouts from SendGrid and lock timeouts are retried: a few quick tries, then slower.
DEFAULT_RETRY = Retry(max=5, interval=[10, 30, 120, 600, 1800])
ENDED_STATUSES = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})


@cache
def redis_connection(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def queue(settings: Settings) -> Queue:
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL is not set: jobs run in-process")
    return Queue(QUEUE_NAME, connection=redis_connection(settings.redis_url))


def enqueue(path: str, *args: Any, job_id: str | None = None, timeout: int = 180) -> bool:
    """Run or enqueue the job at dotted `path`; False when Redis was unreachable.

    Call only after the commit that made the rows the job will read.
    """
    settings = current_settings()
    if settings.jobs_inline:
        try:
            run(path, *args)
        except Exception:
            # As rq would record a failed job: the row stays pending and the sweep retries it.
            log.exception("in-process job %s%r failed", path, args)
            return False
        return True
    target = queue(settings)

    def put() -> None:
        options = dict(
            args=args, job_id=job_id, timeout=timeout, retry=DEFAULT_RETRY, failure_ttl=FAILURE_TTL, result_ttl=0
        )
        if job_id is not None:
            target.enqueue_call(path, unique=True, **options)
            return
        with target.connection.pipeline() as pipe:  # one round trip to Redis instead of several
            target.enqueue_call(path, pipeline=pipe, **options)
            pipe.execute()

    try:
        try:
            put()
        except DuplicateJobError:
            # rq keeps a job id taken while the old job's hash lives: result_ttl after it
            # finished, failure_ttl (30 days) after it failed for good. Only a job that has yet
            # to run is the same nudge; a finished or failed one is replaced, or the sweep
            # could never make good a job that gave up.
            old = Job.fetch(job_id or "", connection=target.connection)
            if old.get_status(refresh=False) in ENDED_STATUSES:
                old.delete()
                put()
    except (DuplicateJobError, NoSuchJobError):
        pass  # the same nudge is already waiting (or another process just replaced it)
    except RedisError as error:
        # The row is stored; the sweep enqueues it once Redis is back.
        log.warning("could not enqueue %s%r: %s", path, args, error)
        return False
    return True


SEND_BATCH = 50  # emails per send job: rq's bookkeeping for one job costs about what one send does
# Seconds for one send job (SEND_BATCH sends, each bounded by the client's timeout). It also
# bounds how long the rows of a worker killed mid-job stay with that job: rq retries it once
# its heartbeat has been silent for this long plus a minute.
SEND_TIMEOUT = 300


def batches(ids: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(ids[start : start + size]) for start in range(0, len(ids), size)]


def enqueue_sends(outbound_ids: list[int]) -> bool:
    """Nudge workers to send these queued emails, SEND_BATCH to a job; False if Redis was
    unreachable (the sweep makes that good). Call after the commit that made the rows."""
    return enqueue_many(SEND_JOB, batches(outbound_ids, SEND_BATCH), timeout=SEND_TIMEOUT)


# The webhook's nudge. While this key lives, a drain job is queued that has not started yet, and
# it will see every message stored before it starts: the webhook then needs no job of its own.
INBOUND_NUDGE_KEY = "roundtable:inbound:nudge"
# A nudge whose job could not be enqueued (Redis gone between the two calls) mutes later nudges
# for at most this long; the sweep covers the rows meanwhile.
INBOUND_NUDGE_TTL_S = 60


def nudge_inbound() -> bool:
    """See that a worker reads the stored messages soon (after the commit that stored them).

    One Redis round trip when a drain job is already on its way, which under load is nearly
    always: a full rq enqueue costs the webhook several times that. False when Redis was
    unreachable (the sweep makes that good).
    """
    settings = current_settings()
    if settings.jobs_inline:
        return enqueue(DRAIN_JOB)
    try:
        if not redis_connection(settings.redis_url or "").set(INBOUND_NUDGE_KEY, 1, nx=True, ex=INBOUND_NUDGE_TTL_S):
            return True  # a drain job is queued and has not looked yet: it will see this message
    except RedisError as error:
        log.warning("could not nudge the inbound drain: %s", error)
        return False
    return enqueue(DRAIN_JOB)


class Coalesced:
    """Runs `action` at once when it has not run for `window_s`; otherwise once when the window
    ends, for every call made in it. Each call is followed by a run that starts after the call.

    Under load the webhook then talks to Redis a few times a second per process instead of once
    per message, and a message waits at most `window_s` longer for its worker.
    """

    def __init__(
        self,
        action: Callable[[], object],
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], Any] = threading.Timer,
    ) -> None:
        self._action, self._window_s, self._clock, self._timer = action, window_s, clock, timer
        self._lock = threading.Lock()
        self._last_run = float("-inf")
        self._trailing: Any = None

    def __call__(self) -> None:
        with self._lock:
            now = self._clock()
            if self._trailing is None and now - self._last_run >= self._window_s:
                self._last_run = now
            else:
                if self._trailing is None:
                    self._trailing = self._timer(self._last_run + self._window_s - now, self._run_trailing)
                    self._trailing.daemon = True
                    self._trailing.start()
                return
        self._action()

    def _run_trailing(self) -> None:
        with self._lock:
            self._trailing = None
            self._last_run = self._clock()
        self._action()


NUDGE_WINDOW_S = 0.25
_coalesced_nudges: dict[int, Coalesced] = {}


def nudge_inbound_soon() -> None:
    """`nudge_inbound` for the webhook: at once, or with the others of the next quarter second.

    In-process jobs (no Redis) run at once: there the nudge is the processing itself.
    """
    if current_settings().jobs_inline:
        nudge_inbound()
        return
    pid = os.getpid()  # a forked process starts with no timer of its own: make it a fresh one
    if pid not in _coalesced_nudges:
        _coalesced_nudges[pid] = Coalesced(nudge_inbound, NUDGE_WINDOW_S)
    _coalesced_nudges[pid]()


def clear_inbound_nudge(settings: Settings) -> None:
    """Called by a drain job before it looks: a message stored from now on nudges anew."""
    if not settings.jobs_inline:
        redis_connection(settings.redis_url or "").delete(INBOUND_NUDGE_KEY)


def enqueue_compile(cycle_id: int) -> bool:
    return enqueue(COMPILE_JOB, cycle_id, timeout=600)


def enqueue_many(path: str, calls: list[tuple[Any, ...]], *, timeout: int = 180, chunk: int = 1000) -> bool:
    """Enqueue one job per tuple of arguments, pipelined, with no uniqueness check."""
    settings = current_settings()
    if settings.jobs_inline:
        return all([enqueue(path, *args) for args in calls])
    target = queue(settings)
    try:
        for start in range(0, len(calls), chunk):
            with target.connection.pipeline() as pipe:
                target.enqueue_many(
                    [
                        Queue.prepare_data(
                            path, args=args, timeout=timeout, retry=DEFAULT_RETRY, failure_ttl=FAILURE_TTL, result_ttl=0
                        )
                        for args in calls[start : start + chunk]
                    ],
                    pipeline=pipe,
                )
                pipe.execute()
    except RedisError as error:
        log.warning("could not enqueue %d %s jobs: %s", len(calls), path, error)  # the sweep will
        return False
    return True


def held_by_send_jobs(settings: Settings) -> set[int]:
    """Outbound ids that a send job in Redis still holds: waiting, running, or waiting for its
    retry. The sweep leaves those to their job (and to its backoff)."""
    if settings.jobs_inline:
        return set()
    target = queue(settings)
    job_ids = (
        target.get_job_ids()
        + target.started_job_registry.get_job_ids()
        + target.scheduled_job_registry.get_job_ids()
    )
    held: set[int] = set()
    for job in Job.fetch_many(job_ids, connection=target.connection):
        if job is not None and job.func_name == SEND_JOB:
            held.update(job.args)
    return held


def run(path: str, *args: Any) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)(*args)


def redis_ok(settings: Settings) -> bool | None:
    """True/False for Redis reachability; None when no Redis is configured."""
    if settings.redis_url is None:
        return None
    try:
        return bool(redis_connection(settings.redis_url).ping())
    except RedisError:
        return False


SWEEP_GRACE = timedelta(seconds=60)


def within_grace(settings: Settings, now: datetime) -> tuple[int, int]:
    """Received messages and queued emails younger than SWEEP_GRACE: their own jobs have them,
    so the sweep leaves them alone (`roundtable requeue` says so)."""
    cutoff = now - SWEEP_GRACE
    with session_scope(settings.database_url) as session:
        inbound = session.scalar(
            select(func.count(InboundMessage.id)).where(
                InboundMessage.status == InboundStatus.RECEIVED, InboundMessage.received_at > cutoff
            )
        )
        outbound = session.scalar(
            select(func.count(OutboundMessage.id)).where(
                OutboundMessage.status == OutboundStatus.QUEUED, OutboundMessage.created_at > cutoff
            )
        )
    return inbound or 0, outbound or 0


def sweep(settings: Settings, now: datetime | None = None) -> tuple[int, int]:
    """Enqueue stored-but-unprocessed inbound mail and unsent outbound mail; return the counts.

    The database is the truth and Redis only a nudge: this makes good any nudge that was lost
    (Redis down, a worker killed). Rows younger than a minute are left to their own jobs.
    """
    cutoff = (now or clock.now()) - SWEEP_GRACE
    with session_scope(settings.database_url) as session:
        inbound = list(
            session.scalars(
                select(InboundMessage.id)
                .where(InboundMessage.status == InboundStatus.RECEIVED, InboundMessage.received_at <= cutoff)
                .order_by(InboundMessage.id)
            )
        )
        outbound = list(
            session.scalars(
                select(OutboundMessage.id)
                .where(OutboundMessage.status == OutboundStatus.QUEUED, OutboundMessage.created_at <= cutoff)
                .order_by(OutboundMessage.id)
            )
        )
    for inbound_id in inbound:
        enqueue(PROCESS_JOB, inbound_id, job_id=f"inbound-{inbound_id}")
    if outbound:
        try:
            held = held_by_send_jobs(settings)
        except RedisError as error:
            log.warning("sweep: could not read the send jobs: %s", error)
            return len(inbound), 0
        outbound = [outbound_id for outbound_id in outbound if outbound_id not in held]
        enqueue_sends(outbound)
    return len(inbound), len(outbound)
