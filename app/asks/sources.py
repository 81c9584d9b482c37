"""Where asks come from: each item of an update's asks section, and mail to the group's address."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.addresses import new_token
from app.asks import control, kinds
from app.models import Ask, AskStatus, InboundMessage, Member, Update
from app.settings import Settings

_BULLET = re.compile(r"^\s*(?:[-*•–·]|\(?\d{1,2}[.)]|\(?[a-z][.)])\s+", re.IGNORECASE)
# An item that says there is nothing to ask.
_NOTHING = re.compile(
    r"^\W*(?:none|nothing|n/?a|no asks?|not (?:this|right))?(?:\s+(?:this|right)\s+(?:month|now|time))?\W*$",
    re.IGNORECASE,
)
MAX_ASK_CHARS = 2000


def ask_items(text: str) -> list[str]:
    """The separate asks in an asks section: one per bullet or numbered item, else one per line;
    a line that starts in lower case (or a bullet's indented continuation) goes on the item before.
    "None" and the like are no ask. Pure."""
    lines = [line.rstrip() for line in text.splitlines()]
    has_bullets = any(_BULLET.match(line) for line in lines)
    items: list[list[str]] = []
    for line in lines:
        if not line.strip():
            if items and items[-1]:
                items.append([])  # a blank line ends an item (an addition is appended after one)
            continue
        starts_item = bool(_BULLET.match(line)) if has_bullets else not (items and items[-1] and line.lstrip()[:1].islower())
        if starts_item or not items:
            items.append([_BULLET.sub("", line).strip()])
        else:
            if not items[-1]:
                items[-1] = [line.strip()]
            else:
                items[-1].append(line.strip())
    found = [" ".join(part for part in item if part).strip() for item in items]
    return [item[:MAX_ASK_CHARS] for item in found if item and not _NOTHING.match(item)]


def _fingerprint(item: str) -> str:
    """The same ask written again (another version of the update) has the same fingerprint."""
    plain = re.sub(r"\W+", " ", kinds.without_marks(item).lower()).strip()
    return hashlib.sha256(plain.encode()).hexdigest()[:32]


def create_ask(
    session: Session,
    settings: Settings,
    member: Member,
    text: str,
    source_key: str,
    now: datetime,
    *,
    update_request_id: int | None = None,
    inbound_message_id: int | None = None,
) -> tuple[Ask | None, list[int]]:
    """A new ask from `member`, decided (app.asks.control) and circulated when it may go.
    Flushes; returns it (None when this source made it already) and the emails queued."""
    if session.scalar(select(Ask.id).where(Ask.source_key == source_key)) is not None:
        return None, []
    ask = Ask(
        group_id=member.group_id,
        member_id=member.id,
        source_key=source_key,
        update_request_id=update_request_id,
        inbound_message_id=inbound_message_id,
        text=kinds.without_marks(text)[:MAX_ASK_CHARS],
        kind=kinds.classify(text),
        status=AskStatus.FACILITATOR_ONLY if kinds.is_facilitator_only(text) else AskStatus.OPEN,
        token=new_token(),
        approval_token=new_token(),
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(ask)
    except IntegrityError:
        return None, []  # another worker made it from the same source a moment ago
    return ask, control.decide(session, settings, ask, now)


def from_update(session: Session, settings: Settings, update: Update, now: datetime) -> list[int]:
    """An ask for each item of the update's asks section, once: a later version of the same
    update makes (and circulates) only the items it adds. Flushes; returns the emails queued."""
    if update.is_skip:
        return []
    request = update.request
    text = (update.sections.get("texts") or {}).get("asks") or ""
    # A `[facilitator only]` anywhere in the section (on a line of its own, say) keeps every ask
    # in it from the group: when in doubt, the confidential reading.
    private = kinds.is_facilitator_only(text)
    ids: list[int] = []
    for item in ask_items(text):
        if not kinds.without_marks(item):
            continue  # the mark alone
        _, queued = create_ask(
            session,
            settings,
            request.member,
            f"[facilitator only] {item}" if private and not kinds.is_facilitator_only(item) else item,
            f"update:{request.id}:{_fingerprint(item)}",
            now,
            update_request_id=request.id,
        )
        ids += queued
    return ids


_GENERIC_SUBJECTS = frozenset({"", "ask", "an ask", "request", "a request", "help", "question", "hi", "hello"})


def mail_text(subject: str, body: str) -> str:
    """An ask sent to the group's address: the subject when it says something, then the body. Pure."""
    subject = re.sub(r"^\s*(?:(?:re|fw|fwd|aw)\s*:\s*)+", "", subject, flags=re.IGNORECASE).strip()
    body = body.strip()
    if subject.lower().strip(" ?!.:") in _GENERIC_SUBJECTS or subject.lower() in body.lower():
        return body
    return f"{subject}\n\n{body}".strip()


def from_mail(
    session: Session, settings: Settings, row: InboundMessage, member: Member, subject: str, body: str, now: datetime
) -> tuple[Ask | None, list[int]]:
    """A member's mail to the group's address, as one ask. Flushes."""
    return create_ask(
        session, settings, member, mail_text(subject, body), f"inbound:{row.id}", now,
        inbound_message_id=row.id,
    ) if mail_text(subject, body) else (None, [])
