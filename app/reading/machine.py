"""Tell a member's reply apart from machine mail: bounces, DSNs, auto-replies, lists, challenges.

Pure functions over raw message bytes: no I/O, no database, no settings. The standard library
`email` package reads the structure, because mail-parser drops `message/delivery-status` fields.

Both mistakes are costly: machine mail taken for a reply enters a packet, and a reply taken
for machine mail is lost. So headers and MIME structure decide first; body text only counts
next to a machine-like sender, subject or return path, because a member's reply may well quote
"Out of Office" or "delivery failed".
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.policy
import email.utils
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum


class Kind(StrEnum):
    REPLY = "reply"
    BOUNCE = "bounce"
    AUTO_REPLY = "auto_reply"
    CHALLENGE = "challenge"
    FEEDBACK = "feedback"  # ARF abuse/complaint report
    DELIVERY_REPORT = "delivery_report"  # success DSN, read receipt (MDN); delays are soft bounces
    LIST = "list"  # bulk or mailing-list mail


@dataclass(frozen=True)
class Recipient:
    address: str
    status: str = ""  # RFC 3463 code, e.g. "5.1.1"; "5.0.0" when the text only gave "550"
    action: str = ""  # RFC 3464 Action (failed, delayed, delivered...), or the ARF feedback type
    diagnostic: str = ""
    is_hard: bool = False  # 5.x.x: the address does not work; 4.x.x: it may work later


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    recipients: tuple[Recipient, ...] = ()

    @property
    def is_machine(self) -> bool:
        return self.kind != Kind.REPLY


def classify(
    raw: bytes, envelope_from: str | None = None, message: email.message.Message | None = None
) -> Verdict:
    """Classify one raw message. `envelope_from` "" is the null return path <>, None unknown.
    `message`, the same message already parsed (compat32), saves parsing it again.

    Never raises: a message the parser chokes on is judged on its header block alone.
    """
    null_return_path = envelope_from is not None and not envelope_from.strip(" <>")
    if b"\n" not in raw:
        # CR-only line ends (old Mac): the stdlib quoted-printable decoder loses the text
        # after a "=\r" soft break, so convert before parsing.
        raw = raw.replace(b"\r", b"\n")
    containers = len(_CONTAINER_TYPE.findall(raw))
    if containers > _MAX_CONTAINERS or containers * raw.count(b"\n") > _MAX_PARSE_WORK:
        # The stdlib parser passes every line through one generator per open container part:
        # 100 nested levels over 400 KB of lines take 15 s. Such mail is hostile or absurd.
        return _decide_on_headers(raw, envelope_from, null_return_path, "MIME nested too deep")
    try:
        msg = message if message is not None else email.message_from_bytes(raw, policy=email.policy.compat32)
        return _decide(_read(msg, envelope_from), null_return_path)
    # The stdlib parser and header decoders raise a zoo of errors on hostile input
    # (RecursionError on deep nesting, LookupError, UnicodeError, IndexError...). A crash
    # would leave the inbound row stuck forever, so degrade to the headers instead.
    except Exception as exc:  # noqa: BLE001
        why = f"unparseable MIME ({type(exc).__name__})"
        return _decide_on_headers(raw, envelope_from, null_return_path, why)


def _decide_on_headers(
    raw: bytes, envelope_from: str | None, null_return_path: bool, why: str
) -> Verdict:
    try:
        head = re.split(rb"\r?\n\r?\n", raw[:65536], maxsplit=1)[0]
        msg = email.message_from_bytes(head + b"\n\n", policy=email.policy.compat32)
        verdict = _decide(_read(msg, envelope_from), null_return_path)
    except Exception:  # noqa: BLE001 - same reason as in classify()
        return Verdict(Kind.REPLY, f"{why}; header block unreadable, no machine signal found")
    return Verdict(verdict.kind, f"{verdict.reason}; {why}", verdict.recipients)


# --- Reading the message ------------------------------------------------------------------

_MAX_PARTS = 200  # plenty for any real bounce; bounds the work on a hostile message
_MAX_CONTAINERS = 100  # multipart/* and message/* parts
_CONTAINER_TYPE = re.compile(rb"(?i)content-type:\s*+(?:multipart|message)/")
_MAX_PARSE_WORK = 4_000_000  # containers x lines: about 3 s of stdlib parsing at worst
_MAX_TEXT = 100_000  # characters of text worth scanning
_MAX_HEADER = 2_000
_MAX_RECIPIENTS = 100  # we write to one member at a time; more is a hostile report

# An address not glued to a longer token ("mailbox" + "full@x" must not yield "full@x").
_ADDR = (
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++"
)
_ADDR_RE = re.compile(_ADDR)


@dataclass(frozen=True)
class _Mail:
    """What the decision needs, read once from the parsed message."""

    headers: dict[str, list[str]]  # lower-case name -> decoded values
    from_addr: str  # lower-case address, or the bare From value ("mailer-daemon <>")
    from_raw: str  # the whole decoded From value, lower-case
    subject: str
    own_addresses: frozenset[str]  # From/To/Reply-To of the notice: never the failed recipient
    report_types: frozenset[str]  # delivery-status, feedback-report, disposition-notification
    dsn_blocks: tuple[dict[str, str], ...]  # per-recipient fields of message/delivery-status
    feedback_fields: dict[str, str]
    mdn_fields: dict[str, str]
    notice: str  # the notice's own text, cut before any returned copy of the original
    original_to: tuple[str, ...]  # To of the returned original message, attached or inline


def _read(msg: email.message.Message, envelope_from: str | None) -> _Mail:
    headers = _decoded_headers(msg)
    from_value = headers.get("from", [""])[0]
    from_pairs = _addresses([from_value])
    from_addr = from_pairs[0][1] if from_pairs else from_value.lower()
    own = {from_addr, (envelope_from or "").strip(" <>").lower()}
    for name in ("to", "reply-to", "sender"):
        own.update(addr for _, addr in _addresses(headers.get(name, [])))

    report_types: set[str] = set()
    if msg.get_content_type() == "multipart/report" and _param(msg, "report-type"):
        report_types.add(_param(msg, "report-type").lower())
    dsn_blocks: list[dict[str, str]] = []
    feedback: dict[str, str] = {}
    mdn: dict[str, str] = {}
    texts: list[str] = []
    original_to: list[str] = []
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            report_types.add("delivery-status")
            dsn_blocks.extend(_field_blocks(part))
        elif ctype == "message/feedback-report":
            report_types.add("feedback-report")
            for block in _field_blocks(part):
                feedback.update(block)
        elif ctype.startswith(("message/disposition-notification", "message/global-disp")):
            report_types.add("disposition-notification")
            for block in _field_blocks(part):
                mdn.update(block)
        elif ctype in ("message/rfc822", "message/global", "text/rfc822-headers"):
            original_to.extend(_attached_original_recipients(part))
        elif part.get_content_maintype() in ("text", "multipart"):
            # A multipart whose boundary never appears arrives as one string: read it as text.
            text = _part_text(part)
            texts.append(_html_to_text(text) if ctype == "text/html" else text)

    text = "\n".join(texts)[:_MAX_TEXT]
    notice = _cut_original(text)
    original_to.extend(_inline_original_recipients(text[len(notice) :]))
    return _Mail(
        headers=headers,
        from_addr=from_addr,
        from_raw=from_value.lower(),
        subject=headers.get("subject", [""])[0],
        own_addresses=frozenset(a for a in own if a),
        report_types=frozenset(report_types),
        dsn_blocks=tuple(b for b in dsn_blocks if b),
        feedback_fields=feedback,
        mdn_fields=mdn,
        notice=notice,
        original_to=tuple(original_to),
    )


def _parts(msg: email.message.Message) -> Iterator[email.message.Message]:
    """Leaf parts depth first, iteratively and bounded, never entering attached messages.

    A returned or forwarded original (message/rfc822) is old mail, not evidence about this one.
    """
    stack = [msg]
    for _ in range(_MAX_PARTS):
        if not stack:
            return
        part = stack.pop()
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack.extend(reversed(_subparts(part)))
        else:
            yield part


def _subparts(part: email.message.Message) -> list[email.message.Message]:
    # Only for a list payload: get_payload() on a string payload may decode it, and compat32
    # raises TypeError there for an RFC 2231 charset on 8-bit text.
    if not part.is_multipart():
        return []
    return [p for p in part.get_payload() if isinstance(p, email.message.Message)]


def _decoded_headers(msg: email.message.Message) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(str(name).strip().lower(), []).append(decode_header_value(str(value)))
    return headers


def decode_header_value(value: str) -> str:
    """A header as text: RFC 2047 words and stray 8-bit bytes decoded, whitespace folded, capped."""
    value = value[:_MAX_HEADER]
    # Raw 8-bit bytes arrive from the parser as surrogate escapes; they are mostly UTF-8.
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = decode_bytes(value.encode("ascii", "surrogateescape"), "utf-8")
    value = " ".join(value.split())
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError, LookupError, UnicodeError):
        return value
    return " ".join(
        "".join(
            decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
            for chunk, charset in chunks
        ).split()
    )


# Labels real mail uses that Python does not know, or knows by another name.
_CHARSET_ALIASES = {
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "iso-2022-jp-ms": "iso2022_jp_ext",
    "ks_c_5601-1987": "cp949",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "uft-8": "utf-8",
    "iso-8859-8-i": "iso-8859-8",
}


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes as text by their label, else UTF-8, else Latin-1: never raises."""
    for candidate in (charset, "utf-8"):
        label = (candidate or "").strip().strip('"').lower()
        if not label:
            continue
        try:
            return data.decode(_CHARSET_ALIASES.get(label, label))
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("latin-1")  # total: every byte maps to a character


