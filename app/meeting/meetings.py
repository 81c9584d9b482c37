"""One cycle's meeting: its row, logistics, the agenda's draft and approval, the invites to the
members, and moving or cancelling it with everything scheduled following.

Domain functions take the session first and flush; the caller commits, then enqueues the
returned outbound ids.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import mail
from app.addresses import new_token
from app.cycles import (
    CycleError,
    cycle_context,
    group_schedule,
    local_at,
    local_label,
    meeting_label,
    month_label,
    request_message_id,
)
from app.meeting import agenda as agendas
from app.meeting.calendar import Invite, build_ics
from app.models import (
    AgendaStatus,
    Cycle,
    CycleStatus,
    Facilitator,
    Meeting,
    MeetingStatus,
    Member,
    OutboundMessage,
    OutboundStatus,
    Rsvp,
    RsvpResponse,
    Update,
    UpdateRequest,
)
from app.settings import Settings


class MeetingError(ValueError):
    """An operation on a meeting that cannot be done; the message says why."""


LOGISTICS_KEYS = ("place", "address", "dial_in", "host_name", "host_email", "parking", "notes")


def meeting_for(session: Session, settings: Settings, cycle: Cycle, occurrence: str | None = None) -> Meeting:
    """The cycle's meeting row, made once (its UID for good). Flushes."""
    existing = session.scalar(select(Meeting).where(Meeting.cycle_id == cycle.id))
    if existing is not None:
        return existing
    group = cycle.group
    logistics = {key: str(group.meeting_logistics.get(key, "")) for key in LOGISTICS_KEYS}
    meeting = Meeting(
        group_id=group.id,
        cycle_id=cycle.id,
        occurrence=occurrence,
        uid=f"meeting-{secrets.token_hex(16)}@{settings.inbound_domain}",
        sequence=0,
        status=MeetingStatus.PLANNED,
        logistics=logistics,
        agenda={},
        agenda_status=AgendaStatus.NONE,
        agenda_token=new_token(),
        recap_token=new_token(),
    )
    try:
        with session.begin_nested():
            session.add(meeting)
    except IntegrityError:  # another process made it first
        return session.scalars(select(Meeting).where(Meeting.cycle_id == cycle.id)).one()
    return meeting


def rsvp_for(session: Session, meeting: Meeting, member: Member) -> Rsvp:
    """The member's RSVP row for `meeting`, made once with its two tokens. Flushes."""
    existing = session.scalar(select(Rsvp).where(Rsvp.meeting_id == meeting.id, Rsvp.member_id == member.id))
    if existing is not None:
        return existing
    rsvp = Rsvp(meeting_id=meeting.id, member_id=member.id, token=new_token(), recap_token=new_token(),
                response=RsvpResponse.NONE)
    try:
        with session.begin_nested():
            session.add(rsvp)
    except IntegrityError:
        return session.scalars(select(Rsvp).where(Rsvp.meeting_id == meeting.id, Rsvp.member_id == member.id)).one()
    session.refresh(meeting, ["rsvps"])
    return rsvp


def set_logistics(meeting: Meeting, **values: str | None) -> None:
    """Change the meeting's logistics (None leaves a value as it is)."""
    unknown = set(values) - set(LOGISTICS_KEYS)
    if unknown:
        raise MeetingError(f"unknown logistics: {', '.join(sorted(unknown))}")
    meeting.logistics = {**meeting.logistics, **{k: v.strip() for k, v in values.items() if v is not None}}


def change_logistics(session: Session, settings: Settings, meeting: Meeting, now: datetime,
                     **values: str | None) -> list[int]:
    """Change the logistics; members who had the invite get an update (SEQUENCE raised) when
    something they were sent changed. Flushes."""
    before = dict(meeting.logistics)
    set_logistics(meeting, **values)
    if meeting.logistics == before or meeting.invited_sequence is None or meeting.status == MeetingStatus.CANCELLED:
        session.flush()
        return []
    meeting.sequence += 1
    session.flush()
    return send_invites(session, settings, meeting, now, is_update=True, note="The logistics have changed.")


def facilitator_name(meeting: Meeting) -> str:
    facilitators = meeting.group.facilitators
    return facilitators[0].name if facilitators else "your facilitator"


