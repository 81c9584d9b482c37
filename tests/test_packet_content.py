"""The packet a CEO reads: topics without their priority marker, a brief that does not repeat the
topics, low ratings one line per member, paper by country, names sorted as people expect, and the
files members sent reaching the facilitator (attached, or behind a signed link that expires)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, mail, packets
from app.models import Cycle, OutboundMessage, Packet, StoredAttachment
from app.packets import (
    MemberEntry,
    compile_packet,
    name_key,
    packet_context,
    paper_size,
    render_packet,
    without_priority,
)
from app.settings import Settings
from tests.conftest import NOW, make_cycle, make_group
from tests.mails import parsed_mode, raw_mode, reply
from tests.test_replies import requests_by_email
from tests.test_webhook import post


def context(members: list[MemberEntry], paper: str = "A4") -> dict:  # type: ignore[type-arg]
    return packet_context(group_name="G", month="May", meeting="m", location="", generated="g", version=1,
                          members=members, paper=paper)


# --- the topic's priority marker ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "priority", "shown"),
    [
        ("Priority A. How do I keep the team steady?", "A", "How do I keep the team steady?"),
        ("Priority A: do we cut a service line?", "A", "Do we cut a service line?"),
        ("(priority B) should I take a factoring line?", "B", "Should I take a factoring line?"),
        ("A - how to respond to the price demand", "A", "How to respond to the price demand"),
        ("B: how do other partners structure decision rights?", "B", "How do other partners structure decision rights?"),
        ("[C] When to hire a COO", "C", "When to hire a COO"),
        ("**Priority A** Cash for Q1", "A", "Cash for Q1"),
        ("Priority: B - hiring a CFO", "B", "Hiring a CFO"),
        ("Pricing the new line (priority B)", "B", "Pricing the new line"),
        ("Pricing the new line - priority C.", "C", "Pricing the new line"),
        # Kept as written: no marker, a marker for another priority, or nothing but the marker.
        ("Top priority: a new CFO", "A", "Top priority: a new CFO"),
        ("a new CFO: who?", "A", "a new CFO: who?"),
        ("A) raise or B) sell?", "A", "A) raise or B) sell?"),
        ("Priority B: hiring", "A", "Priority B: hiring"),
        ("Priority A", "A", "Priority A"),
        ("Priority A. Anything", None, "Priority A. Anything"),
    ],
)
def test_the_priority_marker_leaves_the_topic_text(text: str, priority: str | None, shown: str) -> None:
    assert without_priority(text, priority) == shown


def test_topics_show_the_priority_as_a_field_not_in_the_text() -> None:
    members = [MemberEntry("Alice", "", "replied", texts={"topic": "Priority A. How do I keep the team steady?"},
                           topic_priority="A")]
    p = context(members)
    assert p["topics"] == [{"name": "Alice", "priority": "A", "text": "How do I keep the team steady?"}]
    [section] = p["members"][0]["sections"]
    assert section["text"] == "How do I keep the team steady?"
    assert p["members"][0]["topic_priority"] == "A"
    html, text = render_packet(p)
    assert "Priority A." not in html and "Priority A." not in text
    assert "[A] Alice: How do I keep the team steady?" in text


# --- the brief -----------------------------------------------------------------------------------


def brief_of(text: str) -> str:
    return re.split(r"TOPICS PROPOSED|COMMITMENT LEDGER|MEMBER UPDATES", text.split("FACILITATOR BRIEF", 1)[1])[0]


def test_the_brief_names_urgent_topics_and_the_table_holds_their_text() -> None:
    members = [
        MemberEntry("Alice", "", "replied", texts={"topic": "Keeping the team steady"}, topic_priority="A"),
        MemberEntry("Ben", "", "replied", texts={"topic": "Raising prices"}, topic_priority="B"),
        MemberEntry("Cara", "", "replied", texts={"topic": "A second plant"}, topic_priority="A"),
    ]
    html, text = render_packet(context(members))
    assert "Priority A topics from Alice, Cara: first in the topics below." in brief_of(text)
    assert "Keeping the team steady" not in brief_of(text) and "A second plant" not in brief_of(text)
    brief_html = html.split('<section class="brief">', 1)[1].split("</section>", 1)[0]
    assert "Keeping the team steady" not in brief_html and "Alice" in brief_html
    topics = text.split("TOPICS PROPOSED", 1)[1].split("MEMBER UPDATES", 1)[0]
    assert topics.count("Keeping the team steady") == 1 and topics.index("Cara") < topics.index("Ben")


def test_low_ratings_one_line_per_member_with_all_three_and_only_4_or_less() -> None:
    members = [
        MemberEntry("Ben", "", "replied", ratings={"business": 4, "personal": 3, "family": 9}),
        MemberEntry("Alice", "", "replied", ratings={"business": 5, "personal": 7, "family": 8}),  # 5 is not low
        MemberEntry("Cara", "", "replied", ratings={"business": 2, "family": 6}),
        MemberEntry("Dev", "", "missing"),
    ]
    p = context(members)
    assert [(r["name"], r["lowest"]) for r in p["brief"]["low_ratings"]] == [("Cara", 2), ("Ben", 3)]
    assert p["brief"]["low_ratings"][1]["ratings"] == [
        {"area": "business", "value": 4, "is_low": True},
        {"area": "personal", "value": 3, "is_low": True},
        {"area": "family", "value": 9, "is_low": False},
    ]
    _, text = render_packet(p)
    brief = brief_of(text)
    assert "- Low ratings, Cara: business 2*, family 6\n" in brief
    assert "- Low ratings, Ben: business 4*, personal 3*, family 9\n" in brief
    assert brief.count("Ben") == 1 and "Alice" not in brief
    assert "(* 4 or less)" in brief


# --- paper ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "timezone", "paper"),
    [
        ("US", "Europe/London", "Letter"),
        ("ca", "UTC", "Letter"),
        ("MX", "America/Mexico_City", "Letter"),
        ("GB", "America/New_York", "A4"),  # the country decides
        ("DE", "Europe/Berlin", "A4"),
        ("", "America/Los_Angeles", "Letter"),  # no country: the timezone's
        ("", "America/Toronto", "Letter"),
        ("", "Europe/Paris", "A4"),
        ("", "America/Sao_Paulo", "A4"),
        ("", "UTC", "A4"),  # neither says: ISO A4
    ],
)
def test_paper_follows_the_group(country: str, timezone: str, paper: str) -> None:
    assert paper_size(country, timezone) == paper


needs_poppler = pytest.mark.skipif(
    shutil.which("pdfinfo") is None and not os.environ.get("CI"), reason="needs pdfinfo (poppler-utils)"
)


@needs_poppler
@pytest.mark.parametrize(("paper", "points"), [("Letter", "612 x 792"), ("A4", "595.276 x 841.89")])
def test_the_pdf_is_printed_on_that_paper(tmp_path: Path, paper: str, points: str) -> None:
    html, _ = render_packet(context([MemberEntry("Alice", "", "replied", texts={"wins": "A win"})], paper=paper))
    pdf = packets.render_pdf(html)
    if pdf is None:
        pytest.skip("WeasyPrint cannot load Pango: no PDF to measure")
    (tmp_path / "p.pdf").write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(tmp_path / "p.pdf")], capture_output=True, check=True, text=True).stdout
    assert re.search(rf"Page size:\s+{re.escape(points)} pts", info), info


def test_compile_prints_a_us_group_on_letter_and_a_german_one_on_a4(session: Session, settings: Settings) -> None:
    for country, expected in (("US", "Letter"), ("DE", "A4")):
        group = make_group(session, tz="Europe/Berlin")
        group.slug, group.country = f"g-{country.lower()}", country
        cycle = make_cycle(session, group)
        session.commit()
        compiled = compile_packet(session, settings, cycle.id, NOW)
        packet = session.get_one(Packet, compiled.packet_id)
        assert packet.context["paper"] == expected
        assert f"size: {expected};" in packet.html


# --- names ---------------------------------------------------------------------------------------


def test_names_sort_with_their_letters_whatever_the_accent_or_case() -> None:
    names = ["Zoë Adams", "Émile Zola", "Ed Brown", "emma Stone", "Ángel Ruiz", "Bob Li", "Øyvind Berg", "de Vries", "Dan Wu"]
    assert sorted(names, key=name_key) == [
        "Ángel Ruiz", "Bob Li", "Dan Wu", "de Vries", "Ed Brown", "Émile Zola", "emma Stone", "Øyvind Berg", "Zoë Adams",
    ]
    assert sorted(names) != sorted(names, key=name_key)  # plain code-point order puts É and Ø after Z


def test_the_packet_lists_members_as_people_expect(session: Session, settings: Settings) -> None:
    group = make_group(session, members=[
        ("Zoë Adams", "zoe@a.example", "A"), ("Émile Zola", "emile@z.example", "Z"), ("Ed Brown", "ed@b.example", "B"),
        ("Frank Li", "frank@l.example", "L"),
    ])
    cycle = make_cycle(session, group)
    session.commit()
    requests_by_email(session, settings, cycle)  # asked, none replied yet
    compiled = compile_packet(session, settings, cycle.id, NOW)
    packet = session.get_one(Packet, compiled.packet_id)
    assert [m["name"] for m in packet.context["members"]] == ["Ed Brown", "Émile Zola", "Frank Li", "Zoë Adams"]
    assert "no update from Ed Brown, Émile Zola, Frank Li, Zoë Adams" in packet.text


# --- the files members sent ----------------------------------------------------------------------

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 12  # 3 KB, binary
XLSX = b"PK\x03\x04" + os.urandom(2000)


def _reply_with_files(client, session: Session, settings: Settings, cycle: Cycle) -> None:  # type: ignore[no-untyped-def]
    requests = requests_by_email(session, settings, cycle)
    alice = reply(requests["alice@northwind.example"].token, "WINS\nThe plan is attached.")
    alice.add_attachment(PDF, maintype="application", subtype="pdf", filename="Q4 plan.pdf")
    post(client, raw_mode(alice))  # the raw mode
    ben = reply(requests["ben@okafor.example"].token, "WINS\nBudget done.", sender=("Ben Okafor", "ben@okafor.example"))
    post(client, parsed_mode(ben, attachments=[("Budget é.xlsx", XLSX, "application/vnd.ms-excel")]))  # the default mode
    session.expire_all()


def _deliver_packet(session: Session, settings: Settings, cycle: Cycle):  # type: ignore[no-untyped-def]
    compile_packet(session, settings, cycle.id, NOW)
    session.commit()
    [row] = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "packet")).all()
    assert mail.deliver(session, settings, row.id) is True
    eml = (Path(settings.outbox_dir) / row.provider_message_id).read_bytes()
    return row, BytesParser(policy=policy.default).parsebytes(eml)


def test_files_members_sent_are_attached_to_the_packet_email(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    _reply_with_files(client, session, settings, cycle)
    row, message = _deliver_packet(session, settings, cycle)
    files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert files["Q4 plan.pdf"] == PDF
    assert files["Budget é.xlsx"] == XLSX
    assert any(name.endswith(".pdf") and name.startswith("hudson") for name in files)  # the packet itself
    text = message.get_body(("plain",)).get_content()
    assert "The PDF is attached, with the files members sent." in text
    assert "- Alice Chen: Q4 plan.pdf (3 KB, attached)" in text
    assert "/files/" not in text  # attached, so no link
    assert [f["is_attached"] for f in row.context["files"]] == [True, True]


def test_files_over_the_limit_are_signed_links_that_expire(client, session, settings, cycle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(packets, "MAX_ATTACHED_BYTES", 2500)  # Ben's 2 KB fits; Alice's 3 KB then does not
    _reply_with_files(client, session, settings, cycle)
    _, message = _deliver_packet(session, settings, cycle)
    attached = {part.get_filename() for part in message.iter_attachments()}
    assert "Budget é.xlsx" in attached and "Q4 plan.pdf" not in attached
    html = message.get_body(("html",)).get_content()
    [url] = re.findall(r'href="(https://roundtable\.example/files/[^"]+)"', html)
    assert "the link works for 30 days" in html
    path = url.removeprefix(settings.base_url)

    response = client.get(path)
    assert response.status_code == 200 and response.data == PDF
    assert response.headers["Content-Disposition"].startswith('attachment; filename="Q4 plan.pdf"')
    assert response.headers["Content-Type"] == "application/octet-stream"  # never rendered on our origin
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    signed = path.removeprefix("/files/")
    # One character of the signature changed (not the last: its low bits may be padding).
    tampered = signed[:-5] + ("A" if signed[-5] != "A" else "B") + signed[-4:]
    assert client.get(f"/files/{tampered}").status_code == 404
    stored = session.scalars(select(StoredAttachment).where(StoredAttachment.filename == "Budget é.xlsx")).one()
    payload, signature = signed.split(".", 1)
    other = base64.urlsafe_b64encode(str(stored.id).encode()).rstrip(b"=").decode()
    assert other != payload
    swapped = f"{other}.{signature}"  # Ben's file's id under the signature of Alice's link
    assert client.get(f"/files/{swapped}").status_code == 404
    assert client.get("/files/not-a-link").status_code == 404

    clock.set_now(NOW + timedelta(days=29))
    assert client.get(path).status_code == 200
    clock.set_now(NOW + timedelta(days=31))
    expired = client.get(path)
    assert expired.status_code == 410 and b"expired" in expired.data


def test_a_file_too_large_to_keep_is_named_not_linked(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    _reply_with_files(client, session, settings, cycle)
    stored = session.scalars(select(StoredAttachment).where(StoredAttachment.filename == "Q4 plan.pdf")).one()
    stored.data = None  # as the webhook keeps a file over its cap: listed, not kept
    session.commit()
    row, message = _deliver_packet(session, settings, cycle)
    assert "Q4 plan.pdf" not in {part.get_filename() for part in message.iter_attachments()}
    text = message.get_body(("plain",)).get_content()
    assert "- Alice Chen: Q4 plan.pdf (3 KB: too large to keep; ask Alice Chen for it)" in text
    assert [f["url"] for f in row.context["files"]] == [None, None]


def test_the_brief_names_the_askers_when_the_asks_have_their_own_section() -> None:
    """An ask listed under "Asks between meetings" is not written out again in the brief."""
    members = [
        MemberEntry("Ana Ruiz", "A Co", "replied", texts={"asks": "An intro to a plant manager in Ohio."}),
        MemberEntry("Bo Chen", "B Co", "replied", texts={"asks": "A fractional CFO, anyone?"}),
    ]
    context = packet_context(group_name="G", month="May", meeting="m", location="", generated="g", version=1, members=members)
    alone_html, alone_text = render_packet(context)
    assert "An intro to a plant manager in Ohio." in alone_html.split("Member updates")[0]
    assert "- Ask, Ana Ruiz: An intro to a plant manager in Ohio." in alone_text

    listed = {**context, "asks": {"open": [
        {"name": "Ana Ruiz", "text": "An intro to a plant manager in Ohio.", "kind_label": "Introduction", "helpers": [], "thanked": ""},
        {"name": "Bo Chen", "text": "A fractional CFO, anyone?", "kind_label": "Hire or person", "helpers": [], "thanked": ""},
    ], "answered": [], "closed": [], "helped": []}}
    html, text = render_packet(listed)
    assert "Open asks</strong> from Ana Ruiz, Bo Chen: listed under Asks between meetings below." in html
    assert "- Open asks from Ana Ruiz, Bo Chen: listed under Asks between meetings below." in text
    brief = text.split("ASKS BETWEEN MEETINGS")[0]
    assert "An intro to a plant manager in Ohio." not in brief.split("FACILITATOR BRIEF")[-1].split("MEMBER UPDATES")[0]
    assert text.count("An intro to a plant manager in Ohio.") == alone_text.count("An intro to a plant manager in Ohio.")