def _part_text(part: email.message.Message) -> str:
    data = None if part.is_multipart() else part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = decode_bytes(data[: _MAX_TEXT * 4], _param(part, "charset"))
    # The line-anchored patterns below expect "\n".
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _param(part: email.message.Message, name: str) -> str:
    value = part.get_param(name)
    if isinstance(value, tuple):  # RFC 2231: (charset, language, value)
        value = value[2]
    return str(value).strip() if value else ""


def _html_to_text(markup: str) -> str:
    markup = re.sub(r"(?i)<(?:br|/p|/div|/tr|/li|/h\d)\b[^<>]*+>", "\n", markup)
    return html.unescape(re.sub(r"<[^<>]*+>", " ", markup))


def _field_blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The header-like blocks of a report part: per-message fields, then per-recipient."""
    if part.is_multipart():
        return [
            block
            for message in _subparts(part)
            for block in _split_repeats(
                [(str(k).lower(), decode_header_value(str(v))) for k, v in message.raw_items()]
            )
        ]
    return _text_field_blocks(_part_text(part))


_FIELD_LINE = re.compile(r"([A-Za-z][A-Za-z0-9-]*+)[ \t]*+:[ \t]*+(.*)")


def _text_field_blocks(text: str) -> list[dict[str, str]]:
    """ "Name: value" blocks separated by blank lines, continuation lines unfolded.

    For DSN fields in a part the parser did not split, or pasted into a text bounce.
    """
    blocks: list[dict[str, str]] = []
    fields: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.lstrip(">") if line.startswith(">") else line  # a forwarded DSN
        if not line.strip():
            blocks.extend(_split_repeats(fields))
            fields = []
        elif line[0] in " \t" and fields:
            fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line.strip()}")
        elif match := _FIELD_LINE.fullmatch(line.strip()):
            fields.append((match.group(1).lower(), match.group(2).strip()))
    blocks.extend(_split_repeats(fields))
    return blocks


def _split_repeats(fields: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Fields as blocks, starting a new block where a field repeats.

    Some MTAs run per-recipient blocks together without the blank line between them.
    """
    blocks: list[dict[str, str]] = []
    for name, value in fields:
        if not blocks or name in blocks[-1]:
            blocks.append({})
        blocks[-1][name] = value
    return blocks


