"""Reading a stored inbound message and turning a member's reply into an update.

`read_message` is pure (bytes in, a Reading out) and is what `roundtable parse` prints;
`process_inbound` is the worker's step: classify, route by token, check the sender, save a new
update version, and queue the receipt or the notices. It flushes; the job commits.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.errors
import mimetypes
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from email.feedparser import BytesFeedParser
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any

import mailparser
from mailparser.exceptions import MailParserError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import followups, mail, roster
from app.addresses import find_tokens, normalize, same
from app.authentication import sender_authentication
from app.cycles import excuse, month_label, request_for, request_message_id
from app.machine import classify, decode_bytes, decode_header_value
from app.models import (
    Cycle,
    CycleStatus,
    InboundMessage,
    InboundStatus,
    Member,
    MemberAddress,
    OutboundMessage,
    OutboundStatus,
    StoredAttachment,
    Update,
    UpdateRequest,
)
from app.sections import SECTIONS, split_sections
from app.settings import Settings
from app.trimming import html_to_text, new_words

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_HEADER_IDS = 6  # In-Reply-To plus the newest References, as Discourse does


# --- reading (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    is_too_large: bool = False
    data: bytes = field(default=b"", repr=False)  # empty when over the cap

    def listing(self) -> dict[str, Any]:
        return {"filename": self.filename, "content_type": self.content_type, "size": self.size,
                "is_too_large": self.is_too_large}


@dataclass(frozen=True)
class Reading:
    """How one message reads: what kind it is, who sent it, and the member's new words."""

    kind: str
    reason: str
    from_address: str
    subject: str
    tokens: list[str]
    reply_to_ids: list[str]
    text: str
    sections: dict[str, Any]
    attachments: list[Attachment] = field(default_factory=list)
    bounced: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["attachments"] = [a.listing() for a in self.attachments]
        data["token"] = self.tokens[0] if self.tokens else None
        return data


def _header_addresses(message: email.message.Message, *names: str) -> list[str]:
    values = [str(v) for name in names for v in message.get_all(name, [])]
    return [address for _, address in getaddresses(values)] + values


def _message_ids(message: email.message.Message) -> list[str]:
    in_reply_to = re.findall(r"<[^<>\s]+>", str(message.get("In-Reply-To", "")))
    references = re.findall(r"<[^<>\s]+>", str(message.get("References", "")))
    ids = in_reply_to + list(reversed(references))
    return list(dict.fromkeys(ids))[:MAX_HEADER_IDS]


# mail-parser 4.8 hands back 7-bit bodies in these stateful encodings undecoded ("+AOk-").
_STATEFUL_CHARSETS = ("utf-7", "iso-2022", "hz")


def _walk(message: email.message.Message) -> list[email.message.Message]:
    try:
        return list(message.walk())
    except RecursionError:
        return []


# --- parts inside parts, to a depth --------------------------------------------------------------

# Real mail, forwards of forwards included, nests a few levels; Python's parser recurses once per
# level (RecursionError near 1,000) and checks every line against every open boundary, so depth
# costs stack and time. Below this the parts are read flat (`_flatten`), their text kept.
MAX_MIME_DEPTH = 100
MAX_FLAT_PARTS = 100  # parts kept from below the cut
CUT_NOTE = (
    f"[Roundtable: this email nests its parts more than {MAX_MIME_DEPTH} levels deep. It was read"
    " to that depth and the text found below it kept; the original is stored if anything seems missing.]"
)


class MimeCutDefect(email.errors.MessageDefect):
    """A container nested past MAX_MIME_DEPTH: read as one part, then flat (`_flatten`)."""

    def __init__(self, content_type: str, boundary: str | None) -> None:
        super().__init__(f"{content_type} nested deeper than {MAX_MIME_DEPTH} levels: read flat")
        self.content_type = content_type
        self.boundary = boundary


