"""The recap: after the meeting the facilitator is asked for notes; each member then gets the
recap with their own commitments, as they stated them, to confirm or correct by reply. What they
confirm is what the next month's request asks about (app.cycles.open_commitments) and the ledger.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.cycles import commitment_lines, local_label
from app.meeting.meetings import facilitator_name, meeting_context, rsvp_for
from app.models import Meeting, MeetingStatus, Rsvp, UpdateRequest
from app.settings import Settings

# No notes from the facilitator this long after the meeting: the members' recaps go without.
NOTES_WAIT = timedelta(days=2)


def stated_commitments(session: Session, meeting: Meeting) -> dict[int, list[str]]:
    """Each member's next commitments as their latest update for this cycle states them."""
    stated = {}
    for request in session.scalars(select(UpdateRequest).where(UpdateRequest.cycle_id == meeting.cycle_id)):
        update = request.latest_update
        if update is not None and not update.is_skip:
            lines = commitment_lines(update.sections.get("texts", {}).get("next_commitments", ""))
            if lines:
                stated[request.member_id] = lines
    return stated


def queue_recap_request(session: Session, settings: Settings, meeting: Meeting, now: datetime) -> list[int]:
    """Ask the facilitators for the meeting's notes (reply to send the recap; nothing sends it
    without notes after NOTES_WAIT). Flushes; safe twice."""
    if meeting.status == MeetingStatus.CANCELLED or meeting.recap_requested_at is not None:
        return []
    meeting.recap_requested_at = now
    stated = stated_commitments(session, meeting)
    shared = meeting_context(meeting)
    members = [
        {"name": m.name, "commitments": stated.get(m.id, [])} for m in meeting.group.members if m.is_listed
    ]
    wait_label = local_label(now + NOTES_WAIT, meeting.group.timezone, "%a %-d %b")
    ids = []
    for facilitator in meeting.group.facilitators:
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_recap_request",
            dedupe_key=f"recap_request:{meeting.id}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            reply_to=mail.reply_address(settings, meeting.recap_token),
            group_id=meeting.group_id,
            cycle_id=meeting.cycle_id,
            context={**shared, "first_name": facilitator.name.split()[0] if facilitator.name.split() else "",
                     "members": members, "wait_label": wait_label},
        )
        if row is not None:
            ids.append(row.id)
    session.flush()
    return ids


def send_recaps(session: Session, settings: Settings, meeting: Meeting, now: datetime, notes: str | None) -> list[int]:
    """The recap to every member, with the facilitator's notes and the member's own commitments.
    Flushes; safe twice (the first call's notes stand)."""
    if meeting.status == MeetingStatus.CANCELLED or meeting.recap_sent_at is not None:
        return []
    meeting.recap_notes = notes.strip() if notes and notes.strip() else None
    meeting.recap_sent_at = now
    stated = stated_commitments(session, meeting)
    shared = meeting_context(meeting)
    ids = []
    for member in meeting.group.members:
        if not member.is_reachable:
            continue
        rsvp = rsvp_for(session, meeting, member)
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_recap",
            dedupe_key=f"recap:{meeting.id}:{member.id}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, rsvp.recap_token),
            group_id=meeting.group_id,
            cycle_id=meeting.cycle_id,
            member_id=member.id,
            context={**shared, "first_name": member.first_name, "notes": meeting.recap_notes or "",
                     "commitments": stated.get(member.id, []), "facilitator_name": facilitator_name(meeting)},
        )
        if row is not None:
            ids.append(row.id)
    session.flush()
    return ids


MAX_ITEMS, MAX_ITEM = 20, 500  # a month's commitments, not a pasted document

_CONFIRM_RE = re.compile(
    r"^\W*(confirm(?:ed)?|correct|yes|yep|ok(?:ay)?|all good|looks (?:good|right)|that'?s right|agreed)\b\W*",
    re.IGNORECASE,
)


def read_commitments(text: str, stated: list[str]) -> list[str] | None:
    """The commitments a member's answer to the recap sets: `stated` when they confirm, the lines
    they wrote when they correct them; None when the answer holds neither. Pure."""
    lines = [line[:MAX_ITEM] for line in text.splitlines() if line.strip()][:MAX_ITEMS]
    if not lines:
        return None
    if _CONFIRM_RE.match(lines[0]):
        rest = _CONFIRM_RE.sub("", lines[0], count=1).strip()
        written = commitment_lines("\n".join(([rest] if len(rest) > 40 else []) + lines[1:]))
        return written or list(stated)
    written = commitment_lines("\n".join(lines))
    return written or None


def confirm_commitments(session: Session, rsvp: Rsvp, items: list[str], now: datetime) -> None:
    """Store the member's confirmed commitments (a later answer replaces them). Flushes."""
    rsvp.commitments = {"items": items}
    rsvp.commitments_confirmed_at = now
    session.flush()