def _attached_original_recipients(part: email.message.Message) -> list[str]:
    attached = _subparts(part)
    if attached:
        values = [decode_header_value(str(v)) for v in attached[0].get_all("to", [])]
    else:
        blocks = _text_field_blocks(_part_text(part))
        values = [blocks[0]["to"]] if blocks and "to" in blocks[0] else []
    return [addr for _, addr in _addresses(values)]


def _inline_original_recipients(returned: str) -> list[str]:
    """The To of an original message pasted below a plain-text bounce."""
    match = re.search(r"(?im)^[ \t>]*+To:[ \t]*+(.*)", returned[:20_000])
    return [a.lower() for a in _ADDR_RE.findall(match.group(1))] if match else []


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    try:
        pairs = email.utils.getaddresses(values)
    except (ValueError, IndexError, TypeError):
        pairs = [("", a) for v in values for a in _ADDR_RE.findall(v)]
    return [(name, addr.strip().lower()) for name, addr in pairs if addr.strip()]


# Where the returned copy of the original starts in a text bounce. Below it is the member's
# (or our) own text, no evidence about the bounce, and full of addresses that did not fail.
_ORIGINAL_MARKER = re.compile(
    r"(?im)^[ \t>]*+(?:"
    r"-{2,}+[^\n]{0,100}?(?:original|copy of|returned|message follows|headers? (?:follow|of)"
    r"|unsent)"
    r"|(?:-{2,}+\s*)?below this line is a copy of the message"
    r"|original message follows"
    r"|-*+[ \t]*forwarded message"
    r")"
    # A header block starting in the text; but not in a quoted forward, which is all original.
    r"|^[ \t]*+(?:content-type:\s*message/rfc822|return-path:\s*<|received:\s*(?:from|by)\s"
    r"|message-id:\s*<)"
)


def _cut_original(text: str) -> str:
    match = _ORIGINAL_MARKER.search(text)
    return text[: match.start()] if match and match.start() > 0 else text


# --- Deciding ------------------------------------------------------------------------------


def _decide(mail: _Mail, null_return_path: bool) -> Verdict:
    null_return_path = null_return_path or any(
        not v.strip(" <>") for v in mail.headers.get("return-path", [])
    )
    return (
        _report_verdict(mail)
        or _ses_notification_verdict(mail)
        # Before the bounce wording: a challenge says "your message has not been delivered"
        # too, and taking it for a bounce would mark a working address dead.
        or _challenge_verdict(mail)
        or _bounce_verdict(mail, null_return_path)
        or _header_verdict(mail)
        or _sender_verdict(mail, null_return_path)
        or Verdict(Kind.REPLY, "no machine signal")
    )


# --- Reports: RFC 6522 multipart/report (DSN, ARF, MDN) ---


