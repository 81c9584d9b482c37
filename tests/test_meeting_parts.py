"""The meeting's pure parts: the .ics across a DST change, reading calendar answers, the agenda's
timings and its lines read back, RSVPs in several languages, poll answers, recap answers, the
recurrence rule and what the tick finds due."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from app.meeting import agenda as agendas
from app.meeting.calendar import Invite, build_ics, calendar_parts, read_replies
from app.meeting.poll import read_confirm
from app.meeting.poll_reading import read_choices
from app.meeting.recap import read_commitments
from app.meeting.rsvp import headcount, read_rsvp
from app.meeting.schedule import MeetingState, due, occurrences, rule_from_words
from app.models import RsvpResponse
from tests.meeting_mails import CLIENTS

NY = ZoneInfo("America/New_York")


def invite(starts_local: datetime, hours: int = 4, sequence: int = 0) -> Invite:
    starts_at = starts_local.replace(tzinfo=NY).astimezone(UTC)
    return Invite(
        uid="meeting-0f3a@in.forum.example", sequence=sequence, summary="Hudson Valley CEO Forum: March meeting",
        description="08:30  25 min  Check-in — Dana", location="Beacon Hotel, Main St", starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=hours), timezone="America/New_York", organizer_name="Dana Whitfield",
        organizer_address="reply+" + "ab" * 16 + "@in.forum.example",
        attendees=(("Alice Chen", "alice@northwind.example"), ("Müller, Hans", "hans@mueller.example")),
    )


@pytest.mark.parametrize("day", [date(2027, 3, 11), date(2027, 3, 18), date(2026, 10, 29), date(2026, 11, 5)])
def test_the_ics_shows_0830_local_on_both_sides_of_a_dst_change(day: date) -> None:
    """DST starts 14 March 2027 and ends 1 November 2026 in New York: 08:30 stays 08:30, its UTC
    moves. Read back with the file's own VTIMEZONE (the TZID renamed, so no zoneinfo helps)."""
    ics = build_ics(invite(datetime.combine(day, datetime.min.time()).replace(hour=8, minute=30)), "REQUEST",
                    datetime(2026, 10, 1, tzinfo=UTC))
    for tzid in ("America/New_York", "Roundtable Test Zone"):
        calendar = icalendar.Calendar.from_ical(ics.replace(b"America/New_York", tzid.encode()))
        [event] = calendar.walk("VEVENT")
        start, end = event.decoded("dtstart"), event.decoded("dtend")
        summer = date(2027, 3, 14) <= day or day < date(2026, 11, 1)
        assert start.utcoffset() == timedelta(hours=-4 if summer else -5), (tzid, day)
        assert (start.hour, start.minute, end.hour) == (8, 30, 12)
        assert start.astimezone(UTC).hour == (12 if summer else 13)
    [timezone] = calendar.walk("VTIMEZONE")
    assert {c.name for c in timezone.subcomponents} == {"STANDARD", "DAYLIGHT"}


def test_the_ics_carries_what_calendars_need() -> None:
    ics = build_ics(invite(datetime(2027, 3, 11, 8, 30), sequence=3), "REQUEST", datetime(2027, 2, 1, tzinfo=UTC))
    calendar = icalendar.Calendar.from_ical(ics)
    assert str(calendar["method"]) == "REQUEST" and str(calendar["version"]) == "2.0"
    [event] = calendar.walk("VEVENT")
    assert int(event["sequence"]) == 3 and str(event["uid"]) == "meeting-0f3a@in.forum.example"
    assert event["organizer"].params["CN"] == "Dana Whitfield"
    assert [a.params["CN"] for a in event["attendee"]] == ["Alice Chen", "Müller, Hans"]
    assert all(a.params["RSVP"] == "TRUE" and a.params["PARTSTAT"] == "NEEDS-ACTION" for a in event["attendee"])
    [alarm] = event.walk("VALARM")
    assert alarm.decoded("trigger") == timedelta(hours=-1)
    assert ics.index(b"BEGIN:VTIMEZONE") < ics.index(b"BEGIN:VEVENT")
    cancel = icalendar.Calendar.from_ical(build_ics(invite(datetime(2027, 3, 11, 8, 30), sequence=4), "CANCEL",
                                                    datetime(2027, 2, 2, tzinfo=UTC)))
    [event] = cancel.walk("VEVENT")
    assert str(cancel["method"]) == "CANCEL" and str(event["status"]) == "CANCELLED" and not event.walk("VALARM")


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize(("partstat", "answer"), [("ACCEPTED", "yes"), ("DECLINED", "no"), ("TENTATIVE", "maybe")])
def test_each_calendars_reply_is_read(client: str, partstat: str, answer: str) -> None:
    starts_at = datetime(2027, 3, 11, 13, 30, tzinfo=UTC)
    raw = CLIENTS[client](token="c" * 32, uid="meeting-0f3a@in.forum.example", sequence=2, partstat=partstat,
                          name="Ben Okafor", address="ben@okafor.example", starts_at=starts_at,
                          ends_at=starts_at + timedelta(hours=4), summary="Forum: March meeting")
    replies = [r for part in calendar_parts(raw) for r in read_replies(part)]
    assert replies and {(r.uid, r.sequence, r.attendee, r.response) for r in replies} == {
        ("meeting-0f3a@in.forum.example", 2, "ben@okafor.example", answer)}


