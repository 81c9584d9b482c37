"""Tell a member's reply apart from machine mail: bounces, DSNs, auto-replies, lists, challenges.

Pure functions over raw message bytes: no I/O, no database, no settings. The standard library
`email` package reads the structure, because mail-parser drops `message/delivery-status` fields.

The two costly mistakes are asymmetric but both real: machine mail taken for a reply enters a
packet, and a reply taken for machine mail is lost. So headers and MIME structure decide first;
body text only counts next to a machine-like sender, subject or return path, because a member's
reply may quote "Out of Office" or "delivery failed".
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
    FEEDBACK = "feedback"
    DELIVERY_REPORT = "delivery_report"  # success or delayed DSN, read receipt (MDN)
    LIST = "list"  # bulk or mailing-list mail


@dataclass(frozen=True)
class Recipient:
    address: str
    status: str = ""  # RFC 3463 enhanced code, e.g. "5.1.1"; "X.0.0" when only "550" was given
    action: str = ""  # failed | delayed | delivered | ... (RFC 3464), or the ARF feedback type
    diagnostic: str = ""
    is_hard: bool = False  # 5.x.x: the address will not work; 4.x.x: try again later


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    recipients: tuple[Recipient, ...] = ()

    @property
    def is_machine(self) -> bool:
        return self.kind != Kind.REPLY


def classify(raw: bytes, envelope_from: str | None = None) -> Verdict:
    """Classify one raw message. `envelope_from` "" is the null return path <>, None unknown.

    Never raises: hostile MIME degrades to a headers-only reading.
    """
    null_return_path = _is_null_path(envelope_from)
    if b"\n" not in raw:
        # CR-only line ends (old Mac): the stdlib's quoted-printable decoder drops text
        # after a "=\r" soft break, so convert before parsing.
        raw = raw.replace(b"\r", b"\n")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        return _classify(_read(msg, envelope_from), null_return_path)
    # The stdlib parser and its header decoders raise a zoo of errors on hostile input
    # (RecursionError on deep nesting, LookupError, UnicodeError, IndexError...). A
    # classifier that crashes leaves the inbound row stuck, so degrade instead.
    except Exception as exc:  # noqa: BLE001
        return _classify_headers_only(raw, envelope_from, null_return_path, exc)


# --- Reading the message ---------------------------------------------------------------------

_MAX_PARTS = 200  # enough for any real bounce; bounds the work on a hostile message
_MAX_TEXT = 200_000  # characters of notice text worth scanning

_ADDR = r"(?<![\w.!#$%&'*+/=?^`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+"
_ADDR_RE = re.compile(_ADDR)


@dataclass(frozen=True)
class _Mail:
    headers: dict[str, list[str]]  # lower-cased name -> decoded values
    from_addr: str  # lower-cased address, or the bare word ("mailer-daemon") if no @
    from_raw: str  # the whole decoded From value, lower-cased ("mailer-daemon <>")
    subject: str
    own_addresses: frozenset[str]  # From/To/Reply-To of the notice: never the failed recipient
    report_types: frozenset[str]  # content types of report parts found in the structure
    dsn_blocks: tuple[dict[str, str], ...]  # per-recipient fields from message/delivery-status
    feedback_fields: dict[str, str]
    mdn_fields: dict[str, str]
    notice: str  # human-readable text, cut before the returned original message
    original_to: tuple[str, ...]  # To of the returned original message, attached or inline


def _read(msg: email.message.Message, envelope_from: str | None) -> _Mail:
    headers = _decoded_headers(msg)
    from_addr = _first_address(headers.get("from", []))
    own = {from_addr}
    for name in ("to", "reply-to", "sender"):
        own.update(addr for _, addr in _addresses(headers.get(name, [])))
    if envelope_from:
        own.add(envelope_from.strip("<> ").lower())

    report_types: set[str] = set()
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
        elif ctype in ("message/disposition-notification", "message/global-disposition-notification"):
            report_types.add("disposition-notification")
            for block in _field_blocks(part):
                mdn.update(block)
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/global"):
            original_to.extend(_original_recipients(part))
        elif part.get_content_maintype() in ("text", "multipart") and not part.is_multipart():
            # A multipart whose boundary never appears arrives as one string: read it as text.
            text = _part_text(part)
            texts.append(_html_to_text(text) if ctype == "text/html" else text)
    text = "\n".join(texts)[:_MAX_TEXT]
    notice = _cut_original(text)
    original_to.extend(_inline_original_recipients(text[len(notice) :]))
    if msg.get_content_type() == "multipart/report":
        report_type = _param(msg, "report-type").lower()
        if report_type:
            report_types.add(report_type)

    return _Mail(
        headers=headers,
        from_addr=from_addr,
        from_raw=" ".join(headers.get("from", [""])[0].split()).lower(),
        subject=" ".join(headers.get("subject", [""])[0].split()),
        own_addresses=frozenset(a for a in own if a),
        report_types=frozenset(report_types),
        dsn_blocks=tuple(b for b in dsn_blocks if b),
        feedback_fields=feedback,
        mdn_fields=mdn,
        notice=notice,
        original_to=tuple(original_to),
    )


def _parts(msg: email.message.Message) -> Iterator[email.message.Message]:
    """Leaf and report parts, depth first, without entering attached messages.

    Iterative, bounded and never descending into message/rfc822: a forwarded or returned
    original is the member's old mail, not evidence about this message.
    """
    stack = [msg]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part = stack.pop()
        seen += 1
        ctype = part.get_content_type()
        payload = part.get_payload()
        if part.is_multipart() and ctype.startswith("multipart/") and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))
        else:
            yield part


def _decoded_headers(msg: email.message.Message) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(str(name).strip().lower(), []).append(_decode_header(str(value)))
    return headers


def _decode_header(value: str) -> str:
    # Bytes the parser could not decode arrive as surrogate escapes: most are UTF-8.
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = _decode_bytes(value.encode("ascii", "surrogateescape"), "utf-8")
    value = " ".join(value.split())
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError, LookupError, UnicodeError):
        return value
    return "".join(
        _decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
        for chunk, charset in chunks
    )


# Labels seen in real bounces that Python does not know, or knows under another name.
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
    "utf8": "utf-8",
    "iso-8859-8-i": "iso-8859-8",
}


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        label = candidate.strip().strip('"').lower()
        try:
            return data.decode(_CHARSET_ALIASES.get(label, label))
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("latin-1")  # total: every byte maps to a character


def _part_text(part: email.message.Message) -> str:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        text = _decode_bytes(data, _charset(part))
    else:
        payload = part.get_payload()
        text = payload if isinstance(payload, str) else ""
    # CR-only (old Mac) and CRLF bodies: the line-anchored patterns below expect "\n".
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _charset(part: email.message.Message) -> str | None:
    return _param(part, "charset") or None


def _param(part: email.message.Message, name: str) -> str:
    value = part.get_param(name)
    if isinstance(value, tuple):  # RFC 2231 form: (charset, language, value)
        value = value[2]
    return str(value).strip() if value else ""


def _html_to_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


def _field_blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The header-like blocks of a report part (per-message, then per-recipient fields)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        blocks = []
        for block in payload:
            if isinstance(block, email.message.Message):
                blocks.append(
                    {str(k).lower(): _decode_header(str(v)) for k, v in block.raw_items()}
                )
        return blocks
    return _text_field_blocks(_part_text(part))


_FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")


def _text_field_blocks(text: str) -> list[dict[str, str]]:
    """Header-like "Name: value" blocks separated by blank lines, continuation lines unfolded."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        line = line.lstrip(">").rstrip() if line.startswith(">") else line.rstrip()
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        if line[0] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        match = _FIELD_LINE.match(line.strip())
        if match:
            last = match.group(1).lower()
            current[last] = match.group(2).strip()
        else:
            last = ""
    if current:
        blocks.append(current)
    return blocks