class _ShallowParser(BytesFeedParser):
    """The standard parser, taking containers (multipart/*, message/*) apart down to `max_depth`
    levels only: a deeper one keeps its body whole, marked with MimeCutDefect.

    `_parse_headers` and `_msgstack` are private to email.feedparser, but the one point where
    the parser knows a part's type and depth before it reads the body (tests/test_malformed.py
    reads 1,500 levels, so a Python that renames them fails there, not in production).
    """

    def __init__(self, max_depth: int) -> None:
        super().__init__(policy=compat32)
        self._max_depth = max_depth

    def _parse_headers(self, lines: list[str]) -> None:
        super()._parse_headers(lines)  # type: ignore[misc]
        part: email.message.Message = self._cur  # type: ignore[attr-defined]
        depth = len(self._msgstack)  # type: ignore[attr-defined]
        if depth > self._max_depth and part.get_content_maintype() in ("multipart", "message"):
            part.defects.append(MimeCutDefect(part.get_content_type(), part.get_boundary()))
            del part["Content-Type"]
            part["Content-Type"] = "application/octet-stream"  # read its body as one string


def _parse_shallow(raw: bytes, max_depth: int) -> email.message.Message:
    parser = _ShallowParser(max_depth)
    parser.feed(raw)
    return parser.close()


def _parse(raw: bytes) -> email.message.Message:
    """`raw` as `email.message_from_bytes` reads it (compat32), down to MAX_MIME_DEPTH levels
    of parts inside parts; the parts below that are read flat."""
    message = _parse_shallow(raw, MAX_MIME_DEPTH)
    for part in _walk(message):
        cut = next((d for d in part.defects if isinstance(d, MimeCutDefect)), None)
        if cut is not None and not part.is_multipart():
            _flatten(part, cut)
    return message


def _flatten(part: email.message.Message, cut: MimeCutDefect) -> None:
    """Make a cut container a multipart/mixed of the leaf parts its body holds, however deep,
    found by their boundary lines: a person reading the raw mail would find the text there."""
    # The body's own bytes: get_payload() would decode 8-bit bytes as ASCII into U+FFFD (the cut
    # part has no charset), and a container carries no transfer encoding to undo.
    body = part.get_payload(decode=True)
    body = body if isinstance(body, bytes) else b""
    boundaries = {(m.group(1) or m.group(2)).strip() for m in _BOUNDARY_PARAM_RE.finditer(body)}
    if cut.boundary:
        boundaries.add(cut.boundary.encode("utf-8", "surrogateescape"))
    chunks: list[list[bytes]] = [[]]
    after_close = [False]  # a chunk after a closing boundary is an epilogue, not a part
    for line in body.splitlines(keepends=True):
        if line.startswith(b"--"):
            name = line[2:].rstrip()
            closing = name not in boundaries and name.endswith(b"--") and name[:-2] in boundaries
            if name in boundaries or closing:
                if chunks[-1]:  # the line break before a boundary belongs to it (RFC 2046)
                    chunks[-1][-1] = _without_line_break(chunks[-1][-1])
                chunks.append([])
                after_close.append(closing)
                continue
        chunks[-1].append(line)
    leaves: list[email.message.Message] = []
    # Before the first boundary: a multipart's preamble, or the message a message/* holds.
    first = 0 if cut.content_type.startswith("message/") else 1
    for lines, is_epilogue in zip(chunks[first:], after_close[first:]):
        if is_epilogue or len(leaves) >= MAX_FLAT_PARTS:
            continue
        start = 0
        while True:  # a message/rfc822 part holds a message: read on past each header block
            end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
            container = _CONTAINER_TYPE_RE.search(b"".join(lines[start:end]))
            if container is None or container.group(1).lower() not in _HOLDS_A_MESSAGE:
                break
            start = end + 1
        if container is not None:
            continue  # a multipart's header (and preamble): its parts are chunks of their own
        leaf = _parse_shallow(b"".join(lines[start:]), max_depth=0)
        if not any(isinstance(d, MimeCutDefect) for d in leaf.defects):  # a container after all
            leaves.append(leaf)
    del part["Content-Type"]
    part["Content-Type"] = "multipart/mixed"
    part.set_payload(leaves)


def _without_line_break(line: bytes) -> bytes:
    for end in (b"\r\n", b"\n", b"\r"):
        if line.endswith(end):
            return line[: -len(end)]
    return line


