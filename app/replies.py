"""Turning a stored inbound message into what it answers: a member's reply into an update.

`process_inbound` is the worker's step: classify, route by token, check the sender, save a new
update version, and queue the receipt or the notices. It flushes; the job commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from jinja2 import TemplateError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import followups, mail, roster
from app.addresses import normalize
from app.asks import inbound as asks_inbound
from app.asks import sources as asks_sources
from app.authentication import sender_authentication
from app.cycles import excuse, month_label, packet_changed, request_for, request_message_id
from app.inbox import Outcome, is_members_address, untrusted_sender
from app.meeting import inbound as meeting_inbound
from app.models import (
    Cycle,
    CycleStatus,
    InboundMessage,
    InboundStatus,
    OutboundMessage,
    OutboundStatus,
    StoredAttachment,
    Update,
    UpdateRequest,
)
from app.reading.message import Reading, read_message, with_request
from app.reading.rejection import Rejection, rejected
from app.reading.request import SentRequest
from app.reading.sections import SECTIONS
from app.reading.trimming import html_to_text
from app.settings import Settings

# --- processing (the worker's step) ----------------------------------------------------------


class Handler(Protocol):
    """A capability's answer to a message that is not a reply to an update request: an Outcome
    when the message is its own (by its reply token or address; it sets the row's status and
    reason and flushes), else None."""

    def __call__(
        self, session: Session, settings: Settings, row: InboundMessage, reading: Reading, now: datetime
    ) -> Outcome | None: ...


# Tried in order after the update requests' own tokens.
HANDLERS: tuple[Handler, ...] = (meeting_inbound.handle, asks_inbound.handle)


def process_inbound(session: Session, settings: Settings, inbound_id: int, now: datetime) -> Outcome:
    """Read one stored message and act on it. Flushes; a processed row is left alone (safe twice).

    `now` is when the worker reads it; the reply itself counts from when it arrived
    (`received_at`), so a backlog at the deadline makes nobody late.
    """
    row = session.scalars(
        select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update()
    ).one_or_none()
    outcome = Outcome()
    if row is None or row.status != InboundStatus.RECEIVED:
        return outcome
    envelope_to = [a for a in (row.envelope_to or "").split(",") if a]
    reading = read_message(row.raw, row.envelope_from, envelope_to)
    # The webhook stores the message unread: its sender and subject are first read here.
    row.from_address = reading.from_address[:320] or None
    row.subject = reading.subject or None
    row.kind = reading.kind
    row.processed_at = now
    if reading.kind != "reply":
        row.status = InboundStatus.IGNORED
        row.reason = rejected(Rejection.MACHINE_MAIL, f"{reading.kind}, {reading.reason}")
        if reading.kind == "bounce":
            outcome.outbound_ids += _record_bounce(session, settings, row, reading, now)
        session.flush()
        return outcome
    answered = route(session, reading)
    if answered is None:
        for handle in HANDLERS:
            handled = handle(session, settings, row, reading, now)
            if handled is not None:
                return handled
        row.status = InboundStatus.REJECTED
        row.reason = rejected(Rejection.NO_TOKEN, "not an answer to an update request")
        outcome.outbound_ids += _notice_unknown(session, settings, row, reading, now)
        session.flush()
        return outcome
    reading = _read_with_request(session, answered, reading)
    member = answered.member
    row.update_request_id = answered.id
    reason = untrusted_sender(session, row, member, reading.from_address)
    if reason is not None:
        return _hold(session, settings, row, answered, reading, reason)
    request = open_request(session, answered, row.received_at)
    row.update_request_id = request.id
    return _apply(session, settings, row, request, reading, now, moved_from=answered if request is not answered else None)


def _apply(
    session: Session,
    settings: Settings,
    row: InboundMessage,
    request: UpdateRequest,
    reading: Reading,
    now: datetime,
    *,
    moved_from: UpdateRequest | None = None,
) -> Outcome:
    """Merge a member's message into their update for `request`, then receipt and recompile."""
    outcome = Outcome()
    # One message at a time per request: two drains merging into the same version would lose one.
    session.scalars(select(UpdateRequest.id).where(UpdateRequest.id == request.id).with_for_update()).one()
    session.refresh(request, ["updates"])
    previous = request.latest_update
    cycle = request.cycle
    # A message released after newer versions were made, or arriving after the meeting, may add
    # but never replace: what differs is kept twice and flagged.
    older = row.received_at >= cycle.meeting_ends_at or (previous is not None and previous.created_at > row.received_at)
    merged = followups.merge(
        previous.sections if previous is not None else None,
        reading.sections,
        reading.text,
        older=older,
        has_attachments=bool(reading.attachments),
    )
    row.status = InboundStatus.ACCEPTED
    if merged.changes_nothing:
        # Kept (the packet shows it to the facilitator) and never answered: a receipt for
        # "thanks" would invite another "thanks".
        row.kind = "note"
        row.note = reading.text.strip() or None
        row.reason = "a note with no update content: " + (merged.notes[0] if merged.notes else "nothing changed")
        if row.note and followups.is_question(row.note):
            outcome.outbound_ids += _pass_on_question(session, settings, row, request)
        session.flush()
        return outcome
    update = save_update(session, request, row, reading, merged)
    outcome.outbound_ids += asks_sources.from_update(session, settings, update, now)  # each new ask, once
    if update.is_skip:
        row.reason = "excused: the member replied SKIP"
    else:
        row.reason = f"update version {update.version} ({merged.kind})"
    receipt = _queue_receipt(session, settings, request, update, now, moved_from=moved_from)
    if receipt is not None:
        outcome.outbound_ids.append(receipt.id)
    if packet_changed(cycle, now):  # after the deadline: a new version, at most one a day
        outcome.recompile_cycle_ids.append(cycle.id)
    session.flush()
    return outcome


