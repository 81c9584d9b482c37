"""The monthly rhythm: reminders, the digest, excuses, participation, delivery events."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from datetime import datetime, timedelta, timezone
from email import message_from_bytes

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from app import jobs
from app.cycles import excuse, tick
from app.mail import deliver, unsubscribe_url
from app.models import DeliveryEvent, Member, OutboundMessage, UpdateRequest
from app.participation import Attendance, Standing, attendance
from app.settings import configure
from tests.conftest import make_cycle
from tests.mails import raw_mode, reply
from tests.test_webhook import post

UTC = timezone.utc


def run_tick(session, settings, now):  # type: ignore[no-untyped-def]
    """A tick as the job runs it: commit, then send what it queued."""
    result = tick(session, settings, now)
    session.commit()
    for outbound_id in result.outbound_ids:
        deliver(session, settings, outbound_id)
    session.expire_all()
    return result


def kinds(session, kind):  # type: ignore[no-untyped-def]
    return list(session.scalars(select(OutboundMessage).where(OutboundMessage.kind == kind).order_by(OutboundMessage.id)))


def test_reminders_skip_repliers_thread_under_the_request_and_the_last_says_so(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.cycles import group_schedule

    schedule = group_schedule(cycle.group, cycle.meeting_starts_at)
    run_tick(session, settings, cycle.request_at)
    requests = {r.member.email: r for r in cycle.requests}
    post(client, raw_mode(reply(requests["alice@northwind.example"].token, "WINS\nDone early.")))
    session.expire_all()
    run_tick(session, settings, schedule.reminder_ats[0] + timedelta(minutes=1))
    first = kinds(session, "reminder")
    assert sorted(r.to_email for r in first) == ["ben@okafor.example", "carmen@ruizfoods.example"]
    request_mails = {m.member_id: m.message_id for m in kinds(session, "update_request")}
    assert all(r.in_reply_to == request_mails[r.member_id] for r in first)
    assert all(r.context["is_last"] is False for r in first)
    ben_reminder = next(r for r in first if r.to_email == "ben@okafor.example")
    path = next(settings.outbox_dir.glob(f"{ben_reminder.id:06d}-reminder-ben-okafor-example.eml"))
    eml = message_from_bytes(path.read_bytes())
    assert eml["In-Reply-To"] == eml["References"] == request_mails[ben_reminder.member_id]
    assert eml["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Ben says SKIP; Carmen stays silent through the last reminder.
    post(client, raw_mode(reply(requests["ben@okafor.example"].token, "SKIP", sender=("Ben Okafor", "ben@okafor.example"))))
    session.expire_all()
    run_tick(session, settings, schedule.reminder_ats[1] + timedelta(minutes=1))
    last = [r for r in kinds(session, "reminder") if r.context["is_last"]]
    assert [r.to_email for r in last] == ["carmen@ruizfoods.example"]
    assert "Last reminder" in next(settings.outbox_dir.glob(f"{last[0].id:06d}-*.eml")).read_text()
    digest = kinds(session, "digest")
    assert [d.to_email for d in digest] == ["dana@facilitation.example"]
    assert [m["name"] for m in digest[0].context["missing"]] == ["Carmen Ruiz"]
    assert [m["name"] for m in digest[0].context["excused"]] == ["Ben Okafor"]
    # Ticking again sends nothing more.
    before = session.scalar(select(func.count(OutboundMessage.id)))
    run_tick(session, settings, schedule.reminder_ats[1] + timedelta(minutes=6))
    assert session.scalar(select(func.count(OutboundMessage.id))) == before


def test_a_reminder_queued_before_a_reply_is_cancelled_at_send_time(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.cycles import group_schedule

    run_tick(session, settings, cycle.request_at)
    schedule = group_schedule(cycle.group, cycle.meeting_starts_at)
    result = tick(session, settings, schedule.reminder_ats[0])
    session.commit()
    alice = session.scalar(select(UpdateRequest).join(Member).where(Member.email == "alice@northwind.example"))
    post(client, raw_mode(reply(alice.token, "WINS\nJust in time.")))
    for outbound_id in result.outbound_ids:
        deliver(session, settings, outbound_id)
    session.expire_all()
    alice_reminder = next(r for r in kinds(session, "reminder") if r.to_email == "alice@northwind.example")
    assert alice_reminder.status == "cancelled"
    assert "replied before the reminder" in alice_reminder.last_error
    assert not list(settings.outbox_dir.glob("*-reminder-alice-*.eml"))


def test_excused_members_get_no_reminders(session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.cycles import group_schedule

    run_tick(session, settings, cycle.request_at)
    for request in cycle.requests:
        excuse(session, request, cycle.request_at)
    session.commit()
    run_tick(session, settings, group_schedule(cycle.group, cycle.meeting_starts_at).reminder_ats[0])
    assert kinds(session, "reminder") == []


def test_one_click_unsubscribe_excuses_the_member(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    run_tick(session, settings, cycle.request_at)
    request = cycle.requests[0]
    url = unsubscribe_url(settings, request.token).removeprefix(settings.base_url)
    assert client.get(url).status_code == 200  # a confirm page; GET changes nothing
    session.expire_all()
    assert request.excused_at is None
    response = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    session.expire_all()
    assert request.excused_at is not None
    assert client.post("/unsubscribe/forged-token").status_code == 404


def test_two_ticks_at_once_send_nothing_twice(session, settings, group) -> None:  # type: ignore[no-untyped-def]
    import threading

    from sqlalchemy.exc import IntegrityError, OperationalError

    from app import db

    cycle = make_cycle(session, group)
    session.commit()
    start = threading.Barrier(2)
    queued: list[int] = []

    def one_tick() -> None:
        start.wait()
        for _ in range(5):  # as rq would retry a tick that lost a lock race
            try:
                with db.session_scope(settings.database_url) as own:
                    result = tick(own, settings, cycle.request_at)
                    own.commit()
                    queued.extend(result.outbound_ids)
                    return
            except (OperationalError, IntegrityError):
                continue  # lost the race (SQLite has no row locks): the unique keys refused the copy

    threads = [threading.Thread(target=one_tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(queued) == sorted(set(queued)) and len(queued) == 3
    assert session.scalar(select(func.count(OutboundMessage.id))) == 3
    assert session.scalar(select(func.count(UpdateRequest.id))) == 3


def test_attendance_and_streaks() -> None:
    deadline = datetime(2026, 5, 1, tzinfo=UTC)
    now = deadline + timedelta(days=1)
    assert attendance(asked=True, replied_at=deadline, excused_at=None, deadline_at=deadline, now=now) is Attendance.ON_TIME
    assert attendance(asked=True, replied_at=now, excused_at=None, deadline_at=deadline, now=now) is Attendance.LATE
    assert attendance(asked=True, replied_at=None, excused_at=now, deadline_at=deadline, now=now) is Attendance.EXCUSED
    assert attendance(asked=True, replied_at=None, excused_at=None, deadline_at=deadline, now=now) is Attendance.MISSING
    assert attendance(asked=True, replied_at=None, excused_at=None, deadline_at=deadline, now=deadline - timedelta(1)) is Attendance.PENDING
    A = Attendance
    assert Standing((A.MISSING, A.ON_TIME, A.EXCUSED, A.LATE, A.PENDING)).streak == 2
    assert Standing((A.ON_TIME, A.MISSING, A.MISSING)).missed_in_a_row == 2
    assert Standing((A.ON_TIME, A.MISSING, A.MISSING)).streak == 0


def test_status_shows_participation(session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.status import status_report

    run_tick(session, settings, cycle.request_at)
    text = status_report(session, cycle.group)
    assert "no reply yet" in text


# --- the event webhook ----------------------------------------------------------------------------


@pytest.fixture()
def signing(settings):  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    value = dataclasses.replace(settings, sendgrid_webhook_public_key=base64.b64encode(public).decode())
    configure(value)

    def sign(body: str, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = key.sign((stamp + body).encode(), ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }

    return value, sign


def _sent_request(session, settings, cycle):  # type: ignore[no-untyped-def]
    run_tick(session, settings, cycle.request_at)
    return next(m for m in kinds(session, "update_request") if m.to_email == "ben@okafor.example")


def test_events_are_verified_deduped_and_ordered(session, cycle, signing) -> None:  # type: ignore[no-untyped-def]
    from app.web import create_app

    settings, sign = signing
    client = create_app(settings).test_client()
    sent = _sent_request(session, settings, cycle)
    events = [
        {"event": "bounce", "type": "bounce", "email": "ben@okafor.example", "timestamp": 1764000100,
         "sg_event_id": "ev-2", "reason": "550 5.1.1 user unknown", "outbound_id": str(sent.id), "category": ["update_request"]},
        {"event": "delivered", "email": "ben@okafor.example", "timestamp": 1764000000,
         "sg_event_id": "ev-1", "outbound_id": str(sent.id), "category": "update_request"},
    ]
    body = json.dumps(events)
    assert client.post("/events/sendgrid", data=body, headers=sign(body)).status_code == 200
    assert client.post("/events/sendgrid", data=body, headers=sign(body)).status_code == 200  # a duplicate batch
    session.expire_all()
    assert session.scalar(select(func.count(DeliveryEvent.id))) == 2
    assert sent.status == "bounced"  # the older 'delivered' arriving late does not undo the bounce
    assert "5.1.1" in sent.last_error
    ben = session.get_one(Member, sent.member_id)
    assert ben.bounced_at is not None and "user unknown" in ben.bounce_reason
    notices = kinds(session, "bounce_notice")
    assert [n.to_email for n in notices] == ["dana@facilitation.example"]


def test_events_with_bad_signature_or_stale_timestamp_are_refused(session, cycle, signing) -> None:  # type: ignore[no-untyped-def]
    from app.web import create_app

    settings, sign = signing
    client = create_app(settings).test_client()
    body = json.dumps([{"event": "delivered", "sg_event_id": "x", "email": "a@b.example", "timestamp": 1}])
    headers = sign(body)
    assert client.post("/events/sendgrid", data=body + " ", headers=headers).status_code == 403
    stale = sign(body, timestamp=int(time.time()) - 3600)
    assert client.post("/events/sendgrid", data=body, headers=stale).status_code == 403
    assert client.post("/events/sendgrid", data=body, headers={"Content-Type": "application/json"}).status_code == 403
    assert session.scalar(select(func.count(DeliveryEvent.id))) == 0


def test_delivered_and_deferred_update_the_ledger(session, cycle, signing) -> None:  # type: ignore[no-untyped-def]
    from app.delivery import record_events

    settings, _ = signing
    sent = _sent_request(session, settings, cycle)
    now = datetime.now(UTC)
    record_events(session, settings, [{"event": "deferred", "sg_event_id": "d1", "email": sent.to_email,
                                       "outbound_id": sent.id, "response": "451 try later", "timestamp": 1}], now)
    assert (sent.status, sent.last_error) == ("sent", "deferred: 451 try later")
    record_events(session, settings, [{"event": "delivered", "sg_event_id": "d2", "email": sent.to_email,
                                       "outbound_id": sent.id, "timestamp": 2}], now)
    assert sent.status == "delivered"
    session.commit()


def test_jobs_run_inline_without_redis(settings) -> None:  # type: ignore[no-untyped-def]
    assert jobs.enqueue("workers.jobs.tick") is True
