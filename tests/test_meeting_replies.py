"""What people hear back from their own replies about the meeting, through the webhook in both
SendGrid modes: a member's receipt for a text RSVP and for their recap commitments (none for a
calendar answer or an auto-reply, a few a day at most), and a facilitator's note when a poll or
agenda reply cannot be applied, saying why and what to write instead."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, jobs
from app.cli import main
from app.cycles import local_label
from app.meeting.meetings import meeting_context
from app.meeting.receipts import MAX_PROBLEMS_A_DAY, MAX_RECEIPTS_A_DAY
from app.models import Cycle, Group, Poll
from app.settings import Settings
from tests.conftest import TZ, make_cycle
from tests.mails import reply
from tests.meeting_mails import CLIENTS
from tests.test_meeting import (
    ALICE,
    BEN,
    CARMEN,
    DANA,
    MODES,
    approved,
    at_deadline,
    emails,
    eml,
    inbound,
    poll_dates,
    post,
    rsvp_of,
    say,
    the_meeting,
    with_updates,
)


def body(settings: Settings, row) -> str:  # type: ignore[no-untyped-def]
    return eml(settings, row).get_body(("plain",)).get_content()  # type: ignore[union-attr]


# --- receipts to members ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_text_rsvp_gets_a_receipt_saying_what_was_read_and_a_calendar_answer_none(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    meeting = approved(session, settings, client, cycle, mode)
    alice = rsvp_of(session, meeting, ALICE[1])
    inbound_id = say(client, alice.token, "Yes, joining by video this time.", ALICE, mode, subject="Re: March meeting")
    [receipt] = emails(session, "meeting_receipt")
    assert receipt.to_email == ALICE[1] and receipt.reply_to == f"reply+{alice.token}@in.forum.example"
    assert receipt.in_reply_to == inbound(session, inbound_id).message_id
    day = local_label(cycle.meeting_starts_at, TZ, "%a %-d %b")
    message = eml(settings, receipt)
    assert message["Subject"] == "Re: March meeting"
    assert message["Auto-Submitted"] == "auto-generated"
    assert f"you're down as joining by video for {day}" in body(settings, receipt)
    assert "Reply to change it." in body(settings, receipt)

    # A calendar's Accept: the calendar shows it, no receipt.
    ben = rsvp_of(session, meeting, BEN[1])
    raw = CLIENTS["outlook"](token=ben.token, uid=meeting.uid, sequence=0, partstat="ACCEPTED", name=BEN[0],
                             address=BEN[1], starts_at=cycle.meeting_starts_at, ends_at=cycle.meeting_ends_at,
                             summary="forum")
    assert inbound(session, post(client, raw, mode)).status == "accepted"
    assert rsvp_of(session, meeting, BEN[1]).response == "yes"
    assert len(emails(session, "meeting_receipt")) == 1

    # An out-of-office answering the invite is set aside before it is read: no receipt, no RSVP.
    row = inbound(session, post(client, reply(rsvp_of(session, meeting, CARMEN[1]).token,
                                              "I am away until Monday, no access to email.", sender=CARMEN,
                                              subject="Automatic reply: March meeting",
                                              headers={"Auto-Submitted": "auto-replied"}), mode))
    assert row.status == "ignored"
    assert rsvp_of(session, meeting, CARMEN[1]).response == "none"
    assert len(emails(session, "meeting_receipt")) == 1


def test_receipts_stop_after_a_few_a_day_while_answers_are_still_recorded(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    meeting = approved(session, settings, client, cycle)
    token = rsvp_of(session, meeting, ALICE[1]).token
    answers = ["yes", "no", "maybe", "by video", "yes"]
    for text in answers:
        say(client, token, text, ALICE, "raw")
    assert rsvp_of(session, meeting, ALICE[1]).response == "yes"
    receipts = emails(session, "meeting_receipt")
    assert len(receipts) == MAX_RECEIPTS_A_DAY < len(answers)
    assert [r.context["answer"] for r in receipts] == ["yes", "no", "maybe"]
    # A day later, one again.
    clock.set_now(clock.now() + timedelta(days=1, minutes=1))
    say(client, token, "no", ALICE, "raw")
    assert len(emails(session, "meeting_receipt")) == MAX_RECEIPTS_A_DAY + 1


@pytest.mark.parametrize("mode", MODES)
def test_recap_commitments_confirmed_or_corrected_get_a_receipt_listing_them(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    meeting = approved(session, settings, client, cycle, mode)
    clock.set_now(cycle.meeting_ends_at + timedelta(hours=1))
    jobs.run(jobs.TICK_JOB)
    say(client, meeting.recap_token, "Good meeting.", DANA, mode)
    alice, ben = rsvp_of(session, meeting, ALICE[1]), rsvp_of(session, meeting, BEN[1])
    say(client, alice.recap_token, "Confirmed, thanks!", ALICE, mode)
    say(client, ben.recap_token, "- Renegotiate the fuel contract\n- Hire two drivers", BEN, mode)
    receipts = {r.to_email: r for r in emails(session, "meeting_receipt")}
    assert set(receipts) == {ALICE[1], BEN[1]}
    assert receipts[ALICE[1]].reply_to == f"reply+{alice.recap_token}@in.forum.example"
    text = body(settings, receipts[ALICE[1]])
    assert "your commitments for next month, as you confirmed them:" in text
    assert "- Hire a plant manager\n- Board deck by the 20th" in text and "Reply to correct them." in text
    text = body(settings, receipts[BEN[1]])
    assert "as you corrected them:" in text and "- Renegotiate the fuel contract\n- Hire two drivers" in text
    # Words that are no commitments go to the facilitator, not back as a receipt.
    row = inbound(session, say(client, rsvp_of(session, meeting, CARMEN[1]).recap_token, "", CARMEN, mode))
    assert row.kind == "note" and len(emails(session, "meeting_receipt")) == 2


# --- facilitators' replies that cannot be applied ------------------------------------------------


def open_poll(group: Group, dates: list) -> None:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["meeting", "poll", group.slug, "--options", ",".join(d.isoformat() for d in dates),
                                       "--hours", "08:30-12:30"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("mode", MODES)
def test_a_confirm_of_an_option_that_does_not_exist_gets_a_reply_listing_the_options(
    client: FlaskClient, session: Session, settings: Settings, group: Group, mode: str
) -> None:
    dates = poll_dates()
    open_poll(group, dates)
    poll = session.scalars(select(Poll)).one()
    row = inbound(session, say(client, poll.token, "CONFIRM 5", DANA, mode, subject="Re: date poll"))
    assert row.status == "rejected" and "there is no option 5" in (row.reason or "")
    [note] = emails(session, "meeting_problem")
    assert note.to_email == DANA[1] and note.reply_to == f"reply+{poll.token}@in.forum.example"
    assert note.in_reply_to == row.message_id
    message = eml(settings, note)
    assert message["Subject"] == "Re: date poll" and message["Auto-Submitted"] == "auto-generated"
    text = body(settings, note)
    assert "We could not apply your reply about the date poll: there is no option 5 (1 to 3)." in text
    assert "Reply CONFIRM and the number of one of these options" in text
    assert f"3. {dates[2]:%A} {dates[2].day} {dates[2]:%B}" in text and "CONFIRM 5" in text
    # Not from the facilitator: refused as before, and nobody is written to.
    row = inbound(session, say(client, poll.token, "CONFIRM 5", ALICE, mode))
    assert row.status == "rejected" and len(emails(session, "meeting_problem")) == 1
    # Written as the note says: applied.
    row = inbound(session, say(client, poll.token, "CONFIRM 2", DANA, mode))
    assert row.status == "accepted" and len(emails(session, "meeting_problem")) == 1


def test_a_confirm_of_a_past_or_overlapping_date_gets_a_reply(
    client: FlaskClient, session: Session, settings: Settings, group: Group
) -> None:
    dates = poll_dates()
    make_cycle(session, group, day=dates[1])  # option 2 is taken by a meeting scheduled by hand
    session.commit()
    open_poll(group, dates)
    poll = session.scalars(select(Poll)).one()
    row = inbound(session, say(client, poll.token, "CONFIRM 2", DANA, "raw"))
    assert row.status == "rejected" and "already has a meeting" in (row.reason or "")
    # Time passes beyond option 1.
    clock.set_now(clock.now() + timedelta(days=(dates[0] - clock.now().astimezone(ZoneInfo(TZ)).date()).days + 1))
    row = inbound(session, say(client, poll.token, "Confirm 1", DANA, "raw"))
    assert row.status == "rejected", row.reason
    notes = emails(session, "meeting_problem")
    assert len(notes) == 2
    assert "already has a meeting" in body(settings, notes[0]) and "CONFIRM 1" in body(settings, notes[0])
    assert "poll not confirmed" not in body(settings, notes[1])
    assert notes[1].context["why"] == (row.reason or "").removeprefix("poll not confirmed: ")
    assert len(session.scalars(select(Cycle)).all()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_an_agenda_reply_that_cannot_be_read_gets_a_reply_with_the_lines_to_edit(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    with_updates(session, settings, client, cycle, mode)
    at_deadline(session, cycle)
    meeting = the_meeting(session, cycle)
    row = inbound(session, say(client, meeting.agenda_token, "Can we start at 9 and drop the presentation?", DANA, mode))
    assert row.status == "rejected"
    [note] = emails(session, "meeting_problem")
    assert note.reply_to == f"reply+{meeting.agenda_token}@in.forum.example"
    text = body(settings, note)
    assert "we found neither APPROVE nor agenda lines we could read in it" in text
    assert "Reply APPROVE to send the agenda as it stands" in text
    assert "08:30  " in text and "Check-in" in text and "Can we start at 9" in text
    # The edited lines, as the note suggests, are applied.
    lines = "\n".join(meeting_context(meeting)["agenda_lines"])  # type: ignore[call-overload]
    row = inbound(session, say(client, meeting.agenda_token, lines.replace("Check-in", "Welcome"), DANA, mode))
    assert row.status == "accepted", row.reason
    assert len(emails(session, "meeting_invite")) == 3


def test_problem_notes_stop_after_a_few_a_day(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    with_updates(session, settings, client, cycle)
    at_deadline(session, cycle)
    meeting = the_meeting(session, cycle)
    for n in range(MAX_PROBLEMS_A_DAY + 2):
        row = inbound(session, say(client, meeting.agenda_token, f"question {n}?", DANA, "raw"))
        assert row.status == "rejected"
    assert len(emails(session, "meeting_problem")) == MAX_PROBLEMS_A_DAY


# --- a moved meeting: what is still queued follows, and who had the old date is told -----------------


def move_to(group: Group, day, start: str = "09:00") -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["meeting", "move", group.slug, "--date", day.isoformat(), "--time", start])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("mode", MODES)
def test_a_move_before_the_invites_refreshes_queued_requests_and_tells_who_had_the_old_date(
    client: FlaskClient, session: Session, settings: Settings, group: Group, cycle: Cycle, mode: str
) -> None:
    from app.cycles import meeting_label, queue_reminders, queue_requests
    from app.meeting.meetings import meeting_for

    meeting_for(session, settings, cycle)
    queue_requests(session, settings, cycle)
    session.commit()
    requests = {r.to_email: r for r in emails(session, "update_request")}
    jobs.enqueue_sends([requests[ALICE[1]].id, requests[BEN[1]].id])  # Carmen's is still queued
    say(client, requests[ALICE[1]].reply_to.split("+")[1].split("@")[0], "WINS\nClosed the round.", ALICE, mode)  # type: ignore[union-attr]
    reminder_ids = queue_reminders(session, settings, cycle, 0, False)  # queued, not sent yet
    session.commit()
    old_label = meeting_label(cycle)
    new_day = cycle.meeting_starts_at.astimezone(ZoneInfo(TZ)).date() + timedelta(days=7)
    move_to(group, new_day)
    session.expire_all()
    moved = session.get_one(Cycle, cycle.id)
    new_label = meeting_label(moved)
    assert new_label != old_label

    # Still queued: the new date, the same row (its Message-ID and threading kept).
    carmen = emails(session, "update_request")[2]
    assert carmen.status == "queued" and carmen.context["meeting_label"] == new_label
    assert carmen.context["due_label"] == local_label(moved.deadline_at, TZ)
    reminders = [r for r in emails(session, "reminder") if r.id in reminder_ids]
    assert reminders and all(r.context["meeting_label"] == new_label for r in reminders)
    jobs.enqueue_sends([carmen.id, *reminder_ids])
    text = body(settings, emails(session, "update_request")[2])
    assert new_label in text and old_label not in text

    # Who had the old date: one short note each (no invite update goes out: none was sent).
    notes = {n.to_email: n for n in emails(session, "meeting_moved")}
    assert set(notes) == {ALICE[1], BEN[1]}
    assert emails(session, "meeting_invite") == []
    ben_request = requests[BEN[1]]
    assert notes[BEN[1]].reply_to == ben_request.reply_to and notes[BEN[1]].in_reply_to == ben_request.message_id
    text = body(settings, notes[BEN[1]])
    assert f"has moved to {new_label}" in text and f"It was {old_label}." in text
    assert f"Your update is now due {local_label(moved.deadline_at, TZ)}" in text
    assert "Your update is now due" not in body(settings, notes[ALICE[1]])  # hers is in

    # Moved again: everyone who now has a date (Carmen's request went out) hears once more.
    move_to(group, new_day + timedelta(days=1))
    assert sorted(n.to_email for n in emails(session, "meeting_moved")[2:]) == sorted([ALICE[1], BEN[1], CARMEN[1]])


def test_a_move_after_the_invites_sends_only_the_invite_update_and_drops_the_old_reminders(
    client: FlaskClient, session: Session, settings: Settings, group: Group, cycle: Cycle
) -> None:
    from app.meeting.rsvp import queue_rsvp_reminders

    meeting = approved(session, settings, client, cycle)
    session.expire_all()
    stale = queue_rsvp_reminders(session, settings, the_meeting(session, cycle), clock.now())
    session.commit()
    assert len(stale) == 3
    move_to(group, cycle.meeting_starts_at.astimezone(ZoneInfo(TZ)).date() + timedelta(days=7))
    assert emails(session, "meeting_moved") == []  # the invite update says it
    assert len(emails(session, "meeting_invite")) == 6
    old = [r for r in emails(session, "meeting_rsvp_reminder") if r.id in stale]
    assert all(r.status == "cancelled" and "moved" in (r.last_error or "") for r in old)
    # The reminder for the new date comes from the tick, the day before.
    session.expire_all()
    clock.set_now(session.get_one(Cycle, cycle.id).meeting_starts_at - timedelta(hours=20))
    jobs.run(jobs.TICK_JOB)
    fresh = [r for r in emails(session, "meeting_rsvp_reminder") if r.id not in stale]
    assert len(fresh) == 3 and all(r.status == "sent" for r in fresh)
    assert meeting.id == the_meeting(session, cycle).id


# --- headcount emails, batched ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_headcount_goes_at_once_after_a_quiet_hour_and_otherwise_gathers_answers_for_the_next_one(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle, mode: str
) -> None:
    from app.meeting.meetings import set_logistics

    meeting = approved(session, settings, client, cycle, mode)
    set_logistics(session.get_one(type(meeting), meeting.id), host_name="Carmen Ruiz", host_email=CARMEN[1])
    session.commit()
    start = clock.now()
    say(client, rsvp_of(session, meeting, ALICE[1]).token, "Yes, joining by video this time.", ALICE, mode)
    first = {h.to_email: h for h in emails(session, "meeting_headcount")}
    assert set(first) == {DANA[1], CARMEN[1]} and {h.status for h in first.values()} == {"sent"}

    # Within the hour: Ben by text, Carmen by calendar, Ben again. Nothing more is sent yet.
    clock.set_now(start + timedelta(minutes=10))
    say(client, rsvp_of(session, meeting, BEN[1]).token, "Sorry, can't make it: board meeting.", BEN, mode)
    clock.set_now(start + timedelta(minutes=20))
    carmen = rsvp_of(session, meeting, CARMEN[1])
    post(client, CLIENTS["apple"](token=carmen.token, uid=meeting.uid, sequence=0, partstat="TENTATIVE", name=CARMEN[0],
                                  address=CARMEN[1], starts_at=cycle.meeting_starts_at, ends_at=cycle.meeting_ends_at,
                                  summary="forum"), mode)
    clock.set_now(start + timedelta(minutes=30))
    say(client, rsvp_of(session, meeting, BEN[1]).token, "Actually yes, I moved the board meeting.", BEN, mode)
    rows = emails(session, "meeting_headcount")
    held = [h for h in rows if h.status == "queued"]
    assert len(rows) == 4 and len(held) == 2 and {h.to_email for h in held} == {DANA[1], CARMEN[1]}
    dana = next(h for h in held if h.to_email == DANA[1])
    assert [(a["member_name"], a["answer"]) for a in dana.context["answers"]] == [
        ("Ben Okafor", "no"), ("Carmen Ruiz", "maybe"), ("Ben Okafor", "yes")]
    jobs.run(jobs.TICK_JOB)  # not yet an hour since the last one
    assert {h.status for h in emails(session, "meeting_headcount") if h.id == dana.id} == {"queued"}

    # An hour after the first: the tick sends one email each, with every answer and their words.
    clock.set_now(first[DANA[1]].sent_at + timedelta(hours=1))  # type: ignore[operator]
    jobs.run(jobs.TICK_JOB)
    rows = emails(session, "meeting_headcount")
    assert len(rows) == 4 and {h.status for h in rows} == {"sent"}
    dana = next(h for h in rows if h.id == dana.id)
    message = eml(settings, dana)
    assert message["Subject"].endswith("3 new answers")
    text = body(settings, dana)
    assert 'They wrote: "Sorry, can\'t make it: board meeting."' in text
    assert 'They wrote: "Actually yes, I moved the board meeting."' in text
    assert "Carmen Ruiz: MAYBE (in their calendar)" in text
    assert "Headcount: 2 coming (1 by video), 1 maybe, 0 not coming, 0 no answer yet." in text
    jobs.run(jobs.TICK_JOB)
    assert len(emails(session, "meeting_headcount")) == 4

    # After another quiet hour, the next answer goes at once again.
    clock.set_now(clock.now() + timedelta(hours=2))
    say(client, rsvp_of(session, meeting, ALICE[1]).token, "Change of plan: I'll be there in person.", ALICE, mode)
    rows = emails(session, "meeting_headcount")
    assert len(rows) == 6 and {h.status for h in rows} == {"sent"}


def test_a_cancelled_meeting_drops_a_held_headcount(
    client: FlaskClient, session: Session, settings: Settings, cycle: Cycle
) -> None:
    meeting = approved(session, settings, client, cycle)
    say(client, rsvp_of(session, meeting, ALICE[1]).token, "yes", ALICE, "raw")
    say(client, rsvp_of(session, meeting, BEN[1]).token, "no", BEN, "raw")
    [_, held] = emails(session, "meeting_headcount")
    assert held.status == "queued"
    result = CliRunner().invoke(main, ["meeting", "cancel", "hudson-valley-ceo-forum"])
    assert result.exit_code == 0, result.output
    clock.set_now(clock.now() + timedelta(hours=2))
    jobs.run(jobs.TICK_JOB)
    assert emails(session, "meeting_headcount")[1].status == "cancelled"