def place(meeting: Meeting) -> str:
    return meeting.logistics.get("place") or meeting.cycle.location


# --- what the emails show -------------------------------------------------------------------


def meeting_context(meeting: Meeting) -> dict[str, object]:
    """What every meeting email shows alike: the meeting, the logistics, the agenda if any."""
    cycle, group = meeting.cycle, meeting.group
    items = agendas.items_from_json(meeting.agenda)
    logistics = {key: meeting.logistics.get(key, "") for key in LOGISTICS_KEYS}
    logistics["place"] = place(meeting)
    return {
        "group_name": group.name,
        "month_label": month_label(cycle),
        "meeting_label": meeting_label(cycle),
        "date_label": local_label(cycle.meeting_starts_at, group.timezone, "%a %-d %b"),
        "facilitator_name": facilitator_name(meeting),
        "logistics": logistics,
        "agenda": agendas.timed(items, cycle.meeting_starts_at, group.timezone),
        "agenda_lines": agendas.as_lines(items, cycle.meeting_starts_at, group.timezone),
        "agenda_minutes": agendas.total(items),
        "meeting_minutes": meeting_minutes(cycle),
        "is_cancelled": meeting.status == MeetingStatus.CANCELLED,
    }


def meeting_minutes(cycle: Cycle) -> int:
    return int((cycle.meeting_ends_at - cycle.meeting_starts_at).total_seconds() // 60)


def invite_for(settings: Settings, meeting: Meeting, rsvp: Rsvp, members: list[Member]) -> Invite:
    """The calendar event one member is sent; the ORGANIZER address routes their calendar's
    answer back to their RSVP."""
    cycle, group = meeting.cycle, meeting.group
    context = meeting_context(meeting)
    logistics = context["logistics"]
    assert isinstance(logistics, dict)
    lines = [f"{group.name}, {context['month_label']} meeting", ""]
    lines += list(context["agenda_lines"])  # type: ignore[call-overload]
    for label, key in (("Address", "address"), ("Video", "dial_in"), ("Host", "host_name"),
                       ("Parking", "parking"), ("Notes", "notes")):
        if logistics.get(key):
            lines.append(f"{label}: {logistics[key]}")
    where = ", ".join(v for v in (logistics.get("place"), logistics.get("address")) if v)
    return Invite(
        uid=meeting.uid,
        sequence=meeting.sequence,
        summary=f"{group.name}: {context['month_label']} meeting",
        description="\n".join(lines).strip(),
        location=where or str(logistics.get("dial_in") or ""),
        starts_at=cycle.meeting_starts_at,
        ends_at=cycle.meeting_ends_at,
        timezone=group.timezone,
        organizer_name=facilitator_name(meeting),
        organizer_address=mail.reply_address(settings, rsvp.token),
        attendees=tuple((m.name, m.email) for m in members),
        url=str(logistics.get("dial_in") or ""),
    )


# --- the agenda -------------------------------------------------------------------------------


def member_topics(session: Session, cycle: Cycle) -> list[agendas.Topic]:
    """The topics members proposed in their latest update for this cycle."""
    topics = []
    for request in session.scalars(select(UpdateRequest).where(UpdateRequest.cycle_id == cycle.id)):
        update: Update | None = request.latest_update
        if update is None or update.is_skip:
            continue
        text = update.sections.get("texts", {}).get("topic", "")
        if text.strip():
            topics.append(agendas.Topic(request.member.name, text, update.sections.get("topic_priority")))
    return topics


def draft_agenda(session: Session, settings: Settings, meeting: Meeting, now: datetime) -> list[int]:
    """Draft the agenda from the template and the members' topics and send it to the
    facilitators to approve. Flushes. Safe twice: a drafted agenda is left as it is."""
    if meeting.agenda_status != AgendaStatus.NONE or meeting.status == MeetingStatus.CANCELLED:
        return []
    cycle = meeting.cycle
    items = agendas.draft(meeting_minutes(cycle), member_topics(session, cycle), facilitator_name(meeting))
    meeting.agenda = {"items": [item.to_json() for item in items]}
    meeting.agenda_status = AgendaStatus.DRAFT
    meeting.agenda_drafted_at = now
    session.flush()
    return queue_agenda_to_facilitators(session, settings, meeting, version=1)


def queue_agenda_to_facilitators(session: Session, settings: Settings, meeting: Meeting, *, version: int,
                                 note: str = "") -> list[int]:
    ids = []
    shared = meeting_context(meeting)
    for facilitator in meeting.group.facilitators:
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_agenda_draft",
            dedupe_key=f"agenda_draft:{meeting.id}:{version}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            reply_to=mail.reply_address(settings, meeting.agenda_token),
            group_id=meeting.group_id,
            cycle_id=meeting.cycle_id,
            context={**shared, "first_name": facilitator.name.split()[0] if facilitator.name.split() else "",
                     "note": note, "topic_count": sum(1 for i in shared["agenda"] if str(i["title"]).startswith("Issue"))},  # type: ignore[attr-defined]
        )
        if row is not None:
            ids.append(row.id)
    return ids


