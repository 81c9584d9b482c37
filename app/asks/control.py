"""Whether an ask may circulate: the group's approval setting, the weekly limit per member, the
`[facilitator only]` mark; the facilitator's APPROVE or HOLD; and telling the asker why."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import without_bidi
from app.asks import circulate
from app.asks.emails import ask_context, ask_thread_id
from app.models import Ask, AskStatus
from app.settings import Settings

WEEK = timedelta(days=7)
# Asks that count towards the weekly limit: those that went (or will go) to the group.
COUNTED = (AskStatus.AWAITING_APPROVAL, AskStatus.OPEN, AskStatus.ANSWERED, AskStatus.CLOSED)
WAITING = (AskStatus.AWAITING_APPROVAL, AskStatus.HELD)  # what the facilitator may approve or hold


def initial_status(
    *, facilitator_only: bool, needs_approval: bool, asked_this_week: int, per_week: int
) -> tuple[AskStatus, str | None]:
    """A new ask's status and, when it is held, the note the asker reads. Pure."""
    if facilitator_only:
        return AskStatus.FACILITATOR_ONLY, None
    if per_week > 0 and asked_this_week >= per_week:
        plural = "ask" if per_week == 1 else "asks"
        return AskStatus.HELD, (
            f"You have sent {asked_this_week} {'ask' if asked_this_week == 1 else 'asks'} to the group in the last"
            f" seven days, and the group's limit is {per_week} {plural} a week. Your facilitator can still let"
            " this one through."
        )
    if needs_approval:
        return AskStatus.AWAITING_APPROVAL, None
    return AskStatus.OPEN, None


def asked_this_week(session: Session, ask: Ask, now: datetime) -> int:
    return session.scalar(
        select(func.count(Ask.id)).where(
            Ask.group_id == ask.group_id,
            Ask.member_id == ask.member_id,
            Ask.id != ask.id,
            Ask.status.in_(COUNTED),
            Ask.created_at > now - WEEK,
        )
    ) or 0


def decide(session: Session, settings: Settings, ask: Ask, now: datetime) -> list[int]:
    """Set a new ask's status, circulate it when it may go, tell the asker and the facilitators.
    Flushes; returns the emails queued."""
    group = ask.group
    status, note = initial_status(
        facilitator_only=ask.status == AskStatus.FACILITATOR_ONLY,
        needs_approval=group.asks_need_approval,
        asked_this_week=asked_this_week(session, ask, now),
        per_week=group.asks_per_week,
    )
    ask.status, ask.note = status, note
    ids = tell_asker(session, settings, ask, str(status))
    if status == AskStatus.OPEN:
        ids += circulate.open_ask(session, settings, ask, now)
    ids += tell_facilitators(session, settings, ask)
    session.flush()
    return ids


def approve(session: Session, settings: Settings, ask: Ask, now: datetime) -> list[int]:
    """The facilitator lets an ask awaiting approval (or held) circulate. Flushes. Safe twice."""
    if ask.status not in WAITING:
        return []
    ask.note = None
    ids = circulate.open_ask(session, settings, ask, now)
    return tell_asker(session, settings, ask, "approved") + ids


def hold(session: Session, settings: Settings, ask: Ask, note: str, key: str) -> list[int]:
    """The facilitator holds an ask, with a note the asker reads; `key` names this decision (the
    message or command it came from) so the asker is told once. Flushes. An ask that has begun
    to circulate cannot be called back: only one still waiting is held."""
    if ask.status not in WAITING:
        return []
    ask.status = AskStatus.HELD
    ask.note = note.strip() or "Your facilitator would like to talk it over with you first."
    return tell_asker(session, settings, ask, f"held:{key}")


_APPROVE = re.compile(r"^\W*(approve[ds]?|approval|ok|okay|yes|go|send it)\b", re.IGNORECASE)
_HOLD = re.compile(r"^\W*(hold|held|refuse[ds]?|reject(?:ed)?|no)\b[\s:,.\-–]*(.*)", re.IGNORECASE | re.DOTALL)


def read_decision(text: str) -> tuple[str, str] | None:
    """The facilitator's answer: ("approve", "") or ("hold", note); None when it is neither. Pure."""
    if _APPROVE.match(text):
        return "approve", ""
    held = _HOLD.match(text)
    if held:
        return "hold", held.group(2).strip()
    return None


def tell_asker(session: Session, settings: Settings, ask: Ask, event: str) -> list[int]:
    """Tell the asker where their ask stands (circulating, awaiting approval, held with the
    reason, facilitator only, its kind changed): once per event."""
    member = ask.member
    if not member.is_reachable:
        return []
    peers = sum(1 for m in ask.group.members if m.id != member.id and m.is_reachable)
    row = mail.queue_email(
        session,
        settings,
        kind="ask_status",
        dedupe_key=f"askstatus:{ask.id}:{event}",
        to_email=member.email,
        to_name=without_bidi(member.name),
        reply_to=mail.reply_address(settings, ask.token),
        in_reply_to=ask_thread_id(session, ask),
        group_id=ask.group_id,
        member_id=member.id,
        context={
            **ask_context(settings, ask),
            "first_name": without_bidi(member.first_name),
            "status": str(ask.status),
            "event": event.split(":")[0],
            "note": ask.note or "",
            "peers": peers,
            "is_daily": ask.group.ask_circulation != "immediate",
        },
    )
    return [row.id] if row is not None else []


def tell_facilitators(session: Session, settings: Settings, ask: Ask) -> list[int]:
    """Each facilitator sees the ask and its kind; one that waits for them says how to approve
    or hold it (a reply to this email)."""
    waits = ask.status in (AskStatus.AWAITING_APPROVAL, AskStatus.HELD)
    ids = []
    for facilitator in ask.group.facilitators:
        row = mail.queue_email(
            session,
            settings,
            kind="ask_notice",
            dedupe_key=f"asknotice:{ask.id}:{facilitator.id}:{ask.status}",
            to_email=facilitator.email,
            to_name=without_bidi(facilitator.name),
            reply_to=mail.reply_address(settings, ask.approval_token) if waits else None,
            group_id=ask.group_id,
            context={
                **ask_context(settings, ask),
                "facilitator_name": without_bidi(facilitator.name),
                "status": str(ask.status),
                "note": ask.note or "",
                "waits": waits,
                "group_slug": ask.group.slug,
            },
        )
        if row is not None:
            ids.append(row.id)
    return ids
