"""Cycles: scheduling a meeting, sending update requests, excuses, and the periodic tick.

"What is due now" is a pure function of a cycle's state and `now`; `tick` loads that state,
turns due actions into outbound rows (unique dedupe keys), and leaves the commit to its caller.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app import clock, mail
from app.addresses import new_token, same
from app.models import (
    Cycle,
    CycleStatus,
    Group,
    Meeting,
    Member,
    OutboundMessage,
    OutboundStatus,
    PacketCadence,
    Rsvp,
    UpdateRequest,
)
from app.participation import group_standings
from app.reading.sections import SECTIONS
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
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz)).astimezone(UTC)


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

    schedule: Schedule
    requests_sent: bool = False
    reminder_index_sent: int | None = None
    digest_sent: bool = False
    has_packet: bool = False
    meeting_starts_at: datetime | None = None
    packet_due_at: datetime | None = None  # late mail changed the packet: a new version is due


@dataclass(frozen=True)
class Due:
    requests: bool = False
    reminder_index: int | None = None  # the latest reminder that is due (earlier ones are moot)
    digest: bool = False
    compile: bool = False
    reminders_moot_upto: int | None = None  # requests went out late: these reminders are skipped


def due_actions(state: CycleState, now: datetime) -> Due:
    """What is due for one cycle at `now`. Pure; the dedupe keys make repeats harmless anyway."""
    schedule = state.schedule
    started = now >= schedule.request_at
    open_for_replies = started and now < schedule.deadline_at
    passed = [i for i, at in enumerate(schedule.reminder_ats) if now >= at] if open_for_replies else []
    latest = passed[-1] if passed else None
    requests = started and not state.requests_sent
    reminder_index = None
    moot = None
    if requests:
        # After downtime, a request and a reminder at once would be silly: the request is enough.
        moot = latest
    elif latest is not None and (state.reminder_index_sent is None or latest > state.reminder_index_sent):
        reminder_index = latest
    last_reminder_passed = bool(schedule.reminder_ats) and now >= schedule.reminder_ats[-1]
    digest = open_for_replies and last_reminder_passed and not state.digest_sent and not requests
    compile_due = now >= schedule.deadline_at and not state.has_packet
    if state.packet_due_at is not None and state.has_packet and state.packet_due_at <= now:
        compile_due = state.meeting_starts_at is None or now < state.meeting_starts_at
    return Due(requests, reminder_index, digest, compile_due, moot)


def next_packet_at(
    *, cadence: str, tz: str, send_local_time: str, last_packet_at: datetime, meeting_starts_at: datetime, now: datetime
) -> datetime | None:
    """When late mail that changed a packet already sent should go out as a new version: at once
    for an "immediate" group; otherwise at most one version a (local) day, at the group's send
    time on the day after the last one, or an hour before the meeting if that comes first on a
    later day. None after the meeting starts: nothing re-issues a packet then. Pure."""
    if now >= meeting_starts_at:
        return None
    if cadence == PacketCadence.IMMEDIATE:
        return now
    zone = ZoneInfo(tz)
    last_day = last_packet_at.astimezone(zone).date()
    if now.astimezone(zone).date() > last_day:
        return now
    slot = min(local_at(last_day + timedelta(days=1), send_local_time, tz), meeting_starts_at - timedelta(hours=1))
    if slot.astimezone(zone).date() <= last_day:
        return None  # the meeting is today and a version went out today: the meeting has it
    return slot


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
    now: datetime,
    hours: float = 4.0,
    location: str | None = None,
    backfill: bool = False,
) -> Cycle:
    """Add the cycle for a meeting on `day` at local `start` (HH:MM). Flushes.

    Refused (CycleError, one line) when the meeting would already have started, or when its
    cycle would overlap another of the group's (its requests going out before the other meeting
    has ended, or the other way round): members would be asked twice at once. `backfill` records
    a past meeting on purpose: it is checked against nothing and sends nothing.
    """
    try:
        starts_at = local_at(day, start, group.timezone)
    except ValueError:
        raise CycleError(f"{start!r} is not a time of day like 08:30") from None
    if not 0 < hours <= 24:
        raise CycleError(f"a meeting lasts more than 0 and at most 24 hours, not {hours:g}")
    tz = group.timezone
    if session.scalar(
        select(Cycle.id).where(Cycle.group_id == group.id, Cycle.meeting_starts_at == starts_at)
    ):
        raise CycleError(f"{group.name} already has a meeting at {start} on {day}")
    schedule = group_schedule(group, starts_at)
    ends_at = starts_at + timedelta(hours=hours)
    if not backfill:
        if starts_at <= now:
            raise CycleError(
                f"{local_label(starts_at, tz)} is in the past: pick a later date"
                " (or --force to record a past meeting, which sends nothing)"
            )
        clash = session.scalar(
            select(Cycle)
            .where(Cycle.group_id == group.id, Cycle.request_at < ends_at, Cycle.meeting_ends_at > schedule.request_at)
            .order_by(Cycle.meeting_starts_at)
            .limit(1)
        )
        if clash is not None:
            raise CycleError(
                f"its cycle (requests {local_label(schedule.request_at, tz)}) would overlap the meeting of"
                f" {local_label(clash.meeting_starts_at, tz)} (requests {local_label(clash.request_at, tz)}):"
                " one cycle at a time; move one of them"
            )
        if schedule.deadline_at <= now:
            raise CycleError(
                f"its deadline ({local_label(schedule.deadline_at, tz)}) has passed: members could not answer in time;"
                " pick a later date or change the group's deadline"
            )
    cycle = add_cycle(session, group, starts_at=starts_at, hours=hours, location=location)
    if backfill:
        cycle.status = CycleStatus.DONE  # recorded, never acted on: the tick leaves a done cycle alone
    return cycle


def add_cycle(session: Session, group: Group, *, starts_at: datetime, hours: float = 4.0, location: str | None = None) -> Cycle:
    """The cycle row for a meeting at `starts_at`, its schedule from the group's offsets, checked
    against nothing (see `schedule_meeting`). Flushes."""
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


def open_commitments(session: Session, cycle: Cycle) -> dict[int, list[str]]:
    """Each member's next commitments from their latest update in the group's previous cycle."""
    previous = session.scalar(
        select(Cycle)
        .where(Cycle.group_id == cycle.group_id, Cycle.meeting_starts_at < cycle.meeting_starts_at)
        .order_by(Cycle.meeting_starts_at.desc())
        .limit(1)
    )
    if previous is None:
        return {}
    requests = session.scalars(
        select(UpdateRequest).where(UpdateRequest.cycle_id == previous.id).options(selectinload(UpdateRequest.updates))
    )
    commitments = {}
    for request in requests:
        update = request.latest_update
        if update is not None:
            lines = commitment_lines(update.sections.get("texts", {}).get("next_commitments", ""))
            if lines:
                commitments[request.member_id] = lines
    # What a member confirmed or corrected in the meeting's recap (app.meeting.recap) wins.
    for member_id, confirmed in session.execute(
        select(Rsvp.member_id, Rsvp.commitments)
        .join(Meeting, Meeting.id == Rsvp.meeting_id)
        .where(Meeting.cycle_id == previous.id, Rsvp.commitments_confirmed_at.is_not(None))
    ):
        items = [str(item) for item in (confirmed or {}).get("items", [])]
        if items:
            commitments[member_id] = items
        else:
            commitments.pop(member_id, None)
    return commitments


def request_for(session: Session, cycle: Cycle, member: Member) -> UpdateRequest:
    """The member's update request for `cycle`, made once with a fresh 128-bit token. Flushes."""
    existing = session.scalar(
        select(UpdateRequest).where(UpdateRequest.cycle_id == cycle.id, UpdateRequest.member_id == member.id)
    )
    if existing is not None:
        return existing
    request = UpdateRequest(cycle_id=cycle.id, member_id=member.id, token=new_token())
    try:
        with session.begin_nested():
            session.add(request)
    except IntegrityError:  # a concurrent tick made it first
        return session.scalars(
            select(UpdateRequest).where(UpdateRequest.cycle_id == cycle.id, UpdateRequest.member_id == member.id)
        ).one()
    return request


