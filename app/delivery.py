"""SendGrid's Event Webhook: what happened to the email we sent, kept on the outbound ledger.

Events arrive in batches, duplicated (dedupe on `sg_event_id`) and out of order (a `delivered`
can arrive after the `bounce` that followed it), so a status only ever moves up in rank.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import clock, jobs, roster
from app.addresses import normalize
from app.models import DeliveryEvent, OutboundMessage, OutboundStatus
from app.settings import Settings

log = logging.getLogger(__name__)
blueprint = Blueprint("delivery", __name__)

# How far an event can move the ledger; later-arriving lower ranks are history, not news.
RANK = {
    OutboundStatus.QUEUED: 0,
    OutboundStatus.SENT: 1,
    OutboundStatus.DELIVERED: 2,
    OutboundStatus.BOUNCED: 3,
    OutboundStatus.DROPPED: 3,
    OutboundStatus.FAILED: 3,
    OutboundStatus.CANCELLED: 3,
}
STATUS_FOR_EVENT = {
    "processed": OutboundStatus.SENT,
    "deferred": OutboundStatus.SENT,
    "delivered": OutboundStatus.DELIVERED,
    "bounce": OutboundStatus.BOUNCED,
    "dropped": OutboundStatus.DROPPED,
}
# These say the address should not be mailed again until someone checks it.
ADDRESS_PROBLEMS = {"bounce", "dropped", "spamreport"}


def verify(public_key_b64: str, body: str, signature: str, timestamp: str, now: datetime, max_age_s: int) -> str | None:
    """Why a post is not a genuine, fresh SendGrid post; None when it is."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from sendgrid.helpers.eventwebhook import EventWebhook

    if not signature or not timestamp:
        return "missing signature headers"
    try:
        age = abs(now.timestamp() - int(timestamp))
    except ValueError:
        return "timestamp is not a number"
    if age > max_age_s:
        return f"timestamp is {int(age)} s old (window {max_age_s} s): a replay?"
    try:
        valid = EventWebhook(public_key_b64).verify_signature(body, signature, timestamp)
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        return "malformed signature or key"
    return None if valid else "signature does not match"


def event_status(event: dict[str, Any]) -> OutboundStatus | None:
    name = event.get("event")
    if name == "bounce" and event.get("type") == "blocked":
        return OutboundStatus.DROPPED  # refused by the receiving server's policy this time
    return STATUS_FOR_EVENT.get(str(name))


def record_events(session: Session, settings: Settings, events: list[dict[str, Any]], now: datetime) -> list[int]:
    """Store each new event once and apply it to the ledger; return notices to send. Flushes."""
    notices: list[int] = []
    for event in events:
        if not isinstance(event, dict) or not event.get("sg_event_id"):
            continue
        outbound_id = _int(event.get("outbound_id"))
        row = DeliveryEvent(
            sg_event_id=str(event["sg_event_id"])[:128],
            outbound_message_id=None,
            event=str(event.get("event", ""))[:30],
            email=normalize(str(event.get("email", "")))[:320],
            occurred_at=_when(event.get("timestamp"), now),
            payload=event,
        )
        outbound = session.get(OutboundMessage, outbound_id) if outbound_id is not None else None
        if outbound is not None:
            row.outbound_message_id = outbound.id
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue  # a duplicate: SendGrid sends some events several times
        if outbound is not None:
            status = event_status(event)
            if status is not None and RANK[status] > RANK[OutboundStatus(outbound.status)]:
                outbound.status = status
            if row.event in ("bounce", "dropped", "deferred"):
                outbound.last_error = f"{row.event}: {event.get('reason') or event.get('response') or ''}".strip()
        if row.event in ADDRESS_PROBLEMS and not (row.event == "bounce" and event.get("type") == "blocked"):
            notices += _mark_address(session, settings, row, event, now)
    session.flush()
    return notices


def _mark_address(
    session: Session, settings: Settings, row: DeliveryEvent, event: dict[str, Any], now: datetime
) -> list[int]:
    reason = {
        "bounce": f"bounced: {event.get('reason') or event.get('status') or 'the receiving server refused it'}",
        "dropped": f"SendGrid dropped it: {event.get('reason') or 'address suppressed'}",
        "spamreport": "the member marked our email as spam",
    }[row.event]
    return roster.mark_bouncing(session, settings, row.email, reason, now)


def parse_events(body: str) -> list[Any]:
    """The events in a post's body; ValueError when it is not JSON as SendGrid writes it.

    Python's reader takes more than JSON, and the database stores less: NaN, Infinity and a
    number too large for a float are kept as their text (the json column refuses them), NUL is
    taken out of every string (PostgreSQL's text refuses it), and nesting deeper than any event
    has is refused, so nothing later recurses past Python's limit.
    """
    try:
        parsed = json.loads(body, parse_constant=str, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deep") from None
    events = _storable(parsed, _MAX_DEPTH)
    return events if isinstance(events, list) else [events]


_MAX_DEPTH = 32  # an event is an object of strings, numbers and lists of strings


def _finite_float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _storable(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if depth == 0 and isinstance(value, (dict, list)):
        raise ValueError("nested too deep")
    if isinstance(value, dict):
        return {key.replace("\x00", ""): _storable(item, depth - 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item, depth - 1) for item in value]
    return value


def _int(value: Any) -> int | None:
    """An id column's value (PostgreSQL integer), or None."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 < number < 2**31 else None


def _when(value: Any, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return default


@blueprint.post("/events/sendgrid")
def sendgrid_events() -> Response:
    settings: Settings = current_app.config["ROUNDTABLE_SETTINGS"]
    if not settings.sendgrid_webhook_public_key:
        return Response("event webhook not configured (SENDGRID_WEBHOOK_PUBLIC_KEY)\n", 404)
    body = request.get_data(cache=True, as_text=True)
    from sendgrid.helpers.eventwebhook import EventWebhookHeader

    now = clock.now()
    problem = verify(
        settings.sendgrid_webhook_public_key,
        body,
        request.headers.get(EventWebhookHeader.SIGNATURE, ""),
        request.headers.get(EventWebhookHeader.TIMESTAMP, ""),
        now,
        settings.event_max_age_s,
    )
    if problem is not None:
        log.warning("event webhook post refused: %s", problem)
        return Response(f"refused: {problem}\n", 403)
    try:
        events = parse_events(body)
    except ValueError as error:
        log.warning("event webhook post refused: %s", error)
        return Response(f"body is not SendGrid's JSON: {error}\n", 400)
    with current_app.config["ROUNDTABLE_SESSIONS"]() as session:
        notices = record_events(session, settings, events, now)
        session.commit()
    jobs.enqueue_sends(notices)
    return Response("ok\n", 200)