def _report_verdict(mail: _Mail) -> Verdict | None:
    types = mail.report_types
    if "feedback-report" in types:
        reason = _report_reason(mail, "feedback-report")
        return Verdict(Kind.FEEDBACK, reason, _arf_recipients(mail))
    if "delivery-status" in types:
        reason = _report_reason(mail, "delivery-status")
        recipients = tuple(r for r in map(_dsn_recipient, mail.dsn_blocks) if r)[:_MAX_RECIPIENTS]
        if not recipients:  # a DSN whose fields we cannot read is still a bounce
            return Verdict(Kind.BOUNCE, reason, _text_recipients(mail, delayed=False))
        if mail.original_to and not any("@" in r.address for r in recipients):
            # Final-Recipient can be a mailbox file path after local delivery.
            recipients = tuple(replace(r, address=mail.original_to[0]) for r in recipients)
        if any(_is_failure(r) for r in recipients):
            return Verdict(Kind.BOUNCE, reason, recipients)
        if any(r.action == "delayed" for r in recipients):
            # A soft bounce: recorded as a bounce, but is_hard=False never marks the address.
            return Verdict(Kind.BOUNCE, f"{reason} (delayed: soft bounce)", recipients)
        actions = ", ".join(sorted({r.action or "no action" for r in recipients}))
        return Verdict(Kind.DELIVERY_REPORT, f"{reason} ({actions})", recipients)
    if "disposition-notification" in types:
        reason = _report_reason(mail, "disposition-notification")
        return Verdict(Kind.DELIVERY_REPORT, reason, _mdn_recipients(mail))
    return None


def _report_reason(mail: _Mail, report_type: str) -> str:
    top = mail.headers.get("content-type", [""])[0].lower()
    if top.startswith("multipart/report") and report_type in top:
        return f"multipart/report; report-type={report_type}"
    return f"message/{report_type} part"


def _dsn_recipient(block: dict[str, str]) -> Recipient | None:
    values = [
        block[name]
        for name in ("final-recipient", "original-recipient", "x-actual-recipient")
        if block.get(name)
    ]
    if not values and "action" not in block and "status" not in block:
        return None  # the per-message block (Reporting-MTA, Arrival-Date...)
    address = _strip_address_type(([v for v in values if _ADDR_RE.search(v)] or values or [""])[0])
    diagnostic = re.sub(r"(?i)^\s*(?:smtp|x-[\w-]+)\s*;\s*", "", block.get("diagnostic-code", ""))
    action = (block.get("action", "").split() or [""])[0].lower()
    status = _status_in(block.get("status", "")) or _status_in(diagnostic)
    if not status and action in ("delivered", "relayed", "expanded"):
        status = "2.0.0"
    return Recipient(address, status, action, diagnostic, _is_hard(status, action, diagnostic))


def _strip_address_type(value: str) -> str:
    value = re.sub(r"^\s*[\w-]+\s*;\s*", "", value)  # "rfc822; " / "utf-8; "
    match = _ADDR_RE.search(value)
    return match.group(0).lower() if match else value.strip(" <>").lower()


_FAILED_ACTIONS = frozenset({"failed", "failure", "expired", "undeliverable", "rejected"})
_NOT_FAILED_ACTIONS = frozenset({"delivered", "relayed", "expanded", "deliverable", "delayed"})


def _is_failure(recipient: Recipient) -> bool:
    if recipient.action in _FAILED_ACTIONS:
        return True
    if recipient.action in _NOT_FAILED_ACTIONS:
        return False
    return not recipient.status.startswith("2")  # no or unknown Action: trust the status


def _is_hard(status: str, action: str, diagnostic: str) -> bool:
    if action == "delayed" or status.startswith(("2", "4")):
        return False
    if status.startswith("5"):
        return True
    return action in _FAILED_ACTIONS and not _SOFT_WORDS.search(diagnostic)


def _arf_recipients(mail: _Mail) -> tuple[Recipient, ...]:
    fields = mail.feedback_fields
    feedback_type = fields.get("feedback-type", "").strip().lower()
    values = [fields[k] for k in ("original-rcpt-to", "removal-recipient") if fields.get(k)]
    addresses = dict.fromkeys(a.lower() for v in values for a in _ADDR_RE.findall(v))
    return tuple(Recipient(a, action=feedback_type) for a in addresses)


def _mdn_recipients(mail: _Mail) -> tuple[Recipient, ...]:
    address = _strip_address_type(mail.mdn_fields.get("final-recipient", ""))
    disposition = mail.mdn_fields.get("disposition", "").rsplit(";", 1)[-1].strip().lower()
    return (Recipient(address, action=disposition),) if address else ()


# --- Amazon SES notifications by email: the report is a JSON document ---


def _ses_notification_verdict(mail: _Mail) -> Verdict | None:
    start = mail.notice.find("{")
    if not 0 <= start < 200 or "notificationType" not in mail.notice[start : start + 1000]:
        return None
    doc = _json_object(mail.notice[start:])
    message = doc.get("Message")
    if isinstance(message, str):  # wrapped in an SNS envelope
        doc = _json_object(message)
    kind = doc.get("notificationType") or doc.get("eventType")
    reason = f"Amazon SES notification: {kind}"
    bounce = doc.get("bounce")
    if kind == "Bounce" and isinstance(bounce, dict):
        permanent = bounce.get("bounceType") == "Permanent"
        recipients = tuple(
            Recipient(
                address=str(r.get("emailAddress", "")).lower(),
                status=str(r.get("status", "")),
                action=str(r.get("action", "failed")),
                diagnostic=str(r.get("diagnosticCode", "")),
                is_hard=permanent,
            )
            for r in bounce.get("bouncedRecipients", [])
            if isinstance(r, dict)
        )
        return Verdict(Kind.BOUNCE, reason, recipients)
    if kind == "Complaint":
        return Verdict(Kind.FEEDBACK, reason)
    if kind == "Delivery":
        return Verdict(Kind.DELIVERY_REPORT, reason)
    return None


