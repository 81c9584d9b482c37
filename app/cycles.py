"""Cycles: scheduling a meeting, sending update requests, excuses, and the periodic tick.

"What is due now" is a pure function of a cycle's state and `now`; `tick` loads that state,
turns due actions into outbound rows (unique dedupe keys), and leaves the commit to its caller.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app import mail
from app.models import Cycle, CycleStatus, Group, Member, OutboundMessage, UpdateRequest, utcnow
from app.sections import SECTIONS
from app.settings import Settings


class CycleError(ValueError):
    """A scheduling request that cannot be met; the message says why."""


# --- pure schedule -------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When each step of one cycle happens, in UTC."""

    request_at: datetime
    reminder_ats: tuple[datetime, ...]
    deadline_at: datetime


def local_at(day: date, clock: str, tz: str) -> datetime:
    """`clock` (HH:MM) on `day` in zone `tz`, as UTC; wall-clock time, so DST never shifts it."""
    hour, minute = (int(part) for part in clock.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def schedule_for(
    meeting_starts_at: datetime,
    tz: str,
    *,
    request_days_before: int = 14,
    reminder_days_before: tuple[int, ...] = (7, 3),
    send_local_time: str = "09:00",
    deadline_days_before: int = 2,
    deadline_local_time: str = "17:00",
) -> Schedule:
    """The request, reminder and deadline times for a meeting starting at `meeting_starts_at`."""
    meeting_day = meeting_starts_at.astimezone(ZoneInfo(tz)).date()

    def at(days_before: int, clock: str) -> datetime:
        return local_at(meeting_day - timedelta(days=days_before), clock, tz)

    deadline = at(deadline_days_before, deadline_local_time)
    reminders = tuple(
        at(days, send_local_time)
        for days in sorted(reminder_days_before, reverse=True)
        if days > deadline_days_before
    )
    return Schedule(at(request_days_before, send_local_time), reminders, deadline)


def group_schedule(group: Group, meeting_starts_at: datetime) -> Schedule:
    return schedule_for(
        meeting_starts_at,
        group.timezone,
        request_days_before=group.request_days_before,
        reminder_days_before=tuple(group.reminder_days_before.get("days", [])),
        send_local_time=group.send_local_time,
        deadline_days_before=group.deadline_days_before,
        deadline_local_time=group.deadline_local_time,
    )


@dataclass(frozen=True)
class CycleState:
    """What the tick needs to know about one cycle, as plain values."""

    cycle_id: int
    status: str
    schedule: Schedule
    has_packet: bool


@dataclass(frozen=True)
class Due:
    requests: bool = False
    reminder_index: int | None = None  # the latest reminder that is due (earlier ones are moot)
    compile: bool = False


def due_actions(state: CycleState, now: datetime) -> Due:
    """What is due for one cycle at `now`. Pure; the dedupe keys make repeats harmless."""
    schedule = state.schedule
    requests = now >= schedule.request_at
    reminder_index = None
    if requests and now < schedule.deadline_at:
        passed = [i for i, at in enumerate(schedule.reminder_ats) if now >= at]
        reminder_index = passed[-1] if passed else None
    compile_due = now >= schedule.deadline_at and not state.has_packet
    return Due(requests=requests, reminder_index=reminder_index, compile=compile_due)


# --- labels shown to people ------------------------------------------------------------------


def local_label(moment: datetime, tz: str, fmt: str = "%a %-d %b, %H:%M %Z") -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime(fmt)


def month_label(cycle: Cycle) -> str:
    return local_label(cycle.meeting_starts_at, cycle.group.timezone, "%B")


def meeting_label(cycle: Cycle) -> str:
    tz = cycle.group.timezone
    end = local_label(cycle.meeting_ends_at, tz, "%H:%M %Z")
    return f"{local_label(cycle.meeting_starts_at, tz, '%A %-d %B %Y, %H:%M')}–{end}"


# --- scheduling and requests ----------------------------------------------------------------


def schedule_meeting(
    session: Session,
    group: Group,
    *,
    day: date,
    start: str,
    hours: float = 4.0,
    location: str | None = None,
) -> Cycle:
    """Add the cycle for a meeting on `day` at local `start` (HH:MM). Flushes."""
    try:
        starts_at = local_at(day, start, group.timezone)
    except ValueError:
        raise CycleError(f"{start!r} is not a time of day like 08:30") from None
    if session.scalar(
        select(Cycle.id).where(Cycle.group_id == group.id, Cycle.meeting_starts_at == starts_at)
    ):
        raise CycleError(f"{group.name} already has a meeting at {start} on {day}")
    schedule = group_schedule(group, starts_at)
    cycle = Cycle(
        group=group,
        meeting_starts_at=starts_at,
        meeting_ends_at=starts_at + timedelta(hours=hours),
        location=group.default_location if location is None else location,
        request_at=schedule.request_at,
        deadline_at=schedule.deadline_at,
    )
    session.add(cycle)
    session.flush()
    return cycle


def current_cycle(session: Session, group: Group, now: datetime) -> Cycle | None:
    """The next meeting that has not ended, else the most recent one."""
    upcoming = session.scalar(
        select(Cycle)
        .where(Cycle.group_id == group.id, Cycle.meeting_ends_at >= now)
        .order_by(Cycle.meeting_starts_at)
        .limit(1)
    )
    if upcoming is not None:
        return upcoming
    return session.scalar(
        select(Cycle).where(Cycle.group_id == group.id).order_by(Cycle.meeting_starts_at.desc()).limit(1)
    )


def commitment_lines(text: str) -> list[str]:
    """Split a member's 'next commitments' answer into one commitment per bullet or line."""
    items = []
    for line in text.splitlines():
        item = re.sub(r"^\s*(?:[-*•·]|\d+[.)]|\[[ x]\])\s*", "", line).strip()
        if item:
            items.append(item)
    return items


def open_commitments(session: Session, member: Member, cycle: Cycle) -> list[str]:
    """The member's next commitments from their latest update in the previous cycle."""
    previous = session.scalar(
        select(UpdateRequest)
        .join(Cycle)
        .where(
            UpdateRequest.member_id == member.id,
            Cycle.group_id == cycle.group_id,
            Cycle.meeting_starts_at < cycle.meeting_starts_at,
        )
        .order_by(Cycle.meeting_starts_at.desc())
        .limit(1)
    )
    if previous is None or previous.latest_update is None:
        return []
    return commitment_lines(previous.latest_update.sections.get("texts", {}).get("next_commitments", ""))


def request_for(session: Session, cycle: Cycle, member: Member) -> UpdateRequest:
    """The member's update request for `cycle`, made once with a fresh 128-bit token. Flushes."""
    existing = session.scalar(
        select(UpdateRequest).where(UpdateRequest.cycle_id == cycle.id, UpdateRequest.member_id == member.id)
    )
    if existing is not None:
        return existing
    request = UpdateRequest(cycle=cycle, member=member, token=secrets.token_hex(16))
    session.add(request)
    session.flush()
    return request


def queue_requests(session: Session, settings: Settings, cycle: Cycle) -> list[int]:
    """Queue one update request email per active member; return new outbound ids. Safe twice."""
    group = cycle.group
    due_label = local_label(cycle.deadline_at, group.timezone)
    due_short = local_label(cycle.deadline_at, group.timezone, "%a %-d %b")
    facilitator = group.facilitators[0].name if group.facilitators else "your facilitator"
    queued: list[int] = []
    for member in group.members:
        if not member.is_active or member.bounced_at is not None:
            continue
        request = request_for(session, cycle, member)
        row = mail.queue_email(
            session,
            settings,
            kind="update_request",
            dedupe_key=f"request:{cycle.id}:{member.id}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, request.token),
            group_id=group.id,
            cycle_id=cycle.id,
            member_id=member.id,
            context={
                "group_name": group.name,
                "first_name": member.first_name,
                "month_label": month_label(cycle),
                "due_label": due_label,
                "due_short": due_short,
                "meeting_label": meeting_label(cycle),
                "location": cycle.location,
                "facilitator_name": facilitator,
                "commitments": open_commitments(session, member, cycle),
                "sections": [{"key": s.key, "title": s.title, "hint": s.hint} for s in SECTIONS],
            },
        )
        if row is not None:
            queued.append(row.id)
    if cycle.status == CycleStatus.SCHEDULED:
        cycle.status = CycleStatus.REQUESTED
    session.flush()
    return queued


def request_message_id(session: Session, request: UpdateRequest) -> str | None:
    return session.scalar(
        select(OutboundMessage.message_id).where(
            OutboundMessage.dedupe_key == f"request:{request.cycle_id}:{request.member_id}"
        )
    )


def excuse(session: Session, request: UpdateRequest, now: datetime) -> None:
    """Mark the member excused for this cycle: no reminders, shown as excused. Safe twice."""
    if request.excused_at is None:
        request.excused_at = now
    session.flush()


# --- the tick ---------------------------------------------------------------------------------


@dataclass
class TickResult:
    outbound_ids: list[int] = field(default_factory=list)
    compile_cycle_ids: list[int] = field(default_factory=list)


def tick(session: Session, settings: Settings, now: datetime | None = None) -> TickResult:
    """Queue whatever is due for every open cycle. Flushes; the caller commits and enqueues."""
    now = now or utcnow()
    result = TickResult()
    cycles = session.scalars(
        select(Cycle)
        .where(Cycle.status != CycleStatus.DONE, Cycle.request_at <= now)
        .options(selectinload(Cycle.packets), selectinload(Cycle.group))
        .order_by(Cycle.id)
    ).all()
    for cycle in cycles:
        state = CycleState(
            cycle_id=cycle.id,
            status=cycle.status,
            schedule=group_schedule(cycle.group, cycle.meeting_starts_at),
            has_packet=bool(cycle.packets),
        )
        due = due_actions(state, now)
        if due.requests:
            result.outbound_ids += queue_requests(session, settings, cycle)
        if due.compile:
            result.compile_cycle_ids.append(cycle.id)
        if now >= cycle.meeting_ends_at and cycle.packets:
            cycle.status = CycleStatus.DONE
    session.flush()
    return result
