"""The asks' handler for `app.replies.HANDLERS`: mail answering an ask's own reply tokens (an
offer, the asker's "done" or kind correction, the facilitator's APPROVE or HOLD), and mail to a
group's own address (`GROUPSLUG@<inbound domain>` or `ask+GROUPSLUG@...`), which starts an ask.

Only a group's members (and their registered addresses) speak for them, authenticated as update
replies are (`app.inbox.untrusted_sender`); anyone else is held with the reason, never circulated.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import same, without_bidi
from app.asks import closure, control, held, kinds, offers, sources
from app.asks.addressing import group_addressed, group_slugs
from app.asks.emails import ask_context
from app.authentication import sender_authentication
from app.inbox import Outcome, is_members_address, untrusted_sender
from app.models import (
    Ask,
    AskCirculation,
    Group,
    InboundMessage,
    InboundStatus,
    Member,
    OutboundMessage,
)
from app.reading.message import Reading
from app.settings import Settings

__all__ = ["group_addressed", "group_slugs", "handle"]


def handle(session: Session, settings: Settings, row: InboundMessage, reading: Reading, now: datetime) -> Outcome | None:
    """Route one message to the ask it answers, or start an ask from mail to a group's address;
    None when it is neither. Sets the row's status and reason; flushes."""
    if reading.tokens:
        handled = _by_token(session, settings, row, reading, reading.tokens, now)
        if handled is not None:
            return handled
    thread_tokens = _thread_tokens(session, reading)
    if thread_tokens:  # the reply address was lost (a client or a forward dropped Reply-To)
        handled = _by_token(session, settings, row, reading, thread_tokens, now)
        if handled is not None:
            return handled
    group = group_addressed(session, settings, row)
    if group is not None:
        return _new_ask(session, settings, row, reading, group, now)
    return None


# --- by reply token ------------------------------------------------------------------------------


def _thread_tokens(session: Session, reading: Reading) -> list[str]:
    """The reply tokens of our ask emails this message answers by In-Reply-To/References: the
    circulation's (one ask to one member) or the ask's own (the asker's emails)."""
    if not reading.reply_to_ids:
        return []
    rows = session.execute(
        select(OutboundMessage.id, OutboundMessage.kind, OutboundMessage.dedupe_key).where(
            OutboundMessage.message_id.in_(reading.reply_to_ids), OutboundMessage.kind.like("ask_%")
        )
    ).all()
    tokens: list[str] = []
    for outbound_id, kind, dedupe_key in rows:
        if kind == "ask_circulated":
            circulations = session.scalars(
                select(AskCirculation.token).where(AskCirculation.outbound_message_id == outbound_id)
            ).all()
            if len(circulations) == 1:  # a digest's reply stays ambiguous
                tokens += circulations
        elif kind in ("ask_status", "ask_followup") and dedupe_key.split(":")[1].isdigit():
            tokens += session.scalars(select(Ask.token).where(Ask.id == int(dedupe_key.split(":")[1]))).all()
    return tokens