def _original_recipients(part: email.message.Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        values = [_decode_header(str(v)) for v in payload[0].get_all("to", [])]
    else:
        blocks = _text_field_blocks(_part_text(part))
        values = [blocks[0]["to"]] if blocks and "to" in blocks[0] else []
    return [addr for _, addr in _addresses(values)]


def _inline_original_recipients(returned: str) -> list[str]:
    """The To of an original message pasted below a plain-text bounce."""
    match = re.search(rf"(?im)^[ \t>]*To:[ \t]*(.*)$", returned[:20_000])
    return [a.lower() for a in _ADDR_RE.findall(match.group(1))] if match else []


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    try:
        pairs = email.utils.getaddresses(values)
    except (ValueError, IndexError, TypeError):
        pairs = [("", m) for v in values for m in _ADDR_RE.findall(v)]
    return [(name, addr.strip().lower()) for name, addr in pairs if addr.strip()]


def _first_address(values: list[str]) -> str:
    pairs = _addresses(values[:1])
    if pairs:
        return pairs[0][1]
    return values[0].strip().lower() if values else ""


def _is_null_path(envelope_from: str | None) -> bool:
    return envelope_from is not None and envelope_from.strip().strip("<>").strip() == ""


# Where the returned copy of the original message starts in a plain-text bounce. Text after
# it was written by the member (or by us), so it is no evidence about the bounce itself.
_ORIGINAL_MARKER = re.compile(
    r"(?im)^[ \t>]*(?:"
    r"-{2,}.*(?:original|copy of|returned|message follows|headers? (?:follow|of)|unsent)"
    r"|(?:-{2,}\s*)?below this line is a copy of the message"
    r"|original message follows"
    r"|(?:-+\s*)?forwarded message\s*-*"
    r")"
    # A header block starting in the text; not in a quoted forward, which is all original.
    r"|^[ \t]*(?:content-type:\s*message/rfc822|return-path:\s*<|received:\s*(?:from|by)\s"
    r"|message-id:\s*<)"
)


def _cut_original(text: str) -> str:
    match = _ORIGINAL_MARKER.search(text)
    return text[: match.start()] if match and match.start() > 0 else text


# --- Deciding ------------------------------------------------------------------------------


def _classify(mail: _Mail, null_return_path: bool) -> Verdict:
    for check in (_report_verdict, _json_notification_verdict):
        verdict = check(mail)
        if verdict:
            return verdict
    null_return_path = null_return_path or _has_null_return_path_header(mail)
    return (
        _bounce_verdict(mail, null_return_path)
        or _challenge_verdict(mail)
        or _header_verdict(mail)
        or _sender_verdict(mail, null_return_path)
        or Verdict(Kind.REPLY, "no machine signals")
    )


def _classify_headers_only(
    raw: bytes, envelope_from: str | None, null_return_path: bool, exc: Exception
) -> Verdict:
    """Fallback for a message the full parse choked on: read only its header block."""
    why = f"unparseable MIME ({type(exc).__name__})"
    try:
        head = re.split(rb"\r?\n\r?\n|\r\r", raw[:65536], maxsplit=1)[0]
        msg = email.message_from_bytes(head + b"\n\n", policy=email.policy.compat32)
        mail = _read(msg, envelope_from)
        verdict = _classify(mail, null_return_path)
    except Exception:  # noqa: BLE001 - same reason as in classify()
        return Verdict(Kind.REPLY, f"{why}; headers unreadable, no machine signals found")
    return Verdict(verdict.kind, f"{verdict.reason}; {why}", verdict.recipients)


# --- Reports (RFC 6522 multipart/report and JSON notifications) ---


def _report_verdict(mail: _Mail) -> Verdict | None:
    types = mail.report_types
    if "feedback-report" in types:
        return Verdict(Kind.FEEDBACK, _report_reason(mail, "feedback-report"), _arf_recipients(mail))
    if "delivery-status" in types:
        recipients = tuple(r for r in map(_dsn_recipient, mail.dsn_blocks) if r)
        if mail.original_to and not any("@" in r.address for r in recipients):
            recipients = tuple(replace(r, address=mail.original_to[0]) for r in recipients)
        reason = _report_reason(mail, "delivery-status")
        if not recipients:  # a DSN whose fields we could not read is still a bounce
            return Verdict(Kind.BOUNCE, reason, _text_recipients(mail, delayed=False))
        if any(_is_failure(r) for r in recipients):
            return Verdict(Kind.BOUNCE, reason, recipients)
        return Verdict(Kind.DELIVERY_REPORT, f"{reason} ({_actions(recipients)})", recipients)
    if "disposition-notification" in types:
        return Verdict(
            Kind.DELIVERY_REPORT,
            _report_reason(mail, "disposition-notification"),
            _mdn_recipients(mail),
        )
    return None


def _report_reason(mail: _Mail, report_type: str) -> str:
    if report_type in mail.report_types and "content-type" in mail.headers:
        top = mail.headers["content-type"][0].lower()
        if top.startswith("multipart/report") and report_type in top:
            return f"multipart/report; report-type={report_type}"
    return f"message/{report_type} part"


def _dsn_recipient(block: dict[str, str]) -> Recipient | None:
    fields = ("final-recipient", "original-recipient", "x-actual-recipient")
    values = [block[f] for f in fields if block.get(f)]
    if not values and "action" not in block and "status" not in block:
        return None  # the per-message block (Reporting-MTA, Arrival-Date)
    # Final-Recipient may be a mailbox file path after local delivery; prefer an address.
    with_at = [v for v in values if _ADDR_RE.search(v)]
    address = _strip_address_type((with_at or values or [""])[0])
    status = _status_in(block.get("status", "")) or _status_in(block.get("diagnostic-code", ""))
    action = block.get("action", "").split()[0].lower() if block.get("action", "").split() else ""
    diagnostic = block.get("diagnostic-code", "")
    diagnostic = re.sub(r"^\s*(smtp|x-[\w-]+)\s*;\s*", "", diagnostic, flags=re.I)
    if not status and action in ("delivered", "relayed", "expanded"):
        status = "2.0.0"
    return Recipient(address, status, action, diagnostic, _is_hard(status, action, diagnostic))


def _strip_address_type(value: str) -> str:
    value = re.sub(r"^\s*[\w-]+\s*;\s*", "", value)  # "rfc822; " / "utf-8; "
    match = _ADDR_RE.search(value)
    return match.group(0).lower() if match else value.strip(" <>").lower()


_FAILED_ACTIONS = frozenset({"failed", "failure", "expired", "undeliverable", "rejected"})
_OK_ACTIONS = frozenset({"delivered", "relayed", "expanded", "deliverable", "delayed"})


def _is_failure(recipient: Recipient) -> bool:
    if recipient.action in _FAILED_ACTIONS:
        return True
    if recipient.action in _OK_ACTIONS:
        return False
    # Unknown or missing Action: trust the status class.
    return recipient.status[:1] in ("4", "5") or not recipient.status


def _actions(recipients: tuple[Recipient, ...]) -> str:
    return ", ".join(sorted({r.action or "no action" for r in recipients}))


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
    fields = mail.mdn_fields
    address = _strip_address_type(fields.get("final-recipient", ""))
    disposition = fields.get("disposition", "").rsplit(";", 1)[-1].strip().lower()
    return (Recipient(address, action=disposition),) if address else ()


def _json_notification_verdict(mail: _Mail) -> Verdict | None:
    """Amazon SES notifications delivered by email (SNS): the report is a JSON document."""
    start = mail.notice.find("{")
    if start < 0 or start > 200 or "notificationType" not in mail.notice[start : start + 1000]:
        return None
    doc = _json_object(mail.notice[start:])
    if isinstance(doc.get("Message"), str):  # wrapped in an SNS envelope
        doc = _json_object(doc["Message"])
    kind_name = str(doc.get("notificationType") or doc.get("eventType") or "")
    reason = f"Amazon SES notification: {kind_name}"
    if kind_name == "Bounce" and isinstance(doc.get("bounce"), dict):
        bounce = doc["bounce"]
        permanent = bounce.get("bounceType") == "Permanent"
        recipients = tuple(
            Recipient(
                str(r.get("emailAddress", "")).lower(),
                str(r.get("status", "")),
                str(r.get("action", "failed")),
                str(r.get("diagnosticCode", "")),
                permanent,
            )
            for r in bounce.get("bouncedRecipients", [])
            if isinstance(r, dict)
        )
        return Verdict(Kind.BOUNCE, reason, recipients)
    if kind_name == "Complaint":
        return Verdict(Kind.FEEDBACK, reason)
    if kind_name == "Delivery":
        return Verdict(Kind.DELIVERY_REPORT, reason)
    return None


def _json_object(text: str) -> dict[str, object]:
    try:
        # strict=False: SNS folds long lines, leaving newlines inside JSON strings.
        doc, _ = json.JSONDecoder(strict=False).raw_decode(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# --- Non-standard bounces ---

_DAEMON_LOCAL = re.compile(
    r"^(?:mailer[-_ ]?daemon|post[-_]?master|poostmaster|mdaemon|mail[-_]?delivery[-_]?"
    r"(?:system|subsystem)?|mail[-_]?administrator)$"
)
_DAEMON_NAME = re.compile(
    r"\b(?:mailer[- ]?daemon|mail delivery (?:sub)?system|post[-_ ]?master|mail deliver system)\b"
)

_BOUNCE_SUBJECT = re.compile(
    r"(?i)\b(?:undeliver(?:ed|able)|non[- ]?deliver(?:ed|able)|returned mail|mail returned"
    r"|(?:mail |message )?delivery (?:status notification|failure|failed|has failed|problem"
    r"|notification: (?:error|failed|failure|warning|delayed)|report)"
    r"|delivery status$|failure notice|failure delivery|failed delivery|permanent delivery failure"
    r"|mail (?:delivery )?failed|mail failure|mail system error|message delivery has failed"
    r"|could not be delivered|couldn't be delivered|not delivered|was not delivered"
    r"|see transcript for details|postmaster notify|notice: mail delivery status"
    r"|delayed mail|warning: (?:message .* delayed|could not send message)"
    r"|message you sent blocked|error sending your mail|returned to sender"
    r"|non remis|non recapitabile|unzustellbar|nicht zustellbar|onbestelbaar|no se puede entregar"
    r"|imposible entregar|olevererbar|kan inte levereras|kunne ikke leveres|não (?:é possível )?entreg"
    r")"
    r"|недоставлен|не доставлен|не удалось доставить|配信(?:不能|エラー|失敗)|送信エラー"
    r"|退信|投递失败|未送达|배달 실패|전달 실패|メールエラー|エラー通知"
)

# Sentences that mail servers write when they return a message. Only counted next to a
# machine-like sender, subject or return path: a member may paste one into a reply.
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
    r"|^\s*(?:final-recipient|diagnostic-code)\s*:"
    r"|returned to (?:the )?sender|message (?:was )?(?:bounced|rejected)"
    r"|\b[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b"
)

_DELAY_SUBJECT = re.compile(
    r"(?i)\bdelay(?:ed)?\b|still being retried|warning: could not send message for past"
    r"|delivery status notification \(delay\)|notification: (?:warning|delayed)"
)
_SOFT_WORDS = re.compile(
    r"(?i)temporar|try again|will (?:be )?retr|still (?:being )?(?:trying|retried)|deferred"
    r"|delayed|not yet been delivered"
)


def _has_null_return_path_header(mail: _Mail) -> bool:
    return any(v.strip().strip("<>").strip() == "" for v in mail.headers.get("return-path", []))


def _is_daemon(mail: _Mail) -> bool:
    local = mail.from_addr.split("@", 1)[0]
    return bool(_DAEMON_LOCAL.match(local) or _DAEMON_NAME.search(mail.from_raw))


def _bounce_verdict(mail: _Mail, null_return_path: bool) -> Verdict | None:
    subject_hit = _BOUNCE_SUBJECT.search(mail.subject)
    body_hit = _BOUNCE_BODY.search(mail.notice)
    failed_header = mail.headers.get("x-failed-recipients")
    daemon = _is_daemon(mail)
    if failed_header:
        reason = "X-Failed-Recipients header"
    elif daemon and (subject_hit or body_hit):
        reason = f"sender {mail.from_addr}; " + (
            f'subject "{subject_hit.group(0)}"' if subject_hit else f'body "{body_hit.group(0)}"'  # type: ignore[union-attr]
        )
    elif _is_oof_subject(mail.subject):
        # An out-of-office also has a null return path and may say "not delivered to me".
        return None
    elif (null_return_path or _is_noreply(mail)) and (subject_hit or body_hit):
        reason = ("null return path; " if null_return_path else f"sender {mail.from_addr}; ") + (
            f'subject "{subject_hit.group(0)}"' if subject_hit else f'body "{body_hit.group(0)}"'  # type: ignore[union-attr]
        )
    elif subject_hit and body_hit and not _is_reply_subject(mail.subject):
        # A bounce relayed by a gateway or forwarded by hand ("Fwd: Returned mail").
        reason = f'subject "{subject_hit.group(0)}"; body "{body_hit.group(0)}"'
    elif subject_hit and _starts_with(subject_hit, mail.subject) and _has_dsn_fields(mail):
        reason = f'subject "{subject_hit.group(0)}"; DSN fields in text'
    else:
        return None
    delayed = bool(_DELAY_SUBJECT.search(mail.subject)) and not _has_dsn_failure(mail)
    recipients = _text_recipients(mail, delayed)
    if delayed:
        return Verdict(Kind.DELIVERY_REPORT, f"delayed delivery warning; {reason}", recipients)
    return Verdict(Kind.BOUNCE, reason, recipients)


_REPLY_PREFIX = re.compile(r"(?i)^\s*(?:re|aw|sv|vs|antw|odp|r|ref|rif|res|回复|答复|返信)\s*:")


def _is_reply_subject(subject: str) -> bool:
    return bool(_REPLY_PREFIX.match(subject))


def _starts_with(match: re.Match[str], subject: str) -> bool:
    return not subject[: match.start()].strip(" -:[]()")


def _has_dsn_fields(mail: _Mail) -> bool:
    return bool(re.search(r"(?im)^\s*final-recipient\s*:", mail.notice))


def _has_dsn_failure(mail: _Mail) -> bool:
    return bool(re.search(r"(?im)^\s*action\s*:\s*failed", mail.notice))


def _text_recipients(mail: _Mail, delayed: bool) -> tuple[Recipient, ...]:
    """Failed recipients of a plain-text bounce, best effort, most reliable source first."""
    action = "delayed" if delayed else "failed"
    # 1. DSN fields pasted into the text (AmazonWorkMail, forwarded DSNs).
    blocks = [r for r in map(_dsn_recipient, _text_field_blocks(mail.notice)) if r and r.address]
    if blocks:
        return tuple(blocks)
    # 2. Exim names them in a header.
    failed = [a for v in mail.headers.get("x-failed-recipients", []) for a in _ADDR_RE.findall(v)]
    found = [(a.lower(), "") for a in failed]
    # 3. The notice text, 4. the To of the returned original.
    found = found or _notice_addresses(mail) or [(a, "") for a in mail.original_to]
    recipients = []
    for address, diagnostic in dict(found).items():
        diagnostic = diagnostic or _diagnostic_near(mail.notice, address)
        status = _status_in(diagnostic) or _status_in(mail.notice)
        if delayed and not status.startswith("4"):
            status = ""
        hard = False if delayed else _is_hard(status, "failed", diagnostic)
        recipients.append(Recipient(address, status, action, diagnostic, hard))
    return tuple(recipients)


# An address on a line of its own ("  kijitora@example.jp", "<a@b>:", "a@b on 1/2/2010"),
# or introduced by the words bounce notices use. Both shapes beat a bare mention.
_ADDRESS_LINE = re.compile(
    rf"(?im)^[ \t]*(?:RCPT TO:?|Recipient:|Failed recipient:|Address:)?[ \t]*<?({_ADDR})>?"
    r"[ \t]*(?::[ \t]*(.*)|[ \t]+on[ \t].*|[ \t]*\(.*\)|[ \t]*,)?[ \t]*$"
)
_ADDRESS_PHRASE = re.compile(
    rf"(?i)(?:delivered to|deliver (?:your message |the mail )?to|message to|mail to|recipient"
    rf"|recipients?:|address(?:ee)?:?|reach|user|mailbox)\b[ \t:]*\(?<?({_ADDR})>?"
)


def _notice_addresses(mail: _Mail) -> list[tuple[str, str]]:
    text = mail.notice
    found: list[tuple[str, str]] = []
    for pattern in (_ADDRESS_LINE, _ADDRESS_PHRASE):
        for match in pattern.finditer(text):
            rest = match.group(2) if pattern is _ADDRESS_LINE else None
            found.append((match.group(1).lower(), (rest or "").strip()))
        if any(_is_candidate(a, mail) for a, _ in found):
            break
    else:
        found = [(a.lower(), "") for a in _ADDR_RE.findall(text)]
    candidates = [(a, d) for a, d in found if _is_candidate(a, mail)]
    # "postmaster@" is usually who to contact, not who failed; unless nobody else is named.
    people = [(a, d) for a, d in candidates if not _DAEMON_LOCAL.match(a.split("@", 1)[0])]
    if people or candidates or mail.original_to:
        return people or candidates
    # Someone who bounced mail to themselves: the failed address is also the notice's To.
    return [(m.group(1).lower(), (m.group(2) or "").strip()) for m in _ADDRESS_LINE.finditer(text)]


def _is_candidate(address: str, mail: _Mail) -> bool:
    return address not in mail.own_addresses


def _diagnostic_near(text: str, address: str) -> str:
    """The few lines after the address: where every bounce format puts its reason."""
    at = text.lower().find(address)
    if at < 0:
        return ""
    lines = text[at + len(address) :].splitlines()[:8]
    kept: list[str] = []
    for line in lines:
        if kept and not line.strip():
            break
        if line.strip():
            kept.append(line.strip(" <>:\t"))
    return " ".join(kept)[:500]


_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#-])([245])[0-5]\d(?=[ -]\S|$)")


def _status_in(text: str) -> str:
    """The RFC 3463 status in a diagnostic; "5.0.0" when only the SMTP code "550" is there."""
    for match in _ENHANCED_STATUS.finditer(text):
        if match.group(1) in "45" or text.lower().lstrip().startswith(match.group(0)):
            return match.group(0)
    match = _REPLY_CODE.search(text)
    return f"{match.group(1)}.0.0" if match and match.group(1) in "45" else ""


# --- Challenge-response ---

_CHALLENGE_HEADER = re.compile(r"challenge|^x-boxbe|^x-spamarrest|^x-tmda|^x-mailblocks|^x-choicemail")
_CHALLENGE_SUBJECT = re.compile(
    r"(?i)please confirm your (?:message|e-?mail|request)|confirm your (?:message|e-?mail)"
    r"|verify your (?:message|e-?mail)|sender verification|verification required"
    r"|(?:message|e-?mail) (?:is )?(?:awaiting|pending|held for) (?:your )?(?:confirmation|verification)"
    r"|spam ?arrest|boxbe|mailblocks|choicemail|request to join .{0,80}guest list"
    r"|challenge[- ]response"
)
_CHALLENGE_BODY = re.compile(
    r"(?i)spam ?arrest|boxbe|mailblocks|choicemail|bluebottle|\btmda\b|challenge[- ]response"
    r"|verify (?:that )?you are (?:a )?(?:human|real person|not a (?:robot|spammer|machine))"
    r"|(?:to|so) (?:have|get|let) your (?:message|e-?mail) (?:be )?delivered"
    r"|added to (?:my|the|our) (?:approved|allowed|white|safe)[ -]?(?:sender)?s?[ -]?list"
    r"|please confirm (?:that )?you (?:are|sent|really)|protect(?:ing)? (?:myself|me) from (?:spam|junk)"
    r"|one[- ]time (?:verification|confirmation)"
)


def _challenge_verdict(mail: _Mail) -> Verdict | None:
    for name in mail.headers:
        if _CHALLENGE_HEADER.search(name):
            return Verdict(Kind.CHALLENGE, f"{name} header")
    subject_hit = _CHALLENGE_SUBJECT.search(mail.subject)
    if subject_hit and not _is_reply_subject(mail.subject):
        return Verdict(Kind.CHALLENGE, f'subject "{subject_hit.group(0)}"')
    body = _unquoted(mail.notice)
    body_hit = _CHALLENGE_BODY.search(body)
    if body_hit and (subject_hit or re.search(r"(?i)https?://\S*(?:confirm|verif|challenge|auth)", body)):
        return Verdict(Kind.CHALLENGE, f'body "{body_hit.group(0)}" with a confirmation link')
    return None


def _unquoted(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


# --- Auto-replies and list mail, from headers and subject ---

_AUTO_HEADERS = (
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
    # Exchange stamps these on mail its agents generate (OOF and inbox-rule replies).
    "x-ms-exchange-generated-message-source",
    "x-ms-exchange-inbox-rules-loop",
)
# Header *names* that mean "a program wrote this" (Discourse's list). X-Auto-Response-Suppress
# is excluded: it is a request not to auto-reply that ordinary Outlook mail carries too.
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
_OOF_SUBJECT = re.compile(
    r"(?i)^\s*(?:\[[^\]]*\]\s*)?(?:"
    r"out of (?:the )?office|out-of-office|\booo\b|away from (?:the |my )?office|on vacation"
    r"|vacation (?:reply|message|notice|response)|i am (?:currently )?(?:out|away)\b"
    r"|auto(?:matic|matisch|matisk|matique)?[- ]?(?:reply|response|answer|responder|antwort|svar)"
    r"|auto\s*:|autoreply|autoresponse|autosvar|automatisk svar|automatisch antwoord"
    r"|afwezig|abwesenheitsnotiz|abwesend|automatische antwort|ich bin (?:nicht im büro|abwesend)"
    r"|au(?:ss|ß)er haus|réponse automatique|reponse automatique|absente? du bureau"
    r"|respuesta automática|respuesta automatica|fuera de la oficina"
    r"|risposta automatica|risposta non al computer|fuori sede|fuori ufficio"
    r"|frånvaro|frånvarande|fravær|automaattinen vastaus|poissa toimistolta"
    r"|resposta automática|resposta automatica|ausência|fora do escritório"
    r"|odpowiedź automatyczna|automatyczna odpowiedź|poza biurem|automatická odpověď"
    r"|automatikus válasz|otomatik yanıt|автоматический ответ|автоответ|αυτόματη απάντηση"
    r"|自動応答|自動返信|不在|自动回复|自動回覆|자동 회신|자동 응답"
    r")"
)
_OOF_SUFFIX = re.compile(
    r"(?i)[\[(]\s*(?:auto[- ]?reply|auto[- ]?response|automatic reply|out of (?:the )?office"
    r"|ooo|abwesenheitsnotiz|absence|autosvar)\s*[\])]"
)


def _header_verdict(mail: _Mail) -> Verdict | None:
    headers = mail.headers
    auto_submitted = _first_word(headers.get("auto-submitted"))
    if auto_submitted and auto_submitted != "no":
        return Verdict(Kind.AUTO_REPLY, f"Auto-Submitted: {auto_submitted}")
    for name in _AUTO_HEADERS:
        value = _first_word(headers.get(name))
        if name in headers and value not in ("no", "false", "0"):
            return Verdict(Kind.AUTO_REPLY, f"{_title(name)}: {value}".rstrip(": "))
    for name in headers:
        if name != "x-auto-response-suppress" and _AUTO_HEADER_NAME.search(name):
            return Verdict(Kind.AUTO_REPLY, f"{_title(name)} header")
    for name in ("precedence", "x-precedence"):
        value = _first_word(headers.get(name))
        if value == "auto_reply":
            return Verdict(Kind.AUTO_REPLY, f"{_title(name)}: {value}")
    subject_hit = _is_oof_subject(mail.subject)
    if subject_hit:
        return Verdict(Kind.AUTO_REPLY, f'out-of-office subject "{subject_hit.group(0).strip()}"')
    for name in ("precedence", "x-precedence"):
        value = _first_word(headers.get(name))
        if value in ("bulk", "junk", "list"):
            return Verdict(Kind.LIST, f"{_title(name)}: {value}")
    for name in _LIST_HEADERS:
        if name in headers:
            return Verdict(Kind.LIST, f"{_title(name)} header")
    loop = _first_word(headers.get("x-loop"))
    if loop in ("yes", "true"):
        return Verdict(Kind.AUTO_REPLY, f"X-Loop: {loop}")
    return None


def _is_oof_subject(subject: str) -> re.Match[str] | None:
    return _OOF_SUBJECT.search(subject) or _OOF_SUFFIX.search(subject)


def _first_word(values: list[str] | None) -> str:
    if not values:
        return ""
    words = values[0].replace(";", " ").replace("(", " ").split()
    return words[0].lower() if words else ""


def _title(name: str) -> str:
    return "-".join(word.capitalize() if word not in ("ms", "fc") else word.upper() for word in name.split("-"))


_NOREPLY_LOCAL = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply|bounces?)(?:[-+_.].*)?$")
_LIST_LOCAL = re.compile(r"^owner-|-(?:owner|request|bounces?)(?:\+.*)?$")


def _is_noreply(mail: _Mail) -> bool:
    return bool(_NOREPLY_LOCAL.match(mail.from_addr.split("@", 1)[0]))


def _sender_verdict(mail: _Mail, null_return_path: bool) -> Verdict | None:
    local = mail.from_addr.split("@", 1)[0]
    if _is_daemon(mail):
        return Verdict(Kind.BOUNCE, f"sender {mail.from_addr}", _text_recipients(mail, False))
    if null_return_path:
        return Verdict(Kind.AUTO_REPLY, "null return path <>")
    if _is_noreply(mail):
        return Verdict(Kind.LIST, f"no-reply sender {mail.from_addr}")
    if _LIST_LOCAL.search(local):
        return Verdict(Kind.LIST, f"list sender {mail.from_addr}")
    return None