def mime_cut(message: email.message.Message) -> bool:
    """Whether parts of `message` lay deeper than MAX_MIME_DEPTH (and were read flat)."""
    return any(isinstance(d, MimeCutDefect) for part in _walk(message) for d in part.defects)


_CONTAINER_TYPE_RE = re.compile(rb"(?im)^content-type:\s*((?:multipart|message)/[a-z0-9.+-]*)")
_HOLDS_A_MESSAGE = (b"message/rfc822", b"message/global")
_BOUNDARY_PARAM_RE = re.compile(rb'(?i)\bboundary\s*=\s*(?:"([^"\r\n]{1,70})"|([^\s";]{1,70}))')


# How the email package marks a multipart whose boundary is missing or never appears: it keeps
# the whole body as one string, which mail-parser then skips.
_BOUNDARY_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
)
# What a reader takes for a boundary: "--" and up to 70 boundary characters (RFC 2046) alone on a
# line, then a part header.
_BOUNDARY_LINE_RE = re.compile(
    rb"^--([0-9A-Za-z'()+_,./:=? -]{0,70})(?:\r\n|\r|\n)(?i:content-[a-z-]*:)", re.MULTILINE
)


def _is_unsplit(part: email.message.Message) -> bool:
    """A multipart the email package could not split at its boundary."""
    return not part.is_multipart() and any(isinstance(d, _BOUNDARY_DEFECTS) for d in part.defects)


def _mend_boundaries(message: email.message.Message) -> list[email.message.Message]:
    """Split each unsplit multipart at the boundary its body does use, as a person reading the
    raw mail would. One without boundary lines stays one string and reads as plain text.
    Returns the parts it split (mail-parser, which read the raw mail, saw nothing inside them)."""
    mended = []
    for part in _walk(message):
        if not _is_unsplit(part):
            continue
        body = part.get_payload(decode=True)
        found = _BOUNDARY_LINE_RE.search(body) if isinstance(body, bytes) else None
        if found is None:
            continue
        boundary = found.group(1).rstrip(b" ").decode("ascii")
        head = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\r\n\r\n'.encode()
        try:
            split = _parse(head + body)
        except RecursionError:
            continue
        if split.is_multipart():
            part.set_payload(split.get_payload())
            mended.append(part)
    return mended


def _first_text_part(message: email.message.Message) -> email.message.Message | None:
    """The first text part not named as a file; HTML only when there is no other (as mail-parser
    reads), and a multipart that stayed one string only when there is neither."""
    fallbacks: dict[str, email.message.Message] = {}
    try:
        for part in message.walk():
            if part.get_content_maintype() == "text" and not part.get_filename():
                if part.get_content_subtype() != "html":
                    return part
                fallbacks.setdefault("html", part)
            elif _is_unsplit(part):
                fallbacks.setdefault("unsplit", part)
    except RecursionError:
        pass
    return fallbacks.get("html", fallbacks.get("unsplit"))


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload()).encode("utf-8", "replace")
    text = decode_bytes(payload, part.get_content_charset())
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def _body_text(parsed: mailparser.MailParser | None, message: email.message.Message) -> str:
    """The first top-level text part; HTML-only mail is converted to text."""
    first = _first_text_part(message)
    charset = (first.get_content_charset() or "") if first is not None else ""
    if first is not None and charset.lower().startswith(_STATEFUL_CHARSETS):
        return _part_text(first)
    if parsed is not None:
        if parsed.text_plain and parsed.text_plain[0].strip():
            return parsed.text_plain[0]
        if parsed.text_html:
            return html_to_text(parsed.text_html[0])
    # mail-parser could not read it (it skips an unsplit multipart): the standard library's best.
    return _part_text(first) if first is not None else ""


def _is_inline_image(content_id: object, disposition: object) -> bool:
    """A part the body refers to (a logo, a pasted screenshot) unless it says it is an attachment."""
    return bool(content_id) and not str(disposition or "").lower().startswith("attachment")