def test_a_request_or_a_broken_file_is_no_reply() -> None:
    assert read_replies(build_ics(invite(datetime(2027, 3, 11, 8, 30)), "REQUEST", datetime(2027, 2, 1, tzinfo=UTC))) == []
    assert read_replies(b"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n") == []
    assert read_replies(b"not a calendar") == []


def test_the_draft_adds_up_to_the_meeting_and_ranks_topics() -> None:
    topics = [agendas.Topic("Carmen Ruiz", "Pricing", "C"), agendas.Topic("Ben Okafor", "Hiring a COO", "B"),
              agendas.Topic("Alice Chen", "Priority A: a second plant?", "A"), agendas.Topic("Dev Patel", "Exit", None)]
    for minutes in (120, 180, 240, 270):
        items = agendas.draft(minutes, topics, "Dana Whitfield")
        assert agendas.total(items) == minutes
        assert all(i.minutes >= agendas.STEP for i in items)
    items = agendas.draft(240, topics, "Dana Whitfield")
    assert [i.owner for i in items if i.title.startswith("Issue")] == ["Alice Chen", "Ben Okafor", "Carmen Ruiz", "Dev Patel"]
    assert items[2].title == "Issue (A): a second plant?"
    assert agendas.draft(240, [], "Dana")[2].title == "Issue processing: topics from the room"
    with pytest.raises(ValueError):
        agendas.draft(20, topics, "Dana")


@pytest.mark.parametrize(
    ("text", "priority", "title"),
    [
        ("Priority A: Should we open a second plant?\nMore detail", "A", "Should we open a second plant?"),
        ("A - how to respond to the price demand", "A", "how to respond to the price demand"),
        ("(B) Hiring a COO", "B", "Hiring a COO"),
        ("A new plant in Ohio?", "A", "A new plant in Ohio?"),
        ("Priority: C. Pricing", "C", "Pricing"),
        ("x" * 100, None, "x" * 69 + "…"),
    ],
)
def test_topic_titles(text: str, priority: str | None, title: str) -> None:
    assert agendas.topic_title(text, priority) == title


def test_agenda_lines_read_back_as_written() -> None:
    items = agendas.draft(240, [agendas.Topic("Alice Chen", "Cash - or equity?", "A")], "Dana Whitfield")
    lines = agendas.as_lines(items, datetime(2027, 3, 11, 13, 30, tzinfo=UTC), "America/New_York")
    assert lines[0] == "08:30  25 min  Check-in — Dana Whitfield"
    assert agendas.read_agenda("\n".join(lines)) == items
    edited = agendas.read_agenda("Here you go:\n\n- 9:00 30 min Hiring - Ben\n* 45 mins Strategy – Alice Chen\n20m Close\nThanks")
    assert [(i.title, i.minutes, i.owner) for i in edited] == [("Hiring", 30, "Ben"), ("Strategy", 45, "Alice Chen"), ("Close", 20, "")]
    assert agendas.is_approval("APPROVE") and agendas.is_approval("approved, thanks") and not agendas.is_approval("Can we talk?")


@pytest.mark.parametrize(
    ("language", "text", "answer"),
    [
        ("en", "Yes", "yes"), ("en", "I'll be there!", "yes"), ("en", "Count me in", "yes"),
        ("en", "yes, joining by video", "video"), ("en", "Joining by Zoom", "video"), ("en", "remote this time", "video"),
        ("en", "No, sorry — I'm away that week", "no"), ("en", "Can’t make it", "no"), ("en", "Regrets", "no"),
        ("en", "No problem, see you there", "yes"), ("en", "Can't wait!", "yes"), ("en", "Looking forward to it", "yes"),
        ("en", "Maybe", "maybe"), ("en", "Not sure yet", "maybe"), ("en", "Tentatively yes", "maybe"),
        ("es", "Sí, allí estaré", "yes"), ("es", "No puedo, lo siento", "no"), ("es", "Quizás", "maybe"), ("es", "Por zoom", "video"),
        ("fr", "Oui, je serai là", "yes"), ("fr", "Je ne pourrai pas venir", "no"), ("fr", "Peut-être", "maybe"),
        ("de", "Ja, bin dabei", "yes"), ("de", "Leider nicht", "no"), ("de", "Vielleicht", "maybe"),
        ("pt", "Sim, estarei lá", "yes"), ("nl", "Helaas niet", "no"), ("it", "Forse", "maybe"),
    ],
)
def test_rsvp_words(language: str, text: str, answer: str) -> None:
    assert read_rsvp(text, language) == RsvpResponse(answer)


