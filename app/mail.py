"""Outbound mail: a row per email first, rendered and handed to a transport by a worker.

Delivery is at-least-once. If a worker dies after the transport accepted the email but before
our commit, the row is still `queued` and the next attempt sends it again with the *same*
Message-ID, so mail clients show one email and the loss of an email is impossible.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import unicodedata
import urllib.error
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formataddr, formatdate, parseaddr
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import css_inline
from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from python_http_client import exceptions as http_errors
from rq.timeouts import BaseTimeoutException
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from app import addresses, clock
from app.models import (
    Ask,
    AskStatus,
    Member,
    OutboundMessage,
    OutboundStatus,
    Packet,
    Rsvp,
    RsvpResponse,
    StoredAttachment,
    UpdateRequest,
)
from app.settings import Settings

# Kinds that want no answer carry Auto-Submitted so that well-behaved responders stay quiet.
NO_REPLY_KINDS = frozenset(
    {"packet", "packet_preview", "receipt", "notice", "digest", "bounce_notice", "held_notice", "event_notice",
     "question_notice", "meeting_headcount", "meeting_cancel", "meeting_note", "meeting_date",
     "meeting_receipt", "meeting_problem", "meeting_moved", "ask_held_notice"}
)


# rq retries a send 5 times (about 45 minutes), then the sweep re-enqueues it on later ticks.
MAX_ATTEMPTS = 12


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    attachments: tuple[tuple[str, str, bytes], ...] = ()  # (file name, content type, bytes)


class TransientSendError(RuntimeError):
    """The provider may accept this later (429, 5xx, timeout): retry with the same Message-ID."""


class PermanentSendError(RuntimeError):
    """The provider refused this email for good (400/401/403/413): do not retry."""


# --- rendering ---------------------------------------------------------------------------


@cache
def template_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(files("email_templates"))),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@cache
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


def render(kind: str, context: dict[str, Any]) -> Rendered:
    """Render the subject, text and HTML of one email kind from `email_templates/`."""
    env = template_env()
    subject = env.get_template(f"{kind}.subject.txt").render(context)
    text = env.get_template(f"{kind}.txt").render(context)
    html = env.get_template(f"{kind}.html").render(context)
    return Rendered(
        subject=" ".join(subject.split()),
        text=text.strip() + "\n",
        html=_inliner().inline(html),
    )


# --- the outbound ledger -----------------------------------------------------------------


@cache
def _message_id_domain(mail_from: str, inbound_domain: str) -> str:
    return parseaddr(mail_from)[1].rpartition("@")[2] or inbound_domain


def new_message_id(settings: Settings, kind: str) -> str:
    return f"<{kind}.{secrets.token_hex(12)}@{_message_id_domain(settings.mail_from, settings.inbound_domain)}>"


def reply_address(settings: Settings, token: str) -> str:
    return addresses.reply_address(settings.inbound_domain, token)


@cache
def _unsubscribe_serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="unsubscribe")


def unsubscribe_url(settings: Settings, token: str) -> str:
    """A signed one-click link that stops this cycle's reminders for one member (RFC 8058)."""
    return f"{settings.base_url}/unsubscribe/{_unsubscribe_serializer(settings.secret_key).dumps(token)}"


def read_unsubscribe_token(settings: Settings, signed: str) -> str | None:
    try:
        return str(_unsubscribe_serializer(settings.secret_key).loads(signed))
    except BadSignature:
        return None


def new_outbound(settings: Settings, *, kind: str, context: dict[str, Any], **fields: Any) -> OutboundMessage:
    """A new outbound row (not yet added to a session) with its Message-ID made once, here."""
    return OutboundMessage(
        kind=kind,
        message_id=new_message_id(settings, kind),
        context=json.loads(json.dumps(context, default=str)),
        **fields,
    )