def _by_token(session: Session, settings: Settings, row: InboundMessage, reading: Reading, tokens: list[str],
              now: datetime) -> Outcome | None:
    order = {token: i for i, token in enumerate(tokens)}
    sender = reading.from_address
    circulations = sorted(
        session.scalars(select(AskCirculation).where(AskCirculation.token.in_(tokens))), key=lambda c: order[c.token]
    )
    asks = sorted(session.scalars(select(Ask).where(Ask.token.in_(tokens))), key=lambda a: order[a.token])
    approvals = sorted(
        session.scalars(select(Ask).where(Ask.approval_token.in_(tokens))), key=lambda a: order[a.approval_token]
    )
    digests = list(session.scalars(select(AskCirculation).where(AskCirculation.digest_token.in_(tokens))))
    # The sender's own token wins (a Reply-All may carry others'); then the order found.
    for circulation in circulations:
        if is_members_address(session, circulation.member, sender):
            return _offer(session, settings, row, reading, circulation, now)
    for ask in asks:
        if is_members_address(session, ask.member, sender):
            return _from_asker(session, settings, row, reading, ask, now)
    for ask in approvals:
        if any(same(f.email, sender) for f in ask.group.facilitators):
            return _decision(session, settings, row, reading, ask, now)
    mine = [c for c in digests if is_members_address(session, c.member, sender)]
    if mine:
        return _ambiguous(session, settings, row, mine)
    # A token of ours from someone it was not sent to: held, never acted on.
    if circulations:
        return _hold(row, untrusted_sender(session, row, circulations[0].member, sender) or "not the member")
    if asks:
        return _hold(row, untrusted_sender(session, row, asks[0].member, sender) or "not the asker")
    if approvals:
        return _hold(row, f"it came from {sender or 'no address'}, which is not a facilitator of the group"
                          " that would approve this ask")
    if digests:
        return _hold(row, untrusted_sender(session, row, digests[0].member, sender) or "not the member")
    return None


def _hold(row: InboundMessage, reason: str, notify: Callable[[], list[int]] | None = None) -> Outcome:
    """Hold the message with the reason; `notify` (called after the reason is set) tells whom it
    should, and returns the emails queued."""
    row.status = InboundStatus.HELD
    row.reason = reason
    return Outcome(outbound_ids=notify() if notify is not None else [])


def _offer(session: Session, settings: Settings, row: InboundMessage, reading: Reading, circulation: AskCirculation,
           now: datetime) -> Outcome:
    reason = untrusted_sender(session, row, circulation.member, reading.from_address)
    if reason is not None:
        return _hold(row, reason)
    text = reading.text.strip()
    if not text:
        row.status = InboundStatus.REJECTED
        row.reason = f"a reply to ask {circulation.ask_id} with no words of its own: nothing passed on"
        return Outcome()
    return Outcome(outbound_ids=offers.record_offer(session, settings, row, circulation, text, now))


def _from_asker(session: Session, settings: Settings, row: InboundMessage, reading: Reading, ask: Ask,
                now: datetime) -> Outcome:
    """The asker answers an email about their own ask: close it, withdraw it, correct its kind,
    or a note."""
    reason = untrusted_sender(session, row, ask.member, reading.from_address)
    if reason is not None:
        return _hold(row, reason)
    text = reading.text.strip()
    row.status = InboundStatus.ACCEPTED
    row.kind = "ask_reply"
    ids: list[int] = []
    kind = kinds.correction(text)
    if kind is not None and kind != ask.kind:
        ask.kind = kind
        ids += control.tell_asker(session, settings, ask, f"kind:{kind}:{row.id}")
        row.reason = f"ask {ask.id}: kind corrected to {kind}"
    elif closure.is_closure(text, ask.group.language):
        ids += closure.close(session, settings, ask, text, row.received_at)
        row.reason = f"ask {ask.id} closed by the asker" + (f"; thanked {ask.thanked}" if ask.thanked else "")
    elif closure.is_withdrawal(text, ask.group.language):
        if closure.withdraw(ask, row.received_at):
            ids += control.tell_asker(session, settings, ask, "withdrawn")
            row.reason = f"ask {ask.id} withdrawn by the asker: closed, and not sent to anyone else"
        else:
            row.reason = f"ask {ask.id} is closed already: the asker's withdrawal changed nothing"
    else:
        row.note = text or None
        row.reason = f"a note on ask {ask.id}; nothing changed"
    session.flush()
    return Outcome(outbound_ids=ids)