def _json_object(text: str) -> dict[str, object]:
    try:
        # strict=False: SNS folds long lines, leaving newlines inside JSON strings.
        doc, _ = json.JSONDecoder(strict=False).raw_decode(text)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


# --- Non-standard bounces: plain-text notices from MTAs and providers ---


def _bounce_verdict(mail: _Mail, null_return_path: bool) -> Verdict | None:
    subject_hit = _BOUNCE_SUBJECT.search(mail.subject)
    body_hit = _BOUNCE_BODY.search(mail.notice)
    evidence = (
        f'subject "{subject_hit.group(0)}"'
        if subject_hit
        else f'body "{body_hit.group(0).strip()}"'
        if body_hit
        else ""
    )
    if "x-failed-recipients" in mail.headers:  # Exim
        reason = "X-Failed-Recipients header"
    elif _is_daemon(mail) and evidence:
        reason = f"sender {mail.from_addr}; {evidence}"
    elif _is_oof_subject(mail.subject):
        # An out-of-office has a null return path too, and may say "not delivered to me".
        return None
    elif null_return_path and evidence:
        reason = f"null return path; {evidence}"
    elif _is_noreply(mail) and evidence:
        reason = f"sender {mail.from_addr}; {evidence}"
    elif (strong := _BOUNCE_BODY_STRONG.search(mail.notice)) and _BOUNCE_SUBJECT.match(
        _FORWARD_PREFIX.sub("", mail.subject)
    ):
        # A bounce relayed under another sender, or forwarded by hand. Both the subject and
        # the body must read like an MTA wrote them: members write about failed deliveries.
        reason = f'subject "{mail.subject[:60]}"; body "{strong.group(0).strip()}"'
    else:
        return None
    # A "still trying" warning is not a failure yet (RFC 3464 Action: delayed). `[^\S\n]`, spaces
    # but not a line end: a `\s*` after `^` read every blank line below each line start again.
    delayed = bool(_DELAY_SUBJECT.search(mail.subject)) and not re.search(
        r"(?im)^[^\S\n]*action\s*:\s*failed", mail.notice
    )
    recipients = _text_recipients(mail, delayed)
    if delayed:
        # A soft bounce: recorded as a bounce, but is_hard=False never marks the address.
        return Verdict(Kind.BOUNCE, f"delayed delivery warning (soft bounce); {reason}", recipients)
    return Verdict(Kind.BOUNCE, reason, recipients)


def _is_daemon(mail: _Mail) -> bool:
    local = mail.from_addr.split("@", 1)[0]
    return bool(_DAEMON_LOCAL.match(local) or _DAEMON_NAME.search(mail.from_raw))


def _is_noreply(mail: _Mail) -> bool:
    return bool(_NOREPLY_LOCAL.match(mail.from_addr.split("@", 1)[0]))


def _text_recipients(mail: _Mail, delayed: bool) -> tuple[Recipient, ...]:
    """Failed recipients of a text bounce, best effort, most reliable source first."""
    pasted = [r for r in map(_dsn_recipient, _text_field_blocks(mail.notice)) if r and r.address]
    if pasted:  # DSN fields inside the text (AmazonWorkMail, a forwarded DSN)
        return tuple(pasted)
    failed = [a for v in mail.headers.get("x-failed-recipients", []) for a in _ADDR_RE.findall(v)]
    found = (
        [(a.lower(), "") for a in failed]
        or _notice_addresses(mail)
        or [(a, "") for a in mail.original_to]
        or _self_addressed(mail)
    )
    action = "delayed" if delayed else "failed"
    recipients = []
    for address, rest_of_line in list(dict(found).items())[:_MAX_RECIPIENTS]:
        diagnostic = rest_of_line or _lines_after(mail.notice, address)
        status = _status_in(diagnostic) or _status_in(mail.notice)
        if delayed:
            status = status if status.startswith("4") else ""
        hard = not delayed and _is_hard(status, action, diagnostic)
        recipients.append(Recipient(address, status, action, diagnostic, hard))
    return tuple(recipients)


def _notice_addresses(mail: _Mail) -> list[tuple[str, str]]:
    """Addresses the notice names as failed, with the rest of their line if any."""
    found: list[tuple[str, str]] = [
        (m.group(1).lower(), (m.group(2) or "").strip())
        for m in _ADDRESS_LINE.finditer(mail.notice)
    ]
    if not any(a not in mail.own_addresses for a, _ in found):
        found = [(m.group(1).lower(), "") for m in _ADDRESS_PHRASE.finditer(mail.notice)]
    if not any(a not in mail.own_addresses for a, _ in found):
        found = [(a.lower(), "") for a in _ADDR_RE.findall(mail.notice)]
    candidates = [(a, d) for a, d in found if a not in mail.own_addresses]
    # "postmaster@" is usually whom to contact, not who failed; unless nobody else is named.
    people = [(a, d) for a, d in candidates if not _DAEMON_LOCAL.match(a.split("@", 1)[0])]
    return people or candidates


