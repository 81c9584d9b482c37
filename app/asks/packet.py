"""The packet's asks listing: open, answered and closed asks, and who helped whom this cycle."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.addresses import without_bidi
from app.asks import closure
from app.asks.kinds import KIND_LABELS
from app.models import Ask, AskStatus, Cycle, Offer

MAX_TEXT = 300


def _short(text: str, limit: int = 80) -> str:
    """`text` on one line, cut at a word before `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def cycle_start(session: Session, cycle: Cycle) -> datetime:
    """Since when "this cycle" counts: the end of the group's previous meeting, else 35 days before."""
    previous = session.scalar(
        select(Cycle.meeting_ends_at)
        .where(Cycle.group_id == cycle.group_id, Cycle.meeting_starts_at < cycle.meeting_starts_at)
        .order_by(Cycle.meeting_starts_at.desc())
        .limit(1)
    )
    return previous or cycle.meeting_starts_at - timedelta(days=35)


def listing(session: Session, cycle: Cycle) -> dict[str, Any]:
    """Plain values for the packet: the group's asks still open or answered, those closed this
    cycle, and this cycle's offers. Asks held or for the facilitator only are left out (the
    packet may go to members)."""
    since = cycle_start(session, cycle)
    asks = session.scalars(
        select(Ask)
        .where(
            Ask.group_id == cycle.group_id,
            Ask.created_at < cycle.meeting_starts_at,
            (Ask.status.in_((AskStatus.OPEN, AskStatus.ANSWERED)))
            | ((Ask.status == AskStatus.CLOSED) & (Ask.closed_at >= since)),
        )
        .order_by(Ask.id)
    ).all()

    def entry(ask: Ask) -> dict[str, Any]:
        text = _short(ask.text, MAX_TEXT)
        return {
            "name": without_bidi(ask.member.name),
            "text": text,
            "kind_label": KIND_LABELS.get(ask.kind, "Other"),
            "helpers": list(dict.fromkeys(without_bidi(o.member.name) for o in ask.offers)),
            "thanked": ask.thanked or "",
            "withdrawn": closure.is_withdrawn(ask),
        }

    offers = session.scalars(
        select(Offer)
        .join(Ask, Ask.id == Offer.ask_id)
        .where(Ask.group_id == cycle.group_id, Offer.created_at >= since, Offer.created_at < cycle.meeting_starts_at)
        .order_by(Offer.id)
    ).all()
    helped = list(dict.fromkeys(
        (without_bidi(o.member.name), without_bidi(o.ask.member.name), _short(o.ask.text)) for o in offers
    ))
    return {
        "open": [entry(a) for a in asks if a.status == AskStatus.OPEN],
        "answered": [entry(a) for a in asks if a.status == AskStatus.ANSWERED],
        "closed": [entry(a) for a in asks if a.status == AskStatus.CLOSED],
        "helped": [{"helper": h, "asker": a, "ask": t} for h, a, t in helped],
    }
