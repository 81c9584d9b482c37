"""The meeting's place in time: a group's recurrence rule ("second Thursday, 08:30-12:30"),
cycles made ahead from it, and what the tick does for meetings (agenda draft at the deadline,
one RSVP reminder, the recap request and the recaps).

`occurrences`, `rule_from_words` and `due` are pure; `tick` flushes and returns outbound ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.cycles import CycleError, local_at, schedule_meeting
from app.meeting import recap
from app.meeting.meetings import MeetingError, draft_agenda, meeting_for
from app.meeting.poll import parse_hours
from app.meeting.rsvp import due_headcounts, queue_rsvp_reminders
from app.models import AgendaStatus, Cycle, CycleStatus, Group, Meeting, MeetingStatus
from app.settings import Settings

ORDINALS = {"first": "+1", "1st": "+1", "second": "+2", "2nd": "+2", "third": "+3", "3rd": "+3",
            "fourth": "+4", "4th": "+4", "last": "-1"}
DAYS = {"monday": "MO", "tuesday": "TU", "wednesday": "WE", "thursday": "TH", "friday": "FR",
        "saturday": "SA", "sunday": "SU"}
AHEAD = timedelta(days=28)  # cycles exist this long before their requests are due
NEARBY = timedelta(days=7)  # a meeting this close to a rule's date stands for it (a poll's, a move's)
RSVP_REMINDER_BEFORE = timedelta(days=1)
RSVP_REMINDER_AFTER_INVITE = timedelta(hours=12)
RECAP_WINDOW = timedelta(days=14)  # after downtime, no recap request for a meeting long past


def rule_from_words(words: str) -> str:
    """An RRULE from "second Thursday" or "last Friday", or an RRULE given as such (checked)."""
    text = words.strip()
    m = re.fullmatch(r"(?i)(?:every\s+)?(first|1st|second|2nd|third|3rd|fourth|4th|last)\s+([a-z]+?)s?(?:\s+of\s+the\s+month)?",
                     text)
    if m and m.group(2).lower() in DAYS:
        rule = f"FREQ=MONTHLY;BYDAY={ORDINALS[m.group(1).lower()]}{DAYS[m.group(2).lower()]}"
    else:
        rule = re.sub(r"(?i)^RRULE:", "", text).upper()
    try:
        rrulestr(rule, dtstart=datetime(2027, 1, 1))
    except (ValueError, TypeError):
        raise MeetingError(f"{words!r} is neither like 'second Thursday' nor an RRULE") from None
    return rule


def occurrences(rule: str, after: date, until: date) -> list[date]:
    """The rule's dates from `after` to `until`, both included. Pure."""
    start = datetime.combine(after, time())
    return [d.date() for d in rrulestr(rule, dtstart=start).between(start, datetime.combine(until, time()), inc=True)]


def make_cycles_ahead(session: Session, settings: Settings, group: Group, now: datetime,
                      known: set[str] | None = None) -> list[Cycle]:
    """Cycles for the rule's meetings ahead that have none yet. Flushes; safe twice: each rule
    date is remembered on its meeting, so a moved or cancelled meeting is not made again."""
    if not group.meeting_rule or not group.meeting_hours:
        return []
    start, hours = parse_hours(group.meeting_hours)
    tz = ZoneInfo(group.timezone)
    today = now.astimezone(tz).date()
    horizon = today + timedelta(days=group.request_days_before) + AHEAD
    made = []
    if known is None:
        known = set(session.scalars(select(Meeting.occurrence).where(Meeting.group_id == group.id)))
    for day in occurrences(group.meeting_rule, today, horizon):
        if day.isoformat() in known:
            continue
        starts_at = local_at(day, start, group.timezone)
        if starts_at <= now:
            continue
        near = session.scalar(
            select(Cycle).where(Cycle.group_id == group.id, Cycle.meeting_starts_at > starts_at - NEARBY,
                                Cycle.meeting_starts_at < starts_at + NEARBY).limit(1)
        )
        try:
            with session.begin_nested():
                if near is not None:
                    meeting = meeting_for(session, settings, near)
                    if meeting.occurrence is None:
                        meeting.occurrence = day.isoformat()
                else:
                    cycle = schedule_meeting(session, group, day=day, start=start, hours=hours, now=now)
                    meeting_for(session, settings, cycle, occurrence=day.isoformat())
                    made.append(cycle)
                session.flush()
        except IntegrityError:
            continue  # a concurrent tick made it
        except CycleError:
            continue  # a meeting scheduled by hand overlaps it, or its deadline has passed: that one stands
    return made