def insert_outbound(session: Session, rows: list[OutboundMessage]) -> list[int]:
    """Insert new outbound rows in one bulk statement; return their ids. For callers that hold
    the lock deciding what to send (the tick's cycle row); others use `queue_email`."""
    if not rows:
        return []
    columns = ("kind", "dedupe_key", "message_id", "to_email", "to_name", "reply_to", "in_reply_to",
               "context", "group_id", "cycle_id", "member_id")
    now = clock.now()
    values = [
        {**{c: getattr(row, c) for c in columns}, "status": OutboundStatus.QUEUED, "attempts": 0, "created_at": now}
        for row in rows
    ]
    return list(session.scalars(insert(OutboundMessage).returning(OutboundMessage.id, sort_by_parameter_order=True), values))


def queue_email(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    dedupe_key: str,
    to_email: str,
    to_name: str = "",
    context: dict[str, Any],
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    group_id: int | None = None,
    cycle_id: int | None = None,
    member_id: int | None = None,
) -> OutboundMessage | None:
    """Add the row for one email unless `dedupe_key` exists; return it, or None if it existed.

    Flushes, never commits. Safe to call twice: the unique dedupe key decides, even when two
    processes race.
    """
    exists = session.scalar(select(OutboundMessage.id).where(OutboundMessage.dedupe_key == dedupe_key))
    if exists is not None:
        return None
    row = new_outbound(
        settings,
        kind=kind,
        dedupe_key=dedupe_key,
        to_email=to_email,
        to_name=to_name,
        context=context,
        reply_to=reply_to,
        in_reply_to=in_reply_to,
        group_id=group_id,
        cycle_id=cycle_id,
        member_id=member_id,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None  # another process queued it between our check and our insert
    return row


def deliver(session: Session, settings: Settings, outbound_id: int) -> bool:
    """Send one queued email and mark it sent; True if this call sent it. Safe to call twice.

    Commits. Raises TransientSendError after recording the attempt, so the job is retried. An
    email that cannot be rendered or built (a line break in an old roster name, an address the
    parser refuses, a template error) is marked failed with the reason, and the job goes on.
    """
    row = session.scalars(
        select(OutboundMessage)
        .where(OutboundMessage.id == outbound_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None or row.status != OutboundStatus.QUEUED or held_for_later(row, clock.now()):
        session.rollback()
        return False
    reason = no_longer_wanted(session, row)
    if reason is not None:
        row.status = OutboundStatus.CANCELLED
        row.last_error = reason
        session.commit()
        return False
    row.attempts += 1
    try:
        rendered = render(row.kind, row.context)
        if row.kind == "packet":
            rendered = Rendered(rendered.subject, rendered.text, rendered.html, packet_attachments(session, row))
        if row.context.get("ics"):  # a meeting's calendar invite, update or cancellation
            ics = ("invite.ics", f"text/calendar; method={row.context['ics_method']}", row.context["ics"].encode())
            rendered = Rendered(rendered.subject, rendered.text, rendered.html, (*rendered.attachments, ics))
        # Built here whatever the transport (the outbox builds it again, cheaply): what this row
        # holds is the row's problem, so it fails alone instead of ending the job with the rest
        # of its batch unsent, and failing the same way on every retry.
        build_mime(settings, row, rendered, clock.now())
    except (SQLAlchemyError, BaseTimeoutException, MemoryError, OSError):
        raise  # ours, not the email's: the job ends, and rq records or retries it
    except Exception as error:  # noqa: BLE001 - recorded on the row: a status, not a log line
        row.status = OutboundStatus.FAILED
        row.last_error = f"could not build this email: {type(error).__name__}: {error}"[:2000]
        session.commit()
        return False
    try:
        row.provider_message_id = transport_send(settings, row, rendered)
    except PermanentSendError as error:
        row.status = OutboundStatus.FAILED
        row.last_error = str(error)
        session.commit()
        return False
    except TransientSendError as error:
        row.last_error = str(error)
        if row.attempts >= MAX_ATTEMPTS:
            # Hours of 429/5xx/timeouts: stop, and say so on the ledger, rather than retry forever.
            row.status = OutboundStatus.FAILED
            row.last_error = f"gave up after {row.attempts} attempts: {error}"
            session.commit()
            return False
        session.commit()
        raise
    row.status = OutboundStatus.SENT
    row.sent_at = clock.now()
    row.last_error = None
    session.commit()
    return True


def packet_attachments(session: Session, row: OutboundMessage) -> tuple[tuple[str, str, bytes], ...]:
    """The packet's PDF and the member files its context marks as attached (the rest are links)."""
    attachments = []
    packet = session.get(Packet, row.context["packet_id"])
    if packet is not None and packet.pdf:
        attachments.append((row.context["pdf_name"], "application/pdf", packet.pdf))
    for listed in row.context.get("files", []):
        stored = session.get(StoredAttachment, listed["id"]) if listed["is_attached"] else None
        if stored is not None and stored.data is not None:
            attachments.append((listed["filename"], _attachable_type(stored.content_type), stored.data))
    return tuple(attachments)


def _attachable_type(content_type: str) -> str:
    """A member's content type as a base64 part can carry it; else application/octet-stream.
    message/* and multipart/* must not be base64-encoded (RFC 2046), so they go as bytes too."""
    value = content_type.split(";")[0].strip().lower()
    if value.startswith(("message/", "multipart/")) or not re.fullmatch(r"[a-z0-9][\w!#$&^.+-]*/[a-z0-9][\w!#$&^.+-]*", value):
        return "application/octet-stream"
    return value


def held_for_later(row: OutboundMessage, now: datetime) -> bool:
    """A batched email waiting for its slot (`send_after` in its context): left queued, so more
    can be added to it; the tick that finds it due sends it."""
    after = row.context.get("send_after")
    return bool(after) and datetime.fromisoformat(after) > now


def no_longer_wanted(session: Session, row: OutboundMessage) -> str | None:
    """Why a queued email should not go out after all, decided at send time; None to send.

    A reminder queued at 09:00 must not reach a member whose reply arrived at 09:01.
    """
    if row.kind == "meeting_rsvp_reminder" and row.context.get("rsvp_id"):
        rsvp = session.get(Rsvp, row.context["rsvp_id"], populate_existing=True)
        if rsvp is not None and rsvp.response != RsvpResponse.NONE:
            return "the member answered the invite before the reminder went out"
    if row.kind == "ask_circulated":
        ask_ids = [a["ask_id"] for a in row.context.get("asks", []) if "ask_id" in a]
        statuses = session.scalars(
            select(Ask.status).where(Ask.id.in_(ask_ids)).execution_options(populate_existing=True)
        ).all()
        if ask_ids and statuses and all(status == AskStatus.CLOSED for status in statuses):
            return "the asker closed or withdrew the ask before this went out"
    if row.kind not in ("reminder", "update_request") or row.member_id is None:
        return None
    member = session.get(Member, row.member_id, populate_existing=True)
    if member is not None and member.bounced_at is not None:
        return "the member's address is bouncing"
    if member is not None and not member.is_reachable:
        return "the member is no longer active in the group"
    if row.kind == "reminder":
        request = session.scalar(
            select(UpdateRequest)
            .where(UpdateRequest.cycle_id == row.cycle_id, UpdateRequest.member_id == row.member_id)
            .execution_options(populate_existing=True)  # a reply may have landed a moment ago
        )
        if request is not None and request.replied_at is not None:
            return "the member replied before the reminder went out"
        if request is not None and request.excused_at is not None:
            return "the member is excused this month"
    return None


# --- transports ----------------------------------------------------------------------------


def transport_send(settings: Settings, row: OutboundMessage, rendered: Rendered) -> str | None:
    """Hand one email to the configured transport; return the provider's message id."""
    if settings.mail_transport == "sendgrid":
        return _send_sendgrid(settings, row, rendered)
    return _send_outbox(settings, row, rendered)


# Headers mail clients read as structure (List-Unsubscribe for the one-click link, the Message-IDs
# that thread a conversation, the Reply-To a reply goes to) go out as plain ASCII, folded only at
# spaces. Python's email package folds a long one by RFC 2047-encoding it
# (`List-Unsubscribe: =?utf-8?q?=3Chttp...?=`), and no client recognises that.
STRUCTURED_HEADERS = frozenset(
    {"reply-to", "message-id", "in-reply-to", "references", "list-unsubscribe", "list-unsubscribe-post"}
)
# RFC 5322 msg-id as we can carry it: printable ASCII with no space or angle bracket inside.
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>")
_PLAIN = re.compile(r"[ -~]+")  # printable ASCII and the space: nothing to encode, nothing to break


def extra_headers(row: OutboundMessage) -> dict[str, str]:
    """The headers besides From/To/Subject/Date, unfolded; both transports send these."""
    headers = {"X-Auto-Response-Suppress": "OOF, AutoReply"}
    # The Message-ID we answer can be a stranger's (a notice to someone who wrote to us): thread
    # under it only when it is a well-formed msg-id; a malformed one would break the header.
    if row.in_reply_to and _MESSAGE_ID.fullmatch(row.in_reply_to.strip()):
        headers["In-Reply-To"] = row.in_reply_to.strip()
        headers["References"] = row.in_reply_to.strip()
    if row.kind in NO_REPLY_KINDS:
        headers["Auto-Submitted"] = "auto-generated"
    if row.context.get("unsubscribe_url"):
        headers["List-Unsubscribe"] = f"<{row.context['unsubscribe_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def reply_to_header(row: OutboundMessage) -> str | None:
    """The Reply-To address, or None when there is none we can send plain.

    Our reply addresses are ASCII. A member's own address (the facilitator's answer to a
    question goes to it) may not be: no header carries that without SMTPUTF8, so the email goes
    without it (its text names the address) rather than failing.
    """
    value = (row.reply_to or "").strip()
    return value if "@" in value and _PLAIN.fullmatch(value) and " " not in value else None


def fold_at_spaces(name: str, value: str, width: int = 78) -> str:
    """`value` as a header body, with line breaks only at its spaces (RFC 5322 folding).

    A word longer than the line stays whole: RFC 5322 allows lines up to 998 characters, and a
    URL broken anywhere else is a broken URL. Raises ValueError on anything but printable ASCII.
    """
    if not _PLAIN.fullmatch(value):
        raise ValueError(f"the {name} header must be printable ASCII, got {value!r}")
    lines = [f"{name}:"]
    for word in value.split():
        if len(lines[-1]) + 1 + len(word) > width and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += f" {word}"
    return "\n".join(lines)[len(name) + 2 :]


class _Policy(EmailPolicy):
    """The default policy, but structured headers are stored as we folded them and never refolded."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if name.lower() in STRUCTURED_HEADERS and isinstance(value, str):
            return (name, fold_at_spaces(name, value))
        return super().header_store_parse(name, value)


_MIME_POLICY = _Policy(refold_source="none")


def build_mime(settings: Settings, row: OutboundMessage, rendered: Rendered, sent_at: datetime) -> EmailMessage:
    """The full RFC 5322 message, as the outbox writes it. Raises ValueError (or email.errors'
    HeaderParseError) on a recipient no header can carry."""
    message = EmailMessage(policy=_MIME_POLICY)
    message["From"] = settings.mail_from
    # The parser refuses CR and LF in a name but would write NUL, ESC or DEL into the header.
    if any(unicodedata.category(c) == "Cc" and c != "\t" for c in row.to_name):
        raise ValueError(f"the recipient's name {row.to_name!r} has control characters")
    message["To"] = Address(display_name=row.to_name, addr_spec=row.to_email)
    if reply_to_header(row):
        message["Reply-To"] = reply_to_header(row)
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(sent_at.timestamp(), localtime=False)
    message["Message-ID"] = row.message_id
    for name, value in extra_headers(row).items():
        message[name] = value
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    calendars = [a for a in rendered.attachments if a[1].startswith("text/calendar")]
    for _, content_type, data in calendars:
        # iMIP (RFC 6047): the invite as a third alternative, which calendars act on, and as an
        # .ics file below for the clients that only offer files.
        method = content_type.partition("method=")[2].strip() or "REQUEST"
        message.add_alternative(data.decode(), subtype="calendar", params={"method": method})
    for filename, content_type, data in rendered.attachments:
        if content_type.startswith("text/calendar"):
            message.add_attachment(data, maintype="application", subtype="ics", filename=filename)
            continue
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def _send_outbox(settings: Settings, row: OutboundMessage, rendered: Rendered) -> str:
    folder = Path(settings.outbox_dir)
    folder.mkdir(parents=True, exist_ok=True)
    recipient = re.sub(r"[^a-z0-9]+", "-", row.to_email.lower()).strip("-")
    path = folder / f"{row.id:06d}-{row.kind}-{recipient}.eml"
    partial = path.with_suffix(".eml.partial")
    partial.write_bytes(bytes(build_mime(settings, row, rendered, clock.now())))
    partial.replace(path)  # atomic: a reader never sees half an email
    return path.name


def _send_sendgrid(settings: Settings, row: OutboundMessage, rendered: Rendered) -> str | None:
    from sendgrid.helpers.mail import Attachment as SGAttachment
    from sendgrid.helpers.mail import (
        Category,
        CustomArg,
        Disposition,
        FileContent,
        FileName,
        FileType,
        Header,
        Mail,
        ReplyTo,
    )

    from_name, from_email = parseaddr(settings.mail_from)
    mail = Mail(
        from_email=(from_email, from_name) if from_name else from_email,
        to_emails=(row.to_email, row.to_name) if row.to_name else row.to_email,
        subject=rendered.subject,
        plain_text_content=rendered.text,
        html_content=rendered.html,
    )
    if reply_to_header(row):
        mail.reply_to = ReplyTo(reply_to_header(row))
    mail.header = Header("Message-ID", row.message_id)
    for name, value in extra_headers(row).items():
        mail.header = Header(name, value)
    for filename, content_type, data in rendered.attachments:
        mail.attachment = SGAttachment(
            FileContent(base64.b64encode(data).decode()), FileName(filename), FileType(content_type),
            Disposition("attachment"),
        )
    mail.custom_arg = CustomArg("outbound_id", str(row.id))
    mail.category = Category(row.kind)
    client = _sendgrid_client(settings.sendgrid_api_key or "", settings.sendgrid_api_host, settings.sendgrid_timeout_s)
    try:
        response = client.send(mail)
    except (http_errors.TooManyRequestsError, http_errors.InternalServerError,
            http_errors.ServiceUnavailableError, http_errors.GatewayTimeoutError) as error:
        raise TransientSendError(f"SendGrid {error.status_code}: {_body(error)}") from error
    except http_errors.HTTPError as error:
        if error.status_code >= 500:
            raise TransientSendError(f"SendGrid {error.status_code}: {_body(error)}") from error
        raise PermanentSendError(f"SendGrid {error.status_code}: {_body(error)}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise TransientSendError(f"SendGrid unreachable: {error}") from error
    headers = response.headers
    return headers.get("X-Message-Id") if headers is not None else None


@cache
def _sendgrid_client(api_key: str, host: str, timeout_s: float):  # type: ignore[no-untyped-def]
    """One client per process and settings: building it for every email is wasted work."""
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=api_key, host=host)
    client.client.timeout = timeout_s  # the library default is no timeout at all
    return client


def _body(error: http_errors.HTTPError) -> str:
    body = error.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body)[:500]


def display_address(name: str, email: str) -> str:
    return formataddr((name, email))