def _self_addressed(mail: _Mail) -> list[tuple[str, str]]:
    """Someone who mailed themselves: the failed address is also the notice's own To."""
    return [
        (m.group(1).lower(), (m.group(2) or "").strip())
        for m in _ADDRESS_LINE.finditer(mail.notice)
    ]


def _lines_after(text: str, address: str) -> str:
    """The lines after the address, up to a blank line: where bounces put their reason."""
    at = text.lower().find(address)
    if at < 0:
        return ""
    kept: list[str] = []
    for line in text[at + len(address) :].splitlines()[:8]:
        if kept and not line.strip():
            break
        if line.strip():
            kept.append(line.strip(" <>:\t"))
    return " ".join(kept)[:500]


def _status_in(text: str) -> str:
    """The RFC 3463 code in a diagnostic; "5.0.0" when only the SMTP reply "550" is there."""
    match = _ENHANCED_STATUS.search(text)
    if match:
        return match.group(0)
    match = _REPLY_CODE.search(text)
    return f"{match.group(1)}.0.0" if match else ""


# --- Challenge-response systems ---


def _challenge_verdict(mail: _Mail) -> Verdict | None:
    for name in mail.headers:
        if _CHALLENGE_HEADER.search(name):
            return Verdict(Kind.CHALLENGE, f"{name} header")
    subject_hit = _CHALLENGE_SUBJECT.search(mail.subject)
    if subject_hit and not _REPLY_PREFIX.match(mail.subject):
        return Verdict(Kind.CHALLENGE, f'subject "{subject_hit.group(0)}"')
    # Body wording alone is not enough: it must come with a link to click.
    unquoted = "\n".join(line for line in mail.notice.splitlines() if not line.startswith(">"))
    body_hit = _CHALLENGE_BODY.search(unquoted)
    if body_hit and _CONFIRM_LINK.search(unquoted):
        return Verdict(Kind.CHALLENGE, f'body "{body_hit.group(0)}" with a confirmation link')
    return None


# --- Auto-replies and list mail, from headers and subject ---


def _header_verdict(mail: _Mail) -> Verdict | None:
    headers = mail.headers
    auto_submitted = _first_word(headers, "auto-submitted")
    if auto_submitted and auto_submitted != "no":
        return Verdict(Kind.AUTO_REPLY, f"Auto-Submitted: {auto_submitted}")
    for name in _AUTO_REPLY_HEADERS:
        if name in headers and _first_word(headers, name) not in ("no", "false", "0"):
            return Verdict(Kind.AUTO_REPLY, f"{name}: {headers[name][0]}"[:120])
    for name in headers:
        if name not in _NOT_AUTO_REPLY_NAMES and _AUTO_HEADER_NAME.search(name):
            return Verdict(Kind.AUTO_REPLY, f"{name} header")
    precedence = _first_word(headers, "precedence") or _first_word(headers, "x-precedence")
    if precedence == "auto_reply":
        return Verdict(Kind.AUTO_REPLY, "Precedence: auto_reply")
    subject_hit = _is_oof_subject(mail.subject)
    if subject_hit:
        return Verdict(Kind.AUTO_REPLY, f'out-of-office subject "{subject_hit.group(0).strip()}"')
    if precedence in ("bulk", "junk", "list"):
        return Verdict(Kind.LIST, f"Precedence: {precedence}")
    for name in _LIST_HEADERS:
        if name in headers:
            return Verdict(Kind.LIST, f"{name} header")
    if _first_word(headers, "x-loop") in ("yes", "true"):
        return Verdict(Kind.AUTO_REPLY, "X-Loop header")
    return None


def _first_word(headers: dict[str, list[str]], name: str) -> str:
    words = headers.get(name, [""])[0].replace(";", " ").replace("(", " ").split()
    return words[0].lower() if words else ""


def _is_oof_subject(subject: str) -> re.Match[str] | None:
    return _OOF_SUBJECT.match(subject) or _OOF_SUFFIX.search(subject)


def _sender_verdict(mail: _Mail, null_return_path: bool) -> Verdict | None:
    if _is_daemon(mail):
        # From the mailer daemon but in no wording we know: a failure, but not provably a
        # permanent one, so no address gets marked dead on this alone.
        recipients = tuple(replace(r, is_hard=False) for r in _text_recipients(mail, False))
        return Verdict(Kind.BOUNCE, f"sender {mail.from_addr}", recipients)
    if null_return_path:
        return Verdict(Kind.AUTO_REPLY, "null return path <>")
    if _is_noreply(mail):
        return Verdict(Kind.LIST, f"no-reply sender {mail.from_addr}")
    if _LIST_LOCAL.search(mail.from_addr.split("@", 1)[0]):
        return Verdict(Kind.LIST, f"list sender {mail.from_addr}")
    return None


# --- Pattern tables ---------------------------------------------------------------------

