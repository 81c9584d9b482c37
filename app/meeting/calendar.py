"""The calendar invite (RFC 5545 and iMIP, RFC 6047) built and read with `icalendar`. Pure.

One UID per meeting for good; SEQUENCE raised on every change members are sent, so calendars
replace the event instead of adding a second one. The ORGANIZER carries the facilitator's name
but a `reply+<token>@<inbound domain>` address: calendars send their REPLY to the organizer,
and so to us, where the token says whose answer it is.
"""

from __future__ import annotations

import email
import email.message
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.policy import compat32
from zoneinfo import ZoneInfo

import icalendar

PRODID = "-//Roundtable//Meeting invite//EN"
ALARM_BEFORE = timedelta(hours=1)

# RFC 5546 PARTSTAT as we read it back.
PARTSTATS = {"ACCEPTED": "yes", "DECLINED": "no", "TENTATIVE": "maybe"}


@dataclass(frozen=True)
class Invite:
    """What one calendar invite says, as plain values (times aware, any zone)."""

    uid: str
    sequence: int
    summary: str
    description: str
    location: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    organizer_name: str
    organizer_address: str
    attendees: tuple[tuple[str, str], ...]  # (name, email)
    url: str = ""


def build_ics(invite: Invite, method: str, stamp: datetime) -> bytes:
    """The .ics for METHOD:REQUEST (invite or update) or METHOD:CANCEL, with its VTIMEZONE."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"method {method!r}: REQUEST or CANCEL")
    tz = ZoneInfo(invite.timezone)
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    # The zone's rules around the meeting only (add_missing_timezones would write every change
    # from 1970 on), placed before the event as Outlook expects.
    calendar.add_component(
        icalendar.Timezone.from_tzid(
            invite.timezone,
            first_date=(invite.starts_at - timedelta(days=366)).date(),
            last_date=(invite.ends_at + timedelta(days=366)).date(),
        )
    )
    event = icalendar.Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", stamp.astimezone(ZoneInfo("UTC")))
    # Local wall-clock time with its TZID: the calendar shows 08:30 whatever DST does in between.
    event.add("dtstart", invite.starts_at.astimezone(tz))
    event.add("dtend", invite.ends_at.astimezone(tz))
    event.add("summary", invite.summary)
    if invite.description:
        event.add("description", invite.description)
    if invite.location:
        event.add("location", invite.location)
    if invite.url:
        event.add("url", invite.url)
    organizer = icalendar.vCalAddress(f"mailto:{invite.organizer_address}")
    organizer.params["CN"] = icalendar.vText(invite.organizer_name)
    event.add("organizer", organizer)
    for name, address in invite.attendees:
        attendee = icalendar.vCalAddress(f"mailto:{address}")
        attendee.params["CN"] = icalendar.vText(name)
        attendee.params["ROLE"] = icalendar.vText("REQ-PARTICIPANT")
        attendee.params["PARTSTAT"] = icalendar.vText("NEEDS-ACTION")
        attendee.params["RSVP"] = icalendar.vText("TRUE")
        event.add("attendee", attendee, encode=False)
    if method == "CANCEL":
        event.add("status", "CANCELLED")
    else:
        event.add("status", "CONFIRMED")
        event.add("transp", "OPAQUE")
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", invite.summary)
        alarm.add("trigger", -ALARM_BEFORE)
        event.add_component(alarm)
    calendar.add_component(event)
    return bytes(calendar.to_ical())


@dataclass(frozen=True)
class CalendarReply:
    """One attendee's answer in an iMIP REPLY."""

    uid: str
    sequence: int
    attendee: str  # the address, lower case
    partstat: str  # ACCEPTED, DECLINED, TENTATIVE, ...
    comment: str = ""

    @property
    def response(self) -> str | None:
        """yes / no / maybe, or None for a PARTSTAT that answers nothing (NEEDS-ACTION)."""
        return PARTSTATS.get(self.partstat)


def _address(value: object) -> str:
    text = str(value)
    return text.split(":", 1)[1].strip().lower() if text.lower().startswith("mailto:") else text.strip().lower()


def read_replies(ics: bytes | str) -> list[CalendarReply]:
    """The attendee answers in one calendar object whose METHOD is REPLY; [] for anything else
    (a REQUEST forwarded back to us, a broken file)."""
    try:
        calendar = icalendar.Calendar.from_ical(ics)
    except (ValueError, IndexError, KeyError, TypeError):
        return []
    if str(calendar.get("method", "")).upper() != "REPLY":
        return []
    replies = []
    for event in calendar.walk("VEVENT"):
        attendees = event.get("attendee", [])
        if not isinstance(attendees, list):
            attendees = [attendees]
        try:
            sequence = int(event.get("sequence", 0))
        except (TypeError, ValueError):
            sequence = 0
        for attendee in attendees:
            partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
            replies.append(
                CalendarReply(
                    uid=str(event.get("uid", "")),
                    sequence=sequence,
                    attendee=_address(attendee),
                    partstat=partstat,
                    comment=str(event.get("comment", "")),
                )
            )
    return replies


def calendar_parts(raw: bytes) -> list[bytes]:
    """The calendar objects a message carries: text/calendar parts (Outlook, Apple, Google) and
    .ics files (Google attaches one as application/ics; SendGrid's parsed mode posts the part as
    a file). Bounded: a message with hundreds of parts is read for its first twenty."""
    try:
        message = email.message_from_bytes(raw, policy=compat32)
        parts = list(message.walk())
    except (RecursionError, ValueError, TypeError):
        return []
    found = []
    for part in parts[:200]:
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if content_type in ("text/calendar", "application/ics") or filename.endswith(".ics"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes) and data.strip():
                found.append(data)
        if len(found) >= 20:
            break
    return found