def cycle_context(cycle: Cycle) -> dict[str, object]:
    """What an update request or a reminder shows every member of one cycle alike."""
    group = cycle.group
    return {
        "group_name": group.name,
        "month_label": month_label(cycle),
        "due_label": local_label(cycle.deadline_at, group.timezone),
        "due_short": local_label(cycle.deadline_at, group.timezone, "%a %-d %b"),
        "meeting_label": meeting_label(cycle),
        "location": cycle.location,
        "facilitator_name": group.facilitators[0].name if group.facilitators else "your facilitator",
        "sections": [{"key": s.key, "title": s.title, "hint": s.hint} for s in SECTIONS],
    }


def request_context(shared: dict[str, object], member: Member, commitments: list[str]) -> dict[str, object]:
    """The plain values an update request or a reminder shows one member."""
    return {**shared, "first_name": member.first_name, "commitments": commitments}


# A request that never reached the member: sent again when their address is corrected.
UNDELIVERED = (OutboundStatus.FAILED, OutboundStatus.BOUNCED, OutboundStatus.DROPPED)


def queue_requests(session: Session, settings: Settings, cycle: Cycle) -> list[int]:
    """Queue one update request email per active member; return new outbound ids. Safe twice.

    A few statements per cycle, rows inserted in bulk: a Vistage-size month is 45,000 of these.
    The cycle row is locked by the tick; should another process still race us, the unique keys
    fail this statement and the next tick retries.
    """
    group = cycle.group
    existing = session.execute(
        select(UpdateRequest.member_id, UpdateRequest.token, UpdateRequest.replied_at).where(
            UpdateRequest.cycle_id == cycle.id
        )
    ).all()
    tokens = {member_id: token for member_id, token, _ in existing}
    answered = {member_id for member_id, _, replied_at in existing if replied_at is not None}
    queued = session.execute(
        select(OutboundMessage.dedupe_key, OutboundMessage.member_id, OutboundMessage.to_email, OutboundMessage.status)
        .where(OutboundMessage.cycle_id == cycle.id, OutboundMessage.kind == "update_request")
        .order_by(OutboundMessage.id)
    ).all()
    queued_keys = {key for key, *_ in queued}
    # Each member's latest request email, and how many there were: one that never arrived goes
    # again once the address is corrected or its bounce mark cleared.
    latest = {member_id: (to_email, status) for _, member_id, to_email, status in queued}
    sent_count = Counter(member_id for _, member_id, _, _ in queued)
    members = [m for m in group.members if m.is_reachable]
    new_requests = [
        {"cycle_id": cycle.id, "member_id": m.id, "token": new_token(), "created_at": clock.now()}
        for m in members
        if m.id not in tokens
    ]
    if new_requests:
        session.execute(insert(UpdateRequest), new_requests)
        tokens.update({r["member_id"]: r["token"] for r in new_requests})
    commitments = open_commitments(session, cycle)
    shared = cycle_context(cycle)
    rows = []
    for member in members:
        if member.id in answered:
            continue  # their update came before their request (a reply on last month's thread)
        key = f"request:{cycle.id}:{member.id}"
        if key in queued_keys and _worth_resending(member, *latest[member.id]):
            key = f"{key}:{sent_count[member.id]}"
        if key in queued_keys:
            continue
        token = tokens[member.id]
        row = mail.new_outbound(
            settings,
            kind="update_request",
            dedupe_key=key,
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, token),
            group_id=group.id,
            cycle_id=cycle.id,
            member_id=member.id,
            context={
                **request_context(shared, member, commitments.get(member.id, [])),
                "unsubscribe_url": mail.unsubscribe_url(settings, token),
            },
        )
        rows.append(row)
    ids = mail.insert_outbound(session, rows)
    if cycle.status == CycleStatus.SCHEDULED:
        cycle.status = CycleStatus.REQUESTED
    session.expire(cycle, ["requests"])  # inserted by id above; reload the collection when next read
    return ids


