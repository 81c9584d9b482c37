"""Circulating an ask: one email per other member of the group, never the asker, never outside
it; at most one a day per member ("daily", the default: what arrives meanwhile goes as one
digest), or each ask at once ("immediate")."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import new_token, without_bidi
from app.asks.emails import ask_context
from app.models import (
    Ask,
    AskCirculation,
    AskCirculationMode,
    AskStatus,
    Group,
    Member,
)
from app.settings import Settings

DIGEST_EVERY = timedelta(days=1)
CIRCULATING = (AskStatus.OPEN, AskStatus.ANSWERED)


def open_ask(session: Session, settings: Settings, ask: Ask, now: datetime) -> list[int]:
    """Let `ask` circulate: a row (and reply token) for each other reachable member of its group,
    then queue what may go now. Flushes; returns the emails queued. Safe twice."""
    if ask.opened_at is None:
        ask.opened_at = now
    if ask.status not in CIRCULATING:
        ask.status = AskStatus.OPEN
    have = set(session.scalars(select(AskCirculation.member_id).where(AskCirculation.ask_id == ask.id)))
    peers = [m for m in ask.group.members if m.id != ask.member_id and m.is_reachable and m.id not in have]
    for member in peers:
        session.add(AskCirculation(ask=ask, member_id=member.id, token=new_token(), created_at=now))
    session.flush()
    return queue_due(session, settings, now, group_id=ask.group_id)


def due_now(mode: str, last_sent_at: datetime | None, now: datetime) -> bool:
    """Whether a member's waiting asks may go out now. Pure."""
    if mode == AskCirculationMode.IMMEDIATE or last_sent_at is None:
        return True
    return now - last_sent_at >= DIGEST_EVERY


def queue_due(session: Session, settings: Settings, now: datetime, *, group_id: int | None = None) -> list[int]:
    """Queue the ask emails due now (of one group, or all): per member, each ask at once or the
    waiting ones as one digest. Flushes; safe twice and with two ticks at once (row locks; the
    dedupe key is the first circulation's id)."""
    query = (
        select(AskCirculation)
        .join(Ask, Ask.id == AskCirculation.ask_id)
        .where(AskCirculation.sent_at.is_(None))
        .order_by(AskCirculation.member_id, AskCirculation.id)
        .with_for_update(skip_locked=True, of=AskCirculation)
    )
    if group_id is not None:
        query = query.where(Ask.group_id == group_id)
    waiting: dict[int, list[AskCirculation]] = defaultdict(list)
    for circulation in session.scalars(query):
        waiting[circulation.member_id].append(circulation)
    if not waiting:
        return []
    last_sent = dict(
        session.execute(
            select(AskCirculation.member_id, func.max(AskCirculation.sent_at))
            .where(AskCirculation.member_id.in_(waiting), AskCirculation.outbound_message_id.is_not(None))
            .group_by(AskCirculation.member_id)
        ).all()
    )
    ids: list[int] = []
    for member_id, circulations in waiting.items():
        member = session.get_one(Member, member_id)
        group = session.get_one(Group, member.group_id)
        live = []
        for circulation in circulations:
            ask = circulation.ask
            # A closed (or held) ask, a member gone or bouncing, or an ask that crossed groups
            # (never: checked anyway, it is the worst mistake we could make): not sent, ever.
            if ask.status not in CIRCULATING or not member.is_reachable or ask.group_id != member.group_id \
                    or ask.member_id == member.id:
                circulation.sent_at = now
            else:
                live.append(circulation)
        if not live or not due_now(group.ask_circulation, last_sent.get(member_id), now):
            continue
        batches = [[c] for c in live] if group.ask_circulation == AskCirculationMode.IMMEDIATE else [live]
        for batch in batches:
            row_id = _queue_email(session, settings, member, batch, now)
            if row_id is not None:
                ids.append(row_id)
    session.flush()
    return ids


def _queue_email(
    session: Session, settings: Settings, member: Member, batch: list[AskCirculation], now: datetime
) -> int | None:
    digest_token = new_token() if len(batch) > 1 else None
    reply_token = digest_token or batch[0].token
    asks = [
        {**ask_context(settings, c.ask), "reply_address": mail.reply_address(settings, c.token)} for c in batch
    ]
    row = mail.queue_email(
        session,
        settings,
        kind="ask_circulated",
        dedupe_key=f"askmail:{member.id}:{batch[0].id}",
        to_email=member.email,
        to_name=without_bidi(member.name),
        reply_to=mail.reply_address(settings, reply_token),
        group_id=member.group_id,
        member_id=member.id,
        context={
            "group_name": batch[0].ask.group.name,
            "first_name": without_bidi(member.first_name),
            "asks": asks,
            "is_digest": len(batch) > 1,
        },
    )
    if row is None:
        return None
    for circulation in batch:
        circulation.outbound_message_id = row.id
        circulation.sent_at = now
        circulation.digest_token = digest_token
    return row.id
