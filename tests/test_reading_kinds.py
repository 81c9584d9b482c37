"""Kinds of mail written elsewhere (issue 12): each test is one kind of mail, not one fixture."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

from app import mail
from app.cli import main  # noqa: F401 - the parse command under test, through the `run` fixture
from app.reading.message import WIDEST_CUT_FLAG, read_message
from app.reading.trimming import new_words
from tests.test_cli import run  # noqa: F401 - the fixture
from tests.test_reading_request import CONTEXT


def _message(body: str, sender: str = "Alice Chen <alice@northwind.example>") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "reply+0123456789abcdef0123456789abcdef@in.forum.example"
    message["Subject"] = "Re: Your December update"
    message.set_content(body)
    return bytes(message)


def test_a_signature_led_by_name_and_title_and_a_legal_notice_go() -> None:
    body = (
        "WINS\nSigned the Ontario distributor.\n\nMerci,\nGeneviève\n\n"
        "Pieter van Dijk\nAlgemeen directeur\nVan Dijk Kassenbouw B.V.\nT +31 174 555 012 | M +31 6 5555 0123\n\n"
        "WIRE FRAUD ALERT: We will never send wiring instructions by email. Before you wire funds, call our "
        "office at a number you have verified. We are not responsible for funds sent to an incorrect account."
    )
    text = new_words(body)
    assert text.startswith("WINS\nSigned the Ontario distributor.")
    assert "Algemeen directeur" not in text and "WIRE FRAUD" not in text and "555" not in text


def test_a_message_pasted_into_the_update_is_kept_as_forwarded() -> None:
    body = (
        "TOPIC FOR THE GROUP (A)\nOur largest customer wants net-60. Their email:\n\n"
        "---------- Forwarded message ---------\nFrom: Karen <karen@grocer.example>\n"
        "Date: Thu, Feb 25, 2027 at 4:41 PM\nSubject: Carrier terms\nTo: Bob <bob@freight.example>\n\n"
        "Bob, all carriers move to net-60 from April 1.\n\nASKS\nAnyone who has negotiated with a grocer.\n\n"
        "On Mon, Mar 1, 2027 at 8:00 AM Roundtable <r@x.example> wrote:\n> WINS\n"
    )
    text = new_words(body)
    assert "---------- Forwarded message ---------" in text
    assert "all carriers move to net-60" in text and "ASKS\nAnyone who has negotiated" in text
    assert "> WINS" not in text


def test_an_update_sharing_its_line_with_the_quote_header_is_kept() -> None:
    body = (
        "All good here. Win: signed Pinnacle. On Mon, Mar 1, 2027 at 8:00 AM, Roundtable <r@x.example> wrote:\n"
        "> Hi Tyler\n"
    )
    assert new_words(body) == "All good here. Win: signed Pinnacle."


def test_a_postscript_under_the_signature_is_the_members() -> None:
    body = "WINS\nA deal.\n\n-- \nDaniela Costa\nCEO | Costa Events\n\nP.S. One ask I forgot: a contact at the convention center?\n\n> quoted"
    assert new_words(body).endswith("P.S. One ask I forgot: a contact at the convention center?")


def test_a_cover_note_signed_above_the_update_goes() -> None:
    body = (
        "Hi Tom,\n\nRichard asked me to send his update while he travels.\n\nThank you,\nLauren\n\n"
        "WINS\nPassed the audit.\n"
    )
    assert new_words(body) == "WINS\nPassed the audit."


def test_quote_headers_in_more_languages_and_forms() -> None:
    for header in (
        "Am 25.06.2015 um 10:55 schrieb Test User:",
        "El 19/03/2014 11:34, Juan Pérez <juan@x.example> ha escrit:",
        "On Nov 26, 2013 you wrote:",
        "‐‐‐‐‐‐‐ Original Message ‐‐‐‐‐‐‐",
    ):
        assert new_words(f"Thank you very much.\n\n{header}\n\nThis is my previous mail") == "Thank you very much.", header


def test_never_lose_words_the_widest_cut_is_kept_and_flagged() -> None:
    reading = read_message(_message("--\nClosed Acme this month.\n\nOn Mon, 3 Nov 2025 at 09:00, R <r@x.example> wrote:\n> WINS\n"))
    assert reading.text == "Closed Acme this month."
    assert reading.flags == [WIDEST_CUT_FLAG]
    assert read_message(_message("On Mon, 3 Nov 2025 at 09:00, R <r@x.example> wrote:\n> WINS\n")).flags == []


def test_html_quotes_found_by_structure_and_ratings_tables() -> None:
    html = (
        "<div>Numbers first:</div><table><tr><td><b>Business</b></td><td><b>Personal</b></td><td><b>Family</b></td></tr>"
        "<tr><td>5</td><td>6</td><td>7</td></tr></table><p><b>The Good</b></p><p>State survey closed clean.</p>"
        '<div id="divRplyFwdMsg"><b>From:</b> Roundtable</div><div>Hi Ray, your update is due</div>'
    )
    message = EmailMessage()
    message["From"] = "Ray Osei <ray@x.example>"
    message["To"] = "reply+0123456789abcdef0123456789abcdef@in.forum.example"
    message["Subject"] = "RE: update"
    message.set_content(html, subtype="html")
    reading = read_message(bytes(message))
    assert reading.sections["ratings"] == {"business": 5, "personal": 6, "family": 7}
    assert reading.sections["texts"]["wins"] == "State survey closed clean."
    assert "your update is due" not in reading.text


def test_parse_reads_with_the_request_and_explains_each_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rendered = mail.render("update_request", CONTEXT)
    sent = EmailMessage()
    sent["From"] = "Roundtable <roundtable@forum.example>"
    sent["To"] = "Alice Chen <alice@northwind.example>"
    sent["Subject"] = rendered.subject
    sent.set_content(rendered.text)
    sent.add_alternative(rendered.html, subtype="html")
    request_eml = tmp_path / "sent.eml"
    request_eml.write_bytes(bytes(sent))
    body = "Answers inline.\n\nFrom: Roundtable <roundtable@forum.example>\nSent: Monday\nTo: Alice\nSubject: Your update\n\n"
    body += rendered.text.replace("WINS\n", "WINS\nClosed the Dutchess County contract.\n")
    reply_eml = tmp_path / "reply.eml"
    reply_eml.write_bytes(_message(body))

    plain = json.loads(run("parse", str(reply_eml), "--json").output)
    assert "wins" not in plain["sections"]["texts"]  # without the request: cut at the From: block
    result = run("parse", str(reply_eml), "--json", "--request", str(request_eml), "--explain")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["sections"]["texts"]["wins"] == "Closed the Dutchess County contract."
    reasons = {line["text"]: line["reason"] for line in data["explain"]}
    assert reasons["Closed the Dutchess County contract."] == ""
    assert reasons["Reply SKIP if you cannot take part this month."].startswith("our request")
    shown = run("parse", str(reply_eml), "--request", str(request_eml), "--explain").output
    assert "- " in shown and "[our request (matched against the request we sent)]" in shown


def test_more_clients_quote_containers_are_found_by_structure() -> None:
    from app.reading.trimming import html_to_text

    for markup in (
        '<div id="appendonsend"></div><hr><div><b>From:</b> Roundtable</div><div>Hi Ray, your update is due</div>',
        '<div class="protonmail_quote"><blockquote>Hi Ray, your update is due</blockquote></div>',
        '<div class="zmail_extra"><div>Hi Ray, your update is due</div></div>',
        '<hr id="zwchr"><div>Hi Ray, your update is due</div>',
    ):
        text = html_to_text(f"<div>WINS: a deal.</div>{markup}")
        assert text == "WINS: a deal.", markup


def test_rejections_are_named_and_read_back() -> None:
    from app.reading.rejection import Rejection, rejected, rejection_of

    reason = rejected(Rejection.NO_TOKEN, "not an answer to an update request")
    assert reason == "no reply token or thread of ours: not an answer to an update request"
    assert rejection_of(reason) is Rejection.NO_TOKEN
    assert rejection_of(rejected(Rejection.MACHINE_MAIL, "auto-reply, out-of-office subject")) is Rejection.MACHINE_MAIL
    assert rejection_of("update version 1 (first)") is None


def test_attribution_lines_from_the_language_table() -> None:
    for header in (
        "Vào Th 2, 3 thg 11, 2025 lúc 09:00 Anna <a@b.vn> đã viết:",
        "-----On Mon, Nov 3, 2025 at 9:00 AM Anna <a@b.com> wrote-----",
        "Anna Berg <anna@x.com> sent:",
        "Pada tanggal 3 Nov 2025 09.00, Anna <a@b.id> menulis:",
    ):
        assert new_words(f"Thanks, done.\n\n{header}\n\nOld message here") == "Thanks, done.", header


def test_prose_that_merely_looks_like_an_attribution_stays() -> None:
    for text in (
        "Update below.\n\nOn the call in 2025 we wrote:\n\nRevenue up 10%.",
        "Update below.\n\nHere is the summary I sent:\n\nRevenue up 10% in 2025.",
    ):
        assert new_words(text) == text


def test_a_colonless_attribution_with_address_and_time_cuts() -> None:
    body = "Works for me.\n\nOn Wed, 14 Nov 2018 08:14:43 -0200 John Doe <john@doe.example> wrote\n\nWhen are you available?"
    assert new_words(body) == "Works for me."


def test_the_tail_of_a_quoted_line_the_client_wrapped_is_quoted_too() -> None:
    body = (
        "Yes, Tuesday works.\n\n"
        "> Could we move the call to next week, since the board deck is not ready and the auditors wa\n"
        "nt more time?\n"
        "> Thanks\n"
    )
    assert new_words(body) == "Yes, Tuesday works."
    inline = "> Can you send the deck before the meeting on Thursday morning?\nyes, attached below\n"
    assert "yes, attached below" in new_words(inline)


def test_a_short_answer_on_the_attribution_line_is_kept() -> None:
    """"Yes, count me in. On Mon, ... wrote:" on one line: the answer stays, the quote goes."""
    for answer in ("Yes, count me in.", "Thanks!", "Works for me."):
        body = f"{answer} On Mon, Nov 3, 2025 at 9:00 AM Roundtable <r@x.example> wrote:\n> WINS\n> last month's words\n"
        reading = read_message(_message(body))
        assert answer.rstrip("!.") in reading.text and "last month" not in reading.text, answer
    # A date in front of a header is no answer: the header's own line stays a header.
    assert read_message(_message("пн, 3 нояб. 2025 г. в 09:00, Anna <a@b.ru>:\n> WINS\n")).text == ""


def test_the_widest_cut_stops_at_an_unquoted_original() -> None:
    """When trimming leaves nothing, the widest cut keeps the member's line and not the original
    that an Outlook-style header block announces below it, in whatever order its fields come."""
    body = "Thanks!\n\nSubject: Your update\nDate: Mon, 3 Nov 2025 09:00\nFrom: Roundtable <r@x.example>\nTo: Alice\n\nWINS\nold text\n"
    reading = read_message(_message(body))
    assert reading.text == "Thanks!" and "old text" not in reading.text


def test_an_assistants_note_above_the_update_is_not_the_members() -> None:
    for note in ("Sending on behalf of Alice, who is travelling.", "Hi Dana, Richard asked me to send his update.",
                 "En nombre de Ana, que está de viaje:"):
        text = read_message(_message(f"{note}\n\nWINS\nClosed the pilot.\n")).text
        assert text == "WINS\nClosed the pilot.", note
    # The member's own words about acting for someone stay.
    own = "We acted on behalf of our board this month.\n\nWINS\nClosed the pilot."
    assert read_message(_message(own + "\n")).text == own