def _decision(session: Session, settings: Settings, row: InboundMessage, reading: Reading, ask: Ask,
              now: datetime) -> Outcome:
    """A facilitator's APPROVE or HOLD (with a note for the member)."""
    authentication = sender_authentication(row.raw, row.fields or {}, reading.from_address)
    if authentication.verdict == "fail":
        return _hold(row, f"it failed sender authentication ({authentication.reason})")
    decision = control.read_decision(reading.text.strip())
    row.status = InboundStatus.ACCEPTED
    row.kind = "ask_decision"
    if decision is None:
        row.status = InboundStatus.REJECTED
        row.reason = f"a facilitator's reply on ask {ask.id} that says neither APPROVE nor HOLD: nothing changed"
        return Outcome()
    before = ask.status
    if before not in control.WAITING:
        row.reason = f"ask {ask.id} is {before} already: the facilitator's {decision[0]} changed nothing"
        return Outcome()
    if decision[0] == "approve":
        ids = control.approve(session, settings, ask, now)
        row.reason = f"ask {ask.id} approved by the facilitator: {ask.status}"
    else:
        ids = control.hold(session, settings, ask, decision[1], f"inbound{row.id}")
        row.reason = f"ask {ask.id} held by the facilitator"
    session.flush()
    return Outcome(outbound_ids=ids)


def _ambiguous(session: Session, settings: Settings, row: InboundMessage, circulations: list[AskCirculation]) -> Outcome:
    """A reply to a digest of several asks: we cannot tell which ask it answers, so nobody gets
    it; the helper is asked to write to the ask's own address."""
    member = circulations[0].member
    row.status = InboundStatus.REJECTED
    row.reason = f"a reply to a digest of {len(circulations)} asks: which one it answers is unclear; the member was asked"
    notice = mail.queue_email(
        session,
        settings,
        kind="ask_which",
        dedupe_key=f"askwhich:{row.id}",
        to_email=member.email,
        to_name=without_bidi(member.name),
        in_reply_to=row.message_id,
        group_id=member.group_id,
        member_id=member.id,
        context={
            "group_name": circulations[0].ask.group.name,
            "first_name": without_bidi(member.first_name),
            "asks": [{**ask_context(settings, c.ask), "reply_address": mail.reply_address(settings, c.token)}
                     for c in circulations],
        },
    )
    session.flush()
    return Outcome(outbound_ids=[notice.id] if notice is not None else [])


# --- mail to the group's own address -------------------------------------------------------------


def _new_ask(session: Session, settings: Settings, row: InboundMessage, reading: Reading, group: Group,
             now: datetime) -> Outcome:
    sender = reading.from_address
    row.kind = "ask"  # held too: `roundtable asks --release` lets through only mail held here
    member = next(
        (m for m in session.scalars(select(Member).where(Member.group_id == group.id).order_by(Member.id))
         if m.is_listed and is_members_address(session, m, sender)),
        None,
    )
    if member is None:
        facilitator = held.facilitator_sending(group, sender)
        if facilitator is not None and sender_authentication(row.raw, row.fields or {}, sender).verdict != "fail":
            return _hold(row, f"mail to {group.slug}'s address from its facilitator {facilitator.name}: the group's"
                              " address carries members' asks, so it was not circulated by itself",
                         lambda: held.notice(session, settings, row, reading, group, now, to=[facilitator]))
        return _hold(row, f"mail to {group.slug}'s address from {sender or 'no address'}, which is not a member"
                          " of the group or one of their registered addresses: not circulated",
                     lambda: held.notice(session, settings, row, reading, group, now))
    reason = untrusted_sender(session, row, member, sender)
    if reason is not None:
        return _hold(row, f"{reason}: not circulated", lambda: held.notice(session, settings, row, reading, group, now))
    ask, ids = sources.from_mail(session, settings, row, member, reading.subject, reading.text, now)
    if ask is None:
        row.status = InboundStatus.REJECTED
        row.reason = f"mail to {group.slug}'s address with no words: no ask made"
        return Outcome()
    row.status = InboundStatus.ACCEPTED
    row.reason = f"ask {ask.id} from {member.name}: {ask.status}"
    session.flush()
    return Outcome(outbound_ids=ids)
