"""Headers mail clients read as structure go out as plain ASCII, folded only at spaces, in every
kind of email we send and through both transports (the outbox's bytes, SendGrid's JSON)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app import mail
from app.addresses import new_token
from app.models import OutboundMessage
from app.settings import Settings
from tests.conftest import SendGridStandIn
from tests.test_mail import GOLDEN_CASES as MAIL_CASES
from tests.test_meeting_golden import CASES as MEETING_CASES

GOLDEN_CASES = {**MAIL_CASES, **MEETING_CASES}

TEMPLATES = Path(__file__).parent.parent / "email_templates"
KINDS = sorted(p.name.removesuffix(".subject.txt") for p in TEMPLATES.glob("*.subject.txt"))
# A Message-ID as Gmail writes them: with our header name it is longer than a 78-character line.
GMAIL_ID = "<CAF=yY8x3kz+VQn_0rGfC7yS1N5wT9uHq2pLmXe4bDjK6oA8sW@mail.gmail.com>"
STRUCTURED = ("Message-ID", "In-Reply-To", "References", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post")


def context_for(kind: str) -> dict[str, Any]:
    return next(context for name, (k, context) in sorted(GOLDEN_CASES.items()) if k == kind)


def test_every_kind_of_email_has_a_case() -> None:
    assert {kind for kind, _ in GOLDEN_CASES.values()} == set(KINDS)
    assert len(KINDS) >= 9


def queue_every_kind(session: Session, settings: Settings) -> list[OutboundMessage]:
    rows = []
    for kind in KINDS:
        token = new_token()
        context = context_for(kind)
        if "unsubscribe_url" in context:  # a real signed link: far longer than a header line
            context = {**context, "unsubscribe_url": mail.unsubscribe_url(settings, token)}
        row = mail.queue_email(
            session,
            settings,
            kind=kind,
            dedupe_key=f"headers:{kind}",
            to_email="emile.zola@northwind.example",
            to_name="Émile Zola",  # a display name may be encoded; the headers below may not
            context=context,
            reply_to=mail.reply_address(settings, token),
            in_reply_to=GMAIL_ID,
        )
        assert row is not None
        rows.append(row)
    session.commit()
    return rows


def raw_headers(eml: bytes) -> dict[str, str]:
    """Each header's raw value exactly as on the wire, continuation lines included."""
    head = eml.split(b"\n\n", 1)[0].decode("ascii")  # any non-ASCII byte in the head fails here
    headers: dict[str, str] = {}
    for name, value in re.findall(r"^([!-9;-~]+):[ \t]?(.*(?:\n[ \t].*)*)", head, re.MULTILINE):
        assert name not in headers, f"{name} twice"
        headers[name] = value
    return headers


def check_plain(name: str, raw: str, expected: str) -> None:
    assert "=?" not in raw, f"{name} is RFC 2047-encoded: {raw!r}"
    assert raw.isascii() and "\r" not in raw.replace("\r\n", "\n")
    for line in raw.split("\n"):
        assert len(line) <= 998
    # Folded only at whitespace: taking the line breaks out gives the value back, unbroken.
    assert re.sub(r"\r?\n(?=[ \t])", "", raw).strip(" \t") == expected, name


def test_outbox_bytes_carry_structured_headers_plain(session: Session, settings: Settings) -> None:
    rows = queue_every_kind(session, settings)
    for row in rows:
        assert mail.deliver(session, settings, row.id) is True, row.kind
        eml = (Path(settings.outbox_dir) / row.provider_message_id).read_bytes()
        headers = raw_headers(eml)
        check_plain("Message-ID", headers["Message-ID"], row.message_id)
        check_plain("In-Reply-To", headers["In-Reply-To"], GMAIL_ID)
        check_plain("References", headers["References"], GMAIL_ID)
        check_plain("Reply-To", headers["Reply-To"], row.reply_to)
        if "unsubscribe_url" in row.context:
            assert len(f"List-Unsubscribe: <{row.context['unsubscribe_url']}>") > 78  # would have been folded
            check_plain("List-Unsubscribe", headers["List-Unsubscribe"], f"<{row.context['unsubscribe_url']}>")
            check_plain("List-Unsubscribe-Post", headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        else:
            assert "List-Unsubscribe" not in headers
        assert "=?utf-8?" in headers["To"]  # the name may be encoded: it is a phrase, not structure
    kinds_with_unsubscribe = {row.kind for row in rows if "unsubscribe_url" in row.context}
    assert kinds_with_unsubscribe == {"reminder", "update_request"}


def test_sendgrid_json_carries_structured_headers_plain(
    session: Session, sendgrid_settings: Settings, sendgrid_api: SendGridStandIn
) -> None:
    rows = queue_every_kind(session, sendgrid_settings)
    for row in rows:
        assert mail.deliver(session, sendgrid_settings, row.id) is True, row.kind
    assert len(sendgrid_api.calls) == len(KINDS)
    for row, call in zip(rows, sendgrid_api.calls):
        headers = call.body["headers"]
        for name, value in headers.items():
            assert value.isascii() and "\n" not in value and "=?" not in value, (row.kind, name, value)
        assert headers["Message-ID"] == row.message_id
        assert headers["In-Reply-To"] == headers["References"] == GMAIL_ID
        assert call.body["reply_to"] == {"email": row.reply_to}
        if "unsubscribe_url" in row.context:
            assert headers["List-Unsubscribe"] == f"<{row.context['unsubscribe_url']}>"
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("foreign", ["<not a msg id>", "no-brackets@example.org", "<ünïcode@example.org>"])
def test_a_malformed_message_id_we_answer_is_left_out_not_encoded(
    session: Session, settings: Settings, foreign: str
) -> None:
    row = mail.queue_email(
        session, settings, kind="notice", dedupe_key="notice:x", to_email="someone@elsewhere.example",
        context=context_for("notice"), in_reply_to=foreign,
    )
    assert row is not None
    session.commit()
    assert mail.deliver(session, settings, row.id) is True
    headers = raw_headers((Path(settings.outbox_dir) / row.provider_message_id).read_bytes())
    assert "In-Reply-To" not in headers and "References" not in headers
    check_plain("Message-ID", headers["Message-ID"], row.message_id)


def test_fold_at_spaces() -> None:
    ids = " ".join(f"<reply.{n:02d}.0123456789abcdef@forum.example>" for n in range(4))
    folded = mail.fold_at_spaces("References", ids)
    assert folded.replace("\n ", " ") == ids
    assert all(len(line) <= 78 for line in f"References: {folded}".split("\n"))
    url = "<https://roundtable.example/unsubscribe/" + "x" * 120 + ">"
    assert mail.fold_at_spaces("List-Unsubscribe", url) == url  # one word: kept whole
    with pytest.raises(ValueError, match="printable ASCII"):
        mail.fold_at_spaces("Message-ID", "<a\r\nBcc: x@y.org>")


def test_a_reply_to_no_header_can_carry_plain_is_left_out_not_encoded(session: Session, settings: Settings) -> None:
    # The facilitator's answer to a member's question goes to the member's own address, which
    # may be internationalized: the notice still goes, without a Reply-To (its text names them).
    row = mail.queue_email(
        session, settings, kind="question_notice", dedupe_key="question:x", to_email="dana@facilitation.example",
        context=context_for("question_notice"), reply_to="josé@exämple.com",
    )
    assert row is not None
    session.commit()
    assert mail.deliver(session, settings, row.id) is True
    headers = raw_headers((Path(settings.outbox_dir) / row.provider_message_id).read_bytes())
    assert "Reply-To" not in headers
