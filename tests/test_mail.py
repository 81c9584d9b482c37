"""Outbound mail: rendered emails against golden files, the outbox and SendGrid transports,
retries, and the at-least-once promise when a worker dies after the provider said yes."""

from __future__ import annotations

import dataclasses
import json
import os
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import db, mail
from app.cycles import queue_requests
from app.mail import TransientSendError
from app.models import Cycle, OutboundMessage
from app.packets import MemberEntry, packet_context
from app.reading.sections import SECTIONS
from app.settings import Settings, configure
from tests.ask_cases import ASK_GOLDEN
from tests.conftest import SendGridStandIn

GOLDEN = Path(__file__).parent / "golden"

# --- golden files --------------------------------------------------------------------------------

GROUP = "Hudson Valley CEO Forum"
REQUEST = {
    "group_name": GROUP,
    "first_name": "Alice",
    "month_label": "December",
    "due_label": "Tue 1 Dec, 17:00 EST",
    "due_short": "Tue 1 Dec",
    "meeting_label": "Thursday 3 December 2026, 08:30–12:30 EST",
    "location": "Beacon Hotel, Main St",
    "facilitator_name": "Dana Whitfield",
    "commitments": [],
    "sections": [{"key": s.key, "title": s.title, "hint": s.hint} for s in SECTIONS],
    "unsubscribe_url": "https://roundtable.example/unsubscribe/signed-token",
}
REMINDER = {**REQUEST, "first_name": "Ben", "is_last": True}
DIGEST = {
    "group_name": GROUP,
    "facilitator_name": "Dana Whitfield",
    "month_label": "December",
    "due_label": "Tue 1 Dec, 17:00 EST",
    "missing": [
        {
            "name": "Carmen Ruiz",
            "email": "carmen@ruizfoods.example",
            "streak": 0,
            "missed_before": 2,
        }
    ],
    "replied": [
        {"name": "Alice Chen", "email": "alice@northwind.example", "streak": 4, "missed_before": 0}
    ],
    "excused": [
        {"name": "Ben Okafor", "email": "ben@okafor.example", "streak": 0, "missed_before": 0}
    ],
}
RECEIPT = {
    "group_name": GROUP,
    "first_name": "Alice",
    "month_label": "December",
    "version": 2,
    "is_skip": False,
    "changed": "Replaced Wins; kept both the earlier and the new text of Asks.",
    "moved_from_month": "November",
    "ratings": {"business": 7, "personal": 6, "family": 8},
    "captured": [
        {"title": "Wins", "text": "Closed the Series A.\nHired a VP of Sales.", "is_flagged": False},
        # Member text is untrusted: the HTML golden shows it escaped.
        {"title": "Asks", "text": "An intro to a CFO who has done R&D tax credits <under $50M>.\n\nA banker.",
         "is_flagged": True},
    ],
    "attachments": ["Q4 plan.pdf"],
}
SKIP_RECEIPT = {
    "group_name": GROUP,
    "first_name": "Ben",
    "month_label": "December",
    "version": 1,
    "is_skip": True,
    "ratings": {},
    "captured": [],
    "attachments": [],
}
NOTICE = {"subject": "Quick question about the retreat", "group_name": "Roundtable"}
HELD_NOTICE = {
    "group_name": GROUP,
    "group_slug": "hudson",
    "facilitator_name": "Dana Whitfield",
    "member_name": "Alice Chen",
    "member_email": "alice@northwind.example",
    "sender": "assistant@northwind.example",
    "subject": "Re: Your December update for Hudson Valley CEO Forum",
    "inbound_id": 42,
    "reason": "it came from assistant@northwind.example, which is not Alice Chen's address or one of their registered alternates",
}
BOUNCE_NOTICE = {
    "group_name": GROUP,
    "group_slug": "hudson",
    "facilitator_name": "Dana Whitfield",
    "member_name": "Carmen Ruiz",
    "member_email": "carmen@ruizfoods.example",
    "reason": "5.1.1 550 5.1.1 The email account that you tried to reach does not exist",
}


