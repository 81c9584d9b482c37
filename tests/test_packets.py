"""The packet: content from replies, sorted brief, versions, PDF, and no HTML from mail."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.models import OutboundMessage, Packet, PacketCadence
from app.packets import MemberEntry, compile_packet, packet_context
from tests.conftest import NOW
from tests.mails import raw_mode, reply
from tests.test_replies import requests_by_email
from tests.test_webhook import post


def test_packet_context_sorts_the_brief() -> None:
    members = [
        MemberEntry("Ben", "B Co", "replied", ratings={"business": 3, "family": 8}, texts={"topic": "Cash", "asks": "An intro"}, topic_priority="B"),
        MemberEntry("Alice", "A Co", "replied", ratings={"personal": 5}, texts={"topic": "Team"}, topic_priority="A"),
        MemberEntry("Cara", "C Co", "missing"),
        MemberEntry("Dev", "D Co", "excused"),
    ]
    context = packet_context(group_name="G", month="May", meeting="m", location="", generated="g", version=1, members=members)
    assert context["counts"] == {"members": 4, "replied": 2, "excused": 1, "missing": 1}
    # Only 4 or less is low: Alice's 5 is not.
    assert [(r["name"], r["lowest"]) for r in context["brief"]["low_ratings"]] == [("Ben", 3)]
    assert [t["name"] for t in context["topics"]] == ["Alice", "Ben"]
    assert [t["name"] for t in context["brief"]["urgent_topics"]] == ["Alice"]
    assert context["brief"]["asks"] == [{"name": "Ben", "text": "An intro"}]
    assert context["missing"] == ["Cara"] and context["excused"] == ["Dev"]


def _reply_all(client, session, settings, cycle):  # type: ignore[no-untyped-def]
    requests = requests_by_email(session, settings, cycle)
    alice = requests["alice@northwind.example"]
    post(client, raw_mode(reply(
        alice.token,
        "RATINGS\nBusiness: 4\nPersonal: 7\nFamily: 8\n\nCHALLENGES\nOur VP Engineering resigned. <script>alert(1)</script>\n\n"
        "TOPIC FOR THE GROUP\nPriority A: keeping the team steady.\n\n"
        "-- \nAlice Chen\nCEO, Northwind Robotics\n\n"
        "On Tue, Nov 17, 2026 at 9:00 AM Roundtable <roundtable@forum.example> wrote:\n> WINS\n> CHALLENGES\n",
    )))
    ben = requests["ben@okafor.example"]
    post(client, raw_mode(reply(ben.token, "Skip this month, travelling.", sender=("Ben Okafor", "ben@okafor.example"))))
    session.expire_all()  # the webhook's own session wrote these rows
    return requests


def test_packet_holds_new_words_not_quotes_or_signatures(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    _reply_all(client, session, settings, cycle)
    compiled = compile_packet(session, settings, cycle.id, NOW)
    session.commit()
    packet = session.get_one(Packet, compiled.packet_id)
    for body in (packet.text, packet.html):
        assert "Our VP Engineering resigned." in body
        assert "Keeping the team steady" in body and "Priority A:" not in body
        assert "CEO, Northwind Robotics" not in body  # signature
        assert "wrote:" not in body  # quote header
    assert "<script>" not in packet.html and "&lt;script&gt;" in packet.html
    assert "no update from Carmen Ruiz" in packet.text
    assert "Ben Okafor (Okafor Logistics): excused" in packet.text
    assert "Priority A topics from Alice Chen: first in the topics below." in packet.text
    assert "Low ratings, Alice Chen: business 4*, personal 7, family 8" in packet.text
    assert packet.pdf.startswith(b"%PDF")
    mails = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "packet")).all()
    assert [m.to_email for m in mails] == ["dana@facilitation.example"]
    assert mails[0].status == "queued"  # the job sends it after the commit
    from app.mail import deliver

    assert deliver(session, settings, mails[0].id) is True
    sent = (settings.outbox_dir / f"{mails[0].id:06d}-packet-dana-facilitation-example.eml").read_bytes()
    assert b"application/pdf" in sent and b"Our VP Engineering resigned." in sent


def test_compile_twice_keeps_one_version_and_sends_once(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    _reply_all(client, session, settings, cycle)
    first = compile_packet(session, settings, cycle.id, NOW)
    session.commit()
    second = compile_packet(session, settings, cycle.id, NOW + timedelta(hours=1))
    session.commit()
    assert (first.version, first.is_new) == (1, True)
    assert (second.version, second.is_new, second.outbound_ids) == (1, False, [])
    assert session.scalar(select(func.count(Packet.id))) == 1


def test_late_reply_makes_a_new_version(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = _reply_all(client, session, settings, cycle)
    compile_packet(session, settings, cycle.id, NOW)
    session.commit()
    session.expire_all()
    carmen = requests["carmen@ruizfoods.example"]
    cycle.group.packet_cadence = PacketCadence.IMMEDIATE
    session.commit()
    # With in-process jobs and a group that wants every late reply at once, it recompiles right away.
    post(client, raw_mode(reply(carmen.token, "WINS\nSalsa in 120 more stores.", sender=("Carmen Ruiz", "carmen@ruizfoods.example"))))
    packets = session.scalars(select(Packet).order_by(Packet.version)).all()
    assert [p.version for p in packets] == [1, 2]
    assert "Salsa in 120 more stores." in packets[1].text and "Salsa" not in packets[0].text
    assert "version 2" in packets[1].text
    assert "New in version 2: Carmen Ruiz: new update (reply)." in packets[1].text
    assert "New in version" not in packets[0].text
    assert session.scalar(select(func.count(OutboundMessage.id)).where(OutboundMessage.kind == "packet")) == 2


def test_a_new_version_says_what_changed() -> None:
    from app.packets import changes_since

    def context(members: list[MemberEntry]) -> dict:  # type: ignore[type-arg]
        return packet_context(group_name="G", month="May", meeting="m", location="", generated="g", version=1, members=members)

    before = context([
        MemberEntry("Ana", "", "replied", texts={"wins": "A"}, version=1),
        MemberEntry("Bo", "", "missing"),
        MemberEntry("Cy", "", "missing"),
        MemberEntry("Di", "", "replied", texts={"wins": "D"}, version=1),
    ])
    after = [
        MemberEntry("Ana", "", "replied", texts={"wins": "A, corrected"}, version=2),
        MemberEntry("Bo", "", "late", texts={"wins": "B"}, version=1),
        MemberEntry("Cy", "", "excused"),
        MemberEntry("Di", "", "replied", texts={"wins": "D"}, version=1),
    ]
    assert changes_since(before, after) == [
        "Ana: update corrected (version 2)",
        "Bo: new update (late reply)",
        "Cy: now excused",
    ]