def _worth_resending(member: Member, last_to: str, last_status: str) -> bool:
    """The member's last request email never arrived, and something changed since: their address,
    or a bounce mark cleared (a full mailbox, a server since fixed)."""
    if last_status not in UNDELIVERED:
        return False
    return not same(last_to, member.email) or last_status == OutboundStatus.BOUNCED


def request_new_members(session: Session, settings: Settings, group: Group, now: datetime) -> list[int]:
    """Queue the update request at once to members who joined (or came back, or whose address
    was corrected after their request bounced) after the requests went out, in every cycle still
    open for updates; return new outbound ids.

    Flushes. Safe twice: members who have their request get nothing more.
    """
    open_cycles = session.scalars(
        select(Cycle).where(
            Cycle.group_id == group.id, Cycle.requests_sent_at.is_not(None), Cycle.deadline_at > now
        ).with_for_update()
    ).all()
    session.refresh(group, ["members"])
    return [outbound_id for cycle in open_cycles for outbound_id in queue_requests(session, settings, cycle)]


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
    last_cycle_id: int | None = None  # where the next chunk starts; None when nothing was left


def cycle_state(cycle: Cycle) -> CycleState:
    return CycleState(
        schedule=group_schedule(cycle.group, cycle.meeting_starts_at),
        requests_sent=cycle.requests_sent_at is not None,
        reminder_index_sent=cycle.reminder_index_sent,
        digest_sent=cycle.digest_sent_at is not None,
        has_packet=bool(cycle.packets),
        meeting_starts_at=cycle.meeting_starts_at,
        packet_due_at=cycle.packet_due_at,
    )


