"""Emails and webhook posts written for the tests, byte by byte where it matters."""

from __future__ import annotations

import json
import secrets
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any

FORUM = "in.forum.example"


def reply(
    token: str | None,
    body: str,
    *,
    sender: tuple[str, str] = ("Alice Chen", "alice@northwind.example"),
    subject: str = "Re: Your December update for Hudson Valley CEO Forum",
    message_id: str | None = None,
    html: str | None = None,
    cc: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr(sender)
    message["To"] = f"Roundtable <reply+{token}@{FORUM}>" if token else f"Roundtable <hello@{FORUM}>"
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = "Thu, 19 Nov 2026 10:15:00 -0500"
    message["Message-ID"] = message_id or f"<{secrets.token_hex(8)}@mail.example>"
    for name, value in (headers or {}).items():
        message[name] = value
    if html is not None and body:
        message.set_content(body)
        message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body)
    return message


def multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart/form-data body as SendGrid posts it. Values: str, bytes, or
    (filename, bytes, content type) for file parts. Bytes go on the wire untouched."""
    boundary = "xYzZY" + secrets.token_hex(6)
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            filename, data, content_type = value
            chunks.append(
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n".encode()
            )
        else:
            data = value.encode() if isinstance(value, str) else value
            chunks.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        chunks.append(data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def raw_mode(
    message: EmailMessage | bytes, envelope_to: list[str] | None = None, *, auth: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """A raw-mode post: the whole MIME message in the `email` field. `auth` overrides SendGrid's
    authentication fields (`SPF`, `dkim`)."""
    raw = message if isinstance(message, bytes) else bytes(message)
    if envelope_to is None and not isinstance(message, bytes):
        envelope_to = [parseaddr(str(message["To"]))[1]]
    parsed = message_from_bytes(raw) if isinstance(message, bytes) else message
    sender = parseaddr(str(parsed["From"] or ""))[1]
    return multipart(
        {
            "envelope": json.dumps({"to": envelope_to or [], "from": sender}),
            "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
            "SPF": "pass",
            **(auth or {}),
            "email": raw,
        }
    )


def parsed_mode(
    message: EmailMessage,
    *,
    text_charset: str = "UTF-8",
    attachments: list[tuple[str, bytes, str]] | None = None,
    envelope_to: list[str] | None = None,
    auth: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """A default-mode post: headers, text, html and attachments in separate fields."""
    fields: dict[str, Any] = {
        "headers": "".join(f"{k}: {v}\n" for k, v in message.items() if not k.lower().startswith("content-")),
        "from": str(message["From"]),
        "to": str(message["To"]),
        "subject": str(message["Subject"]),
        "envelope": json.dumps(
            {"to": envelope_to or [parseaddr(str(message["To"]))[1]], "from": parseaddr(str(message["From"]))[1]}
        ),
        "SPF": "pass",
        **(auth or {}),
    }
    charsets = {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "headers": "UTF-8"}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            key = "html" if part.get_content_subtype() == "html" else "text"
            fields[key] = part.get_content().encode(text_charset)
            charsets[key] = text_charset
    info = {}
    for n, (filename, data, content_type) in enumerate(attachments or [], start=1):
        fields[f"attachment{n}"] = (filename, data, content_type)
        info[f"attachment{n}"] = {"filename": filename, "type": content_type}
    fields["attachments"] = str(len(attachments or []))
    if info:
        fields["attachment-info"] = json.dumps(info)
    fields["charsets"] = json.dumps(charsets)
    return multipart(fields)