def _attachments(
    parsed: mailparser.MailParser | None, message: email.message.Message, mended: list[email.message.Message]
) -> list[Attachment]:
    """The files a message carries, as mail-parser lists them, plus those inside the parts we
    mended; inline images (logos in signatures, pasted screenshots) are part of the body."""
    found: list[tuple[str | None, str | None, bytes]] = []  # filename, content type, bytes
    for item in parsed.attachments if parsed is not None else []:
        if _is_inline_image(item.get("content-id"), item.get("content-disposition")):
            continue
        payload = item.get("payload") or ""
        try:
            data = base64.b64decode(payload) if item.get("binary") else payload.encode()
        except (binascii.Error, ValueError):
            data = payload.encode("utf-8", "replace")
        found.append((item.get("filename"), item.get("mail_content_type"), data))
    for part in (p for mended_part in mended for p in _walk(mended_part) if not p.is_multipart()):
        disposition = str(part.get("Content-Disposition", ""))
        filename = part.get_filename()
        if not (disposition.lower().startswith("attachment") or filename) or _is_inline_image(
            part.get("Content-ID"), disposition
        ):
            continue
        data = part.get_payload(decode=True)
        found.append((filename, part.get_content_type(), data if isinstance(data, bytes) else b""))
    # mail-parser invents a random name for a part without one: use ours, stable across reads.
    named = {p.get_filename() for p in _walk(message) if p.get_filename()}
    listed = []
    for number, (filename, content_type, data) in enumerate(found, start=1):
        too_large = len(data) > MAX_ATTACHMENT_BYTES
        if filename not in named:
            filename = f"attachment-{number}{mimetypes.guess_extension(content_type or '') or ''}"
        listed.append(
            Attachment(
                filename=safe_filename(filename or ""),
                content_type=content_type or "application/octet-stream",
                size=len(data),
                is_too_large=too_large,
                data=b"" if too_large else data,
            )
        )
    return listed


def safe_filename(name: str) -> str:
    """A file name that cannot climb out of a folder or hide its type (a right-to-left override
    shows "fdp.exe" as "exe.pdf")."""
    name = mail.without_bidi(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f<>:\"|?*]+", "", name).strip(" .")
    return name[:120] or "attachment"


def _raw_header(message: email.message.Message, name: str) -> str:
    """A header's first value as parsed, 8-bit bytes still surrogate escapes for
    `decode_header_value` to read as UTF-8 (`message.get` would make them U+FFFD)."""
    lowered = name.lower()
    return next((str(value) for key, value in message.raw_items() if key.lower() == lowered), "")


def _sender(value: str) -> tuple[str, str]:
    """The From mailbox, (name, address). A comma left unquoted in the name ("Müller, Hans
    <hans@x.example>") splits the field in two for the parser: the part with an address is the
    sender."""
    for name, address in getaddresses([value]):
        if "@" in address:
            return name, address
    return parseaddr(value)