@dataclass(frozen=True)
class MeetingState:
    starts_at: datetime
    ends_at: datetime
    is_cancelled: bool
    invited_at: datetime | None  # when the approved agenda went out
    rsvp_reminder_sent: bool
    recap_requested_at: datetime | None
    recap_sent: bool


@dataclass(frozen=True)
class MeetingDue:
    rsvp_reminder: bool = False
    recap_request: bool = False
    recaps: bool = False


def due(state: MeetingState, now: datetime) -> MeetingDue:
    """What is due for one meeting at `now`. Pure."""
    if state.is_cancelled:
        return MeetingDue()
    reminder = (
        state.invited_at is not None
        and not state.rsvp_reminder_sent
        and state.starts_at - RSVP_REMINDER_BEFORE <= now < state.starts_at
        and now >= state.invited_at + RSVP_REMINDER_AFTER_INVITE
    )
    recap_request = state.recap_requested_at is None and state.ends_at <= now < state.ends_at + RECAP_WINDOW
    recaps = (
        state.recap_requested_at is not None
        and not state.recap_sent
        and now >= state.recap_requested_at + recap.NOTES_WAIT
    )
    return MeetingDue(reminder, recap_request, recaps)


def state_of(meeting: Meeting) -> MeetingState:
    return MeetingState(
        starts_at=meeting.cycle.meeting_starts_at,
        ends_at=meeting.cycle.meeting_ends_at,
        is_cancelled=meeting.status == MeetingStatus.CANCELLED,
        invited_at=meeting.agenda_approved_at if meeting.invited_sequence is not None else None,
        rsvp_reminder_sent=meeting.rsvp_reminder_sent_at is not None,
        recap_requested_at=meeting.recap_requested_at,
        recap_sent=meeting.recap_sent_at is not None,
    )


def tick(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Everything due for meetings now; returns new outbound ids. Flushes; safe twice (each step
    is recorded on the meeting and every email has its dedupe key)."""
    ids: list[int] = []
    groups = session.scalars(select(Group).where(Group.meeting_rule != "")).all()
    if groups:  # the rule dates already made, for every such group in one query
        known: dict[int, set[str]] = {group.id: set() for group in groups}
        since = (now - timedelta(days=2)).date().isoformat()
        for group_id, occurrence in session.execute(
            select(Meeting.group_id, Meeting.occurrence).where(
                Meeting.group_id.in_(known), Meeting.occurrence.is_not(None), Meeting.occurrence >= since
            )
        ):
            known[group_id].add(occurrence)
        for group in groups:
            make_cycles_ahead(session, settings, group, now, known[group.id])
    # The deadline has passed: draft the agenda (and make the meeting row of a cycle that has none).
    drafting = session.scalars(
        select(Cycle)
        .outerjoin(Meeting, Meeting.cycle_id == Cycle.id)
        .where(
            Cycle.status != CycleStatus.DONE,
            Cycle.deadline_at <= now,
            Cycle.meeting_starts_at > now,
            or_(Meeting.id.is_(None), Meeting.agenda_status == AgendaStatus.NONE),
        )
        .order_by(Cycle.id)
    ).all()
    for cycle in drafting:
        meeting = meeting_for(session, settings, cycle)
        ids += draft_agenda(session, settings, meeting, now)
    # Only meetings with something due by the clock: an idle tick loads none (`due` decides).
    candidates = session.scalars(
        select(Meeting)
        .join(Cycle, Cycle.id == Meeting.cycle_id)
        .where(
            Meeting.status == MeetingStatus.PLANNED,
            or_(
                and_(
                    Meeting.invited_sequence.is_not(None),
                    Meeting.rsvp_reminder_sent_at.is_(None),
                    Cycle.meeting_starts_at > now,
                    Cycle.meeting_starts_at <= now + RSVP_REMINDER_BEFORE,
                ),
                and_(
                    Meeting.recap_requested_at.is_(None),
                    Cycle.meeting_ends_at <= now,
                    Cycle.meeting_ends_at > now - RECAP_WINDOW,
                ),
                and_(
                    Meeting.recap_requested_at <= now - recap.NOTES_WAIT,
                    Meeting.recap_sent_at.is_(None),
                ),
            ),
        )
        .options(selectinload(Meeting.rsvps))
        .order_by(Meeting.id)
    ).all()
    for meeting in candidates:
        todo = due(state_of(meeting), now)
        if todo.rsvp_reminder:
            ids += queue_rsvp_reminders(session, settings, meeting, now)
        if todo.recap_request:
            ids += recap.queue_recap_request(session, settings, meeting, now)
        if todo.recaps:
            ids += recap.send_recaps(session, settings, meeting, now, None)
    session.flush()
    return ids + due_headcounts(session, now)
