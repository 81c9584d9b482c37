"""The meeting end to end through the webhook (both SendGrid modes, in-process jobs): the agenda
drafted at the deadline, approved or edited by reply, the invite with its .ics, RSVPs by text and
by Google, Outlook and Apple calendar answers, move and cancel, the reminder, the recap whose
confirmed commitments reach the next request, the date poll and the recurrence rule."""

from __future__ import annotations

import base64
import email
import json
from datetime import date, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, jobs
from app.cli import main
from app.cycles import queue_requests
from app.meeting.meetings import meeting_for
from app.models import (
    Cycle,
    CycleStatus,
    Group,
    InboundMessage,
    Meeting,
    OutboundMessage,
    Poll,
    Rsvp,
    UpdateRequest,
)
from app.settings import Settings
from tests.conftest import AUTH, MEETING_DAY, TZ
from tests.mails import multipart, parsed_mode, raw_mode, reply
from tests.meeting_mails import CLIENTS

ALICE = ("Alice Chen", "alice@northwind.example")
BEN = ("Ben Okafor", "ben@okafor.example")
CARMEN = ("Carmen Ruiz", "carmen@ruizfoods.example")
DANA = ("Dana Whitfield", "dana@facilitation.example")
MODES = ["raw", "parsed"]


# --- posting mail ---------------------------------------------------------------------------------


def parsed_post(raw: bytes) -> tuple[bytes, str]:
    """SendGrid's default mode for any message: text/plain and text/html in their fields, every
    other leaf part (text/calendar included) as a file, headers as a block."""
    message = email.message_from_bytes(raw, policy=default_policy)
    fields: dict[str, Any] = {
        "headers": "".join(f"{k}: {v}\n" for k, v in message.items() if not k.lower().startswith("content-")),
        "from": str(message["From"]),
        "to": str(message["To"]),
        "subject": str(message["Subject"]),
        "envelope": json.dumps({"to": [email.utils.parseaddr(str(message["To"]))[1]],
                                "from": email.utils.parseaddr(str(message["From"]))[1]}),
        "SPF": "pass",
    }
    files = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html") and not part.get_filename() and ("text" if kind == "text/plain" else "html") not in fields:
            fields["text" if kind == "text/plain" else "html"] = part.get_content().encode()
        else:
            files.append((part.get_filename() or "invite.ics", part.get_payload(decode=True), kind))
    info = {}
    for n, (filename, data, kind) in enumerate(files, start=1):
        fields[f"attachment{n}"] = (filename, data, kind)
        info[f"attachment{n}"] = {"filename": filename, "type": kind}
    fields["attachments"] = str(len(files))
    if info:
        fields["attachment-info"] = json.dumps(info)
    fields["charsets"] = json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "UTF-8", "html": "UTF-8"})
    return multipart(fields)


def post(client: FlaskClient, message: EmailMessage | bytes, mode: str) -> int:
    """Post through the real webhook; return the stored inbound id."""
    if mode == "raw":
        body = raw_mode(message)
    elif isinstance(message, bytes):
        body = parsed_post(message)
    else:
        body = parsed_mode(message)
    response = client.post("/inbound/sendgrid", data=body[0], headers={**AUTH, "Content-Type": body[1]})
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.get_json()["id"])


def say(client: FlaskClient, token: str, text: str, sender: tuple[str, str], mode: str, subject: str = "Re: meeting") -> int:
    return post(client, reply(token, text, sender=sender, subject=subject), mode)


def inbound(session: Session, inbound_id: int) -> InboundMessage:
    session.expire_all()
    return session.get_one(InboundMessage, inbound_id)


def emails(session: Session, kind: str) -> list[OutboundMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboundMessage).where(OutboundMessage.kind == kind).order_by(OutboundMessage.id)))


def eml(settings: Settings, row: OutboundMessage) -> email.message.EmailMessage:
    assert row.status == "sent", row.last_error
    path = Path(settings.outbox_dir) / str(row.provider_message_id)
    return email.message_from_bytes(path.read_bytes(), policy=default_policy)  # type: ignore[return-value]


