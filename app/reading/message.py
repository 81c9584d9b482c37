"""Reading one raw message: bytes in, a `Reading` out (what `roundtable parse` prints). Pure."""

from __future__ import annotations

import email
import email.errors
import mimetypes
import re
from dataclasses import asdict, dataclass, field, replace
from email.feedparser import BytesFeedParser
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any

from app import addresses
from app.addresses import find_tokens, normalize
from app.reading.machine import _CHARSET_ALIASES, classify, decode_bytes, decode_header_value
from app.reading.request import SentRequest, mark_ours
from app.reading.sections import split_sections
from app.reading.trimming import html_to_text, new_words, widest_cut

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
    # What the facilitator should check ("trimming left nothing: the widest cut is kept").
    flags: list[str] = field(default_factory=list)
    # The body as read, before trimming (quotes and all), and the sender's display name: to read
    # again with the request (`with_request`) and for `parse --explain`; never stored.
    body: str = field(default="", repr=False)
    sender_name: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["body"], data["sender_name"]
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
# the whole body as one string.
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
    Returns the parts it split."""
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


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload()).encode("utf-8", "replace")
    text = _decode_text(payload, part.get_content_charset())
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def _decode_text(payload: bytes, charset: str | None) -> str:
    """A body's bytes as text: by its label, else UTF-8; a few broken bytes (a truncated
    quoted-printable sequence) become U+FFFD rather than the whole text being read as Latin-1."""
    for candidate in (charset, "utf-8"):
        try:
            payload.decode(_codec(candidate))
        except (LookupError, UnicodeError, ValueError):
            continue
        return decode_bytes(payload, candidate)
    for candidate in (charset, "utf-8"):
        try:
            return payload.decode(_codec(candidate), "replace")
        except (LookupError, UnicodeError, ValueError):
            continue
    return decode_bytes(payload, charset)


def _codec(label: str | None) -> str:
    name = (label or "").strip().strip('"').lower()
    if not name:
        raise LookupError("no charset")
    return _CHARSET_ALIASES.get(name, name)


def _body_text(message: email.message.Message) -> str:
    """The first text part not named as a file, when it has words; else the first HTML part as
    text; else a multipart the parser could not split, read as text."""
    plain: email.message.Message | None = None
    html: email.message.Message | None = None
    unsplit: email.message.Message | None = None
    for part in _walk(message):
        if part.is_multipart():
            continue
        if _is_body_text(part):
            if part.get_content_subtype() == "html":
                html = html or part
            elif plain is None:
                plain = part
        elif unsplit is None and _is_unsplit(part):
            unsplit = part
    text = _part_text(plain) if plain is not None else ""
    if text.strip():
        return text
    fallback = html or unsplit
    return _part_text(fallback) if fallback is not None else text


def _is_body_text(part: email.message.Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    return (
        part.get_content_maintype() == "text"
        and not part.get_filename()
        and not disposition.startswith("attachment")
    )


def _is_inline_image(content_id: object, disposition: object) -> bool:
    """A part the body refers to (a logo, a pasted screenshot) unless it says it is an attachment."""
    return bool(content_id) and not str(disposition or "").lower().startswith("attachment")


def _attachments(message: email.message.Message) -> list[Attachment]:
    """The files a message carries: every leaf part that is not its body text, a part the
    parser could not split, or an inline image (logos in signatures, pasted screenshots)."""
    listed = []
    inside_files: set[int] = set()  # parts of a message attached as a file (".eml")
    for part in _walk(message):
        if id(part) in inside_files:
            continue
        disposition = str(part.get("Content-Disposition", ""))
        if part.get_content_type() in _HOLDS_A_FILE and (part.get_filename() or disposition.lower().startswith("attachment")):
            inner = part.get_payload()
            inside_files.update(id(p) for m in (inner if isinstance(inner, list) else []) for p in _walk(m))
            data = _message_bytes(inner)
            listed.append(_attachment(part.get_filename() or "", part.get_content_type(), data, len(listed)))
            continue
        if part.is_multipart() or _is_body_text(part) or _is_unsplit(part):
            continue
        if _is_inline_image(part.get("Content-ID"), disposition):
            continue
        try:
            filename = part.get_filename()
        except (LookupError, ValueError, TypeError):
            filename = None
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else str(part.get_payload()).encode("utf-8", "replace")
        listed.append(_attachment(filename or "", part.get_content_type(), data, len(listed)))
    return listed


_HOLDS_A_FILE = ("message/rfc822", "message/global")


def _message_bytes(inner: object) -> bytes:
    """The bytes of a message attached as a file (what a mail client would save as .eml)."""
    if not isinstance(inner, list):
        return b""
    try:
        return b"".join(m.as_bytes() for m in inner if isinstance(m, email.message.Message))
    except (UnicodeError, LookupError, ValueError, TypeError, RecursionError):
        return b""


def _attachment(filename: str, content_type: str, data: bytes, listed: int) -> Attachment:
    name = decode_header_value(filename) if filename else ""
    if not name:  # a stable name of ours for a part without one
        name = f"attachment-{listed + 1}{mimetypes.guess_extension(content_type) or ''}"
    too_large = len(data) > MAX_ATTACHMENT_BYTES
    return Attachment(
        filename=safe_filename(name),
        content_type=content_type,
        size=len(data),
        is_too_large=too_large,
        data=b"" if too_large else data,
    )


def safe_filename(name: str) -> str:
    """A file name that cannot climb out of a folder or hide its type (a right-to-left override
    shows "fdp.exe" as "exe.pdf")."""
    name = addresses.without_bidi(name).replace("\\", "/").rsplit("/", 1)[-1]
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


def sent_request(raw: bytes) -> SentRequest:
    """The text of a request as we sent it (a stored .eml): its text and HTML alternatives."""
    message = _parse(raw)
    texts: dict[str, str] = {}
    for part in _walk(message):
        if part.get_content_maintype() == "text" and not part.get_filename():
            texts.setdefault(part.get_content_subtype(), _part_text(part))
    return SentRequest(text=texts.get("plain", ""), html_text=texts.get("html", ""))


def read_message(
    raw: bytes,
    envelope_from: str | None = None,
    envelope_to: list[str] | None = None,
    request: SentRequest | None = None,
) -> Reading:
    """How a stored message reads. Pure; never raises on malformed mail.

    `request`, the text of the update request the message answers when we know it, lets the
    reader recognise our own quoted request wherever the client put it (see app.reading.request).
    """
    if b"\n" not in raw:
        # CR-only line ends (old Mac): the quoted-printable decoder loses the text after a
        # "=\r" soft break, so read them as line feeds (machine.classify does the same).
        raw = raw.replace(b"\r", b"\n")
    try:
        message = _parse(raw)
    except RecursionError:  # the stack was nearly full already: read the headers, keep no body
        message = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
    # One parse for everything: the classifier reads the same message (before it is mended).
    verdict = classify(raw, envelope_from, message=message)
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
    sender_name = from_name
    _mend_boundaries(message)
    # PostgreSQL text cannot hold NUL; no member means one.
    body = _body_text(message).replace("\x00", "")
    text, flags = _trimmed(body, sender_name, request)
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
        attachments=_attachments(message),
        flags=flags,
        body=body,
        sender_name=sender_name,
    )


def with_request(reading: Reading, request: SentRequest) -> Reading:
    """`reading` read again knowing the request it answers (found by its token once read):
    our own quoted request recognised wherever the client put it. Pure; no second parse."""
    if reading.kind != "reply" or not reading.body:
        return reading
    text, flags = _trimmed(reading.body, reading.sender_name, request)
    if CUT_NOTE in reading.text:
        text = f"{CUT_NOTE}\n\n{text}".strip()
    return replace(reading, text=text, sections=split_sections(text).to_json(), flags=flags)


WIDEST_CUT_FLAG = "trimming left nothing, yet the message has text of its own: the widest plausible cut is kept"


def _trimmed(body: str, sender_name: str, request: SentRequest | None) -> tuple[str, list[str]]:
    """The member's new words, and flags for the facilitator. Our own request, wherever the
    client put it, reads as a quote (app.reading.request). Never loses words: when trimming
    leaves nothing but the message has unquoted text that is not ours, that text is kept."""
    marked = mark_ours(body, request)[0] if request is not None else body
    text = new_words(marked, sender_name)
    if text.strip():
        return text, []
    widest = widest_cut(marked)
    return (widest, [WIDEST_CUT_FLAG]) if widest else (text, [])


