"""Reading a reply with the request it answers: our own words found wherever the client put them.

The request is the real `update_request` email rendered from a context, as the tick renders it;
the replies are written here in the shapes mail clients give them (no corpus is copied).
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import select

from app import mail
from app.models import OutboundMessage, Update
from app.reading.message import read_message, sent_request, with_request
from app.reading.request import SentRequest, mark_ours
from app.reading.sections import SECTIONS
from app.reading.trimming import html_to_text
from tests.mails import raw_mode, reply
from tests.test_replies import requests_by_email
from tests.test_webhook import post

CONTEXT = {
    "group_name": "Hudson Valley CEO Forum",
    "first_name": "Alice",
    "month_label": "December",
    "due_label": "Tue 1 Dec, 17:00 EST",
    "due_short": "Tue 1 Dec",
    "meeting_label": "Thursday 3 December 2026, 08:30–12:30 EST",
    "location": "Beacon Hotel, Main St",
    "facilitator_name": "Dana Whitfield",
    "commitments": ["Hire a controller", "Renew the bank line with First County"],
    "sections": [{"key": s.key, "title": s.title, "hint": s.hint} for s in SECTIONS],
    "unsubscribe_url": "https://roundtable.example/unsubscribe/signed-token",
}


@pytest.fixture(scope="module")
def request_sent() -> SentRequest:
    rendered = mail.render("update_request", CONTEXT)
    return SentRequest(text=rendered.text, html_text=html_to_text(rendered.html))


def _message(body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Chen <alice@northwind.example>"
    message["To"] = "reply+0123456789abcdef0123456789abcdef@in.forum.example"
    message["Subject"] = "RE: Your December update for Hudson Valley CEO Forum"
    message.set_content(body)
    return bytes(message)


def _unquoted_original(request: SentRequest, answers: dict[str, str]) -> str:
    """Outlook's reply: a From:/Sent: block, then our request's text unquoted, the member's
    answers typed under our headings (keys are heading lines of the text alternative)."""
    lines = [
        "Answers below in blue.",
        "",
        "From: Roundtable <roundtable@forum.example>",
        "Sent: Monday, November 16, 2026 9:00 AM",
        "To: Alice Chen <alice@northwind.example>",
        "Subject: Your December update for Hudson Valley CEO Forum",
        "",
    ]
    for line in request.text.splitlines():
        lines.append(line)
        if line in answers:
            lines.append(answers[line])
    return "\n".join(lines)


def test_answers_typed_into_an_unquoted_original_are_kept_and_our_words_are_not(request_sent) -> None:  # type: ignore[no-untyped-def]
    body = _unquoted_original(
        request_sent,
        {
            "WINS": "Closed the Dutchess County contract.",
            "- Hire a controller": "Done, she starts Monday.",
            "ASKS": "An intro to a food-safety auditor.",
        },
    )
    without = read_message(_message(body))
    assert "Closed the Dutchess County contract." not in without.text  # cut at the From: block
    reading = read_message(_message(body), request=request_sent)
    texts = reading.sections["texts"]
    assert texts["wins"] == "Closed the Dutchess County contract."
    assert "Done, she starts Monday." in texts["commitments"]
    assert texts["asks"] == "An intro to a food-safety auditor."
    everything = reading.text + " ".join(texts.values())
    for ours in ("What went well since we last met", "Reply above this line", "Beacon Hotel", "facilitated by"):
        assert ours not in everything


def test_ratings_typed_inside_our_quote_are_the_members(request_sent) -> None:  # type: ignore[no-untyped-def]
    quoted = []
    for line in request_sent.text.splitlines():
        if line == "Business:":
            line = "Business: 6"
        if line == "Family:":
            line = "Family: 8"
        quoted.append(f"> {line}" if line.strip() else ">")
    body = "Numbers typed next to your labels.\n\nOn Mon, Nov 16, 2026 at 9:00 AM Roundtable <roundtable@forum.example> wrote:\n" + "\n".join(quoted)
    assert read_message(_message(body)).sections["ratings"] == {}
    reading = read_message(_message(body), request=request_sent)
    assert reading.sections["ratings"] == {"business": 6, "family": 8}


def test_a_members_own_headings_and_table_are_not_taken_for_ours(request_sent) -> None:  # type: ignore[no-untyped-def]
    body = "Business | Personal | Family\n7 | 6 | 8\n\nWins\nShipped v2.\n\nChallenges\nHiring."
    marked, count = mark_ours(body, request_sent)
    assert count == 0 and marked == body
    assert read_message(_message(body), request=request_sent).sections["ratings"] == {"business": 7, "personal": 6, "family": 8}


def test_a_forwarded_request_reads_like_a_reply(request_sent) -> None:  # type: ignore[no-untyped-def]
    body = (
        "Hit forward by mistake.\n\nWINS: two new clients.\n\n"
        "---------- Forwarded message ---------\nFrom: Roundtable <roundtable@forum.example>\n"
        "Date: Mon, Nov 16, 2026 at 9:00 AM\nSubject: Your December update\nTo: Alice Chen <alice@northwind.example>\n\n"
        + request_sent.text
    )
    reading = read_message(_message(body), request=request_sent)
    assert reading.sections["texts"]["wins"] == "two new clients."
    assert "Reply SKIP" not in reading.text and "Forwarded message" not in reading.text


def test_with_request_reads_again_without_parsing_and_sent_request_reads_an_eml(request_sent) -> None:  # type: ignore[no-untyped-def]
    rendered = mail.render("update_request", CONTEXT)
    sent = EmailMessage()
    sent["From"] = "Roundtable <roundtable@forum.example>"
    sent.set_content(rendered.text)
    sent.add_alternative(rendered.html, subtype="html")
    from_eml = sent_request(bytes(sent))
    assert "ASKS" in from_eml.text and "Introductions, people" in from_eml.html_text
    body = _unquoted_original(request_sent, {"WINS": "Closed the Dutchess County contract."})
    first = read_message(_message(body))
    assert with_request(first, from_eml).sections == read_message(_message(body), request=from_eml).sections


def test_the_inbound_job_reads_with_the_request_we_sent(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    sent = session.scalar(select(OutboundMessage).where(OutboundMessage.dedupe_key == f"request:{cycle.id}:{alice.member_id}"))
    rendered = mail.render(sent.kind, sent.context)
    request = SentRequest(text=rendered.text, html_text=html_to_text(rendered.html))
    body = _unquoted_original(request, {"WINS": "Closed the Dutchess County contract.", "ASKS": "A food-safety auditor."})
    post(client, raw_mode(reply(alice.token, body)))
    update = session.scalars(select(Update)).one()
    assert update.sections["texts"]["wins"] == "Closed the Dutchess County contract."
    assert update.sections["texts"]["asks"] == "A food-safety auditor."
    assert "What went well" not in str(update.sections)


def test_a_request_row_that_no_longer_renders_is_read_without_it(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    sent = session.scalar(select(OutboundMessage).where(OutboundMessage.dedupe_key == f"request:{cycle.id}:{alice.member_id}"))
    sent.context = {"first_name": "Alice"}  # as if rendered by an older template
    session.commit()
    post(client, raw_mode(reply(alice.token, "WINS\nShipped v2.")))
    update = session.scalars(select(Update)).one()
    assert update.sections["texts"]["wins"] == "Shipped v2."
