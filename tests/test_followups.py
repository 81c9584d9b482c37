"""A member's second and third email: read for what it is, merged, never lost or hidden.

End to end through the real webhook (both SendGrid modes), the worker step and the packet; the
pure `merge` is pinned first.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app import clock
from app.followups import describe, merge
from app.models import Cycle, InboundMessage, OutboundMessage, Packet, Update, UpdateRequest
from app.packets import compile_packet
from app.reading.sections import split_sections
from tests.conftest import MEETING_DAY, NOW, make_cycle
from tests.mails import parsed_mode, raw_mode, reply
from tests.test_replies import outbound, requests_by_email
from tests.test_webhook import post

FULL = (
    "RATINGS\nBusiness: 4\nPersonal: 7\nFamily: 8\n\n"
    "WINS\nClosed the Acme contract.\n\n"
    "CHALLENGES\nOur VP Engineering resigned.\n\n"
    "TOPIC FOR THE GROUP\nPriority A: keeping the team steady through the search.\n\n"
    "ASKS\nAn intro to a good executive recruiter.\n"
)
ALICE = ("Alice Chen", "alice@northwind.example")
BEN = ("Ben Okafor", "ben@okafor.example")


def _merge(previous: dict | None, text: str):  # type: ignore[no-untyped-def, type-arg]
    return merge(previous, split_sections(text).to_json(), text)


FIRST = _merge(None, FULL).sections


# --- the pure reading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, looks right!",
        "Perfect, thank you.\n\nAlice",
        "Got it 👍",
        "Can I bring a guest on Thursday?",
        "Is the meeting at the Beacon Hotel again?",
        "SKIP",  # after an update: the update stands
    ],
)
def test_a_note_changes_nothing(text: str) -> None:
    merged = _merge(FIRST, text)
    assert merged.kind == "note" and merged.changes_nothing
    assert merged.sections == FIRST


@pytest.mark.parametrize(
    ("text", "kind", "key", "expected"),
    [
        ("Correction: WINS\nClosed Acme and Beta.", "correction", "wins", "Closed Acme and Beta."),
        ("Please replace my challenges with: cash is tight this quarter.", "correction", "challenges",
         "cash is tight this quarter."),
        ("Sorry, a correction below.\n\nCHALLENGES\nCash, not people.", "correction", "challenges", "Cash, not people."),
        ("WINS\nCorrected: closed two deals.", "correction", "wins", "Corrected: closed two deals."),
        ("WINS\nClosed the Acme contract, three years.", "correction", "wins", "Closed the Acme contract, three years."),
        ("One more ask: an intro to a fractional CFO.", "addition", "asks",
         "An intro to a good executive recruiter.\n\nan intro to a fractional CFO."),
        ("Forgot to add under wins: we hired a COO.", "addition", "wins", "Closed the Acme contract.\n\nwe hired a COO."),
        ("Also:\n\nWINS\nHired a COO.", "addition", "wins", "Closed the Acme contract.\n\nHired a COO."),
        ("LEARNED\nDelegate earlier.", "addition", "learned", "Delegate earlier."),
    ],
)
def test_a_correction_or_an_addition_touches_only_the_sections_it_names(text: str, kind: str, key: str, expected: str) -> None:
    merged = _merge(FIRST, text)
    assert merged.kind == kind
    assert merged.sections["texts"][key] == expected
    for other_key, value in FIRST["texts"].items():
        if other_key != key:
            assert merged.sections["texts"][other_key] == value
    assert merged.sections["ratings"] == FIRST["ratings"]
    assert merged.sections["topic_priority"] == "A"


def test_a_whole_new_update_replaces_the_update() -> None:
    text = "RATINGS\nBusiness: 6\nPersonal: 7\nFamily: 8\n\nWINS\nBeta signed.\n\nCHALLENGES\nHiring."
    merged = _merge(FIRST, text)
    assert merged.kind == "whole"
    assert merged.sections["texts"] == {"wins": "Beta signed.", "challenges": "Hiring."}
    assert merged.sections["ratings"] == {"business": 6, "personal": 7, "family": 8}
    assert describe(merged.change) == "Replaced the whole earlier update."


def test_when_we_cannot_tell_both_texts_are_kept_and_flagged() -> None:
    merged = _merge(FIRST, "WINS\nHired a COO from Globex.")
    assert merged.kind == "unclear"
    assert merged.sections["texts"]["wins"] == "Closed the Acme contract.\n\nHired a COO from Globex."
    assert merged.sections["flagged"] == ["wins"]
    assert "Kept both the earlier and the new text of Wins." == describe(merged.change)
    # A later correction of that section settles it.
    settled = merge(merged.sections, split_sections("Correction: WINS\nBoth, in fact.").to_json(), "Correction: WINS\nBoth, in fact.")
    assert settled.sections["flagged"] == [] and settled.sections["texts"]["wins"] == "Both, in fact."


def test_news_without_a_heading_is_added_never_dropped() -> None:
    text = "We closed the seed round yesterday after two months of meetings with investors and lawyers."
    merged = _merge(FIRST, text)
    assert merged.kind == "addition"
    assert merged.sections["texts"]["other"] == text
    assert merged.sections["texts"]["wins"] == FIRST["texts"]["wins"]


def test_a_new_rating_replaces_only_that_rating() -> None:
    merged = _merge(FIRST, "Correction: Business: 6")
    assert merged.sections["ratings"] == {"business": 6, "personal": 7, "family": 8}
    assert merged.replaced == ("ratings",)


# --- end to end: webhook -> worker -> receipt -> packet -----------------------------------------

MODES = [pytest.param(raw_mode, id="raw"), pytest.param(parsed_mode, id="parsed")]


def _packet(session, settings, cycle) -> Packet:  # type: ignore[no-untyped-def]
    session.expire_all()
    compiled = compile_packet(session, settings, cycle.id, clock.now())
    session.commit()
    return session.get_one(Packet, compiled.packet_id)


@pytest.mark.parametrize("mode", MODES)
def test_thanks_after_the_receipt_keeps_the_update_and_is_not_answered(mode, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    assert post(client, mode(reply(alice.token, FULL))).status_code == 200
    receipt = outbound(session, "receipt")[0]
    thanks = reply(alice.token, "Thanks, looks right!\n\nOn Thu, Roundtable wrote:\n> Got it: your update",
                   headers={"In-Reply-To": receipt.message_id})
    assert post(client, mode(thanks)).status_code == 200
    session.expire_all()
    assert session.scalar(select(func.count(Update.id))) == 1
    assert len(outbound(session, "receipt")) == 1  # no receipt for a thanks: no loop
    note = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert (note.status, note.kind, note.note) == ("accepted", "note", "Thanks, looks right!")
    packet = _packet(session, settings, cycle)
    assert "Business 4" in packet.text and "Closed the Acme contract." in packet.text
    assert "Priority A topics from Alice Chen" in packet.text
    assert 'Also wrote (changed nothing): "Thanks, looks right!"' in packet.text


@pytest.mark.parametrize("mode", MODES)
def test_a_correction_replaces_one_section_and_the_receipt_says_so(mode, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, mode(reply(alice.token, FULL)))
    post(client, mode(reply(alice.token, "Correction: CHALLENGES\nCash is tight; the VP stays after all.")))
    post(client, mode(reply(alice.token, "One more ask: an intro to a fractional CFO.")))
    session.expire_all()
    updates = session.scalars(select(Update).order_by(Update.version)).all()
    assert [(u.version, u.change["kind"]) for u in updates] == [(1, "first"), (2, "correction"), (3, "addition")]
    assert updates[0].sections["texts"]["challenges"] == "Our VP Engineering resigned."  # history kept
    receipts = sorted(outbound(session, "receipt"), key=lambda r: r.id)
    assert [r.context["changed"] for r in receipts] == ["", "Replaced Challenges.", "Added to Asks."]
    eml = next(settings.outbox_dir.glob(f"{receipts[1].id:06d}-receipt-*.eml")).read_text()
    assert "Replaced Challenges." in eml and "Cash is tight; the VP stays after all." in eml
    assert "Closed the Acme contract." in eml  # the receipt shows the whole update as it stands
    packet = _packet(session, settings, cycle)
    assert "Cash is tight; the VP stays after all." in packet.text
    assert "Our VP Engineering resigned." not in packet.text
    assert "An intro to a good executive recruiter." in packet.text and "an intro to a fractional CFO." in packet.text
    assert "Business 4" in packet.text and "[A]" in packet.text


def test_an_unclear_rewrite_keeps_both_texts_and_flags_them_in_the_packet(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, FULL)))
    post(client, raw_mode(reply(alice.token, "WINS\nHired a COO from Globex.")))
    packet = _packet(session, settings, cycle)
    assert "Closed the Acme contract." in packet.text and "Hired a COO from Globex." in packet.text
    assert "Two texts kept" in packet.text and "Two texts kept" in packet.html
    assert "Check with Alice Chen: two texts kept for Wins" in packet.text


@pytest.mark.parametrize("mode", MODES)
def test_an_update_after_skip_clears_the_excuse(mode, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    ben = requests_by_email(session, settings, cycle)["ben@okafor.example"]
    post(client, mode(reply(ben.token, "SKIP - travelling", sender=BEN)))
    session.expire_all()
    assert ben.excused_at is not None
    clock.set_now(cycle.deadline_at + timedelta(hours=3))  # after all, late
    post(client, mode(reply(ben.token, "WINS\nBack early: signed two new depots.", sender=BEN)))
    session.expire_all()
    assert ben.excused_at is None and ben.replied_at == cycle.deadline_at + timedelta(hours=3)
    packet = _packet(session, settings, cycle)
    assert "Ben Okafor (Okafor Logistics): late reply" in packet.text
    assert "signed two new depots" in packet.text
    assert packet.context["excused"] == []


@pytest.mark.parametrize("mode", MODES)
def test_an_update_after_the_no_more_reminders_link_is_shown(mode, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.mail import unsubscribe_url

    carmen = requests_by_email(session, settings, cycle)["carmen@ruizfoods.example"]
    url = unsubscribe_url(settings, carmen.token).removeprefix(settings.base_url)
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    post(client, mode(reply(carmen.token, "WINS\nSalsa in 120 more stores.", sender=("Carmen Ruiz", "carmen@ruizfoods.example"))))
    packet = _packet(session, settings, cycle)
    assert "Carmen Ruiz (Ruiz Foods): replied" in packet.text and "Salsa in 120 more stores." in packet.text


@pytest.mark.parametrize("mode", MODES)
def test_a_reply_is_timed_by_when_it_arrived_not_when_a_worker_read_it(mode, client, session, settings, cycle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app import jobs
    from workers.jobs import process_pending

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    monkeypatch.setattr(jobs, "nudge_inbound_soon", lambda: None)  # the workers are backed up
    arrived = cycle.deadline_at - timedelta(minutes=5)
    clock.set_now(arrived)
    assert post(client, mode(reply(alice.token, FULL))).status_code == 200
    clock.set_now(cycle.deadline_at + timedelta(hours=2))
    process_pending()
    session.expire_all()
    assert alice.replied_at == arrived
    packet = _packet(session, settings, cycle)
    assert "Alice Chen (Northwind Robotics): replied" in packet.text


def test_a_correction_after_the_deadline_does_not_make_an_on_time_member_late(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, FULL)))
    clock.set_now(cycle.deadline_at + timedelta(hours=1))
    post(client, raw_mode(reply(alice.token, "Correction: WINS\nClosed Acme and Beta.")))
    packet = _packet(session, settings, cycle)
    assert "Alice Chen (Northwind Robotics): replied" in packet.text
    assert "Closed Acme and Beta." in packet.text


@pytest.mark.parametrize("mode", MODES)
def test_a_reply_on_last_months_thread_goes_to_the_open_cycle(mode, client, session, settings, group) -> None:  # type: ignore[no-untyped-def]
    old = make_cycle(session, group, MEETING_DAY - timedelta(days=28))
    new = make_cycle(session, group, MEETING_DAY)
    session.commit()
    old_alice = requests_by_email(session, settings, old)["alice@northwind.example"]
    requests_by_email(session, settings, new)
    clock.set_now(old.deadline_at - timedelta(days=1))
    post(client, mode(reply(old_alice.token, FULL)))
    clock.set_now(old.deadline_at + timedelta(hours=1))
    old_packet = _packet(session, settings, old)
    clock.set_now(NOW)  # the old meeting is over; the new cycle's requests are out
    post(client, mode(reply(old_alice.token, "WINS\nThis month: Beta signed.\n\nASKS\nA CFO intro.")))
    session.expire_all()
    new_alice = session.scalar(select(UpdateRequest).where(UpdateRequest.cycle_id == new.id, UpdateRequest.member_id == old_alice.member_id))
    latest = session.scalars(select(Update).order_by(Update.id.desc())).first()
    assert latest.update_request_id == new_alice.id and latest.version == 1
    assert new_alice.replied_at == NOW
    receipt = sorted(outbound(session, "receipt"), key=lambda r: r.id)[-1]
    assert receipt.cycle_id == new.id
    month = old_packet.context["month_label"]
    assert receipt.context["moved_from_month"] == month
    eml = next(settings.outbox_dir.glob(f"{receipt.id:06d}-receipt-*.eml")).read_text()
    assert f"You replied to the {month} request" in eml
    # The old packet is not re-issued.
    assert session.scalar(select(func.count(Packet.id)).where(Packet.cycle_id == old.id)) == 1
    assert session.scalar(select(func.count(OutboundMessage.id)).where(OutboundMessage.kind == "packet", OutboundMessage.cycle_id == old.id)) == 1


def test_a_late_reply_after_the_meeting_with_no_open_cycle_stays_but_reissues_nothing(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    carmen = requests_by_email(session, settings, cycle)["carmen@ruizfoods.example"]
    clock.set_now(cycle.deadline_at + timedelta(hours=1))
    _packet(session, settings, cycle)
    clock.set_now(cycle.meeting_ends_at + timedelta(days=1))
    post(client, raw_mode(reply(carmen.token, "WINS\nSorry this is late.", sender=("Carmen Ruiz", "carmen@ruizfoods.example"))))
    session.expire_all()
    assert session.scalar(select(func.count(Update.id))) == 1  # kept in the record
    assert session.scalar(select(func.count(Packet.id))) == 1  # the packet was not re-issued
    assert session.scalar(select(func.count(Cycle.id))) == 1


def test_processing_a_follow_up_twice_changes_nothing(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.replies import process_inbound

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, FULL)))
    post(client, raw_mode(reply(alice.token, "Thanks!")))
    post(client, raw_mode(reply(alice.token, "One more ask: a CFO intro.")))
    before = (session.scalar(select(func.count(Update.id))), session.scalar(select(func.count(OutboundMessage.id))))
    for row in session.scalars(select(InboundMessage)).all():
        assert process_inbound(session, settings, row.id, clock.now()).outbound_ids == []
    session.commit()
    after = (session.scalar(select(func.count(Update.id))), session.scalar(select(func.count(OutboundMessage.id))))
    assert before == after == (2, before[1])


def test_a_question_reaches_the_facilitator_at_once_and_their_answer_goes_to_the_member(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, FULL)))
    post(client, raw_mode(reply(alice.token, "Can I bring a guest on Thursday?")))
    post(client, raw_mode(reply(alice.token, "Thanks!")))  # not a question: no notice
    [notice] = outbound(session, "question_notice")
    assert (notice.to_email, notice.reply_to) == ("dana@facilitation.example", "alice@northwind.example")
    assert notice.context["question"] == "Can I bring a guest on Thursday?"
    assert len(outbound(session, "receipt")) == 1
    assert session.scalar(select(func.count(Update.id))) == 1


# --- kinds of second email that must not be misread (found in review) -----------------------------

PARTIAL = "RATINGS\nBusiness: 4\nPersonal: 7\nFamily: 8\n\nWINS\nClosed the Acme contract.\n\nMore later, boarding a flight."


@pytest.mark.parametrize(
    "text",
    [
        "Great news - we received a term sheet from a buyer. Considering selling the company.",
        "Our CFO is out on medical leave, cash flow is ok for now but payroll is tight.",
        "Thanks! One thing I missed: we hired a new head of sales, starting January.",
        "Also, we lost our biggest client this week. Could the group discuss how to replace that revenue?",
    ],
)
def test_news_with_a_thank_you_or_a_question_in_it_is_content_not_a_note(text: str) -> None:
    merged = _merge(FIRST, text)
    assert merged.kind == "addition"
    assert merged.sections["texts"]["other"] == text


@pytest.mark.parametrize("text", ["Danke, passt so!", "¡Gracias, todo correcto!", "Merci, parfait.", "Perfect, thanks.\n\nBest,\nAlice"])
def test_thanks_in_other_languages_is_a_note(text: str) -> None:
    assert _merge(FIRST, text).kind == "note"


def test_a_greeting_line_does_not_hide_a_correction() -> None:
    merged = _merge(FIRST, "Hi,\n\nCorrection: WINS\nClosed Acme and Beta.")
    assert merged.kind == "correction" and merged.sections["texts"]["wins"] == "Closed Acme and Beta."
    assert "other" not in merged.sections["texts"]


def test_words_around_a_section_are_kept_unless_they_only_introduce_it() -> None:
    kept = _merge(FIRST, "Also, we hired a new CFO last week!\n\nASKS\nA payroll provider.")
    assert kept.sections["texts"]["other"] == "Also, we hired a new CFO last week!"
    dropped = _merge(FIRST, "Hi, here's the rest of it:\n\nLEARNED\nDelegate earlier.")
    assert "other" not in dropped.sections["texts"] and dropped.sections["texts"]["learned"] == "Delegate earlier."


@pytest.mark.parametrize(
    ("old", "new"),
    [("Hired a VP Sales.", "Hired a CFO."), ("An intro to a banker.", "An intro to a lawyer."),
     ("Our VP Engineering resigned.", "Our CTO resigned too.")],
)
def test_a_different_short_text_is_kept_beside_the_old_one_not_over_it(old: str, new: str) -> None:
    first = _merge(None, f"WINS\n{old}").sections
    merged = _merge(first, f"WINS\n{new}")
    assert merged.kind == "unclear" and merged.sections["texts"]["wins"] == f"{old}\n\n{new}"


def test_a_typo_fixed_replaces_the_section() -> None:
    merged = _merge(FIRST, "WINS\nClosed the Acme contarct.".replace("contarct", "contract, finally"))
    assert merged.kind == "correction"
    typo = _merge(_merge(None, "WINS\nClosed the Acme contarct.").sections, "WINS\nClosed the Acme contract.")
    assert typo.kind == "correction" and typo.sections["texts"]["wins"] == "Closed the Acme contract."


def test_the_rest_of_an_update_adds_to_it() -> None:
    first = _merge(None, PARTIAL).sections
    merged = _merge(first, "CHALLENGES\nHiring.\n\nTOPIC FOR THE GROUP\nA: pricing.\n\nASKS\nA CFO intro.")
    assert merged.kind == "addition"
    assert merged.sections["ratings"] == {"business": 4, "personal": 7, "family": 8}
    assert merged.sections["texts"]["wins"] == first["texts"]["wins"]
    assert merged.sections["texts"]["asks"] == "A CFO intro."


def test_a_word_like_changed_inside_a_sentence_is_not_a_correction() -> None:
    text = "Interest rates changed everything for us this month.\n\nWINS\nRefinanced the plant.\n\nASKS\nA treasury advisor."
    merged = _merge(FIRST, text)
    assert merged.sections["texts"]["wins"] == "Closed the Acme contract.\n\nRefinanced the plant."
    assert merged.sections["texts"]["other"] == "Interest rates changed everything for us this month."


def test_a_ratings_correction_in_prose_is_applied() -> None:
    merged = _merge(FIRST, "Correction to my ratings: business 6, personal 7, family 8")
    assert merged.sections["ratings"] == {"business": 6, "personal": 7, "family": 8}
    assert merged.replaced == ("ratings",)


def test_an_older_message_adds_but_never_replaces() -> None:
    corrected = _merge(FIRST, "Correction: WINS\nClosed Acme and Beta.").sections
    whole = "RATINGS\nBusiness: 5\nPersonal: 7\nFamily: 8\n\nWINS\nClosed Acme.\n\nCHALLENGES\nHiring.\n\nASKS\nA CFO."
    merged = merge(corrected, split_sections(whole).to_json(), whole, older=True)
    assert merged.sections["texts"]["wins"] == "Closed Acme and Beta.\n\nClosed Acme."
    assert "wins" in merged.flagged and merged.sections["ratings"]["business"] == 4


def test_a_note_with_files_is_kept_as_a_version() -> None:
    merged = merge(FIRST, split_sections("Thanks! See attached.").to_json(), "Thanks! See attached.", has_attachments=True)
    assert merged.kind == "attachment" and merged.sections == FIRST
    assert describe(merged.change) == "Added the attached files."


def test_skip_then_thanks_keeps_the_member_excused(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    ben = requests_by_email(session, settings, cycle)["ben@okafor.example"]
    post(client, raw_mode(reply(ben.token, "SKIP", sender=BEN)))
    post(client, raw_mode(reply(ben.token, "Thanks, see you next month!", sender=BEN)))
    session.expire_all()
    assert ben.excused_at is not None and ben.replied_at is None
    assert len(outbound(session, "receipt")) == 1
    assert "Ben Okafor (Okafor Logistics): excused" in _packet(session, settings, cycle).text


def test_a_first_message_that_only_says_later_is_not_a_reply(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    ben = requests_by_email(session, settings, cycle)["ben@okafor.example"]
    post(client, raw_mode(reply(ben.token, "Thanks, will send it by Friday.", sender=BEN)))
    session.expire_all()
    assert ben.replied_at is None and session.scalar(select(func.count(Update.id))) == 0
    assert outbound(session, "receipt") == []


def test_a_held_update_released_after_a_correction_does_not_undo_it(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.replies import release_held

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, FULL, sender=("Alice Chen", "alice.chen@gmail.example"))))
    held = session.scalars(select(InboundMessage)).one()
    assert held.status == "held"
    clock.set_now(NOW + timedelta(hours=1))
    post(client, raw_mode(reply(alice.token, "WINS\nClosed Acme and Beta.")))
    release_held(session, settings, held.id, clock.now())
    session.commit()
    latest = session.scalars(select(Update).order_by(Update.version.desc())).first()
    assert latest.version == 2 and latest.sections["texts"]["wins"] == "Closed Acme and Beta.\n\nClosed the Acme contract."
    assert latest.sections["flagged"] == ["wins"]
    assert latest.sections["texts"]["challenges"] == "Our VP Engineering resigned."


def test_a_reply_after_the_meeting_goes_to_the_next_meeting_even_before_its_requests(client, session, settings, group) -> None:  # type: ignore[no-untyped-def]
    from app.cycles import tick

    old = make_cycle(session, group, MEETING_DAY - timedelta(days=42))
    new = make_cycle(session, group, MEETING_DAY + timedelta(days=14))
    session.commit()
    old_alice = requests_by_email(session, settings, old)["alice@northwind.example"]
    clock.set_now(old.meeting_ends_at + timedelta(days=2))  # the next cycle's requests are weeks away
    post(client, raw_mode(reply(old_alice.token, FULL)))
    session.expire_all()
    assert session.scalars(select(Update)).one().request.cycle_id == new.id
    assert session.scalar(select(func.count(Update.id)).join(UpdateRequest).where(UpdateRequest.cycle_id == old.id)) == 0
    # When the requests go out, Alice, who has answered, gets none.
    clock.set_now(new.request_at + timedelta(minutes=1))
    tick(session, settings, clock.now())
    session.commit()
    asked = session.scalars(select(OutboundMessage.to_email).where(OutboundMessage.kind == "update_request", OutboundMessage.cycle_id == new.id)).all()
    assert sorted(asked) == ["ben@okafor.example", "carmen@ruizfoods.example"]


def test_receipts_stop_at_a_few_a_day_so_nothing_can_loop(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.replies import MAX_RECEIPTS_A_DAY

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, FULL)))
    for n in range(MAX_RECEIPTS_A_DAY + 2):  # a ticketing system that answers every receipt
        post(client, raw_mode(reply(alice.token, f"Your request #{1000 + n} has been logged by our helpdesk team.")))
    assert len(outbound(session, "receipt")) == MAX_RECEIPTS_A_DAY
    assert session.scalar(select(func.count(Update.id))) == MAX_RECEIPTS_A_DAY + 3  # nothing lost