def replace_agenda(meeting: Meeting, items: list[agendas.Item]) -> None:
    if not items:
        raise MeetingError("an agenda needs at least one item")
    meeting.agenda = {"items": [item.to_json() for item in items]}
    if meeting.agenda_status == AgendaStatus.NONE:
        meeting.agenda_status = AgendaStatus.DRAFT


def approve_agenda(session: Session, settings: Settings, meeting: Meeting, now: datetime, *,
                   changed: bool = False) -> list[int]:
    """Approve the agenda and send every member the agenda, the logistics and the invite. Flushes.

    Approving again after a change (`changed`) sends the members an update (SEQUENCE raised);
    approving an unchanged, sent agenda sends nothing.
    """
    if meeting.status == MeetingStatus.CANCELLED:
        raise MeetingError("the meeting is cancelled")
    if not meeting.agenda.get("items"):
        raise MeetingError("there is no agenda to approve yet (roundtable meeting agenda draft ...)")
    was_sent = meeting.agenda_status == AgendaStatus.APPROVED and meeting.invited_sequence is not None
    if was_sent and not changed:
        return []
    meeting.agenda_status = AgendaStatus.APPROVED
    meeting.agenda_approved_at = now
    if was_sent:
        meeting.sequence += 1
    session.flush()
    return send_invites(session, settings, meeting, now, is_update=was_sent)


def send_invites(session: Session, settings: Settings, meeting: Meeting, now: datetime, *,
                 is_update: bool = False, note: str = "") -> list[int]:
    """The agenda, logistics and METHOD:REQUEST invite (this SEQUENCE) to every reachable member.
    Safe twice: one email per member and SEQUENCE."""
    members = [m for m in meeting.group.members if m.is_reachable]
    shared = meeting_context(meeting)
    ids = []
    for member in members:
        rsvp = rsvp_for(session, meeting, member)
        ics = build_ics(invite_for(settings, meeting, rsvp, members), "REQUEST", now)
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_invite",
            dedupe_key=f"invite:{meeting.id}:{member.id}:{meeting.sequence}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, rsvp.token),
            group_id=meeting.group_id,
            cycle_id=meeting.cycle_id,
            member_id=member.id,
            context={**shared, "first_name": member.first_name, "is_update": is_update, "note": note,
                     "ics": ics.decode(), "ics_method": "REQUEST"},
        )
        if row is not None:
            ids.append(row.id)
            rsvp.invited_at = now
    meeting.invited_sequence = meeting.sequence
    session.flush()
    return ids


# --- moving and cancelling -----------------------------------------------------------------


