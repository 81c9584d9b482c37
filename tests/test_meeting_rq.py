"""The meeting with real rq workers on Redis (and PostgreSQL in CI): the agenda approved by reply,
invites sent by a worker, RSVPs by text and by an Outlook calendar answer, the headcount, the
recap and its confirmed commitments in the next request. Run twice: nothing more.

Needs REDIS_URL (the `redis_settings` fixture skips without it; CI always sets it)."""

from __future__ import annotations

import os
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, jobs
from app.cycles import queue_requests
from app.models import Cycle, Group, Meeting, OutboundMessage, Rsvp, UpdateRequest
from app.settings import Settings
from app.web import create_app
from tests.conftest import TZ, make_cycle
from tests.mails import raw_mode, reply
from tests.meeting_mails import outlook_reply
from tests.test_rq import fetch, outbox_files, run_worker


@pytest.fixture()
def web(redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """The webhook on Redis settings, its nudges at once (as in tests/test_rq.py)."""
    monkeypatch.setattr(jobs, "_coalesced_nudges", {os.getpid(): jobs.Coalesced(jobs.nudge_inbound, 0.0)})
    return create_app(redis_settings).test_client()

ALICE = ("Alice Chen", "alice@northwind.example")
BEN = ("Ben Okafor", "ben@okafor.example")
DANA = ("Dana Whitfield", "dana@facilitation.example")


def post(web: FlaskClient, message: bytes) -> None:
    from tests.conftest import AUTH

    body, content_type = raw_mode(message)
    response = web.post("/inbound/sendgrid", data=body, headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 200


def say(web: FlaskClient, token: str, text: str, sender: tuple[str, str]) -> None:
    post(web, bytes(reply(token, text, sender=sender)))


def kinds(settings: Settings, kind: str) -> list[OutboundMessage]:
    return fetch(settings, select(OutboundMessage).where(OutboundMessage.kind == kind).order_by(OutboundMessage.id))


def test_the_meeting_through_real_workers(
    redis_settings: Settings, session: Session, group: Group, cycle: Cycle, web: FlaskClient
) -> None:
    queue_requests(session, redis_settings, cycle)
    session.commit()
    requests = {r.member.email: r.token for r in session.scalars(select(UpdateRequest))}
    say(web, requests[ALICE[1]], "TOPIC FOR THE GROUP\nPriority A: A second plant?\n\nNEXT COMMITMENTS\n- Hire a plant manager", ALICE)
    say(web, requests[BEN[1]], "NEXT COMMITMENTS\n- Renegotiate the fuel contract", BEN)
    assert run_worker(redis_settings) == []

    clock.set_now(cycle.deadline_at + timedelta(minutes=5))
    jobs.run(jobs.TICK_JOB)
    assert run_worker(redis_settings) == []
    [draft] = kinds(redis_settings, "meeting_agenda_draft")
    assert draft.status == "sent"
    [meeting] = fetch(redis_settings, select(Meeting))
    assert meeting.agenda["items"][2]["owner"] == "Alice Chen"

    say(web, meeting.agenda_token, "APPROVE", DANA)
    assert kinds(redis_settings, "meeting_invite") == []  # stored, not yet read: the worker does it
    assert run_worker(redis_settings) == []
    invites = kinds(redis_settings, "meeting_invite")
    assert len(invites) == 3 and {i.status for i in invites} == {"sent"}

    tokens = {}
    for rsvp in fetch(redis_settings, select(Rsvp)):
        tokens[rsvp.member_id] = rsvp.token
    members = {m.email: m.id for m in group.members}
    say(web, tokens[members[ALICE[1]]], "Yes, see you there", ALICE)
    post(web, outlook_reply(token=tokens[members[BEN[1]]], uid=meeting.uid, sequence=0, partstat="DECLINED",
                            name=BEN[0], address=BEN[1], starts_at=cycle.meeting_starts_at,
                            ends_at=cycle.meeting_ends_at, summary="March meeting", comment="Travelling, sorry."))
    assert run_worker(redis_settings) == []
    answers = {r.member_id: (r.response, r.response_source) for r in fetch(redis_settings, select(Rsvp))}
    assert answers[members[ALICE[1]]] == ("yes", "text") and answers[members[BEN[1]]] == ("no", "calendar")
    # Both answers were read before the worker came to send the first headcount email: it went
    # once, carrying both, each with the member's own words.
    [headcount] = kinds(redis_settings, "meeting_headcount")
    assert headcount.status == "sent"
    assert headcount.context["headcount"]["line"] == "1 coming, 0 maybe, 1 not coming, 1 no answer yet"
    alice_answer, ben_answer = headcount.context["answers"]
    assert (alice_answer["member_name"], alice_answer["note"]) == ("Alice Chen", "Yes, see you there")
    assert ben_answer["note"] == "Travelling, sorry." and ben_answer["source"] == "calendar"  # the COMMENT Outlook sent
    # Within the hour Alice changes her mind: held; a worker before then leaves it; the tick an
    # hour after the first sends it.
    say(web, tokens[members[ALICE[1]]], "Sorry, something came up: I can't make it.", ALICE)
    assert run_worker(redis_settings) == []
    held = kinds(redis_settings, "meeting_headcount")[1]
    assert held.status == "queued" and held.context["answers"][0]["answer"] == "no"
    jobs.enqueue_sends([held.id])
    assert run_worker(redis_settings) == []
    assert kinds(redis_settings, "meeting_headcount")[1].status == "queued"
    clock.set_now(headcount.sent_at + timedelta(hours=1))
    jobs.run(jobs.TICK_JOB)
    assert run_worker(redis_settings) == []
    assert [h.status for h in kinds(redis_settings, "meeting_headcount")] == ["sent", "sent"]

    # After the meeting: the recap request, the facilitator's notes, a member's confirmation.
    clock.set_now(cycle.meeting_ends_at + timedelta(hours=2))
    jobs.run(jobs.TICK_JOB)
    assert run_worker(redis_settings) == []
    [meeting] = fetch(redis_settings, select(Meeting))
    say(web, meeting.recap_token, "Good session.", DANA)
    assert run_worker(redis_settings) == []
    recaps = kinds(redis_settings, "meeting_recap")
    assert len(recaps) == 3 and {r.status for r in recaps} == {"sent"}
    recap_tokens = {r.member_id: r.recap_token for r in fetch(redis_settings, select(Rsvp))}
    say(web, recap_tokens[members[BEN[1]]], "- Renegotiate the fuel contract\n- Open the Albany depot", BEN)
    assert run_worker(redis_settings) == []

    # Run everything twice: no new rows, nothing sent twice.
    count = len(fetch(redis_settings, select(OutboundMessage)))
    files = outbox_files(redis_settings)
    jobs.run(jobs.TICK_JOB)
    assert run_worker(redis_settings) == []
    assert len(fetch(redis_settings, select(OutboundMessage))) == count and outbox_files(redis_settings) == files

    # Next month's request asks Ben about what he confirmed.
    upcoming = make_cycle(session, session.get_one(Group, group.id),
                          day=cycle.meeting_starts_at.astimezone(ZoneInfo(TZ)).date() + timedelta(days=35))
    session.commit()
    clock.set_now(upcoming.request_at + timedelta(minutes=1))
    jobs.run(jobs.TICK_JOB)
    assert run_worker(redis_settings) == []
    requests_next = {r.member_id: r for r in kinds(redis_settings, "update_request") if r.cycle_id == upcoming.id}
    assert requests_next[members[BEN[1]]].context["commitments"] == ["Renegotiate the fuel contract", "Open the Albany depot"]
    assert requests_next[members[ALICE[1]]].context["commitments"] == ["Hire a plant manager"]
    assert requests_next[members[BEN[1]]].status == "sent"