def ics_of(message: email.message.Message, method: str) -> icalendar.Calendar:
    """The invite in a sent email: the text/calendar alternative (the one calendars act on), which
    must be the same object as the .ics file attached."""
    [alternative] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert alternative.get_param("method") == method
    [attached] = [p for p in message.walk() if p.get_content_type() == "application/ics"]
    assert attached.get_filename() == "invite.ics"
    # The same object (the text part's line ends are the message's own: CRLF on the wire).
    assert attached.get_payload(decode=True).replace(b"\r\n", b"\n") == alternative.get_payload(decode=True).replace(b"\r\n", b"\n")
    return icalendar.Calendar.from_ical(alternative.get_payload(decode=True))


def the_event(calendar: icalendar.Calendar) -> icalendar.Event:
    [event] = calendar.walk("VEVENT")
    return event


# --- a cycle with updates -----------------------------------------------------------------------

UPDATES = {
    ALICE: "WINS\nClosed the Series A.\n\nTOPIC FOR THE GROUP\nPriority A: Should we open a second plant?\n\n"
           "NEXT COMMITMENTS\n- Hire a plant manager\n- Board deck by the 20th",
    BEN: "CHALLENGES\nCash is tight.\n\nTOPIC FOR THE GROUP\nPriority B: Pricing for the new route\n\n"
         "NEXT COMMITMENTS\n- Renegotiate the fuel contract",
    CARMEN: "WINS\nNew grocery chain signed.",
}


def with_updates(session: Session, settings: Settings, client: FlaskClient, cycle: Cycle, mode: str = "raw") -> dict[str, UpdateRequest]:
    queue_requests(session, settings, cycle)
    session.commit()
    jobs.enqueue_sends([o.id for o in emails(session, "update_request")])
    requests = {r.member.email: r for r in session.scalars(select(UpdateRequest).where(UpdateRequest.cycle_id == cycle.id))}
    for person, text in UPDATES.items():
        say(client, requests[person[1]].token, text, person, mode)
    return requests


def at_deadline(session: Session, cycle: Cycle) -> None:
    session.refresh(cycle)
    clock.set_now(cycle.deadline_at + timedelta(minutes=5))
    jobs.run(jobs.TICK_JOB)


def the_meeting(session: Session, cycle: Cycle) -> Meeting:
    session.expire_all()
    return session.scalars(select(Meeting).where(Meeting.cycle_id == cycle.id)).one()


def approved(session: Session, settings: Settings, client: FlaskClient, cycle: Cycle, mode: str = "raw") -> Meeting:
    """Updates in, deadline passed, agenda approved by reply: the invites are out."""
    with_updates(session, settings, client, cycle, mode)
    at_deadline(session, cycle)
    meeting = the_meeting(session, cycle)
    say(client, meeting.agenda_token, "APPROVE", DANA, mode)
    return the_meeting(session, cycle)


def rsvp_of(session: Session, meeting: Meeting, address: str) -> Rsvp:
    session.expire_all()
    return next(r for r in session.get_one(Meeting, meeting.id).rsvps if r.member.email == address)