def move(session: Session, settings: Settings, meeting: Meeting, *, day: date, start: str,
         hours: float | None, now: datetime) -> list[int]:
    """Move the meeting: the cycle's request, reminders and deadline follow (they are computed
    from its start), answers are asked again, and members who had the invite get an update.
    Flushes."""
    if meeting.status == MeetingStatus.CANCELLED:
        raise MeetingError("the meeting is cancelled")
    cycle, group = meeting.cycle, meeting.group
    try:
        starts_at = local_at(day, start, group.timezone)
    except ValueError:
        raise CycleError(f"{start!r} is not a time of day like 08:30") from None
    length = timedelta(hours=hours) if hours is not None else cycle.meeting_ends_at - cycle.meeting_starts_at
    if starts_at != cycle.meeting_starts_at and session.scalar(
        select(Cycle.id).where(Cycle.group_id == group.id, Cycle.meeting_starts_at == starts_at)
    ):
        raise CycleError(f"{group.name} already has a meeting at {start} on {day}")
    if starts_at <= now:
        raise MeetingError("a meeting can only move to a time still ahead")
    old_minutes = meeting_minutes(cycle)
    old_label = meeting_label(cycle)
    schedule = group_schedule(group, starts_at)
    cycle.meeting_starts_at = starts_at
    cycle.meeting_ends_at = starts_at + length
    cycle.request_at = schedule.request_at
    cycle.deadline_at = schedule.deadline_at
    if meeting_minutes(cycle) != old_minutes and meeting.agenda.get("items"):
        # A longer or shorter meeting: issue processing takes up the difference.
        meeting.agenda = {"items": [i.to_json() for i in stretch(agendas.items_from_json(meeting.agenda),
                                                                  meeting_minutes(cycle))]}
    meeting.sequence += 1
    meeting.rsvp_reminder_sent_at = None
    for rsvp in meeting.rsvps:  # a new date is a new question (RFC 5546: PARTSTAT resets)
        rsvp.response = RsvpResponse.NONE
        rsvp.responded_at = None
        rsvp.response_source = None
    session.flush()
    told = follow_move(session, meeting)
    if meeting.invited_sequence is None:
        return moved_notes(session, settings, meeting, told, old_label)
    # The invite update says it all (new date, agenda, calendar): no separate note.
    return send_invites(session, settings, meeting, now, is_update=True, note="The meeting has moved.")


# What a queued email shows of the date; refreshed in place when the meeting moves.
DATE_KEYS = ("month_label", "due_label", "due_short", "meeting_label", "date_label", "agenda", "agenda_lines",
             "agenda_minutes", "meeting_minutes")
# One per SEQUENCE: a queued one for the old date is superseded (the move queues the new invites,
# and the tick the new reminder; the answers a held headcount carries were to the old date, and
# are asked again).
SUPERSEDED_KINDS = ("meeting_invite", "meeting_rsvp_reminder", "meeting_headcount")
# Emails that told a member the date before it moved.
DATED_KINDS = ("update_request", "reminder", "meeting_date")


def follow_move(session: Session, meeting: Meeting) -> set[int]:
    """After the cycle's times changed: emails still queued for it carry the new date (their
    context refreshed in place, under the row lock, so the Message-ID, the dedupe key and the
    threading stay), old invites and RSVP reminders are cancelled; returns the ids of the members
    who were already sent the old date. Flushes.

    The send job locks the row and sends only a queued one: a send racing the move either went
    first (and its member is counted as told) or finds the new context."""
    cycle = meeting.cycle
    fresh = {**cycle_context(cycle), **meeting_context(meeting)}
    long_date = local_label(cycle.meeting_starts_at, meeting.group.timezone, "%A %-d %B")
    queued = session.scalars(
        select(OutboundMessage)
        .where(OutboundMessage.cycle_id == cycle.id, OutboundMessage.status == OutboundStatus.QUEUED)
        .order_by(OutboundMessage.id)
        .with_for_update()
    ).all()
    for row in queued:
        if row.kind in SUPERSEDED_KINDS:
            row.status = OutboundStatus.CANCELLED
            row.last_error = "superseded: the meeting moved before this went out"
        elif row.kind != "packet":  # a packet is compiled again with the cycle
            values = {key: fresh[key] for key in DATE_KEYS if key in row.context}
            if row.kind == "meeting_date":
                values["date_label"] = long_date
            if values:
                row.context = {**row.context, **values}  # a new dict: the JSON column sees the change
    session.flush()
    return set(
        session.scalars(
            select(OutboundMessage.member_id).where(
                OutboundMessage.cycle_id == cycle.id,
                OutboundMessage.kind.in_(DATED_KINDS),
                OutboundMessage.status.in_((OutboundStatus.SENT, OutboundStatus.DELIVERED)),
                OutboundMessage.member_id.is_not(None),
            )
        )
    )


