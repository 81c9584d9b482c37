"""What every ask email shows about its ask, and the thread the asker's emails share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import without_bidi
from app.asks.kinds import KIND_LABELS
from app.models import Ask, OutboundMessage
from app.settings import Settings


def ask_context(settings: Settings, ask: Ask) -> dict[str, Any]:
    """Plain values about one ask for a template: who asked, what, its kind and addresses."""
    return {
        "group_name": ask.group.name,
        "ask_id": ask.id,
        "asker_name": without_bidi(ask.member.name),
        "asker_first_name": without_bidi(ask.member.first_name),
        "asker_company": without_bidi(ask.member.company),
        "asker_email": ask.member.email,
        "ask_text": ask.text,
        "kind": ask.kind,
        "kind_label": KIND_LABELS.get(ask.kind, "Other"),
        "kinds": list(KIND_LABELS.values()),
        "ask_address": mail.reply_address(settings, ask.token),
    }


def ask_thread_id(session: Session, ask: Ask) -> str | None:
    """The Message-ID of the first email the asker had about this ask: later ones thread under it."""
    return session.scalar(
        select(OutboundMessage.message_id)
        .where(OutboundMessage.dedupe_key.like(f"askstatus:{ask.id}:%"))
        .order_by(OutboundMessage.id)
        .limit(1)
    )