_DAEMON_LOCAL = re.compile(
    r"(?:mailer[-_ ]?daemon|post[-_]?master|poostmaster|mdaemon|mail[-_]?administrator"
    r"|mail[-_]?delivery(?:[-_]?(?:sub)?system)?)$"
)
_DAEMON_NAME = re.compile(
    r"\b(?:mailer[- ]?daemon|mail deliver(?:y)? (?:sub)?system|post[-_ ]?master)\b"
)
_NOREPLY_LOCAL = re.compile(r"(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?)(?:[-+_.].*)?$")
_LIST_LOCAL = re.compile(r"^owner-|-(?:owner|request|bounces?)(?:\+.*)?$")
_REPLY_PREFIX = re.compile(r"(?i)\s*(?:re|aw|sv|vs|antw|odp|r|ref|rif|res|回复|答复|返信)\s*:")

_BOUNCE_SUBJECT = re.compile(
    r"(?i)\b(?:undeliver(?:ed|able)|non[- ]?deliver(?:ed|able)|returned mail|mail returned"
    r"|delivery (?:status notification|failure|failed|has failed|problem|report"
    r"|notification: (?:error|failed|failure|warning|delayed))"
    r"|delivery status$|failure notice|failure delivery|failed delivery"
    r"|mail (?:delivery )?failed|mail failure|mail system error|message delivery has failed"
    r"|could not be delivered|couldn't be delivered|(?:was )?not delivered"
    r"|see transcript for details|postmaster notify|notice: mail delivery status"
    r"|delayed mail|warning: (?:message \S+ delayed|could not send message)"
    r"|message you sent blocked|error sending your mail|returned to sender"
    r"|non remis|non recapitabile|unzustellbar|nicht zustellbar|onbestelbaar"
    r"|no se puede entregar|imposible entregar|olevererbar|kan inte levereras"
    r"|kunne ikke leveres|não (?:é possível )?entreg)"
    r"|недоставлен|не доставлен|не удалось доставить|配信(?:不能|エラー|失敗)|送信エラー"
    r"|退信|投递失败|未送达|배달 실패|전달 실패|メールエラー|エラー通知"
)

# What mail servers write when they return a message. Only counted next to a machine-like
# sender, subject or return path: a member may paste one into a reply, or run a business that
# "was unable to deliver" something.
_BOUNCE_BODY = re.compile(
    r"(?im)this is the qmail-send program|i'm afraid i wasn't able to deliver"
    r"|created automatically by mail delivery software|this is the mail system at host"
    r"|could not be delivered to one or more|the following address(?:es|\(es\))? (?:had|failed)"
    r"|permanent fatal errors|transcript of session follows"
    r"|delivery to the following recipients? (?:failed|has been delayed)"
    r"|(?:wasn't|was not|could not be|couldn't be|has not been|cannot be) delivered"
    r"|did not reach (?:some or all of )?the (?:following|intended) recipient"
    r"|could not be reached|unable to deliver|delivery (?:has )?failed|failed to deliver"
    r"|not able to deliver|undeliverable|undelivered|delivery failure|permanent error"
    r"|user unknown|unknown user|no such (?:user|mailbox|address)|mailbox (?:unavailable|full)"
    r"|recipient address rejected|unrouteable address|address rejected"
    r"|^[ \t]*(?:final-recipient|diagnostic-code)[ \t]*:"
    r"|returned to (?:the )?sender|message (?:was )?(?:bounced|rejected)"
    r"|\b[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b"
)

# Sentences only an MTA writes, or DSN fields pasted into the text.
_BOUNCE_BODY_STRONG = re.compile(
    r"(?im)this is the qmail-send program|i'm afraid i wasn't able to deliver"
    r"|created automatically by mail delivery software|this is the mail system at host"
    r"|could not be delivered to one or more|the following address(?:es|\(es\))? (?:had|failed)"
    r"|permanent fatal errors|transcript of session follows"
    r"|delivery to the following recipients? (?:failed|has been delayed)"
    r"|did not reach (?:some or all of )?the (?:following|intended) recipient"
    r"|^[ \t]*(?:final-recipient|diagnostic-code)[ \t]*:|\b[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b"
)
_FORWARD_PREFIX = re.compile(r"(?i)^(?:\s*(?:fwd?|wg|tr|rv|i)\s*:\s*)+")
_DELAY_SUBJECT = re.compile(
    r"(?i)\(delay\)|delayed mail|delivery (?:has been |was )?delayed|warning: message \S+ delayed"
    r"|still being retried|could not send message for past|notification: (?:warning|delayed)"
)
_SOFT_WORDS = re.compile(
    r"(?i)temporar|try again|will (?:be )?retr|still (?:being )?(?:trying|retried)|deferred"
    r"|delayed|not yet been delivered"
)
# Version numbers and IP addresses look like codes: "Postfix 2.10.1", "10.5.1.1".
_ENHANCED_STATUS = re.compile(r"(?<![\d.])[45]\.\d{1,3}\.\d{1,3}(?!\.?\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#-])([45])[0-5]\d(?=[ -]\S|$)", re.MULTILINE)