def packet_changed(cycle: Cycle, now: datetime) -> bool:
    """Late mail changed what a packet already sent would say: note when its next version is due
    (`next_packet_at`). True when that is now, so the caller compiles at once; otherwise the tick
    does when the time comes. Before the first packet there is nothing to do: the deadline's
    packet will have it. Flushes nothing."""
    if not cycle.packets:
        return False
    group = cycle.group
    due = next_packet_at(
        cadence=group.packet_cadence,
        tz=group.timezone,
        send_local_time=group.send_local_time,
        last_packet_at=cycle.packets[-1].created_at,
        meeting_starts_at=cycle.meeting_starts_at,
        now=now,
    )
    if due is None:
        return False
    cycle.packet_due_at = due if cycle.packet_due_at is None else min(cycle.packet_due_at, due)
    return cycle.packet_due_at <= now


def tick(
    session: Session, settings: Settings, now: datetime | None = None, *, after_id: int = 0, limit: int | None = None
) -> TickResult:
    """Queue whatever is due for the open cycles after `after_id` (at most `limit` of them).

    Flushes; the caller commits and enqueues, chunk by chunk, so sending starts while a big
    09:00 tick is still going. Two ticks at once split the cycles between them (row locks,
    SKIP LOCKED on PostgreSQL), and the outbound dedupe keys make any overlap send nothing twice.
    """
    now = now or clock.now()
    result = TickResult()
    query = (
        select(Cycle)
        .where(Cycle.status != CycleStatus.DONE, Cycle.request_at <= now, Cycle.id > after_id)
        .options(selectinload(Cycle.packets), selectinload(Cycle.group))
        .order_by(Cycle.id)
        .with_for_update(skip_locked=True, of=Cycle)
    )
    cycles = session.scalars(query if limit is None else query.limit(limit)).all()
    if not cycles:
        return result
    result.last_cycle_id = cycles[-1].id
    due_now = [(cycle, due_actions(cycle_state(cycle), now)) for cycle in cycles]
    busy_groups = {cycle.group_id for cycle, due in due_now if due != Due()}
    if busy_groups:  # one query each, not one per group: an idle tick loads no members at all
        session.scalars(
            select(Group)
            .where(Group.id.in_(busy_groups))
            .options(selectinload(Group.members), selectinload(Group.facilitators))
        ).all()
    for cycle, due in due_now:
        schedule = group_schedule(cycle.group, cycle.meeting_starts_at)
        if due.requests:
            result.outbound_ids += queue_requests(session, settings, cycle)
            cycle.requests_sent_at = now
            if due.reminders_moot_upto is not None:
                cycle.reminder_index_sent = due.reminders_moot_upto
        if due.reminder_index is not None:
            is_last = due.reminder_index == len(schedule.reminder_ats) - 1
            result.outbound_ids += queue_reminders(session, settings, cycle, due.reminder_index, is_last)
            cycle.reminder_index_sent = due.reminder_index
        if due.digest:
            result.outbound_ids += queue_digest(session, settings, cycle, now)
            cycle.digest_sent_at = now
        if due.compile:
            result.compile_cycle_ids.append(cycle.id)
        if now >= cycle.meeting_ends_at and cycle.packets:
            cycle.status = CycleStatus.DONE
    session.flush()
    return result


