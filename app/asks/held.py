"""Mail to a group's address that was not let through: the facilitator is told (once per message,
with a short excerpt only), and may release it as a member's ask (`roundtable asks GROUP --release`).

A facilitator's own mail to the group's address is not circulated by itself (it has no asker for
offers to go back to, and a Cc by mistake would reach the whole group): it is held, and the
facilitator is told at once how to pass it on as a member's ask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import normalize, same, without_bidi
from app.asks import sources
from app.asks.addressing import group_addressed
from app.inbox import is_members_address
from app.models import (
    Ask,
    Facilitator,
    Group,
    InboundMessage,
    InboundStatus,
    Member,
    OutboundMessage,
)
from app.reading.message import Reading, read_message
from app.settings import Settings

EXCERPT_CHARS = 160
# Per facilitator a day: a stranger who writes to the group's address a hundred times must not
# mail the facilitator a hundred times. The rest are listed by `roundtable inbound list --status held`.
MAX_NOTICES_A_DAY = 10
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A stranger's words as the facilitator may read them in our mail: one line, links taken
    out (our mail must not carry a stranger's link), cut at a word before `limit`. Pure."""
    line = " ".join(_URL.sub("[link]", text).split())
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def likely_member(group: Group, sender_name: str) -> Member | None:
    """The listed member whose name the sender's display name is, exactly (a member writing from
    an address we do not know): a hint for the facilitator, never acted on. Pure."""
    name = " ".join(without_bidi(sender_name).split()).casefold()
    if not name:
        return None
    found = [m for m in group.members if m.is_listed and " ".join(m.name.split()).casefold() == name]
    return found[0] if len(found) == 1 else None


def facilitator_sending(group: Group, sender: str) -> Facilitator | None:
    return next((f for f in group.facilitators if same(f.email, sender)), None)


def notice(session: Session, settings: Settings, row: InboundMessage, reading: Reading, group: Group,
           now: datetime, *, to: list[Facilitator] | None = None) -> list[int]:
    """Tell the group's facilitators (or `to`) that this message to the group's address is held,
    and how to let it through. Once per message and facilitator; at most MAX_NOTICES_A_DAY a day
    each (the row's reason says when one was left out). Flushes; returns the emails queued."""
    sender = reading.from_address
    member = next((m for m in group.members if m.is_listed and is_members_address(session, m, sender)), None)
    likely = member or likely_member(group, reading.sender_name)
    from_facilitator = to is not None
    ids: list[int] = []
    for facilitator in group.facilitators if to is None else to:
        sent_today = session.scalar(
            select(func.count(OutboundMessage.id)).where(
                OutboundMessage.kind == "ask_held_notice",
                OutboundMessage.to_email == normalize(facilitator.email),
                OutboundMessage.group_id == group.id,
                OutboundMessage.created_at > now - timedelta(days=1),
            )
        ) or 0
        if sent_today >= MAX_NOTICES_A_DAY:
            row.reason = f"{row.reason}; {facilitator.name} not told ({MAX_NOTICES_A_DAY} held-mail notices today already)"
            continue
        queued = mail.queue_email(
            session,
            settings,
            kind="ask_held_notice",
            dedupe_key=f"askheld:{row.id}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=without_bidi(facilitator.name),
            in_reply_to=row.message_id if from_facilitator else None,
            group_id=group.id,
            context={
                "group_name": group.name,
                "group_slug": group.slug,
                "group_address": f"{group.slug}@{settings.inbound_domain}",
                "facilitator_name": without_bidi(facilitator.name),
                "from_facilitator": from_facilitator,
                "sender": sender or "(no address)",
                "sender_name": excerpt(without_bidi(reading.sender_name), 60),
                "subject": excerpt(reading.subject or "(no subject)", 100),
                "excerpt": excerpt(reading.text),
                "reason": row.reason or "",
                "inbound_id": row.id,
                "member_name": without_bidi(likely.name) if likely is not None else "",
                "member_email": likely.email if likely is not None else "",
                "is_members_address": member is not None,
            },
        )
        if queued is not None:
            ids.append(queued.id)
    session.flush()
    return ids


# --- releasing a held message as a member's ask --------------------------------------------------


class ReleaseError(Exception):
    """The facilitator's --release cannot be done; the message says why and what to do."""


@dataclass
class Released:
    ask: Ask | None
    outbound_ids: list[int]
    said: str


def release(session: Session, settings: Settings, group: Group, inbound_id: int, as_email: str | None,
            now: datetime) -> Released:
    """Make the ask a held message to `group`'s address would have made had it come from the
    member (its sender, or `as_email` when the facilitator vouches). Flushes. Safe twice: a
    message released already makes nothing more."""
    row = session.scalars(select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update()).one_or_none()
    if row is None:
        raise ReleaseError(f"there is no message {inbound_id} (roundtable inbound list --status held)")
    made = session.scalar(select(Ask).where(Ask.source_key == f"inbound:{row.id}"))
    if made is not None:
        if made.group_id != group.id:
            raise ReleaseError(f"message {inbound_id} is not mail held at {group.slug}'s address as a new ask")
        return Released(made, [], f"message {inbound_id} is ask {made.id} already ({made.status}): nothing more done")
    addressed = group_addressed(session, settings, row)
    # Only mail held as a new ask: a reply to an ask's own address (an offer from an address we
    # do not know, say) that also had the group's address in Cc is not one.
    if row.kind != "ask" or addressed is None or addressed.id != group.id:
        raise ReleaseError(f"message {inbound_id} is not mail held at {group.slug}'s address as a new ask: it cannot be"
                           " released as one (for a held update reply: roundtable inbound release)")
    if row.status != InboundStatus.HELD:
        raise ReleaseError(f"message {inbound_id} is not held: it is {row.status} ({row.reason or 'no reason'})")
    envelope_to = [a for a in (row.envelope_to or "").split(",") if a]
    reading = read_message(row.raw, row.envelope_from, envelope_to)
    listed = [m for m in group.members if m.is_listed]
    if as_email is not None:
        member = next((m for m in listed if same(m.email, as_email)), None)
        if member is None:
            raise ReleaseError(f"{as_email} is not a member of {group.slug} (roundtable members {group.slug})")
    else:
        member = next((m for m in listed if is_members_address(session, m, reading.from_address)), None)
        if member is None:
            raise ReleaseError(
                f"message {inbound_id} came from {reading.from_address or 'no address'}, which is not a member of"
                f" {group.slug}: if you vouch for it, say whose ask it is with --as MEMBER_EMAIL")
    held_reason = row.reason or "held"
    ask, ids = sources.from_mail(session, settings, row, member, reading.subject, reading.text, now)
    if ask is None:
        raise ReleaseError(f"message {inbound_id} has no words to make an ask of")
    row.status = InboundStatus.ACCEPTED
    row.reason = f"released by the facilitator as {member.name}'s (held: {held_reason}); ask {ask.id}: {ask.status}"
    session.flush()
    return Released(ask, ids, f"message {inbound_id} released: ask {ask.id} from {member.name}, {ask.status}")