@pytest.mark.parametrize("text", ["Thanks for sending this", "Can I bring a guest?", "", "Yes and no",
                                  "Thanks!\n\nWill you be there? Reply YES, NO, MAYBE or VIDEO (joining by video)"])
def test_no_rsvp_is_guessed(text: str) -> None:
    assert read_rsvp(text, "en") is None


def test_spanish_words_count_only_for_a_spanish_group() -> None:
    assert read_rsvp("Sí, allí estaré", "en") is None


def test_headcount() -> None:
    count = headcount(["yes", "video", "no", "none", "maybe", "yes"])
    assert (count.coming, count.video, count.no, count.maybe, count.waiting) == (3, 1, 1, 1, 1)
    assert count.line() == "3 coming (1 by video), 1 maybe, 1 not coming, 1 no answer yet"


OPTIONS = [date(2027, 3, 9), date(2027, 3, 11), date(2027, 3, 16)]  # Tue, Thu, Tue


@pytest.mark.parametrize(
    ("text", "choices"),
    [
        ("1 and 3", [1, 3]), ("Thursday works, not the 16th", [2]), ("any", [1, 2, 3]), ("All work for me", [1, 2, 3]),
        ("None of them, sorry", []), ("2", [2]), ("Any except the 9th", [2, 3]), ("Tuesdays are fine", [1, 3]),
        ("March 16 is best", [3]), ("1, 2 but not 3", [1, 2]), ("Only the 11th", [2]), ("2027-03-09", [1]),
        ("Not the 9th", [2, 3]), ("thanks!", None), ("", None),
    ],
)
def test_poll_answers(text: str, choices: list[int] | None) -> None:
    assert read_choices(text, OPTIONS) == choices


def test_confirm_and_recap_answers() -> None:
    assert read_confirm("CONFIRM 2\n\nDana") == 2 and read_confirm("confirm option #3") == 3
    assert read_confirm("Let's do 2") is None
    stated = ["Hire a plant manager"]
    assert read_commitments("Confirmed, thanks!", stated) == stated
    assert read_commitments("Yes", stated) == stated
    assert read_commitments("- Hire a COO\n- Close the round", stated) == ["Hire a COO", "Close the round"]
    assert read_commitments("", stated) is None


def test_the_rule() -> None:
    assert rule_from_words("second Thursday") == "FREQ=MONTHLY;BYDAY=+2TH"
    assert rule_from_words("last Friday of the month") == "FREQ=MONTHLY;BYDAY=-1FR"
    assert rule_from_words("RRULE:FREQ=MONTHLY;BYDAY=+1TU") == "FREQ=MONTHLY;BYDAY=+1TU"
    assert occurrences("FREQ=MONTHLY;BYDAY=+2TH", date(2027, 3, 1), date(2027, 5, 31)) == [
        date(2027, 3, 11), date(2027, 4, 8), date(2027, 5, 13)]
    from app.meeting.meetings import MeetingError

    with pytest.raises(MeetingError):
        rule_from_words("whenever suits")


def test_what_is_due() -> None:
    starts = datetime(2027, 3, 11, 13, 30, tzinfo=UTC)
    state = MeetingState(starts_at=starts, ends_at=starts + timedelta(hours=4), is_cancelled=False,
                         invited_at=starts - timedelta(days=2), rsvp_reminder_sent=False, recap_requested_at=None,
                         recap_sent=False)
    assert due(state, starts - timedelta(days=2)) == due(state, starts - timedelta(days=3))  # nothing yet
    assert due(state, starts - timedelta(hours=20)).rsvp_reminder
    assert not due(state, starts + timedelta(minutes=1)).rsvp_reminder  # too late to remind
    assert due(state, starts + timedelta(hours=4)).recap_request
    assert not due(state, starts + timedelta(days=30)).recap_request  # long past: not after downtime
    asked = MeetingState(**{**state.__dict__, "recap_requested_at": starts + timedelta(hours=5)})
    assert not due(asked, starts + timedelta(days=1)).recaps and due(asked, starts + timedelta(days=3)).recaps
    cancelled = MeetingState(**{**state.__dict__, "is_cancelled": True})
    assert due(cancelled, starts + timedelta(hours=20)) == due(cancelled, starts - timedelta(hours=20))