# --- agenda, invite -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_agenda_is_drafted_at_the_deadline_and_approve_sends_agenda_and_invite(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    with_updates(session, settings, client, cycle, mode)
    assert emails(session, "meeting_agenda_draft") == []  # not before the deadline
    at_deadline(session, cycle)
    [draft] = emails(session, "meeting_agenda_draft")
    meeting = the_meeting(session, cycle)
    assert draft.to_email == DANA[1] and draft.reply_to == f"reply+{meeting.agenda_token}@in.forum.example"
    items = meeting.agenda["items"]
    assert sum(i["minutes"] for i in items) == 240  # the meeting's length, exactly
    titles = [i["title"] for i in items]
    assert titles[0] == "Check-in" and titles[-1] == "Close"
    # The members' topics, A before B, each with its owner.
    topics = [i for i in items if i["title"].startswith("Issue")]
    assert [(t["owner"], t["title"]) for t in topics] == [
        ("Alice Chen", "Issue (A): Should we open a second plant?"),
        ("Ben Okafor", "Issue (B): Pricing for the new route"),
    ]
    assert "08:30  " in eml(settings, draft).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    jobs.run(jobs.TICK_JOB)
    assert len(emails(session, "meeting_agenda_draft")) == 1  # once

    inbound_id = say(client, meeting.agenda_token, "APPROVE\n\nThanks!", DANA, mode)
    assert inbound(session, inbound_id).status == "accepted"
    invites = emails(session, "meeting_invite")
    assert sorted(i.to_email for i in invites) == sorted(p[1] for p in (ALICE, BEN, CARMEN))
    meeting = the_meeting(session, cycle)
    for invite in invites:
        rsvp = rsvp_of(session, meeting, invite.to_email)
        assert invite.reply_to == f"reply+{rsvp.token}@in.forum.example"
        message = eml(settings, invite)
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Should we open a second plant?" in text and "Beacon Hotel, Main St" in text
        event = the_event(ics_of(message, "REQUEST"))
        assert str(event["uid"]) == meeting.uid and int(event["sequence"]) == 0
        organizer = event["organizer"]
        assert str(organizer) == f"mailto:reply+{rsvp.token}@in.forum.example"
        assert organizer.params["CN"] == "Dana Whitfield"
        assert len(event["attendee"]) == 3
        assert event.walk("VALARM")
        start = event.decoded("dtstart")
        assert start == cycle.meeting_starts_at and (start.hour, start.minute) == (8, 30)
        assert str(event["dtstart"].params["TZID"]) == TZ

    # Approving again sends nothing more.
    say(client, meeting.agenda_token, "Approve", DANA, mode)
    assert len(emails(session, "meeting_invite")) == 3


