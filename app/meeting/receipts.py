"""Short answers to people's own replies: a member's receipt for a text RSVP or for their recap
commitments ("You're down as joining by video for Thu 11 Mar; reply to change it"), and a
facilitator's note when their reply could not be applied (why, and what to write instead).

Only replies reach here: auto-replies and bounces are set aside before any handler runs
(app.replies), and each person gets at most a few of these a day, so a responder that ignores
RFC 3834 cannot loop with us. Each function flushes and returns the new outbound ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import mail
from app.models import Group, InboundMessage, Meeting, Member, OutboundMessage, Rsvp, RsvpResponse
from app.settings import Settings

# Per member (receipts) or facilitator address (problem notes) and cycle, in 24 hours: as
# app.replies caps its receipts (MAX_RECEIPTS_A_DAY). Past it the answer is still recorded.
MAX_RECEIPTS_A_DAY = 3
MAX_PROBLEMS_A_DAY = 3

ANSWER_WORDS = {
    RsvpResponse.YES: "coming",
    RsvpResponse.VIDEO: "joining by video",
    RsvpResponse.MAYBE: "a maybe",
    RsvpResponse.NO: "not coming",
}


def _sent_today(session: Session, kind: str, now: datetime, **match: object) -> int:
    conditions = [OutboundMessage.kind == kind, OutboundMessage.created_at > now - timedelta(days=1)]
    conditions += [getattr(OutboundMessage, column) == value for column, value in match.items()]
    return session.scalar(select(func.count(OutboundMessage.id)).where(*conditions)) or 0


def _first_name(name: str) -> str:
    return name.split()[0] if name.split() else ""


def _subject(row: InboundMessage, fallback: str) -> str:
    subject = (row.subject or "").strip()
    if not subject:
        return fallback
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def rsvp_receipt(session: Session, settings: Settings, row: InboundMessage, rsvp: Rsvp, shared: dict[str, object],
                 now: datetime) -> list[int]:
    """Tell the member what we took their text answer to be. Once per message; capped a day."""
    member, meeting = rsvp.member, rsvp.meeting
    if _sent_today(session, "meeting_receipt", now, cycle_id=meeting.cycle_id, member_id=member.id) >= MAX_RECEIPTS_A_DAY:
        return []  # the answer is recorded; the invite and the next receipt show it
    return _queue_receipt(session, settings, row, member, meeting, reply_token=rsvp.token, context={
        **shared,
        "first_name": member.first_name,
        "what": "rsvp",
        "answer": rsvp.response,
        "answer_words": ANSWER_WORDS.get(RsvpResponse(rsvp.response), str(rsvp.response)),
        "commitments": [],
        "subject": _subject(row, f"Your answer for {shared['date_label']}"),
    })


def commitments_receipt(session: Session, settings: Settings, row: InboundMessage, rsvp: Rsvp, items: list[str],
                        confirmed: bool, shared: dict[str, object], now: datetime) -> list[int]:
    """Tell the member the commitments we keep for next month. Once per message; capped a day."""
    member, meeting = rsvp.member, rsvp.meeting
    if _sent_today(session, "meeting_receipt", now, cycle_id=meeting.cycle_id, member_id=member.id) >= MAX_RECEIPTS_A_DAY:
        return []
    return _queue_receipt(session, settings, row, member, meeting, reply_token=rsvp.recap_token, context={
        **shared,
        "first_name": member.first_name,
        "what": "commitments",
        "answer": "confirmed" if confirmed else "corrected",
        "answer_words": "",
        "commitments": items,
        "subject": _subject(row, "Your commitments for next month"),
    })


def _queue_receipt(session: Session, settings: Settings, row: InboundMessage, member: Member, meeting: Meeting, *,
                   reply_token: str, context: dict[str, object]) -> list[int]:
    receipt = mail.queue_email(
        session,
        settings,
        kind="meeting_receipt",
        dedupe_key=f"meeting_receipt:{row.id}",
        to_email=member.email,
        to_name=member.name,
        reply_to=mail.reply_address(settings, reply_token),
        in_reply_to=row.message_id,
        group_id=meeting.group_id,
        cycle_id=meeting.cycle_id,
        member_id=member.id,
        context=context,
    )
    return [receipt.id] if receipt is not None else []


def problem_note(session: Session, settings: Settings, row: InboundMessage, group: Group, facilitator_email: str, *,
                 reply_token: str, cycle_id: int | None, what: str, why: str, instead: str,
                 text: str, options: list[str] | None = None, now: datetime) -> list[int]:
    """Tell a facilitator (already checked to be one) that their reply about `what` was not
    applied, `why`, and what to write `instead`. Once per message; capped a day per address."""
    facilitator = next((f for f in group.facilitators if f.email.lower() == facilitator_email.lower()), None)
    if facilitator is None:
        return []
    if _sent_today(session, "meeting_problem", now, to_email=facilitator.email) >= MAX_PROBLEMS_A_DAY:
        return []  # the reason stays on the inbound row
    note = mail.queue_email(
        session,
        settings,
        kind="meeting_problem",
        dedupe_key=f"meeting_problem:{row.id}",
        to_email=facilitator.email,
        to_name=facilitator.name,
        reply_to=mail.reply_address(settings, reply_token),
        in_reply_to=row.message_id,
        group_id=group.id,
        cycle_id=cycle_id,
        context={
            "group_name": group.name,
            "first_name": _first_name(facilitator.name),
            "what": what,
            "why": why,
            "instead": instead,
            "options": options or [],
            "text": text.strip()[:1000],
            "subject": _subject(row, f"Your reply about {what}"),
        },
    )
    return [note.id] if note is not None else []