def _pass_on_question(session: Session, settings: Settings, row: InboundMessage, request: UpdateRequest) -> list[int]:
    """A member's question ("Can I bring a guest?") goes to the facilitators now, not only into
    the packet; their answer goes straight to the member (Reply-To)."""
    cycle, member = request.cycle, request.member
    ids = []
    for facilitator in cycle.group.facilitators:
        notice = mail.queue_email(
            session,
            settings,
            kind="question_notice",
            dedupe_key=f"question:{row.id}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            reply_to=member.email,
            group_id=cycle.group_id,
            cycle_id=cycle.id,
            member_id=member.id,
            context={
                "group_name": cycle.group.name,
                "facilitator_name": facilitator.name,
                "member_name": member.name,
                "member_email": member.email,
                "month_label": month_label(cycle),
                "question": row.note,
            },
        )
        if notice is not None:
            ids.append(notice.id)
    return ids


def _hold(
    session: Session, settings: Settings, row: InboundMessage, request: UpdateRequest, reading: Reading, reason: str
) -> Outcome:
    """Keep a message for the facilitator to vouch for (`roundtable inbound release`)."""
    row.status = InboundStatus.HELD
    row.reason = reason
    outcome = Outcome(outbound_ids=_notice_held(session, settings, row, request, reading))
    session.flush()
    return outcome


def _read_with_request(session: Session, answered: UpdateRequest, reading: Reading) -> Reading:
    """The reading again with the text of the request it answers, rendered as we sent it, so our
    own quoted words are recognised (app.reading.request). Unchanged when we sent none."""
    sent = session.scalar(
        select(OutboundMessage).where(
            OutboundMessage.dedupe_key == f"request:{answered.cycle_id}:{answered.member_id}"
        )
    )
    if sent is None:
        return reading
    try:
        rendered = mail.render(sent.kind, sent.context)
    except TemplateError:  # a row from an older template: read without it, as before
        return reading
    return with_request(reading, SentRequest(text=rendered.text, html_text=html_to_text(rendered.html)))


def release_held(session: Session, settings: Settings, inbound_id: int, now: datetime) -> Outcome:
    """The facilitator vouches for a held message: apply it as the member's update. Flushes."""
    row = session.scalars(
        select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update()
    ).one_or_none()
    if row is None or row.status != InboundStatus.HELD or row.update_request is None:
        return Outcome()
    envelope_to = [a for a in (row.envelope_to or "").split(",") if a]
    answered = row.update_request
    reading = _read_with_request(session, answered, read_message(row.raw, row.envelope_from, envelope_to))
    held_reason = row.reason
    request = open_request(session, answered, row.received_at)
    row.update_request_id = request.id
    outcome = _apply(session, settings, row, request, reading, now, moved_from=answered if request is not answered else None)
    row.reason = f"released by the facilitator (held: {held_reason}); {row.reason}"
    return outcome