@pytest.mark.parametrize("mode", MODES)
def test_an_edited_agenda_is_read_back_and_a_later_edit_sends_an_update(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    with_updates(session, settings, client, cycle, mode)
    at_deadline(session, cycle)
    meeting = the_meeting(session, cycle)
    edited = (
        "Small change: Ben's pricing first, and a shorter check-in.\n\n"
        "08:30  15 min  Check-in — Dana Whitfield\n"
        "08:45  45 min  Issue: Pricing for the new route — Ben Okafor\n"
        "09:30  60 min  Updates round — everyone\n"
        "10:30  50 min  Issue: Second plant — Alice Chen\n"
        "11:20  40 min  Presentation: Cash flow forecasting - Carmen Ruiz\n"
        "12:00  20 min  Commitments round — everyone\n"
        "12:20  10 min  Close — Dana Whitfield\n"
    )
    say(client, meeting.agenda_token, edited, DANA, mode)
    meeting = the_meeting(session, cycle)
    assert [(i["title"], i["minutes"], i["owner"]) for i in meeting.agenda["items"]][1:5] == [
        ("Issue: Pricing for the new route", 45, "Ben Okafor"),
        ("Updates round", 60, "everyone"),
        ("Issue: Second plant", 50, "Alice Chen"),
        ("Presentation: Cash flow forecasting", 40, "Carmen Ruiz"),
    ]
    invites = emails(session, "meeting_invite")
    assert len(invites) == 3
    text = eml(settings, invites[0]).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "08:45  45 min  Issue: Pricing for the new route — Ben Okafor" in text
    assert "Small change" not in text  # only the agenda lines are read

    # A change after the invites went out: members get an update with the same UID, SEQUENCE 1.
    say(client, meeting.agenda_token, edited.replace("20 min  Commitments", "15 min  Commitments")
        .replace("12:20  10 min  Close", "12:15  15 min  Close"), DANA, mode)
    updates = emails(session, "meeting_invite")[3:]
    assert len(updates) == 3
    message = eml(settings, updates[0])
    assert message["Subject"].startswith("Updated: ")
    event = the_event(ics_of(message, "REQUEST"))
    assert str(event["uid"]) == meeting.uid and int(event["sequence"]) == 1


def test_an_agenda_reply_from_someone_else_changes_nothing(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    with_updates(session, settings, client, cycle)
    at_deadline(session, cycle)
    meeting = the_meeting(session, cycle)
    row = inbound(session, say(client, meeting.agenda_token, "APPROVE", ALICE, "raw"))
    assert row.status == "rejected" and "not a facilitator" in (row.reason or "")
    assert emails(session, "meeting_invite") == []
    row = inbound(session, say(client, meeting.agenda_token, "Can we start at 9?", DANA, "raw"))
    assert row.status == "rejected" and "neither APPROVE nor agenda lines" in (row.reason or "")


# --- RSVPs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_rsvps_by_text_and_by_each_calendar_set_the_headcount(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    meeting = approved(session, settings, client, cycle, mode)
    alice = rsvp_of(session, meeting, ALICE[1])
    row = inbound(session, say(client, alice.token, "Yes, joining by video this time.", ALICE, mode))
    assert row.status == "accepted" and row.kind == "rsvp"
    assert rsvp_of(session, meeting, ALICE[1]).response == "video"
    [headcount] = emails(session, "meeting_headcount")
    assert headcount.to_email == DANA[1]
    assert headcount.context["headcount"]["coming"] == 1 and headcount.context["answers"][0]["member_name"] == "Alice Chen"

    summary = f"Hudson Valley CEO Forum: {cycle.meeting_starts_at.astimezone(ZoneInfo(TZ)):%B} meeting"
    for (name, address), client_name, partstat, expected in (
        (BEN, "outlook", "DECLINED", "no"),
        (CARMEN, "apple", "TENTATIVE", "maybe"),
        (ALICE, "google", "ACCEPTED", "yes"),
    ):
        rsvp = rsvp_of(session, meeting, address)
        raw = CLIENTS[client_name](token=rsvp.token, uid=meeting.uid, sequence=0, partstat=partstat, name=name,
                                   address=address, starts_at=cycle.meeting_starts_at, ends_at=cycle.meeting_ends_at,
                                   summary=summary)
        row = inbound(session, post(client, raw, mode))
        assert (row.status, row.kind) == ("accepted", "rsvp"), row.reason
        assert "(calendar)" in (row.reason or "")
        rsvp = rsvp_of(session, meeting, address)
        assert (rsvp.response, rsvp.response_source) == (expected, "calendar")
    counts = emails(session, "meeting_headcount")[-1].context["headcount"]
    assert (counts["yes"], counts["video"], counts["maybe"], counts["no"], counts["waiting"]) == (1, 0, 1, 1, 0)

    # Status shows it; the same answer again sends nothing.
    result = CliRunner().invoke(main, ["status", "hudson-valley-ceo-forum"])
    assert "rsvps     1 coming, 1 maybe, 1 not coming, 0 no answer yet" in result.output, result.output
    before = len(emails(session, "meeting_headcount"))
    say(client, rsvp_of(session, meeting, BEN[1]).token, "No, sorry", BEN, mode)
    assert len(emails(session, "meeting_headcount")) == before


def test_rsvp_in_the_groups_language_and_a_question_goes_to_the_facilitator(
    client: FlaskClient, session: Session, settings: Settings, group: Group, cycle: Cycle
) -> None:
    group.language = "es"
    session.commit()
    meeting = approved(session, settings, client, cycle)
    say(client, rsvp_of(session, meeting, CARMEN[1]).token, "Sí, allí estaré.\n\nCarmen", CARMEN, "raw")
    assert rsvp_of(session, meeting, CARMEN[1]).response == "yes"
    say(client, rsvp_of(session, meeting, BEN[1]).token, "No puedo, lo siento.", BEN, "raw")
    assert rsvp_of(session, meeting, BEN[1]).response == "no"
    row = inbound(session, say(client, rsvp_of(session, meeting, ALICE[1]).token, "Can I bring our new COO as a guest?", ALICE, "raw"))
    assert (row.status, row.kind) == ("accepted", "note")
    [note] = emails(session, "meeting_note")
    assert note.to_email == DANA[1] and note.reply_to == ALICE[1] and "bring our new COO" in note.context["text"]
    assert rsvp_of(session, meeting, ALICE[1]).response == "none"


def test_an_rsvp_from_another_address_is_not_applied(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    meeting = approved(session, settings, client, cycle)
    row = inbound(session, say(client, rsvp_of(session, meeting, ALICE[1]).token, "No", ("Mallory", "mallory@evil.example"), "raw"))
    assert row.status == "rejected" and "not Alice Chen's address" in (row.reason or "")
    assert rsvp_of(session, meeting, ALICE[1]).response == "none"


def test_one_reminder_to_those_who_have_not_answered(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    meeting = approved(session, settings, client, cycle)
    say(client, rsvp_of(session, meeting, ALICE[1]).token, "yes", ALICE, "raw")
    clock.set_now(cycle.meeting_starts_at - timedelta(hours=23))
    jobs.run(jobs.TICK_JOB)
    reminders = emails(session, "meeting_rsvp_reminder")
    assert sorted(r.to_email for r in reminders) == [BEN[1], CARMEN[1]]
    assert all(r.status == "sent" for r in reminders)
    clock.set_now(cycle.meeting_starts_at - timedelta(hours=2))
    jobs.run(jobs.TICK_JOB)
    assert len(emails(session, "meeting_rsvp_reminder")) == 2


def test_headcount_on_the_packet_cover(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    with_updates(session, settings, client, cycle)
    # The facilitator drafts and approves from the command line before the deadline.
    result = CliRunner().invoke(main, ["meeting", "agenda", "hudson-valley-ceo-forum", "--draft", "--approve"])
    assert result.exit_code == 0, result.output
    meeting = the_meeting(session, cycle)
    say(client, rsvp_of(session, meeting, BEN[1]).token, "Sorry, I can't make it", BEN, "raw")
    say(client, rsvp_of(session, meeting, ALICE[1]).token, "Yes!", ALICE, "raw")
    at_deadline(session, cycle)
    session.expire_all()
    [packet] = session.get_one(Cycle, cycle.id).packets
    assert packet.context["meeting"]["headcount"]["line"] == "1 coming, 0 maybe, 1 not coming, 1 no answer yet"
    assert "Headcount: 1 coming, 0 maybe, 1 not coming, 1 no answer yet. Not coming: Ben Okafor." in packet.text
    assert "Headcount: 1 coming" in packet.html


# --- move and cancel ------------------------------------------------------------------------------


def test_moving_the_meeting_moves_the_schedule_and_sends_an_update(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    meeting = approved(session, settings, client, cycle)
    say(client, rsvp_of(session, meeting, ALICE[1]).token, "yes", ALICE, "raw")
    new_day = MEETING_DAY + timedelta(days=7)
    result = CliRunner().invoke(main, ["meeting", "move", "hudson-valley-ceo-forum", "--date", new_day.isoformat(), "--time", "09:00"])
    assert result.exit_code == 0, result.output
    session.expire_all()
    moved = session.get_one(Cycle, cycle.id)
    local = moved.meeting_starts_at.astimezone(ZoneInfo(TZ))
    assert (local.date(), local.hour, local.minute) == (new_day, 9, 0)
    assert moved.meeting_ends_at - moved.meeting_starts_at == timedelta(hours=4)
    # The deadline and the reminders are computed from the start: they follow.
    assert moved.deadline_at.astimezone(ZoneInfo(TZ)).date() == new_day - timedelta(days=2)
    from app.cycles import group_schedule

    schedule = group_schedule(moved.group, moved.meeting_starts_at)
    assert moved.request_at == schedule.request_at and schedule.reminder_ats[-1].astimezone(ZoneInfo(TZ)).date() == new_day - timedelta(days=3)
    updates = emails(session, "meeting_invite")[3:]
    assert len(updates) == 3
    event = the_event(ics_of(eml(settings, updates[0]), "REQUEST"))
    assert str(event["uid"]) == meeting.uid and int(event["sequence"]) == 1
    assert event.decoded("dtstart").astimezone(ZoneInfo(TZ)).hour == 9
    assert rsvp_of(session, meeting, ALICE[1]).response == "none"  # asked again

    # A calendar still answering the old invite (SEQUENCE 0) is not counted.
    alice = rsvp_of(session, meeting, ALICE[1])
    stale = CLIENTS["google"](token=alice.token, uid=meeting.uid, sequence=0, partstat="ACCEPTED", name=ALICE[0],
                              address=ALICE[1], starts_at=cycle.meeting_starts_at, ends_at=cycle.meeting_ends_at,
                              summary="old")
    row = inbound(session, post(client, stale, "raw"))
    assert "earlier version of the invite" in (row.reason or "")
    assert rsvp_of(session, meeting, ALICE[1]).response == "none"


@pytest.mark.parametrize("mode", MODES)
def test_cancelling_sends_method_cancel_and_stops_the_cycle(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    meeting = approved(session, settings, client, cycle, mode)
    result = CliRunner().invoke(main, ["meeting", "cancel", "hudson-valley-ceo-forum", "--reason", "The hotel flooded."])
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert session.get_one(Cycle, cycle.id).status == CycleStatus.DONE
    cancels = [c for c in emails(session, "meeting_cancel") if c.member_id is not None]
    assert len(cancels) == 3
    message = eml(settings, cancels[0])
    assert message["Auto-Submitted"] == "auto-generated"
    calendar = ics_of(message, "CANCEL")
    assert str(calendar["method"]) == "CANCEL"
    event = the_event(calendar)
    assert str(event["uid"]) == meeting.uid and int(event["sequence"]) == 1 and str(event["status"]) == "CANCELLED"
    # Nothing more for this cycle: no reminders, no RSVP reminder, no recap.
    clock.set_now(cycle.meeting_ends_at + timedelta(days=3))
    jobs.run(jobs.TICK_JOB)
    assert emails(session, "meeting_rsvp_reminder") == [] and emails(session, "meeting_recap_request") == []
    row = inbound(session, say(client, rsvp_of(session, meeting, ALICE[1]).token, "yes", ALICE, mode))
    assert row.status == "rejected" and "cancelled" in (row.reason or "")


# --- the recap --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_recap_commitments_confirmed_or_edited_reach_the_next_request(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    meeting = approved(session, settings, client, cycle, mode)
    clock.set_now(cycle.meeting_ends_at + timedelta(hours=1))
    jobs.run(jobs.TICK_JOB)
    [request] = emails(session, "meeting_recap_request")
    assert request.to_email == DANA[1]
    assert {m["name"]: m["commitments"] for m in request.context["members"]}["Alice Chen"] == [
        "Hire a plant manager", "Board deck by the 20th"]
    say(client, meeting.recap_token, "Great energy today. Next month: Carmen presents.", DANA, mode)
    recaps = {r.to_email: r for r in emails(session, "meeting_recap")}
    assert set(recaps) == {ALICE[1], BEN[1], CARMEN[1]}
    assert recaps[ALICE[1]].context["commitments"] == ["Hire a plant manager", "Board deck by the 20th"]
    assert recaps[BEN[1]].context["commitments"] == ["Renegotiate the fuel contract"]
    assert recaps[CARMEN[1]].context["commitments"] == []
    text = eml(settings, recaps[ALICE[1]]).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Great energy today" in text and "Hire a plant manager" in text and "Renegotiate" not in text

    alice, ben, carmen = (rsvp_of(session, meeting, p[1]) for p in (ALICE, BEN, CARMEN))
    say(client, alice.recap_token, "Confirmed, thanks!", ALICE, mode)
    say(client, ben.recap_token, "- Renegotiate the fuel contract\n- Hire two drivers for the new route", BEN, mode)
    say(client, carmen.recap_token, "1. Launch the online store", CARMEN, mode)
    # The tick again: no second recap request, no recap without notes.
    clock.set_now(cycle.meeting_ends_at + timedelta(days=4))
    jobs.run(jobs.TICK_JOB)
    assert len(emails(session, "meeting_recap_request")) == 1 and len(emails(session, "meeting_recap")) == 3

    # Next month's cycle asks about what each member confirmed.
    from tests.conftest import make_cycle

    next_day = cycle.meeting_starts_at.astimezone(ZoneInfo(TZ)).date() + timedelta(days=35)
    session.expire_all()
    upcoming = make_cycle(session, session.get_one(Cycle, cycle.id).group, day=next_day)
    session.commit()
    clock.set_now(upcoming.request_at + timedelta(minutes=1))
    jobs.run(jobs.TICK_JOB)
    requests = {r.to_email: r for r in emails(session, "update_request") if r.cycle_id == upcoming.id}
    assert requests[ALICE[1]].context["commitments"] == ["Hire a plant manager", "Board deck by the 20th"]
    assert requests[BEN[1]].context["commitments"] == ["Renegotiate the fuel contract", "Hire two drivers for the new route"]
    assert requests[CARMEN[1]].context["commitments"] == ["Launch the online store"]
    text = eml(settings, requests[BEN[1]]).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hire two drivers for the new route" in text
    # And the next packet's commitment ledger.
    jobs.run(jobs.COMPILE_JOB, upcoming.id)
    session.expire_all()
    ledger = {row["name"]: row["commitments"] for row in session.get_one(Cycle, upcoming.id).packets[-1].context["ledger"]}
    assert ledger["Ben Okafor"] == ["Renegotiate the fuel contract", "Hire two drivers for the new route"]
    assert ledger["Carmen Ruiz"] == ["Launch the online store"]


def test_without_notes_the_recap_goes_out_after_two_days(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    approved(session, settings, client, cycle)
    clock.set_now(cycle.meeting_ends_at + timedelta(hours=1))
    jobs.run(jobs.TICK_JOB)
    clock.set_now(cycle.meeting_ends_at + timedelta(days=1))
    jobs.run(jobs.TICK_JOB)
    assert emails(session, "meeting_recap") == []
    clock.set_now(cycle.meeting_ends_at + timedelta(days=2, hours=2))
    jobs.run(jobs.TICK_JOB)
    recaps = emails(session, "meeting_recap")
    assert len(recaps) == 3 and all(r.context["notes"] == "" for r in recaps)


# --- the date poll ------------------------------------------------------------------------------


def poll_dates() -> list[date]:
    """A Tuesday, the Thursday after it and the Tuesday after that, a month or more ahead."""
    start = clock.now().astimezone(ZoneInfo(TZ)).date() + timedelta(days=30)
    tuesday = start + timedelta(days=(1 - start.weekday()) % 7)
    return [tuesday, tuesday + timedelta(days=2), tuesday + timedelta(days=7)]


def ordinal(day: int) -> str:
    return f"{day}{'th' if 11 <= day <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"


@pytest.mark.parametrize("mode", MODES)
def test_a_date_poll_answered_in_free_text_and_confirmed_by_reply(
    client: FlaskClient, session: Session, settings: Settings, group: Group, mode: str
) -> None:
    dates = poll_dates()
    result = CliRunner().invoke(main, ["meeting", "poll", group.slug, "--options", ",".join(d.isoformat() for d in dates),
                                       "--hours", "08:30-12:30"])
    assert result.exit_code == 0, result.output
    polls = emails(session, "meeting_poll")
    assert len(polls) == 3 and all(p.status == "sent" for p in polls)
    text = eml(settings, polls[0]).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"1. {dates[0]:%A} {dates[0].day} {dates[0]:%B}" in text
    poll = session.scalars(select(Poll)).one()
    tokens = {v.member.email: v.token for v in poll.votes}
    say(client, tokens[ALICE[1]], "1 and 3 work for me", ALICE, mode)
    say(client, tokens[BEN[1]], f"Thursday works, not the {ordinal(dates[2].day)}", BEN, mode)
    row = inbound(session, say(client, tokens[CARMEN[1]], "Any of them!", CARMEN, mode))
    assert row.status == "accepted" and "options 1, 2, 3" in (row.reason or "")
    session.expire_all()
    assert {v.member.email: v.choices["options"] for v in session.scalars(select(Poll)).one().votes} == {
        ALICE[1]: [1, 3], BEN[1]: [2], CARMEN[1]: [1, 2, 3]}
    tallies = emails(session, "meeting_poll_tally")
    assert len(tallies) == 3 and tallies[-1].to_email == DANA[1]
    assert [o["count"] for o in tallies[-1].context["tally"]] == [2, 2, 2]
    assert tallies[-1].reply_to == f"reply+{poll.token}@in.forum.example"

    row = inbound(session, say(client, poll.token, "CONFIRM 2", DANA, mode))
    assert row.status == "accepted", row.reason
    session.expire_all()
    [scheduled] = session.scalars(select(Cycle)).all()
    local = scheduled.meeting_starts_at.astimezone(ZoneInfo(TZ))
    assert (local.date(), local.hour, local.minute) == (dates[1], 8, 30)
    assert scheduled.meeting_ends_at - scheduled.meeting_starts_at == timedelta(hours=4)
    assert session.scalars(select(Meeting)).one().cycle_id == scheduled.id
    told = emails(session, "meeting_date")
    assert sorted(t.to_email for t in told) == sorted(p[1] for p in (ALICE, BEN, CARMEN))
    assert f"{dates[1]:%A} {dates[1].day} {dates[1]:%B}" in eml(settings, told[0])["Subject"]
    # A second CONFIRM of another option is refused; the same one changes nothing.
    row = inbound(session, say(client, poll.token, "CONFIRM 3", DANA, mode))
    assert row.status == "rejected"
    assert len(session.scalars(select(Cycle)).all()) == 1


# --- recurrence -------------------------------------------------------------------------------------


def test_the_rule_makes_cycles_ahead_once_and_a_moved_or_cancelled_meeting_stays_so(
    session: Session, settings: Settings, group: Group
) -> None:
    result = CliRunner().invoke(main, ["meeting", "rule", group.slug, "second Thursday", "--hours", "08:30-12:30"])
    assert result.exit_code == 0, result.output
    jobs.run(jobs.TICK_JOB)
    session.expire_all()
    cycles = session.scalars(select(Cycle).order_by(Cycle.meeting_starts_at)).all()
    assert cycles, "the rule made no cycle"
    today = clock.now().astimezone(ZoneInfo(TZ)).date()
    horizon = today + timedelta(days=14 + 28)
    for made in cycles:
        local = made.meeting_starts_at.astimezone(ZoneInfo(TZ))
        assert local.weekday() == 3 and 8 <= local.day <= 14 and (local.hour, local.minute) == (8, 30)
        assert today < local.date() <= horizon
    jobs.run(jobs.TICK_JOB)
    assert len(session.scalars(select(Cycle)).all()) == len(cycles)
    # Moving the first meeting by a day: the tick does not make the rule's date again.
    first = cycles[0]
    meeting = meeting_for(session, settings, first)
    session.commit()
    local = first.meeting_starts_at.astimezone(ZoneInfo(TZ)).date()
    result = CliRunner().invoke(main, ["meeting", "move", group.slug, "--date", (local + timedelta(days=1)).isoformat(), "--time", "08:30"])
    assert result.exit_code == 0, result.output
    jobs.run(jobs.TICK_JOB)
    session.expire_all()
    assert len(session.scalars(select(Cycle)).all()) == len(cycles)
    assert session.get_one(Meeting, meeting.id).occurrence == local.isoformat()


def test_the_invite_goes_through_sendgrid_with_its_calendar_file(
    sendgrid_settings: Settings, sendgrid_api: Any, session: Session, cycle: Cycle
) -> None:
    from app.web import create_app

    client = create_app(sendgrid_settings).test_client()
    meeting = approved(session, sendgrid_settings, client, cycle, "parsed")
    calls = [c for c in sendgrid_api.calls if c.body["categories"] == ["meeting_invite"]]
    assert len(calls) == 3
    body = calls[0].body
    [attachment] = body["attachments"]
    assert attachment["filename"] == "invite.ics" and attachment["type"] == "text/calendar; method=REQUEST"
    calendar = icalendar.Calendar.from_ical(base64.b64decode(attachment["content"]))
    assert str(calendar["method"]) == "REQUEST" and str(the_event(calendar)["uid"]) == meeting.uid
    assert body["reply_to"]["email"].startswith("reply+")


def test_the_host_gets_the_headcount_and_changed_logistics_update_the_invite(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    meeting = approved(session, settings, client, cycle)
    result = CliRunner().invoke(main, ["meeting", "logistics", "hudson-valley-ceo-forum", "--host",
                                       "Carmen Ruiz <carmen@ruizfoods.example>", "--address", "12 Main St, Beacon, NY"])
    assert result.exit_code == 0 and "3 updated invites queued" in result.output, result.output
    updates = emails(session, "meeting_invite")[3:]
    message = eml(settings, updates[0])
    assert "12 Main St, Beacon, NY" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    event = the_event(ics_of(message, "REQUEST"))
    assert int(event["sequence"]) == 1 and "12 Main St, Beacon, NY" in str(event["location"])
    # The same logistics again: no update.
    result = CliRunner().invoke(main, ["meeting", "logistics", "hudson-valley-ceo-forum", "--address", "12 Main St, Beacon, NY"])
    assert "updated invites" not in result.output and len(emails(session, "meeting_invite")) == 6
    say(client, rsvp_of(session, meeting, BEN[1]).token, "Yes, I'll be there", BEN, "raw")
    assert sorted(h.to_email for h in emails(session, "meeting_headcount")) == [CARMEN[1], DANA[1]]
