"""`roundtable demo` end to end: the packet holds each member's new words and nothing quoted."""

from __future__ import annotations

from pathlib import Path

from app.demo import MEMBERS, REPLIES, run_demo
from app.settings import configure


def test_demo_runs_twice_and_its_packet_is_clean(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    try:
        summary = run_demo(folder)
        outbox = sorted(p.name for p in (folder / "outbox").glob("*.eml"))
        again = run_demo(folder)
    finally:
        configure(None)
    assert sorted(p.name for p in (folder / "outbox").glob("*.eml")) == outbox  # nothing sent twice
    kinds = [name.split("-")[1] for name in outbox]
    assert kinds.count("update_request") == len(MEMBERS) == 12
    # A receipt per reply, and one for the correction that answered a receipt; none for the thanks.
    assert kinds.count("receipt") == len(REPLIES) + 1 == 12
    assert kinds.count("packet") == 1
    # The meeting: the agenda approved by reply went out with an invite, two RSVPs reached the
    # facilitator (the first at once; the second, within the hour, waits for the next headcount
    # email), a date poll went out and was answered, and the recap reached every member.
    for kind, count in [("meeting_agenda_draft", 1), ("meeting_invite", 12), ("meeting_headcount", 1),
                        ("meeting_poll", 12), ("meeting_poll_tally", 1), ("meeting_recap_request", 1),
                        ("meeting_recap", 12)]:
        assert kinds.count(kind) == count, kind
    invite = next((folder / "outbox").glob("*-meeting_invite-*.eml")).read_text()
    assert 'Content-Type: text/calendar; charset="utf-8"; method="REQUEST"' in invite
    assert "rsvps     2 coming, 0 maybe, 0 not coming, 10 no answer yet" in summary
    # Asks: circulated to the other members; one offer (a Reply-All) routed to the asker alone.
    assert kinds.count("ask_circulated") >= 11 and kinds.count("ask_offer") == kinds.count("ask_offer_copy") == 1
    offer = next((folder / "outbox").glob("*-ask_offer-*.eml")).read_text()
    assert "To: Alice Chen <alice@northwind-robotics.example>" in offer and "Reply-To: ben@" in offer
    assert "Alice Chen's with Reply-All, and the offer went to Alice Chen alone" in summary
    assert "11 of 12 asked have replied" not in summary  # one member excused herself
    assert "Luis Ortega" in summary and "asked (sent), no reply yet" in summary
    assert "Packet version 1" in again
    packet = (folder / "packets").glob("*-v1.txt").__next__().read_text()
    # Every replying member's own words are in; the excused one is marked excused.
    for phrase in [
        "Closed the pilot with Bay Logistics",
        "renewed our two biggest contracts",
        "Our salsa line is in 120 more stores",
        "signed the lease for our sixth office",
        "asked for a 12% price cut",
        "Fund II first close at $42M",
        "3 MW of new commercial installs signed",
        "Payer reimbursement changes cut our margin",
        "Finished the school project on time",
        "Signed our first enterprise customer",
    ]:
        assert phrase in packet, phrase
    assert "Elena Petrova (Petrova Design): excused" in packet
    # The correction replaced one section only; the thanks changed nothing and is shown as a note.
    assert "our co-packer wants a 9% price increase from March" in packet
    assert "Shift bonuses beat hourly raises" in packet and "Version 2: Replaced Challenges." in packet
    assert 'Also wrote (changed nothing): "Thanks, looks right!"' in packet
    assert "Closed the pilot with Bay Logistics" in packet and "How do I keep the team steady" in packet
    assert "Priority A." not in packet  # the marker is the topic's priority, not its text
    assert "no update from Luis Ortega" in packet
    # Nothing of the quoted request, the quote headers, the signatures or the out-of-office.
    for leak in [
        "Reply above this line",
        "Reply SKIP if you cannot",
        "wrote:",
        "From: Roundtable",
        "Sent from my iPhone",
        "+1 415 555 0142",
        "This email and any attachments are confidential",
        "out of the office",
        "Best,\nCarmen",
    ]:
        assert leak not in packet, leak
    assert (folder / "packets").glob("*-v1.pdf").__next__().read_bytes().startswith(b"%PDF")
