"""Processing stored replies: routing by token, checking the sender, versions, receipts, notices."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import roster
from app.addresses import find_tokens
from app.cycles import queue_requests
from app.models import Cycle, InboundMessage, Member, OutboundMessage, Update, UpdateRequest
from app.reading.message import read_message, safe_filename
from app.replies import process_inbound
from app.settings import Settings
from tests.conftest import NOW
from tests.mails import raw_mode, reply
from tests.test_webhook import post


def requests_by_email(session: Session, settings: Settings, cycle: Cycle) -> dict[str, UpdateRequest]:
    queue_requests(session, settings, cycle)
    session.commit()
    return {r.member.email: r for r in cycle.requests}


def outbound(session: Session, kind: str) -> list[OutboundMessage]:
    return list(session.scalars(select(OutboundMessage).where(OutboundMessage.kind == kind)))


def test_find_tokens_tolerates_stripped_plus_and_case() -> None:
    token = "0123456789abcdef0123456789abcdef"
    assert find_tokens([f"REPLY+{token.upper()}@IN.FORUM.EXAMPLE"]) == [token]
    assert find_tokens([f"reply{token}@in.forum.example"]) == [token]
    assert find_tokens(["someone@else.example", f"Roundtable <reply+{token}@x.example>"]) == [token]
    assert find_tokens(["reply+short@in.forum.example"]) == []


def test_safe_filename_cannot_climb_out() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\me\\plan.xlsx") == "plan.xlsx"
    assert safe_filename("..") == "attachment"


def test_reply_becomes_update_and_receipt_threads_under_request(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = requests_by_email(session, settings, cycle)
    alice = requests["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, "RATINGS\nBusiness: 7\nPersonal: 6\nFamily: 8\n\nWINS\nShipped v2.")))
    session.expire_all()
    assert alice.replied_at is not None
    update = session.scalars(select(Update)).one()
    assert update.version == 1
    assert update.sections["ratings"] == {"business": 7, "personal": 6, "family": 8}
    receipt = outbound(session, "receipt")
    assert len(receipt) == 1
    assert receipt[0].to_email == "alice@northwind.example"
    request_mail = session.scalar(select(OutboundMessage).where(OutboundMessage.dedupe_key == f"request:{cycle.id}:{alice.member_id}"))
    assert receipt[0].in_reply_to == request_mail.message_id
    assert receipt[0].status == "sent"  # in-process jobs: sent right after the commit


def test_second_reply_is_a_new_version_and_history_is_kept(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, "WINS\nFirst draft.")))
    post(client, raw_mode(reply(alice.token, "WINS\nCorrected: closed two deals.")))
    updates = session.scalars(select(Update).order_by(Update.version)).all()
    assert [u.version for u in updates] == [1, 2]
    assert updates[0].sections["texts"]["wins"] == "First draft."
    assert updates[1].sections["texts"]["wins"] == "Corrected: closed two deals."
    assert len(outbound(session, "receipt")) == 2


def test_skip_excuses_the_member(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    ben = requests_by_email(session, settings, cycle)["ben@okafor.example"]
    post(client, raw_mode(reply(ben.token, "skip this month", sender=("Ben Okafor", "ben@okafor.example"))))
    session.expire_all()
    assert ben.excused_at is not None and ben.replied_at is None
    receipt = outbound(session, "receipt")[0]
    assert receipt.context["is_skip"] is True


def test_reply_all_with_another_members_token_credits_the_sender(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = requests_by_email(session, settings, cycle)
    alice, ben = requests["alice@northwind.example"], requests["ben@okafor.example"]
    # Ben hits Reply-All on a thread where Alice's reply address is in To and his own in Cc.
    message = reply(
        alice.token,
        "WINS\nBen's news.",
        sender=("Ben Okafor", "ben@okafor.example"),
        cc=f"reply+{ben.token}@in.forum.example",
    )
    post(client, raw_mode(message, envelope_to=[f"reply+{alice.token}@in.forum.example"]))
    update = session.scalars(select(Update)).one()
    assert update.update_request_id == ben.id


def test_token_from_a_stranger_is_held_and_the_facilitator_told(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, "WINS\nForwarded along.", sender=("Pat Assistant", "pat@northwind.example"))))
    row = session.scalars(select(InboundMessage)).one()
    assert row.status == "held"
    assert "pat@northwind.example" in row.reason
    assert session.scalar(select(func.count(Update.id))) == 0
    notice = outbound(session, "held_notice")
    assert [n.to_email for n in notice] == ["dana@facilitation.example"]


def test_alternate_address_is_accepted(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    member = session.get_one(Member, alice.member_id)
    roster.add_alternate_address(session, member, "alice.chen@gmail.example")
    session.commit()
    post(client, raw_mode(reply(alice.token, "WINS\nFrom my phone.", sender=("Alice", "Alice.Chen@gmail.example"))))
    assert session.scalars(select(InboundMessage)).one().status == "accepted"


def test_release_held_applies_it(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.replies import release_held

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, "WINS\nVia my assistant.", sender=("Pat", "pat@northwind.example"))))
    row = session.scalars(select(InboundMessage)).one()
    outcome = release_held(session, settings, row.id, NOW)
    session.commit()
    assert outcome.outbound_ids
    assert session.scalars(select(Update)).one().update_request_id == alice.id
    assert release_held(session, settings, row.id, NOW).outbound_ids == []  # safe twice


def test_unknown_sender_gets_one_polite_notice_a_day(client, session) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        post(client, raw_mode(reply(None, f"Hello, is this the forum? ({n})", sender=("Sam", "sam@elsewhere.example"))))
    rows = session.scalars(select(InboundMessage)).all()
    assert [r.status for r in rows] == ["rejected"] * 3
    assert all("no reply token" in r.reason for r in rows)
    notices = outbound(session, "notice")
    assert len(notices) == 1 and notices[0].to_email == "sam@elsewhere.example"


def test_out_of_office_is_recorded_never_answered(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    message = reply(alice.token, "I am out of the office until Monday.", subject="Automatic reply: Your update",
                    headers={"Auto-Submitted": "auto-replied"})
    post(client, raw_mode(message))
    row = session.scalars(select(InboundMessage)).one()
    assert (row.status, row.kind) == ("ignored", "auto_reply")
    session.expire_all()
    assert alice.replied_at is None
    assert session.scalar(select(func.count(OutboundMessage.id)).where(OutboundMessage.kind != "update_request")) == 0


def test_thread_fallback_routes_by_in_reply_to(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    request_mail = session.scalar(select(OutboundMessage).where(OutboundMessage.dedupe_key == f"request:{cycle.id}:{alice.member_id}"))
    message = reply(None, "WINS\nThe plus address got lost.", headers={"In-Reply-To": request_mail.message_id})
    post(client, raw_mode(message))
    assert session.scalars(select(Update)).one().update_request_id == alice.id


def test_processing_twice_changes_nothing(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    post(client, raw_mode(reply(alice.token, "WINS\nOnce.")))
    row = session.scalars(select(InboundMessage)).one()
    outcome = process_inbound(session, settings, row.id, NOW)
    session.commit()
    assert outcome.outbound_ids == []
    assert session.scalar(select(func.count(Update.id))) == 1


def test_read_message_of_html_only_reply() -> None:
    message = reply(
        "0123456789abcdef0123456789abcdef",
        "",
        html="<div><p><b>Wins</b></p><p>Signed <a href='https://acme.example'>Acme</a>.</p></div>",
    )
    reading = read_message(bytes(message))
    assert reading.kind == "reply"
    assert reading.tokens == ["0123456789abcdef0123456789abcdef"]
    assert "Signed Acme" in reading.sections["texts"]["wins"]
    assert "<" not in reading.text