def packet_email_context() -> dict[str, Any]:
    entries = [
        MemberEntry(
            name="Alice Chen",
            company="Northwind Robotics",
            status="replied",
            replied_label="Thu 19 Nov, 10:15 EST",
            ratings={"business": 4, "personal": 7, "family": 8},
            texts={
                "wins": "Closed the Series A.",
                "topic": "Priority A: whether to open a second plant in Ohio.",
                "asks": "An intro to a good plant manager.",
                "commitments": "Hire a CFO: done.",
            },
            topic_priority="A",
            commitments=["Hire a CFO"],
            attachments=["Q4 plan.pdf"],
            version=2,
            flagged=["asks"],
            notes=["Thanks, looks right!"],
            changed="Replaced Wins; kept both the earlier and the new text of Asks.",
        ),
        MemberEntry(name="Ben Okafor", company="Okafor Logistics", status="excused"),
        MemberEntry(
            name="Carmen Ruiz",
            company="Ruiz Foods",
            status="missing",
            commitments=["Price the new line"],
        ),
    ]
    p = packet_context(
        group_name=GROUP,
        month="December",
        meeting="Thursday 3 December 2026, 08:30–12:30 EST",
        location="Beacon Hotel, Main St",
        generated="Tue 1 Dec, 17:05 EST",
        version=2,
        members=entries,
    )
    return {
        "group_name": GROUP,
        "first_name": "Dana",
        "month_label": "December",
        "meeting_label": p["meeting_label"],
        "version": 2,
        "packet_id": 7,
        "pdf_name": "hudson-valley-ceo-forum-2026-12-03-v2.pdf",
        "p": p,
        "files": [
            {"id": 1, "member": "Alice Chen", "filename": "Q4 plan.pdf", "size_label": "1.2 MB", "is_kept": True,
             "is_attached": True, "url": None},
            {"id": 2, "member": "Alice Chen", "filename": "Site survey.mp4", "size_label": "9.4 MB", "is_kept": True,
             "is_attached": False, "url": "https://roundtable.example/files/Mg.signed-link"},
            {"id": 3, "member": "Alice Chen", "filename": "Plant tour.mov", "size_label": "48.0 MB", "is_kept": False,
             "is_attached": False, "url": None},
        ],
        "file_link_days": 30,
    }


GOLDEN_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    **ASK_GOLDEN,  # app/asks: tests/ask_cases.py
    "update_request": ("update_request", REQUEST),
    "update_request_with_commitments": (
        "update_request",
        {**REQUEST, "commitments": ["Hire a CFO", "Sign the Ohio lease", "Take a week off"]},
    ),
    "reminder_last": ("reminder", REMINDER),
    "digest": ("digest", DIGEST),
    "receipt": ("receipt", RECEIPT),
    "receipt_skip": ("receipt", SKIP_RECEIPT),
    "notice": ("notice", NOTICE),
    "held_notice": ("held_notice", HELD_NOTICE),
    "question_notice": (
        "question_notice",
        {"group_name": GROUP, "facilitator_name": "Dana Whitfield", "member_name": "Alice Chen",
         "member_email": "alice@northwind.example", "month_label": "December",
         "question": "Can I bring a guest on Thursday? She runs <our> Ohio plant."},
    ),
    "bounce_notice": ("bounce_notice", BOUNCE_NOTICE),
    "packet": ("packet", packet_email_context()),
    "packet_preview": (
        "packet_preview",
        {**packet_email_context(), "deadline_label": "Tue 24 Nov, 17:00 EST", "replied": 2, "asked": 3},
    ),
}