def open_request(session: Session, request: UpdateRequest, at: datetime) -> UpdateRequest:
    """The request a message arriving at `at` belongs to: a reply on an old cycle's thread,
    after its meeting, goes to the member's request for the group's next meeting if there is one.

    Flushes when it has to make that request (a member added since, say).
    """
    cycle = request.cycle
    if at < cycle.meeting_ends_at:
        return request
    # The next meeting, even if its requests have not gone out yet (the member then gets none:
    # they have answered already).
    open_cycle = session.scalar(
        select(Cycle)
        .where(
            Cycle.group_id == cycle.group_id,
            Cycle.meeting_starts_at > cycle.meeting_starts_at,
            Cycle.meeting_ends_at > at,
        )
        .order_by(Cycle.meeting_starts_at)
        .limit(1)
    )
    return request if open_cycle is None else request_for(session, open_cycle, request.member)


def route(session: Session, reading: Reading) -> UpdateRequest | None:
    """The request this reply answers: by token, else by our Message-ID in its thread.

    With several tokens (Reply-All puts other members' addresses in Cc) the sender's own token
    wins; the envelope recipient, listed first, wins among the rest.
    """
    if reading.tokens:
        requests = list(session.scalars(select(UpdateRequest).where(UpdateRequest.token.in_(reading.tokens))))
        if requests:
            order = {token: i for i, token in enumerate(reading.tokens)}
            requests.sort(key=lambda r: order[r.token])
            for request in requests:
                if is_members_address(session, request.member, reading.from_address):
                    return request
            return requests[0]
    if reading.reply_to_ids:
        outbound = session.scalar(
            select(OutboundMessage).where(
                OutboundMessage.message_id.in_(reading.reply_to_ids),
                OutboundMessage.kind.in_(("update_request", "reminder", "receipt")),
            )
        )
        if outbound is not None and outbound.cycle_id and outbound.member_id:
            return session.scalar(
                select(UpdateRequest).where(
                    UpdateRequest.cycle_id == outbound.cycle_id,
                    UpdateRequest.member_id == outbound.member_id,
                )
            )
    return None


def save_update(
    session: Session, request: UpdateRequest, row: InboundMessage, reading: Reading, merged: followups.Merge
) -> Update:
    """Store the update as it stands after this message, as the request's next version. Flushes.

    A SKIP excuses the member; a real update clears an excuse (a SKIP or the "no more reminders"
    link) and counts from when its message arrived.
    """
    version = (session.scalar(
        select(func.max(Update.version)).where(Update.update_request_id == request.id)
    ) or 0) + 1
    is_skip = merged.kind == "skip"
    update = Update(
        request=request,
        inbound_message_id=row.id,
        version=version,
        text=reading.text,
        sections=merged.sections,
        # How the reader was unsure of this message (Reading.flags): the packet asks the
        # facilitator to check it with the member.
        change={**merged.change, "reading_flags": reading.flags} if reading.flags else merged.change,
        attachments={"files": [a.listing() for a in reading.attachments]},
        is_skip=is_skip,
        created_at=row.received_at,
    )
    session.add(update)
    for position, attachment in enumerate(reading.attachments):
        session.add(
            StoredAttachment(
                update=update,
                position=position,
                filename=attachment.filename,
                content_type=attachment.content_type[:255],
                size=attachment.size,
                data=None if attachment.is_too_large else attachment.data,
            )
        )
    if is_skip:
        excuse(session, request, row.received_at)
    else:
        request.excused_at = None
        if request.replied_at is None or request.replied_at > row.received_at:
            request.replied_at = row.received_at
    session.flush()
    return update


MAX_RECEIPTS_A_DAY = 4  # per member and cycle: an auto-responder that ignores RFC 3834 cannot loop


