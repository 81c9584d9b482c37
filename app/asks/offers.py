"""An offer: a member's reply to a circulated ask goes privately to the asker, with the helper's
name and address so they can talk directly, and a copy to the helper. Never to the group."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app import mail
from app.addresses import without_bidi
from app.asks.emails import ask_context, ask_thread_id
from app.models import AskCirculation, AskStatus, InboundMessage, InboundStatus, Offer
from app.settings import Settings

MAX_OFFER_CHARS = 10_000


def record_offer(
    session: Session, settings: Settings, row: InboundMessage, circulation: AskCirculation, text: str, now: datetime
) -> list[int]:
    """Log the offer and queue its two emails: to the asker (Reply-To the helper) and the copy
    to the helper (Reply-To the asker, threaded under the ask they received). Only ever these
    two people, whoever else the message was addressed to. Flushes; returns the emails queued."""
    ask, helper = circulation.ask, circulation.member
    asker = ask.member
    offer = Offer(ask=ask, member_id=helper.id, inbound_message_id=row.id, text=text[:MAX_OFFER_CHARS],
                  created_at=row.received_at)
    session.add(offer)
    was_closed = ask.status == AskStatus.CLOSED
    if ask.status == AskStatus.OPEN:
        ask.status = AskStatus.ANSWERED
    session.flush()
    row.status = InboundStatus.ACCEPTED
    row.kind = "ask_offer"
    row.reason = f"offer on ask {ask.id}: sent privately to {asker.name}, copied to {helper.name}"
    shared = {
        **ask_context(settings, ask),
        "helper_name": without_bidi(helper.name),
        "helper_first_name": without_bidi(helper.first_name),
        "helper_company": without_bidi(helper.company),
        "helper_email": helper.email,
        "offer_text": offer.text,
        "was_closed": was_closed,
    }
    ids = []
    if asker.is_reachable:
        to_asker = mail.queue_email(
            session,
            settings,
            kind="ask_offer",
            dedupe_key=f"askoffer:{offer.id}",
            to_email=asker.email,
            to_name=without_bidi(asker.name),
            reply_to=helper.email,  # answering it writes to the helper directly
            in_reply_to=ask_thread_id(session, ask),
            group_id=ask.group_id,
            member_id=asker.id,
            context={**shared, "first_name": without_bidi(asker.first_name)},
        )
        if to_asker is not None:
            ids.append(to_asker.id)
    else:
        row.reason += f"; {asker.name} is not reachable now, so nothing was sent"
    if helper.is_reachable:
        copy = mail.queue_email(
            session,
            settings,
            kind="ask_offer_copy",
            dedupe_key=f"askoffercopy:{offer.id}",
            to_email=helper.email,
            to_name=without_bidi(helper.name),
            reply_to=asker.email,
            in_reply_to=circulation.outbound.message_id if circulation.outbound is not None else None,
            group_id=ask.group_id,
            member_id=helper.id,
            context={**shared, "first_name": without_bidi(helper.first_name),
                     "asker_reachable": asker.is_reachable},
        )
        if copy is not None:
            ids.append(copy.id)
    session.flush()
    return ids