def unanswered(cycle: Cycle) -> list[UpdateRequest]:
    """Requests with no reply and no excuse, to members we can still reach."""
    return [
        r
        for r in cycle.requests
        if r.replied_at is None and r.excused_at is None and r.member.is_reachable
    ]


def queue_reminders(session: Session, settings: Settings, cycle: Cycle, index: int, is_last: bool) -> list[int]:
    """Queue reminder `index` to each member who has not replied, threaded under their request."""
    group = cycle.group
    request_ids = dict(
        session.execute(
            select(OutboundMessage.member_id, OutboundMessage.message_id).where(
                OutboundMessage.cycle_id == cycle.id, OutboundMessage.kind == "update_request"
            )
        ).all()
    )
    commitments = open_commitments(session, cycle)
    shared = cycle_context(cycle)
    queued = []
    for request in unanswered(cycle):
        member = request.member
        row = mail.queue_email(
            session,
            settings,
            kind="reminder",
            dedupe_key=f"reminder:{cycle.id}:{member.id}:{index}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, request.token),
            in_reply_to=request_ids.get(member.id),
            group_id=group.id,
            cycle_id=cycle.id,
            member_id=member.id,
            context={
                **request_context(shared, member, commitments.get(member.id, [])),
                "is_last": is_last,
                "unsubscribe_url": mail.unsubscribe_url(settings, request.token),
            },
        )
        if row is not None:
            queued.append(row.id)
    return queued


def queue_digest(session: Session, settings: Settings, cycle: Cycle, now: datetime) -> list[int]:
    """After the last reminder: tell each facilitator who is still missing, with a nudge to forward."""
    group = cycle.group
    standings = group_standings(session, group, now, upto=cycle)
    requests = {r.member_id: r for r in cycle.requests}
    missing, replied, excused = [], [], []
    for member in group.members:
        request = requests.get(member.id)
        if request is None:
            continue
        standing = standings[member.id]
        entry = {"name": member.name, "email": member.email, "streak": standing.streak,
                 "missed_before": standing.missed_in_a_row}
        if request.excused_at is not None:
            excused.append(entry)
        elif request.replied_at is not None:
            replied.append(entry)
        else:
            missing.append(entry)
    ids = []
    for facilitator in group.facilitators:
        row = mail.queue_email(
            session,
            settings,
            kind="digest",
            dedupe_key=f"digest:{cycle.id}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            group_id=group.id,
            cycle_id=cycle.id,
            context={
                "group_name": group.name,
                "facilitator_name": facilitator.name,
                "month_label": month_label(cycle),
                "due_label": local_label(cycle.deadline_at, group.timezone),
                "missing": missing,
                "replied": replied,
                "excused": excused,
            },
        )
        if row is not None:
            ids.append(row.id)
    return ids