def _queue_receipt(
    session: Session,
    settings: Settings,
    request: UpdateRequest,
    update: Update,
    now: datetime,
    *,
    moved_from: UpdateRequest | None = None,
) -> OutboundMessage | None:
    member = request.member
    cycle = request.cycle
    sent_today = session.scalar(
        select(func.count(OutboundMessage.id)).where(
            OutboundMessage.kind == "receipt",
            OutboundMessage.cycle_id == cycle.id,
            OutboundMessage.member_id == member.id,
            OutboundMessage.created_at > now - timedelta(days=1),
        )
    )
    if (sent_today or 0) >= MAX_RECEIPTS_A_DAY:
        return None  # the update is saved; the next receipt tomorrow shows it all
    texts: dict[str, str] = update.sections.get("texts", {})
    ratings: dict[str, int] = update.sections.get("ratings", {})
    flagged = set(update.sections.get("flagged", []))
    captured = [
        {"title": s.title, "text": texts[s.key], "is_flagged": s.key in flagged} for s in SECTIONS if texts.get(s.key)
    ]
    if texts.get("other"):
        captured.append({"title": "Other notes", "text": texts["other"], "is_flagged": "other" in flagged})
    files = [a["filename"] for u in request.updates for a in u.attachments.get("files", [])]
    return mail.queue_email(
        session,
        settings,
        kind="receipt",
        dedupe_key=f"receipt:{update.id}",
        to_email=member.email,
        to_name=member.name,
        reply_to=mail.reply_address(settings, request.token),
        in_reply_to=request_message_id(session, request),
        group_id=cycle.group_id,
        cycle_id=cycle.id,
        member_id=member.id,
        context={
            "group_name": cycle.group.name,
            "first_name": member.first_name,
            "month_label": month_label(cycle),
            "version": update.version,
            "is_skip": update.is_skip,
            "changed": followups.describe(update.change),
            "moved_from_month": month_label(moved_from.cycle) if moved_from is not None else "",
            "ratings": ratings,
            "captured": captured,
            "attachments": list(dict.fromkeys(files)),
        },
    )


def _notice_unknown(
    session: Session, settings: Settings, row: InboundMessage, reading: Reading, now: datetime
) -> list[int]:
    """Tell a person whose mail we could not place what happened: once per sender per day, and
    only when SPF or DKIM confirms the sender, so that a forged From never gets our mail
    (backscatter). Otherwise the row's reason says why nobody was told."""
    if "@" not in reading.from_address or reading.from_address.endswith("@" + settings.inbound_domain):
        return []  # nobody to answer, or ourselves
    authentication = sender_authentication(row.raw, row.fields or {}, reading.from_address)
    if authentication.verdict != "pass":
        row.reason = f"{row.reason}; no notice sent, since {authentication.reason}"
        return []
    notice = mail.queue_email(
        session,
        settings,
        kind="notice",
        dedupe_key=f"notice:{reading.from_address}:{now.date().isoformat()}",
        to_email=reading.from_address,
        context={"subject": reading.subject or "(no subject)", "group_name": "Roundtable"},
        in_reply_to=row.message_id,
    )
    return [notice.id] if notice is not None else []


def _notice_held(
    session: Session, settings: Settings, row: InboundMessage, request: UpdateRequest, reading: Reading
) -> list[int]:
    cycle = request.cycle
    ids = []
    for facilitator in cycle.group.facilitators:
        notice = mail.queue_email(
            session,
            settings,
            kind="held_notice",
            dedupe_key=f"held:{row.id}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            group_id=cycle.group_id,
            cycle_id=cycle.id,
            context={
                "group_name": cycle.group.name,
                "group_slug": cycle.group.slug,
                "facilitator_name": facilitator.name,
                "reason": row.reason or "",
                "member_name": request.member.name,
                "member_email": request.member.email,
                "sender": reading.from_address or "(no address)",
                "subject": reading.subject,
                "inbound_id": row.id,
            },
        )
        if notice is not None:
            ids.append(notice.id)
    return ids


def _record_bounce(
    session: Session, settings: Settings, row: InboundMessage, reading: Reading, now: datetime
) -> list[int]:
    """A hard bounce marks the member's address and tells the facilitator."""
    notices: list[int] = []
    for recipient in reading.bounced:
        if recipient.get("is_hard") and recipient.get("address"):
            reason = f"{recipient.get('status') or ''} {recipient.get('diagnostic') or ''}".strip()
            reason = reason or "the receiving server refused it"
            notices += roster.mark_bouncing(session, settings, str(recipient["address"]), reason, now)
            _mark_requests_bounced(session, str(recipient["address"]), reason)
    return notices


def _mark_requests_bounced(session: Session, address: str, reason: str) -> None:
    """The update requests we sent to a bouncing address never arrived: say so on the ledger, so
    that a corrected address (or a cleared bounce mark) gets them again (app.cycles)."""
    open_cycles = select(Cycle.id).where(Cycle.status != CycleStatus.DONE)
    for row in session.scalars(
        select(OutboundMessage).where(
            OutboundMessage.to_email == normalize(address),
            OutboundMessage.kind == "update_request",
            OutboundMessage.status.in_((OutboundStatus.SENT, OutboundStatus.DELIVERED)),
            OutboundMessage.cycle_id.in_(open_cycles),
        )
    ):
        row.status = OutboundStatus.BOUNCED
        row.last_error = f"bounced: {reason}"[:500]
