"""Jobs end to end on real Redis with a real rq worker in burst mode.

Needs REDIS_URL (CI always sets it; the `redis_settings` fixture skips without it). The worker
is rq's SimpleWorker: jobs run in this process, so they see the settings the test configured.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from rq import Retry, SimpleWorker
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import clock, db, jobs
from app.cycles import queue_requests
from app.jobs import PROCESS_JOB
from app.models import (
    Cycle,
    Group,
    InboundMessage,
    Member,
    OutboundMessage,
    Update,
    UpdateRequest,
)
from app.settings import Settings, configure
from app.web import create_app
from tests.conftest import AUTH, SendGridStandIn, make_cycle
from tests.mails import raw_mode, reply

ALICE = "alice@northwind.example"
BEN = "ben@okafor.example"


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture()
def web(redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """The webhook app on Redis settings (the `client` fixture is bound to in-process jobs).
    Its nudges go out at once: the coalescing window has tests of its own below."""
    monkeypatch.setattr(jobs, "_coalesced_nudges", {os.getpid(): jobs.Coalesced(jobs.nudge_inbound, 0.0)})
    return create_app(redis_settings).test_client()


def run_worker(settings: Settings) -> list[str]:
    """Run every queued job, and any job they enqueue, in one burst; return the ids of jobs that
    raised (failed for good, or scheduled for a retry: a burst worker does not wait for those)."""
    queue = jobs.queue(settings)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    return queue.failed_job_registry.get_job_ids() + queue.scheduled_job_registry.get_job_ids()


def post_reply(
    client: FlaskClient, token: str, body: str, message_id: str | None = None, sender: str = ALICE
) -> Any:
    data, content_type = raw_mode(reply(token, body, message_id=message_id, sender=("", sender)))
    return client.post(
        "/inbound/sendgrid", data=data, headers={**AUTH, "Content-Type": content_type}
    )


def fetch(settings: Settings, statement: Any) -> list[Any]:
    """Rows as committed, read in a fresh session (the worker wrote them in its own)."""
    with db.session_scope(settings.database_url) as session:
        return list(session.scalars(statement))


def inbound_status(settings: Settings, inbound_id: int) -> str:
    [status] = fetch(settings, select(InboundMessage.status).where(InboundMessage.id == inbound_id))
    return status


def outbox_files(settings: Settings) -> list[Path]:
    return sorted(Path(settings.outbox_dir).glob("*.eml"))


def token_of(settings: Settings, email: str) -> str:
    [token] = fetch(
        settings,
        select(UpdateRequest.token).join(UpdateRequest.member).where(Member.email == email),
    )
    return token


def requests_queued(session: Session, settings: Settings, cycle: Cycle) -> None:
    queue_requests(session, settings, cycle)
    session.commit()


def after_grace() -> datetime:
    return clock.now() + jobs.SWEEP_GRACE + timedelta(minutes=1)


def cycle_due_now(session: Session, group: Group) -> Cycle:
    """A meeting ten days ahead on the real clock: its requests are due (14 days before), its
    first reminder (7 days before) and deadline are not, whatever the time of day."""
    today = clock.now().astimezone(ZoneInfo(group.timezone)).date()
    cycle = make_cycle(session, group, day=today + timedelta(days=10))
    session.commit()
    return cycle


# --- the whole loop --------------------------------------------------------------------------------


def test_tick_sends_requests_and_the_worker_processes_a_reply(
    redis_settings: Settings, session: Session, group: Group, web: FlaskClient
) -> None:
    cycle_due_now(session, group)
    queue = jobs.queue(redis_settings)

    jobs.run("workers.jobs.tick")
    assert queue.count == 1  # one send job for the group's three requests, nothing sent yet
    assert outbox_files(redis_settings) == []

    assert run_worker(redis_settings) == []
    assert len(outbox_files(redis_settings)) == 3
    assert fetch(redis_settings, select(OutboundMessage.status)) == ["sent"] * 3

    response = post_reply(web, token_of(redis_settings, ALICE), "WINS\nClosed the Series A.")
    assert response.status_code == 200
    inbound_id = response.get_json()["id"]
    # Stored and nudged, not processed: the webhook only stores.
    assert [job.func_name for job in queue.get_jobs()] == [jobs.DRAIN_JOB]
    assert inbound_status(redis_settings, inbound_id) == "received"
    assert fetch(redis_settings, select(Update)) == []

    assert run_worker(redis_settings) == []
    assert inbound_status(redis_settings, inbound_id) == "accepted"
    [update] = fetch(redis_settings, select(Update))
    assert update.sections["texts"]["wins"] == "Closed the Series A."
    [receipt] = fetch(
        redis_settings, select(OutboundMessage).where(OutboundMessage.kind == "receipt")
    )
    assert (receipt.status, receipt.to_email) == ("sent", ALICE)
    files = outbox_files(redis_settings)
    assert len(files) == 4
    assert any(path.name == receipt.provider_message_id for path in files)

    # Run it twice: no new rows, no second send.
    jobs.run("workers.jobs.tick")
    assert run_worker(redis_settings) == []
    assert outbox_files(redis_settings) == files
    assert len(fetch(redis_settings, select(OutboundMessage))) == 4


def test_webhook_stores_while_redis_is_down_and_the_sweep_enqueues_later(
    redis_settings: Settings, session: Session, cycle: Cycle
) -> None:
    requests_queued(session, redis_settings, cycle)
    redis_down = dataclasses.replace(redis_settings, redis_url="redis://127.0.0.1:1/0")
    client = create_app(redis_down).test_client()  # configures redis_down for enqueue()

    response = post_reply(client, token_of(redis_settings, ALICE), "WINS\nShipped version 2.")

    assert response.status_code == 200  # stored: SendGrid must not drop or retry it
    inbound_id = response.get_json()["id"]
    assert inbound_status(redis_settings, inbound_id) == "received"

    configure(redis_settings)  # Redis is back
    queue = jobs.queue(redis_settings)
    assert queue.count == 0
    # The reply, and the three requests that were queued above without a nudge.
    assert jobs.sweep(redis_settings, now=after_grace()) == (1, 3)
    assert f"inbound-{inbound_id}" in queue.job_ids

    assert run_worker(redis_settings) == []
    assert inbound_status(redis_settings, inbound_id) == "accepted"
    [update] = fetch(redis_settings, select(Update))
    assert update.sections["texts"]["wins"] == "Shipped version 2."


def test_sweep_leaves_young_rows_to_their_own_jobs(
    redis_settings: Settings, session: Session, cycle: Cycle
) -> None:
    requests_queued(session, redis_settings, cycle)
    assert jobs.sweep(redis_settings, now=clock.now()) == (0, 0)
    assert jobs.queue(redis_settings).count == 0


def test_duplicate_nudges_process_the_reply_once(
    redis_settings: Settings, session: Session, cycle: Cycle, web: FlaskClient
) -> None:
    requests_queued(session, redis_settings, cycle)
    token = token_of(redis_settings, ALICE)
    queue = jobs.queue(redis_settings)

    first = post_reply(web, token, "WINS\nOpened the Ohio plant.", message_id="<dup@mail.example>")
    again = post_reply(web, token, "WINS\nOpened the Ohio plant.", message_id="<dup@mail.example>")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.get_json() == {"id": first.get_json()["id"], "duplicate": True}
    inbound_id = first.get_json()["id"]
    # The same job id again, an anonymous nudge (a second job for the same row), and the sweep.
    assert jobs.enqueue(PROCESS_JOB, inbound_id, job_id=f"inbound-{inbound_id}")
    assert jobs.enqueue(PROCESS_JOB, inbound_id)
    assert jobs.sweep(redis_settings, now=after_grace()) == (1, 3)
    inbound_jobs = [job for job in queue.get_jobs() if job.func_name == PROCESS_JOB]
    assert len(inbound_jobs) == 2  # rq collapsed the ones sharing `inbound-N`; two really run

    assert run_worker(redis_settings) == []

    assert inbound_status(redis_settings, inbound_id) == "accepted"
    assert len(fetch(redis_settings, select(Update))) == 1
    [receipt] = fetch(
        redis_settings, select(OutboundMessage).where(OutboundMessage.kind == "receipt")
    )
    assert receipt.status == "sent"
    receipts = [path for path in outbox_files(redis_settings) if "-receipt-" in path.name]
    assert len(receipts) == 1
    assert jobs.sweep(redis_settings, now=after_grace()) == (0, 0)


def test_sweep_re_enqueues_a_row_whose_job_gave_up(
    redis_settings: Settings,
    session: Session,
    cycle: Cycle,
    web: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job that failed for good keeps its id in Redis for `failure_ttl`; the sweep must still
    be able to nudge the row again once the cause is fixed."""
    requests_queued(session, redis_settings, cycle)
    monkeypatch.setattr("app.jobs.DEFAULT_RETRY", Retry(max=1))  # retry at once, then give up

    def database_down(*args: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    with monkeypatch.context() as patch:
        patch.setattr("workers.jobs._process_inbound", database_down)
        response = post_reply(web, token_of(redis_settings, ALICE), "WINS\nHired a CFO.")
        inbound_id = response.get_json()["id"]
        assert run_worker(redis_settings) == []  # the drain logs it and leaves it to the sweep
        assert jobs.sweep(redis_settings, now=after_grace())[0] == 1
        assert run_worker(redis_settings) == [f"inbound-{inbound_id}"]  # its own job gives up
    assert inbound_status(redis_settings, inbound_id) == "received"

    assert jobs.sweep(redis_settings, now=after_grace())[0] == 1
    assert f"inbound-{inbound_id}" in jobs.queue(redis_settings).job_ids
    assert run_worker(redis_settings) == []  # the failed job was replaced, not kept beside

    assert inbound_status(redis_settings, inbound_id) == "accepted"
    assert len(fetch(redis_settings, select(Update))) == 1


# --- sending in batches ----------------------------------------------------------------------------


def queued_ids(settings: Settings) -> list[int]:
    return fetch(settings, select(OutboundMessage.id).order_by(OutboundMessage.id))


def sends(settings: Settings) -> list[tuple[str, int]]:
    return [
        (row.status, row.attempts)
        for row in fetch(settings, select(OutboundMessage).order_by(OutboundMessage.id))
    ]


@pytest.fixture()
def redis_sendgrid(redis_settings: Settings, sendgrid_settings: Settings) -> Settings:
    """The stand-in SendGrid and real Redis; a timeout long enough for a worker in a process."""
    value = dataclasses.replace(sendgrid_settings, redis_url=redis_settings.redis_url, sendgrid_timeout_s=30.0)
    configure(value)
    return value


def test_the_sweep_leaves_rows_to_a_send_job_that_waits_or_waits_for_its_retry(
    redis_sendgrid: Settings, sendgrid_api: SendGridStandIn, session: Session, cycle: Cycle
) -> None:
    requests_queued(session, redis_sendgrid, cycle)
    queue = jobs.queue(redis_sendgrid)
    assert jobs.enqueue_sends(queued_ids(redis_sendgrid))
    assert jobs.sweep(redis_sendgrid, now=after_grace()) == (0, 0)  # the job still waits
    assert queue.count == 1

    sendgrid_api.statuses.append(429)  # SendGrid asks us to slow down: the job stops at once
    [job_id] = queue.job_ids
    assert run_worker(redis_sendgrid) == [job_id]  # scheduled for its retry, with backoff
    assert sends(redis_sendgrid) == [("queued", 1), ("queued", 0), ("queued", 0)]
    assert len(sendgrid_api.calls) == 1
    assert jobs.sweep(redis_sendgrid, now=after_grace()) == (0, 0)  # the retry holds the rows

    # The retry comes due: one attempt more for the first, the others go out once.
    queue.scheduled_job_registry.remove(job_id)
    queue.enqueue_job(queue.fetch_job(job_id))
    assert run_worker(redis_sendgrid) == []
    assert sends(redis_sendgrid) == [("sent", 2), ("sent", 1), ("sent", 1)]
    message_ids = [call.body["headers"]["Message-ID"] for call in sendgrid_api.calls]
    assert message_ids[0] == message_ids[1] and len(set(message_ids)) == 3
    assert jobs.sweep(redis_sendgrid, now=after_grace()) == (0, 0)


def test_a_batch_goes_on_past_an_email_refused_for_good(
    redis_sendgrid: Settings, sendgrid_api: SendGridStandIn, session: Session, cycle: Cycle
) -> None:
    requests_queued(session, redis_sendgrid, cycle)
    assert jobs.enqueue_sends(queued_ids(redis_sendgrid))
    sendgrid_api.statuses.append(400)
    assert run_worker(redis_sendgrid) == []
    assert sends(redis_sendgrid) == [("failed", 1), ("sent", 1), ("sent", 1)]


def worker_process(settings: Settings, folder: Path) -> subprocess.Popen[bytes]:
    """`roundtable worker --burst` in a process of its own, configured by the environment."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "MAIL_TRANSPORT": settings.mail_transport,
        "SENDGRID_API_KEY": settings.sendgrid_api_key or "",
        "SENDGRID_API_HOST": settings.sendgrid_api_host,
        "SENDGRID_TIMEOUT": str(settings.sendgrid_timeout_s),
        "MAIL_FROM": settings.mail_from,
        "INBOUND_DOMAIN": settings.inbound_domain,
        "BASE_URL": settings.base_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--burst"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_worker_killed_in_the_middle_of_a_send_is_restarted_and_loses_nothing(
    redis_sendgrid: Settings,
    sendgrid_api: SendGridStandIn,
    session: Session,
    cycle: Cycle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SIGKILL while SendGrid holds the second email of a batch: the first stays sent, and once
    rq gives up on the dead worker's heartbeat the job runs again and sends the other two, the
    second with the Message-ID it already carried."""
    monkeypatch.setattr("app.jobs.DEFAULT_RETRY", Retry(max=1))  # an abandoned job runs again at once
    requests_queued(session, redis_sendgrid, cycle)
    queue = jobs.queue(redis_sendgrid)
    assert jobs.enqueue_sends(queued_ids(redis_sendgrid))
    sendgrid_api.hold_call = 2

    worker = worker_process(redis_sendgrid, tmp_path)
    try:
        assert sendgrid_api.holding.wait(60), "the worker never reached the second send"
    finally:
        worker.kill()
        worker.communicate(timeout=30)
    sendgrid_api.release.set()  # SendGrid may well have taken it: we cannot know
    # The attempt died with its transaction: the row is as it was before the send.
    assert sends(redis_sendgrid) == [("sent", 1), ("queued", 0), ("queued", 0)]
    assert jobs.sweep(redis_sendgrid, now=after_grace()) == (0, 0)  # the dead worker's job holds them

    # Time moves past the dead worker's last heartbeat: rq takes the job back and retries it.
    queue.started_job_registry.cleanup(timestamp=time.time() + jobs.SEND_TIMEOUT + 61)
    assert queue.count == 1
    restarted = worker_process(redis_sendgrid, tmp_path)
    _, errors = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, errors.decode()

    assert sends(redis_sendgrid) == [("sent", 1), ("sent", 1), ("sent", 1)]
    rows = fetch(redis_sendgrid, select(OutboundMessage).order_by(OutboundMessage.id))
    seen = [call.body["headers"]["Message-ID"] for call in sendgrid_api.calls]
    assert seen == [rows[0].message_id, rows[1].message_id, rows[1].message_id, rows[2].message_id]
    assert queue.failed_job_registry.count == 0
    assert jobs.sweep(redis_sendgrid, now=after_grace()) == (0, 0)


# --- the inbound drain -----------------------------------------------------------------------------


def queued_functions(settings: Settings) -> list[str]:
    return [job.func_name for job in jobs.queue(settings).get_jobs()]


def test_a_burst_of_replies_is_read_by_one_drain_job_and_the_next_reply_nudges_again(
    redis_settings: Settings, session: Session, cycle: Cycle, web: FlaskClient
) -> None:
    requests_queued(session, redis_settings, cycle)
    ids = []
    for email in (ALICE, BEN, "carmen@ruizfoods.example"):
        response = post_reply(web, token_of(redis_settings, email), "WINS\nA good month.", sender=email)
        assert response.status_code == 200
        ids.append(response.get_json()["id"])
    # One job for the three: each later post found a drain already on its way.
    assert queued_functions(redis_settings) == [jobs.DRAIN_JOB]

    assert run_worker(redis_settings) == []
    assert [inbound_status(redis_settings, i) for i in ids] == ["accepted"] * 3
    assert len(fetch(redis_settings, select(Update))) == 3
    receipts = fetch(redis_settings, select(OutboundMessage.status).where(OutboundMessage.kind == "receipt"))
    assert receipts == ["sent"] * 3

    # The drain cleared the nudge before it looked, so the next reply gets a job of its own.
    response = post_reply(web, token_of(redis_settings, ALICE), "WINS\nA correction: two plants.")
    assert queued_functions(redis_settings) == [jobs.DRAIN_JOB]
    assert run_worker(redis_settings) == []
    assert inbound_status(redis_settings, response.get_json()["id"]) == "accepted"


def test_the_drain_goes_on_past_a_message_that_fails_and_the_sweep_retries_it(
    redis_settings: Settings,
    session: Session,
    cycle: Cycle,
    web: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests_queued(session, redis_settings, cycle)
    first = post_reply(web, token_of(redis_settings, ALICE), "WINS\nThe bad one.").get_json()["id"]
    second = post_reply(web, token_of(redis_settings, BEN), "WINS\nThe good one.", sender=BEN).get_json()["id"]

    from workers import jobs as worker_jobs

    real = worker_jobs._process_inbound

    def broken_for_the_first(session: Session, settings: Settings, inbound_id: int, now: datetime) -> Any:
        if inbound_id == first:
            raise RuntimeError("a parser bug")
        return real(session, settings, inbound_id, now)

    with monkeypatch.context() as patch:
        patch.setattr(worker_jobs, "_process_inbound", broken_for_the_first)
        assert run_worker(redis_settings) == []  # the drain itself does not fail
    assert (inbound_status(redis_settings, first), inbound_status(redis_settings, second)) == ("received", "accepted")

    assert jobs.sweep(redis_settings, now=after_grace())[0] == 1  # (and the requests, never nudged here)
    assert f"inbound-{first}" in jobs.queue(redis_settings).job_ids
    assert run_worker(redis_settings) == []
    assert inbound_status(redis_settings, first) == "accepted"


def test_two_drains_at_once_claim_different_messages(
    redis_settings: Settings, session: Session, cycle: Cycle, web: FlaskClient
) -> None:
    if db.engine_for(redis_settings.database_url).dialect.name != "postgresql":
        pytest.skip("row locks need PostgreSQL (CI runs this on it)")
    from workers.jobs import _claim_pending

    requests_queued(session, redis_settings, cycle)
    first = post_reply(web, token_of(redis_settings, ALICE), "WINS\nOne.").get_json()["id"]
    second = post_reply(web, token_of(redis_settings, BEN), "WINS\nTwo.", sender=BEN).get_json()["id"]
    with db.session_scope(redis_settings.database_url) as one, db.session_scope(redis_settings.database_url) as two:
        assert _claim_pending(one, set()) == first
        assert _claim_pending(two, set()) == second  # the first is locked: skipped, not waited for
        assert _claim_pending(two, {second}) is None


# --- the webhook's coalesced nudge -----------------------------------------------------------------


class FakeTimer:
    """threading.Timer's shape, started by hand: time is moved, never slept."""

    def __init__(self, delay: float, function: Any) -> None:
        self.delay, self.function, self.daemon, self.started = delay, function, False, False

    def start(self) -> None:
        self.started = True


def test_nudges_within_a_window_are_coalesced_into_one_that_runs_after_them() -> None:
    now = [100.0]
    runs: list[float] = []
    timers: list[FakeTimer] = []

    def timer(delay: float, function: Any) -> FakeTimer:
        timers.append(FakeTimer(delay, function))
        return timers[-1]

    nudge = jobs.Coalesced(lambda: runs.append(now[0]), 0.25, clock=lambda: now[0], timer=timer)
    nudge()
    assert runs == [100.0] and timers == []  # the first in a quiet spell runs at once

    now[0] = 100.1
    nudge()
    now[0] = 100.2
    nudge()
    assert runs == [100.0]  # these two wait for the window's end ...
    [trailing] = timers
    assert trailing.started and trailing.daemon and trailing.delay == pytest.approx(0.15)

    now[0] = 100.25
    trailing.function()
    assert runs == [100.0, 100.25]  # ... and one run, after both, answers for both

    now[0] = 100.3
    nudge()  # within the window of the trailing run: a new timer, never lost
    assert runs == [100.0, 100.25] and len(timers) == 2
    now[0] = 100.5
    timers[1].function()
    assert runs == [100.0, 100.25, 100.5]

    now[0] = 101.0
    nudge()  # quiet again: at once
    assert runs[-1] == 101.0 and len(timers) == 2


def test_the_webhook_coalesces_its_nudges_and_the_last_one_comes_after_every_message(
    redis_settings: Settings, session: Session, cycle: Cycle, web: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    timers: list[FakeTimer] = []

    def timer(delay: float, function: Any) -> FakeTimer:
        timers.append(FakeTimer(delay, function))
        return timers[-1]

    coalesced = jobs.Coalesced(jobs.nudge_inbound, 60.0, timer=timer)  # a window no test outlives
    monkeypatch.setattr(jobs, "_coalesced_nudges", {os.getpid(): coalesced})
    requests_queued(session, redis_settings, cycle)
    ids = [
        post_reply(web, token_of(redis_settings, email), "WINS\nA good month.", sender=email).get_json()["id"]
        for email in (ALICE, BEN, "carmen@ruizfoods.example")
    ]
    assert queued_functions(redis_settings) == [jobs.DRAIN_JOB]  # the first nudged at once
    [trailing] = timers  # the other two wait for the window's end

    assert run_worker(redis_settings) == []  # the drain reads all three
    assert [inbound_status(redis_settings, i) for i in ids] == ["accepted"] * 3
    trailing.function()  # the window ends: the flag is gone, so a drain is queued; it finds nothing
    assert queued_functions(redis_settings) == [jobs.DRAIN_JOB]
    assert run_worker(redis_settings) == []
    assert len(fetch(redis_settings, select(Update))) == 3