def moved_notes(session: Session, settings: Settings, meeting: Meeting, member_ids: set[int], old_label: str) -> list[int]:
    """One short "the meeting moved" note to each member who was sent the old date (when no
    invite update goes out to say it). Flushes; safe twice (one per member and SEQUENCE)."""
    cycle, group = meeting.cycle, meeting.group
    shared = {**cycle_context(cycle), "date_label": meeting_context(meeting)["date_label"], "old_label": old_label}
    requests = {r.member_id: r for r in session.scalars(select(UpdateRequest).where(UpdateRequest.cycle_id == cycle.id))}
    ids = []
    for member in group.members:
        if member.id not in member_ids or not member.is_reachable:
            continue
        request = requests.get(member.id)
        waiting = request is not None and request.replied_at is None and request.excused_at is None
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_moved",
            dedupe_key=f"moved:{meeting.id}:{member.id}:{meeting.sequence}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, request.token) if request is not None else None,
            in_reply_to=request_message_id(session, request) if request is not None else None,
            group_id=group.id,
            cycle_id=cycle.id,
            member_id=member.id,
            context={**shared, "first_name": member.first_name, "update_waiting": waiting},
        )
        if row is not None:
            ids.append(row.id)
    return ids


def stretch(items: list[agendas.Item], minutes: int) -> list[agendas.Item]:
    """The agenda fitted to `minutes`: the difference goes to the longest item."""
    if not items:
        return items
    difference = minutes - agendas.total(items)
    longest = max(range(len(items)), key=lambda i: items[i].minutes)
    fitted = list(items)
    item = fitted[longest]
    fitted[longest] = agendas.Item(item.title, max(agendas.STEP, item.minutes + difference), item.owner)
    return fitted


STOPPED_KINDS = ("update_request", "reminder", "digest", "meeting_rsvp_reminder", "meeting_agenda_draft",
                 "meeting_invite", "meeting_recap_request", "meeting_headcount")


def cancel(session: Session, settings: Settings, meeting: Meeting, now: datetime, reason: str = "") -> list[int]:
    """Cancel the meeting: the cycle stops (no more requests, reminders or packet), emails still
    queued for it are not sent, and every member gets the cancellation (METHOD:CANCEL when they
    had the invite). Flushes. Safe twice."""
    if meeting.status == MeetingStatus.CANCELLED:
        return []
    cycle = meeting.cycle
    meeting.status = MeetingStatus.CANCELLED
    meeting.cancelled_at = now
    meeting.sequence += 1
    cycle.status = CycleStatus.DONE
    for row in session.scalars(
        select(OutboundMessage).where(
            OutboundMessage.cycle_id == cycle.id,
            OutboundMessage.status == OutboundStatus.QUEUED,
            OutboundMessage.kind.in_(STOPPED_KINDS),
        )
    ):
        row.status = OutboundStatus.CANCELLED
        row.last_error = "the meeting was cancelled"
    session.flush()
    members = [m for m in meeting.group.members if m.is_reachable]
    shared = meeting_context(meeting)
    ids = []
    for member in members:
        rsvp = rsvp_for(session, meeting, member)
        context = {**shared, "first_name": member.first_name, "reason": reason, "ics": "", "ics_method": ""}
        if rsvp.invited_at is not None:
            context["ics"] = build_ics(invite_for(settings, meeting, rsvp, members), "CANCEL", now).decode()
            context["ics_method"] = "CANCEL"
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_cancel",
            dedupe_key=f"cancel:{meeting.id}:{member.id}",
            to_email=member.email,
            to_name=member.name,
            group_id=meeting.group_id,
            cycle_id=cycle.id,
            member_id=member.id,
            context=context,
        )
        if row is not None:
            ids.append(row.id)
    for facilitator in meeting.group.facilitators:
        row = _cancel_copy(session, settings, meeting, facilitator, shared, reason)
        if row is not None:
            ids.append(row)
    return ids


def _cancel_copy(session: Session, settings: Settings, meeting: Meeting, facilitator: Facilitator,
                 shared: dict[str, object], reason: str) -> int | None:
    row = mail.queue_email(
        session,
        settings,
        kind="meeting_cancel",
        dedupe_key=f"cancel:{meeting.id}:facilitator:{facilitator.id}",
        to_email=facilitator.email,
        to_name=facilitator.name,
        group_id=meeting.group_id,
        cycle_id=meeting.cycle_id,
        context={**shared, "first_name": facilitator.name.split()[0] if facilitator.name.split() else "",
                 "reason": reason, "ics": "", "ics_method": ""},
    )
    return row.id if row is not None else None
