"""Asks: mail held at a group's address (the facilitator is told, and may release it as a member's
ask), a facilitator's own mail to the group's address, and the asker's withdrawal."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import mail, roster
from app.asks import closure, held
from app.asks.packet import listing
from app.asks.sources import create_ask
from app.asks.tick import tick as asks_tick
from app.models import Ask, AskCirculation, InboundMessage, OutboundMessage
from tests.conftest import NOW, make_cycle
from tests.mails import FORUM, parsed_mode, raw_mode, reply
from tests.test_asks import ALICE, BEN, CARMEN, DANA, MODES, member, new_group, send, sent, to_group
from tests.test_repair import run  # noqa: F401 - a fixture
from tests.test_rq import web  # noqa: F401 - the webhook on Redis settings (a fixture)
from tests.test_webhook import post

STRANGER = ("Growth Team", "promo@leads.example")
SPAM = ("Hi there, we help CEOs like you fill the pipeline with verified leads. Book a call at "
        "https://leads.example/book?ref=hudson and see. " + "We guarantee results, every single month. " * 20
        + "SECRET-TAIL-WORDS")


def roundtable(*args: str) -> Any:
    from app.cli import main

    return CliRunner().invoke(main, list(args))


def last_inbound(session) -> InboundMessage:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()


# --- pure ------------------------------------------------------------------------------------------


def test_excerpt_is_one_short_line_without_links() -> None:
    text = held.excerpt(SPAM)
    assert len(text) <= held.EXCERPT_CHARS + 1 and text.endswith("…") and "\n" not in text
    assert "https://" not in text and "[link]" in text and "SECRET-TAIL-WORDS" not in text
    assert held.excerpt("  Intro to\n\nThermo Fisher?  ") == "Intro to Thermo Fisher?"


@pytest.mark.parametrize(
    ("text", "language", "withdraws"),
    [
        ("WITHDRAW", "en", True),
        ("Please cancel this ask", "en", True),
        ("Never mind, I will ask elsewhere", "en", True),
        ("Don't cancel, still looking", "en", False),
        ("not withdrawn, still keen", "en", False),
        ("Retirar, gracias", "es", True),
        ("Bitte zurückziehen", "de", True),
        ("Annulé, merci", "fr", True),
        ("Retirar, gracias", "en", False),  # Spanish counts in a Spanish-speaking group only
        ("Thanks Ben, that is a great lead", "en", False),
        ("done", "en", False),
    ],
)
def test_withdrawing_words(text: str, language: str, withdraws: bool) -> None:
    assert closure.is_withdrawal(text, language) is withdraws


# --- held mail at the group's address ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_stranger_is_held_the_facilitator_told_once_and_can_release_it(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson")
    roster.add_facilitator(session, group, name="Eli Co-Chair", email="eli@facilitation.example")
    session.commit()
    message = to_group("hudson", SPAM, sender=STRANGER, subject="Grow your pipeline 10x")
    send(client, message, mode)
    row = last_inbound(session)
    assert row.status == "held" and "not a member" in row.reason
    notices = sent(session, "ask_held_notice")
    assert sorted(n.to_email for n in notices) == ["dana@facilitation.example", "eli@facilitation.example"]
    assert all(n.status == "sent" and n.group_id == group.id and n.context["inbound_id"] == row.id for n in notices)
    rendered = mail.render("ask_held_notice", notices[0].context)
    assert f"roundtable asks hudson --release {row.id} --as MEMBER_EMAIL" in rendered.text
    # A short excerpt only: not the stranger's whole text, not their link.
    for body in (rendered.text, rendered.html):
        assert "SECRET-TAIL-WORDS" not in body and "leads.example/book" not in body
    assert "Hi there, we help CEOs like you" in rendered.text
    # Nobody in the group saw it; no ask.
    assert session.scalars(select(Ask)).all() == [] and sent(session, "ask_circulated") == []
    # SendGrid posts it again: stored once, the facilitators told once.
    send(client, message, mode)
    assert len(sent(session, "ask_held_notice")) == 2

    refused = roundtable("asks", "hudson", "--release", str(row.id))
    assert refused.exit_code == 1 and "--as MEMBER_EMAIL" in refused.output
    assert roundtable("asks", "hudson", "--release", str(row.id), "--as", "nobody@x.example").exit_code == 1
    assert roundtable("asks", "bay", "--release", str(row.id), "--as", BEN[1]).exit_code == 1  # no such group
    assert session.scalars(select(Ask)).all() == []
    # The facilitator vouches: it becomes Ben's ask, exactly as if Ben had written it.
    released = roundtable("asks", "hudson", "--release", str(row.id), "--as", BEN[1])
    assert released.exit_code == 0, released.output
    ask = session.scalars(select(Ask)).one()
    assert released.output.startswith(f"message {row.id} released: ask {ask.id} from Ben Okafor, open")
    assert (ask.member.email, ask.source_key, ask.inbound_message_id) == (BEN[1], f"inbound:{row.id}", row.id)
    assert ask.text.startswith("Grow your pipeline 10x\n\nHi there")
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [ALICE[1], CARMEN[1]]
    assert [o.to_email for o in sent(session, "ask_status")] == [BEN[1]]
    row = last_inbound(session)
    assert row.status == "accepted" and row.reason.startswith("released by the facilitator as Ben Okafor's (held: ")
    # Twice does nothing more.
    outbound = len(session.scalars(select(OutboundMessage)).all())
    again = roundtable("asks", "hudson", "--release", str(row.id), "--as", BEN[1])
    assert again.exit_code == 0 and f"is ask {ask.id} already" in again.output
    assert len(session.scalars(select(OutboundMessage)).all()) == outbound and len(session.scalars(select(Ask)).all()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_member_failing_authentication_is_released_without_vouching(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson", ask_circulation="immediate")
    session.commit()
    message = to_group("hudson", "Intro to someone at Thermo Fisher?", sender=CARMEN)
    auth = {"SPF": "fail", "dkim": "{@ruizfoods.example : fail}"}
    assert post(client, raw_mode(message, auth=auth) if mode == "raw" else parsed_mode(message, auth=auth)).status_code == 200
    row = last_inbound(session)
    assert row.status == "held" and "authentication" in row.reason
    notice, = sent(session, "ask_held_notice")
    assert notice.context["is_members_address"] and notice.context["member_email"] == CARMEN[1]
    assert f"roundtable asks hudson --release {row.id}\n" in mail.render("ask_held_notice", notice.context).text
    released = roundtable("asks", "hudson", "--release", str(row.id))
    assert released.exit_code == 0, released.output
    ask = session.scalars(select(Ask)).one()
    assert ask.member.email == CARMEN[1] and ask.status == "open"
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [ALICE[1], BEN[1]]


def test_a_member_from_an_unknown_address_is_named_as_likely(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Intro to Thermo Fisher?", sender=("Alice Chen", "alice.chen@gmail.example")), "parsed")
    notice, = sent(session, "ask_held_notice")
    text = mail.render("ask_held_notice", notice.context).text
    assert "It may be Alice Chen writing from an address we do not know" in text
    assert "roundtable member alias alice@northwind.example alice.chen@gmail.example --group hudson" in text


def test_machine_mail_to_the_group_address_tells_nobody(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    message = to_group("hudson", "I am out of the office until Monday.", sender=STRANGER, subject="Out of office")
    message["Auto-Submitted"] = "auto-replied"
    send(client, message, "raw")
    assert last_inbound(session).status == "ignored"
    assert sent(session, "ask_held_notice") == []


def test_a_flood_of_strangers_reaches_the_facilitator_ten_times_a_day(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    for n in range(held.MAX_NOTICES_A_DAY + 2):
        send(client, to_group("hudson", f"Offer number {n}", sender=STRANGER), "raw")
    assert len(sent(session, "ask_held_notice")) == held.MAX_NOTICES_A_DAY
    rows = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    assert all(r.status == "held" for r in rows)
    assert "Dana Whitfield not told (10 held-mail notices today already)" in rows[-1].reason


def test_release_refuses_what_is_not_held_group_mail(run, client, session, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    group = new_group(session, "hudson")
    new_group(session, "bay")
    session.commit()
    send(client, to_group("hudson", "Intro to Thermo Fisher?"), "raw")  # Alice: accepted, an ask
    accepted = last_inbound(session)
    send(client, to_group("hudson", "Buy our leads list!", sender=STRANGER), "raw")
    stranger = last_inbound(session)
    result = roundtable("asks", "hudson", "--release", str(accepted.id), "--as", BEN[1])
    assert result.exit_code == 0 and "already" in result.output  # it is Alice's ask: nothing more
    result = roundtable("asks", "bay", "--release", str(stranger.id), "--as", BEN[1])
    assert result.exit_code == 1 and "is not mail held at bay's address" in result.output
    # An offer from an address we do not know, Reply-All with the group's address in Cc: held as
    # an offer, and not something to release as an ask.
    ask = session.scalars(select(Ask)).one()
    ben = next(c for c in ask.circulations if c.member.email == BEN[1])
    send(client, reply(ben.token, "Happy to help, from Ben's assistant", sender=("Ben's EA", "ea@okafor.example"),
                       cc=f"hudson@{FORUM}"), "raw")
    offer = last_inbound(session)
    assert offer.status == "held" and offer.kind != "ask"
    result = roundtable("asks", "hudson", "--release", str(offer.id), "--as", BEN[1])
    assert result.exit_code == 1 and "is not mail held at hudson's address" in result.output
    assert roundtable("asks", "hudson", "--as", BEN[1]).exit_code == 2  # --as alone
    assert roundtable("asks", "hudson", "--release", "99999").exit_code == 1
    assert session.scalars(select(Ask)).one().member_id == member(session, group, ALICE[1]).id
    # `inbound release` (for update replies) points to the asks' command.
    result = run("inbound", "release", str(stranger.id))
    assert result.exit_code == 1 and f"roundtable asks GROUP --release {stranger.id}" in result.output


# --- a facilitator writing to the group's address -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_facilitators_mail_to_the_group_is_not_circulated_and_they_are_told(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson", ask_circulation="immediate")
    roster.add_facilitator(session, group, name="Eli Co-Chair", email="eli@facilitation.example")
    session.commit()
    message = to_group("hudson", "Alice asked me to pass this on: an intro to someone at Thermo Fisher?",
                       sender=DANA, subject="For Alice")
    send(client, message, mode)
    row = last_inbound(session)
    assert row.status == "held" and "from its facilitator Dana Whitfield" in row.reason
    assert session.scalars(select(Ask)).all() == [] and sent(session, "ask_circulated") == []
    notice, = sent(session, "ask_held_notice")  # to Dana alone, in reply to her mail
    assert (notice.to_email, notice.in_reply_to, notice.status) == (DANA[1], row.message_id, "sent")
    text = mail.render("ask_held_notice", notice.context)
    assert text.subject == f"Your mail to hudson@{FORUM} was not sent to the group"
    # Passing on a member's ask: one command, and it circulates as Alice's (offers go to her).
    released = roundtable("asks", "hudson", "--release", str(row.id), "--as", ALICE[1])
    assert released.exit_code == 0, released.output
    ask = session.scalars(select(Ask)).one()
    assert ask.member.email == ALICE[1]
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [BEN[1], CARMEN[1]]


def test_a_facilitator_failing_authentication_is_a_stranger(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson")
    roster.add_facilitator(session, group, name="Eli Co-Chair", email="eli@facilitation.example")
    session.commit()
    message = to_group("hudson", "Wire the fees to this account", sender=DANA)
    post_body = raw_mode(message, auth={"SPF": "fail", "dkim": "{@facilitation.example : fail}"})
    assert post(client, post_body).status_code == 200
    row = last_inbound(session)
    assert row.status == "held" and "not a member" in row.reason
    notices = sent(session, "ask_held_notice")
    assert sorted(n.to_email for n in notices) == [DANA[1], "eli@facilitation.example"]
    assert not any(n.context["from_facilitator"] for n in notices)


# --- withdrawal -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_asker_withdraws_and_what_waits_is_never_sent(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson")  # daily: the second ask of the day waits for the digest
    cycle = make_cycle(session, group)
    session.commit()
    send(client, to_group("hudson", "A good co-packer in New Jersey?", sender=BEN), mode)
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), mode)
    ask = session.scalars(select(Ask).where(Ask.member_id == member(session, group, ALICE[1]).id)).one()
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [ALICE[1], BEN[1], CARMEN[1]]
    waiting = session.scalars(select(AskCirculation).where(AskCirculation.ask_id == ask.id,
                                                           AskCirculation.sent_at.is_(None))).one()
    assert waiting.member.email == CARMEN[1]
    status = sent(session, "ask_status")[-1]
    # Alice replies to her ask's status email.
    send(client, reply(ask.token, "Please cancel this ask, we went another way.",
                       headers={"In-Reply-To": status.message_id}), mode)
    session.expire_all()
    ask = session.get_one(Ask, ask.id)
    assert (ask.status, ask.note) == ("closed", closure.WITHDRAWN) and closure.is_withdrawn(ask)
    row = last_inbound(session)
    assert row.status == "accepted" and "withdrawn by the asker" in row.reason
    told = [o for o in sent(session, "ask_status") if o.context["ask_id"] == ask.id]
    assert [o.context["event"] for o in told] == ["open", "withdrawn"] and told[-1].status == "sent"
    assert mail.render("ask_status", told[-1].context).subject == "Your ask is withdrawn"
    # The next day's digest does not carry it: Carmen never sees it.
    assert asks_tick(session, settings, NOW + timedelta(days=1)) == []
    session.commit()
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [ALICE[1], BEN[1], CARMEN[1]]
    assert not any("Thermo" in str(o.context) for o in sent(session, "ask_circulated") if o.to_email == CARMEN[1])
    # Withdrawing again changes nothing more; no thanks, no follow-up.
    send(client, reply(ask.token, "withdraw"), mode)
    assert "closed already" in last_inbound(session).reason
    assert len([o for o in sent(session, "ask_status") if o.context["ask_id"] == ask.id]) == 2
    closure.queue_follow_ups(session, settings, NOW + timedelta(days=30))  # Ben's ask is still open
    assert sent(session, "ask_thanks") == [] and [o.context["ask_id"] for o in sent(session, "ask_followup")] == [
        a.id for a in session.scalars(select(Ask)) if a.id != ask.id]
    # The packet and the command show it as withdrawn.
    entry, = [a for a in listing(session, cycle)["closed"]]
    assert entry["withdrawn"] and entry["name"] == "Alice Chen"
    from app.packets import compile_packet

    compile_packet(session, settings, cycle.id, NOW)
    session.commit()
    packet = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "packet")).first()
    assert "[withdrawn by the asker]" in mail.render("packet", packet.context).text
    result = roundtable("asks", "hudson")
    assert "withdrawn by the asker" in result.output


def test_a_withdrawal_in_the_groups_language_and_a_queued_email_cancelled(session, settings) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson", ask_circulation="immediate", language="es")
    alice = member(session, group, ALICE[1])
    ask, queued = create_ask(session, settings, alice, "¿Alguien conoce un buen abogado laboral?", "test:1", NOW)
    assert ask is not None and len(sent(session, "ask_circulated")) == 2
    assert closure.is_withdrawal("Retirar, gracias", group.language)
    assert closure.withdraw(ask, NOW) and not closure.withdraw(ask, NOW)
    session.commit()
    for outbound_id in queued:
        mail.deliver(session, settings, outbound_id)
    rows = sent(session, "ask_circulated")
    assert [r.status for r in rows] == ["cancelled", "cancelled"]
    assert list(Path(settings.outbox_dir).glob("*ask_circulated*")) == []


def test_a_withdrawn_ask_cannot_be_approved(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson", asks_need_approval=True)
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "raw")
    ask = session.scalars(select(Ask)).one()
    send(client, reply(ask.token, "Never mind, withdraw it"), "raw")
    send(client, reply(ask.approval_token, "APPROVE", sender=DANA), "raw")
    session.expire_all()
    assert session.get_one(Ask, ask.id).status == "closed" and sent(session, "ask_circulated") == []
    assert "is closed already" in last_inbound(session).reason


# --- real rq workers (PostgreSQL and Redis; skipped without REDIS_URL) -------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_held_notice_and_withdrawal_with_real_workers(redis_settings, session, web, mode) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.test_rq import fetch, run_worker

    new_group(session, "hudson")
    session.commit()
    send(web, to_group("hudson", "Buy our leads list!", sender=STRANGER), mode)
    send(web, to_group("hudson", "A good co-packer in New Jersey?", sender=BEN), mode)
    assert run_worker(redis_settings) == []
    [notice] = fetch(redis_settings, select(OutboundMessage).where(OutboundMessage.kind == "ask_held_notice"))
    assert (notice.to_email, notice.status) == (DANA[1], "sent")
    [ask] = fetch(redis_settings, select(Ask))
    send(web, reply(ask.token, "Withdraw, thanks", sender=BEN), mode)
    assert run_worker(redis_settings) == []
    [ask] = fetch(redis_settings, select(Ask))
    assert (ask.status, ask.note) == ("closed", closure.WITHDRAWN)
    withdrawn = [o for o in fetch(redis_settings, select(OutboundMessage).where(OutboundMessage.kind == "ask_status"))
                 if o.context["event"] == "withdrawn"]
    assert [(o.to_email, o.status) for o in withdrawn] == [(BEN[1], "sent")]