def read_message(raw: bytes, envelope_from: str | None = None, envelope_to: list[str] | None = None) -> Reading:
    """How a stored message reads. Pure; never raises on malformed mail."""
    verdict = classify(raw, envelope_from)
    try:
        message = _parse(raw)
    except RecursionError:  # the stack was nearly full already: read the headers, keep no body
        message = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
    try:
        # A copy of its own (we mend ours), read to the same depth.
        parsed: mailparser.MailParser | None = mailparser.MailParser(_parse(raw))
    except (MailParserError, email.errors.MessageError, RecursionError, LookupError, ValueError, TypeError,
            AttributeError):  # a broken encoded word in From raises HeaderParseError in mail-parser
        parsed = None
    # Split the address first: a decoded name may hold a comma ("Müller, Hans").
    from_name, from_address = _sender(_raw_header(message, "From"))
    from_name = decode_header_value(from_name)
    # 8-bit bytes in the address too (a UTF-8 mailbox, or a name with a comma left unquoted).
    from_address = normalize(decode_header_value(from_address).replace("\x00", ""))
    subject = decode_header_value(_raw_header(message, "Subject")).replace("\x00", "")
    addresses = list(envelope_to or []) + _header_addresses(
        message, "To", "Cc", "Delivered-To", "X-Original-To", "X-Forwarded-To", "Envelope-To"
    )
    tokens = find_tokens(addresses)
    if verdict.kind != "reply":
        return Reading(
            kind=verdict.kind,
            reason=verdict.reason,
            from_address=from_address,
            subject=subject,
            tokens=tokens,
            reply_to_ids=_message_ids(message),
            text="",
            sections={},
            bounced=[asdict(r) for r in verdict.recipients],
        )
    sender_name = parsed.from_[0][0] if parsed is not None and parsed.from_ else from_name
    mended = _mend_boundaries(message)
    # PostgreSQL text cannot hold NUL; no member means one.
    text = new_words(_body_text(parsed, message).replace("\x00", ""), sender_name)
    reason = verdict.reason
    if mime_cut(message):
        # Said in the text itself, where the facilitator reads it (packet) and the member too
        # (receipt): the update keeps what was found, and nobody takes it for the whole email.
        reason += f"; MIME cut at depth {MAX_MIME_DEPTH}: the parts below it read flat"
        text = f"{CUT_NOTE}\n\n{text}".strip()
    return Reading(
        kind="reply",
        reason=reason,
        from_address=from_address,
        subject=subject,
        tokens=tokens,
        reply_to_ids=_message_ids(message),
        text=text,
        sections=split_sections(text).to_json(),
        attachments=_attachments(parsed, message, mended),
    )


# --- processing (the worker's step) ----------------------------------------------------------


@dataclass
class Outcome:
    """What the job does after its commit."""

    outbound_ids: list[int] = field(default_factory=list)
    recompile_cycle_ids: list[int] = field(default_factory=list)


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
        row.reason = reading.reason
        if reading.kind == "bounce":
            outcome.outbound_ids += _record_bounce(session, settings, row, reading, now)
        session.flush()
        return outcome
    answered = route(session, reading)
    if answered is None:
        row.status = InboundStatus.REJECTED
        row.reason = "no reply token or thread of ours: not an answer to an update request"
        outcome.outbound_ids += _notice_unknown(session, settings, row, reading, now)
        session.flush()
        return outcome
    member = answered.member
    row.update_request_id = answered.id
    if not _is_members_address(session, member, reading.from_address):
        reason = (f"it came from {reading.from_address or 'no address'}, which is not {member.name}'s address"
                  " or one of their registered alternates")
        return _hold(session, settings, row, answered, reading, reason)
    authentication = sender_authentication(row.raw, row.fields or {}, reading.from_address)
    if authentication.verdict == "fail":
        return _hold(session, settings, row, answered, reading, f"it failed sender authentication ({authentication.reason})")
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
    if update.is_skip:
        row.reason = "excused: the member replied SKIP"
    else:
        row.reason = f"update version {update.version} ({merged.kind})"
    receipt = _queue_receipt(session, settings, request, update, now, moved_from=moved_from)
    if receipt is not None:
        outcome.outbound_ids.append(receipt.id)
    if cycle.packets and now < cycle.meeting_starts_at:
        outcome.recompile_cycle_ids.append(cycle.id)  # after the deadline: a new packet version
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


def release_held(session: Session, settings: Settings, inbound_id: int, now: datetime) -> Outcome:
    """The facilitator vouches for a held message: apply it as the member's update. Flushes."""
    row = session.scalars(
        select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update()
    ).one_or_none()
    if row is None or row.status != InboundStatus.HELD or row.update_request is None:
        return Outcome()
    envelope_to = [a for a in (row.envelope_to or "").split(",") if a]
    reading = read_message(row.raw, row.envelope_from, envelope_to)
    held_reason = row.reason
    answered = row.update_request
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
                if _is_members_address(session, request.member, reading.from_address):
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


def _is_members_address(session: Session, member: Member, address: str) -> bool:
    """The member's own address or one registered for them (stored normalized by app.roster)."""
    if not address:
        return False
    if same(member.email, address):
        return True
    return session.scalar(
        select(MemberAddress.id).where(MemberAddress.member_id == member.id, MemberAddress.email == normalize(address))
    ) is not None


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
        change=merged.change,
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