def check_golden(path: Path, actual: str) -> None:
    """Compare with the golden file; UPDATE_GOLDEN=1 rewrites it instead (review the diff)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), (
        f"{path.name} is missing: run with UPDATE_GOLDEN=1 and review the new file"
    )
    assert actual == path.read_bytes().decode("utf-8"), (
        f"{path.name} changed (UPDATE_GOLDEN=1 to accept)"
    )


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_rendered_email_matches_golden_files(name: str) -> None:
    kind, context = GOLDEN_CASES[name]
    # Through JSON, as the context is stored on the outbound row and read back by deliver().
    rendered = mail.render(kind, json.loads(json.dumps(context)))
    check_golden(GOLDEN / f"{name}.txt", f"Subject: {rendered.subject}\n\n{rendered.text}")
    check_golden(GOLDEN / f"{name}.html", rendered.html)


def test_html_escapes_member_text_and_text_keeps_it() -> None:
    rendered = mail.render("receipt", RECEIPT)
    assert "R&amp;D tax credits &lt;under $50M&gt;" in rendered.html
    assert "<under $50M>" not in rendered.html
    assert "R&D tax credits <under $50M>" in rendered.text


# --- helpers -------------------------------------------------------------------------------------


def deliver(settings: Settings, outbound_id: int) -> bool:
    """Deliver in a session of its own, as the send job does."""
    with db.session_scope(settings.database_url) as session:
        return mail.deliver(session, settings, outbound_id)


def load(settings: Settings, outbound_id: int) -> OutboundMessage:
    """The row as committed, read in a fresh session."""
    with db.session_scope(settings.database_url) as session:
        return session.get_one(OutboundMessage, outbound_id)


def queue_all_requests(session: Session, settings: Settings, cycle: Cycle) -> list[int]:
    ids = queue_requests(session, settings, cycle)
    session.commit()
    return ids


def tokens_by_email(cycle: Cycle) -> dict[str, str]:
    return {request.member.email: request.token for request in cycle.requests}


def read_eml(path: Path) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def outbox_files(settings: Settings) -> list[Path]:
    return sorted(Path(settings.outbox_dir).glob("*.eml"))


# --- the outbox transport ------------------------------------------------------------------------


def test_outbox_writes_one_email_per_member_with_their_own_reply_address(
    session: Session, settings: Settings, cycle: Cycle
) -> None:
    ids = queue_all_requests(session, settings, cycle)
    assert len(ids) == 3
    assert [deliver(settings, outbound_id) for outbound_id in ids] == [True, True, True]

    files = outbox_files(settings)
    assert len(files) == 3
    tokens = tokens_by_email(cycle)
    rows = {row.to_email: row for row in (load(settings, outbound_id) for outbound_id in ids)}
    local = ZoneInfo(cycle.group.timezone)
    month = cycle.meeting_starts_at.astimezone(local).strftime("%B")
    due = cycle.deadline_at.astimezone(local).strftime("%a %-d %b")
    recipients = []
    for path in files:
        message = read_eml(path)
        [to] = message["To"].addresses
        recipients.append(to.addr_spec)
        row = rows[to.addr_spec]
        assert message["Reply-To"] == f"reply+{tokens[to.addr_spec]}@in.forum.example"
        assert message["Message-ID"] == row.message_id
        assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
        assert message["Auto-Submitted"] is None  # a request wants an answer
        assert message["Subject"] == f"Your {month} update for Hudson Valley CEO Forum — due {due}"
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert text is not None and html is not None
        first_name = to.display_name.split()[0]
        assert text.get_content().startswith(f"Hi {first_name},")
        assert f"Hi {first_name}, your {month} update is due" in html.get_content()
        assert row.status == "sent" and row.attempts == 1 and row.provider_message_id == path.name
    assert sorted(recipients) == sorted(tokens)
    assert len(set(tokens.values())) == 3


def test_outbox_delivering_twice_sends_nothing_twice(
    session: Session, settings: Settings, cycle: Cycle
) -> None:
    ids = queue_all_requests(session, settings, cycle)
    for outbound_id in ids:
        deliver(settings, outbound_id)
    files = {path: path.read_bytes() for path in outbox_files(settings)}
    sent = [load(settings, outbound_id) for outbound_id in ids]

    assert [deliver(settings, outbound_id) for outbound_id in ids] == [False, False, False]

    assert {path: path.read_bytes() for path in outbox_files(settings)} == files
    again = [load(settings, outbound_id) for outbound_id in ids]
    assert [(r.status, r.attempts, r.sent_at) for r in again] == [
        (r.status, r.attempts, r.sent_at) for r in sent
    ]


def test_queue_requests_twice_adds_no_rows(
    session: Session, settings: Settings, cycle: Cycle
) -> None:
    assert len(queue_all_requests(session, settings, cycle)) == 3
    assert queue_all_requests(session, settings, cycle) == []
    assert session.scalar(select(func.count()).select_from(OutboundMessage)) == 3


# --- the SendGrid transport ----------------------------------------------------------------------


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_sendgrid_one_call_per_member_with_our_ids(
    session: Session, sendgrid_settings: Settings, sendgrid_api: SendGridStandIn, cycle: Cycle
) -> None:
    ids = queue_all_requests(session, sendgrid_settings, cycle)
    for outbound_id in ids:
        assert deliver(sendgrid_settings, outbound_id) is True

    assert len(sendgrid_api.calls) == 3
    tokens = tokens_by_email(cycle)
    for n, (call, outbound_id) in enumerate(zip(sendgrid_api.calls, ids), start=1):
        row = load(sendgrid_settings, outbound_id)
        body = call.body
        assert call.path == "/v3/mail/send"
        assert lower_keys(call.headers)["authorization"] == "Bearer SG.test-key"
        # One personalization with one recipient: members never see each other.
        assert body["personalizations"] == [{"to": [{"email": row.to_email, "name": row.to_name}]}]
        assert body["from"] == {"email": "roundtable@forum.example", "name": "Roundtable"}
        assert body["reply_to"] == {"email": f"reply+{tokens[row.to_email]}@in.forum.example"}
        assert body["headers"]["Message-ID"] == row.message_id
        assert body["headers"]["X-Auto-Response-Suppress"] == "OOF, AutoReply"
        assert "Auto-Submitted" not in body["headers"]
        assert body["custom_args"] == {"outbound_id": str(row.id)}
        assert body["categories"] == ["update_request"]
        assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
        assert row.status == "sent"
        assert row.provider_message_id == f"sg-{n}"  # from the X-Message-Id response header


def test_sendgrid_receipt_is_marked_auto_submitted_and_threaded(
    session: Session, sendgrid_settings: Settings, sendgrid_api: SendGridStandIn, cycle: Cycle
) -> None:
    [request_id, *_] = queue_all_requests(session, sendgrid_settings, cycle)
    request_row = session.get_one(OutboundMessage, request_id)
    receipt = mail.queue_email(
        session,
        sendgrid_settings,
        kind="receipt",
        dedupe_key="receipt:test",
        to_email=request_row.to_email,
        to_name=request_row.to_name,
        reply_to=request_row.reply_to,
        in_reply_to=request_row.message_id,
        context=RECEIPT,
    )
    assert receipt is not None
    session.commit()

    assert deliver(sendgrid_settings, receipt.id) is True

    [call] = sendgrid_api.calls
    assert call.body["headers"]["Auto-Submitted"] == "auto-generated"
    assert call.body["headers"]["In-Reply-To"] == request_row.message_id
    assert call.body["headers"]["Message-ID"] == receipt.message_id
    assert call.body["categories"] == ["receipt"]
    assert call.body["subject"] == "Got it: your December update for Hudson Valley CEO Forum"


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500])
def test_transient_error_keeps_the_row_queued_and_the_retry_reuses_the_message_id(
    session: Session,
    sendgrid_settings: Settings,
    sendgrid_api: SendGridStandIn,
    cycle: Cycle,
    status: int,
) -> None:
    [outbound_id, *_] = queue_all_requests(session, sendgrid_settings, cycle)
    sendgrid_api.statuses.append(status)

    with pytest.raises(TransientSendError, match=f"SendGrid {status}"):
        deliver(sendgrid_settings, outbound_id)
    row = load(sendgrid_settings, outbound_id)
    assert (row.status, row.attempts, row.sent_at) == ("queued", 1, None)
    assert row.last_error is not None and str(status) in row.last_error

    assert deliver(sendgrid_settings, outbound_id) is True
    row = load(sendgrid_settings, outbound_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert row.provider_message_id == "sg-2"
    assert [call.body["headers"]["Message-ID"] for call in sendgrid_api.calls] == [
        row.message_id
    ] * 2


@pytest.mark.parametrize("status", [400, 401])
def test_permanent_error_fails_the_row_at_once(
    session: Session,
    sendgrid_settings: Settings,
    sendgrid_api: SendGridStandIn,
    cycle: Cycle,
    status: int,
) -> None:
    [outbound_id, *_] = queue_all_requests(session, sendgrid_settings, cycle)
    sendgrid_api.statuses.append(status)

    assert deliver(sendgrid_settings, outbound_id) is False
    row = load(sendgrid_settings, outbound_id)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error is not None and f"SendGrid {status}" in row.last_error

    assert deliver(sendgrid_settings, outbound_id) is False  # no retry of a refused email
    assert len(sendgrid_api.calls) == 1
    assert load(sendgrid_settings, outbound_id).status == "failed"


def test_timeout_is_transient(
    session: Session,
    sendgrid_settings: Settings,
    sendgrid_api: SendGridStandIn,
    cycle: Cycle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    impatient = dataclasses.replace(sendgrid_settings, sendgrid_timeout_s=0.3)
    configure(impatient)
    [outbound_id, *_] = queue_all_requests(session, impatient, cycle)
    monkeypatch.setattr(sendgrid_api, "delay_s", 1.0)

    with pytest.raises(TransientSendError, match="unreachable"):
        deliver(impatient, outbound_id)
    row = load(impatient, outbound_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error is not None and "unreachable" in row.last_error

    monkeypatch.setattr(sendgrid_api, "delay_s", 0.0)
    assert deliver(impatient, outbound_id) is True
    assert load(impatient, outbound_id).status == "sent"


# --- at least once ---------------------------------------------------------------------------------


class WorkerDied(Exception):
    """Stands for the process dying after SendGrid's 202 and before our commit."""