# An address alone on its line ("  kijitora@example.jp", "<a@b>: reason", "a@b on 1/2/2010"),
# the shape nearly every bounce format uses for the failed recipient.
_ADDRESS_LINE = re.compile(
    rf"(?im)^[ \t]*+(?:RCPT TO:?|Recipient:|Failed recipient:|Address:)?[ \t]*+<?({_ADDR})>?"
    r"[ \t]*+(?::[ \t]*+(.*)|[ \t]+on[ \t].*|\(.*\)|,)?[ \t]*$"
)
# An address introduced by the words bounce notices use.
_ADDRESS_PHRASE = re.compile(
    r"(?i)(?:delivered to|deliver (?:your message |the mail )?to|message to|mail to|recipient"
    r"|recipients?:|address(?:ee)?:?|reach|user|mailbox)\b[ \t:]*+\(?<?"
    rf"({_ADDR})"
)

_CHALLENGE_HEADER = re.compile(
    r"challenge|^x-boxbe|^x-spamarrest|^x-tmda|^x-mailblocks|^x-choicemail"
)
_CHALLENGE_SUBJECT = re.compile(
    r"(?i)please confirm your (?:message|e-?mail|request)|confirm your (?:message|e-?mail)"
    r"|verify your (?:message|e-?mail)|sender verification|verification required"
    r"|(?:message|e-?mail) (?:is )?(?:awaiting|pending|held for) (?:your )?"
    r"(?:confirmation|verification)"
    r"|spam ?arrest|boxbe|mailblocks|choicemail|request to join .{0,80}guest list"
    r"|challenge[- ]response"
)
_CHALLENGE_BODY = re.compile(
    r"(?i)spam ?arrest|boxbe|mailblocks|choicemail|bluebottle|\btmda\b|challenge[- ]response"
    r"|verify (?:that )?you are (?:a )?(?:human|real person|not a (?:robot|spammer|machine))"
    r"|(?:to|so) (?:have|get|let) your (?:message|e-?mail) (?:be )?delivered"
    r"|added to (?:my|the|our) (?:approved|allowed|white|safe)[ -]?(?:sender)?s?[ -]?list"
    r"|please confirm (?:that )?you (?:are|sent|really)"
    r"|protect(?:ing)? (?:myself|me) from (?:spam|junk)"
    r"|one[- ]time (?:verification|confirmation)"
)
_CONFIRM_LINK = re.compile(r"(?i)https?://[^\s]{0,300}?(?:confirm|verif|challenge|auth)")

_AUTO_REPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-auto-reply",
    "x-autogenerated",
    "x-autoresponse",
    "x-auto-response",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-fc-machinegenerated",
    "x-vacation",
    # Exchange stamps these on mail its agents generate (OOF, inbox-rule replies, forwards).
    "x-ms-exchange-generated-message-source",
    "x-ms-exchange-inbox-rules-loop",
)
# Other header *names* that mean "a program wrote this" (after Discourse). Those with a value
# read above are left out ("Auto-Submitted: no"), and so is X-Auto-Response-Suppress: it asks
# others not to auto-reply, and everyday Outlook mail carries it.
_NOT_AUTO_REPLY_NAMES = {"auto-submitted", "x-auto-response-suppress", *_AUTO_REPLY_HEADERS}
_AUTO_HEADER_NAME = re.compile(
    r"auto[-_]?(?:response|submitted|replied|reply|generated|respond)|holidayreply"
    r"|machinegenerated"
)
_LIST_HEADERS = (
    "list-id",
    "list-unsubscribe",
    "list-post",
    "list-help",
    "list-subscribe",
    "list-owner",
    "list-archive",
    "mailing-list",
    "x-mailing-list",
    "x-mlserver",
    "x-ml-name",
)
# Out-of-office subject prefixes in the languages members write in (Discourse's list, the
# Exchange/Outlook localizations, and common vacation responders).
_OOF_SUBJECT = re.compile(
    r"(?i)\s*(?:\[[^\]]{0,40}\]\s*)?(?:"
    r"out of (?:the )?office|out-of-office|ooo\b|away from (?:the |my )?office|on vacation"
    r"|vacation (?:reply|message|notice|response)|i am (?:currently )?(?:out|away)\b"
    r"|auto(?:matic)?[- ]?(?:reply|response|answer|responder)|auto\s*:|autoreply|autoresponse"
    r"|autosvar|automatiskt? svar|automatisch antwoord|afwezig|abwesenheitsnotiz|abwesend"
    r"|automatische antwort|ich bin (?:nicht im büro|abwesend)|au(?:ss|ß)er haus"
    r"|réponse automatique|reponse automatique|absente? du bureau"
    r"|respuesta automática|respuesta automatica|fuera de la oficina"
    r"|risposta automatica|risposta non al computer|fuori sede|fuori ufficio"
    r"|frånvaro|frånvarande|fravær|automaattinen vastaus|poissa toimistolta"
    r"|resposta automática|resposta automatica|ausência|fora do escritório"
    r"|odpowiedź automatyczna|automatyczna odpowiedź|poza biurem|automatická odpověď"
    r"|automatikus válasz|otomatik yan\u0131t|автоматический ответ|автоответ"
    r"|αυτόματη απάντηση|自動応答|自動返信|不在|自动回复|自動回覆|자동 회신|자동 응답"
    r")"
)
_OOF_SUFFIX = re.compile(
    r"(?i)[\[(]\s*(?:auto[- ]?reply|auto[- ]?response|automatic reply|out of (?:the )?office"
    r"|ooo|abwesenheitsnotiz|absence|autosvar)\s*[\])]"
)