def test_worker_dying_after_the_send_means_a_second_send_with_the_same_message_id(
    session: Session,
    sendgrid_settings: Settings,
    sendgrid_api: SendGridStandIn,
    cycle: Cycle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [outbound_id, *_] = queue_all_requests(session, sendgrid_settings, cycle)

    def die() -> None:
        raise WorkerDied

    with pytest.raises(WorkerDied), db.session_scope(sendgrid_settings.database_url) as doomed:
        monkeypatch.setattr(doomed, "commit", die)  # the commit after SendGrid's 202 never happens
        mail.deliver(doomed, sendgrid_settings, outbound_id)
    assert len(sendgrid_api.calls) == 1  # SendGrid has it ...
    assert load(sendgrid_settings, outbound_id).status == "queued"  # ... our commit never happened

    assert deliver(sendgrid_settings, outbound_id) is True

    row = load(sendgrid_settings, outbound_id)
    assert (row.status, row.provider_message_id) == ("sent", "sg-2")
    # Sent twice, never lost; the same Message-ID lets mail clients show it once.
    assert [call.body["headers"]["Message-ID"] for call in sendgrid_api.calls] == [
        row.message_id
    ] * 2
    assert deliver(sendgrid_settings, outbound_id) is False
    assert len(sendgrid_api.calls) == 2


def test_a_send_that_keeps_failing_is_given_up_after_max_attempts(session, sendgrid_settings, sendgrid_api, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.cycles import queue_requests
    from app.mail import MAX_ATTEMPTS, TransientSendError, deliver
    from app.models import OutboundMessage

    queue_requests(session, sendgrid_settings, cycle)
    session.commit()
    row_id = session.scalars(select(OutboundMessage.id)).first()
    sendgrid_api.statuses = [503] * MAX_ATTEMPTS
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(TransientSendError):
            deliver(session, sendgrid_settings, row_id)
    assert deliver(session, sendgrid_settings, row_id) is False
    row = session.get_one(OutboundMessage, row_id)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert row.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert deliver(session, sendgrid_settings, row_id) is False
    assert len(sendgrid_api.calls) == MAX_ATTEMPTS
