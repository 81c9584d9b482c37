"""Asks end to end: from an update and from the group's address, circulated to the group's other
members only; offers routed privately (Reply-All too); closure; the follow-up; approval; the
weekly limit; digests; strangers held; two groups whose names and addresses collide."""

from __future__ import annotations

import json
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, mail, roster
from app.asks import circulate, closure, control, kinds
from app.asks.inbound import group_slugs
from app.asks.sources import ask_items, mail_text
from app.asks.tick import tick as asks_tick
from app.cycles import queue_requests
from app.models import (
    Ask,
    AskCirculation,
    Group,
    InboundMessage,
    Member,
    Offer,
    OutboundMessage,
    UpdateRequest,
)
from app.settings import Settings
from tests.conftest import NOW, make_cycle
from tests.mails import FORUM, parsed_mode, raw_mode, reply
from tests.test_repair import run  # noqa: F401 - a fixture
from tests.test_rq import web  # noqa: F401 - the webhook on Redis settings (a fixture)
from tests.test_webhook import post

ALICE = ("Alice Chen", "alice@northwind.example")
BEN = ("Ben Okafor", "ben@okafor.example")
CARMEN = ("Carmen Ruiz", "carmen@ruizfoods.example")
DANA = ("Dana Whitfield", "dana@facilitation.example")
MODES = ["raw", "parsed"]


# --- pure ------------------------------------------------------------------------------------------


def test_ask_items_one_per_item() -> None:
    assert ask_items("- Intro to someone at Thermo Fisher\n- A fractional CFO\n  for six months") == [
        "Intro to someone at Thermo Fisher",
        "A fractional CFO for six months",
    ]
    assert ask_items("1. Intro to a litigator.\n2) Has anyone used a PEO?") == [
        "Intro to a litigator.", "Has anyone used a PEO?"
    ]
    assert ask_items("Intro to someone at Thermo Fisher.\nHas anyone used a fractional CFO?") == [
        "Intro to someone at Thermo Fisher.", "Has anyone used a fractional CFO?"
    ]
    assert ask_items("An introduction to a good interim CTO\nor a recruiter who knows robotics.") == [
        "An introduction to a good interim CTO or a recruiter who knows robotics."
    ]
    assert ask_items("None this month.") == [] and ask_items("n/a") == [] and ask_items("") == []


def test_kinds_from_words_and_corrections() -> None:
    assert kinds.classify("Who knows a good construction litigator?") == "supplier"
    assert kinds.classify("Intro to someone at Thermo Fisher?") == "introduction"
    assert kinds.classify("Has anyone used a fractional CFO?") == "hire"
    assert kinds.classify("We are raising a $2M round: any angel investors?") == "capital"
    assert kinds.classify("Looking for buyers in grocery retail") == "customer"
    assert kinds.classify("Lunch?") == "other"
    assert kinds.correction("KIND: capital") == "capital"
    assert kinds.correction("Category - supplier or partner\nthanks") == "supplier"
    assert kinds.correction("this is an introduction") == "introduction"
    assert kinds.correction("thanks for sending it") is None
    assert kinds.is_facilitator_only("[Facilitator only] a coach for my co-founder")
    assert kinds.without_marks("[facilitator only] a coach for my co-founder") == "a coach for my co-founder"


@pytest.mark.parametrize(
    ("text", "language", "closes"),
    [
        ("done", "en", True),
        ("Sorted, thanks Ben!", "en", True),
        ("Resolved. Many thanks to everyone.", "en", True),
        ("All sorted thanks", "en", True),
        ("not sorted yet, still looking", "en", False),
        ("Is it done yet? I am still waiting on two people and would love more ideas from the group here", "en", False),
        ("Resuelto, gracias Ben", "es", True),
        ("Résolu, merci !", "fr", True),
        ("Erledigt, danke", "de", True),
        ("Resuelto, gracias", "en", False),  # Spanish words count in a Spanish-speaking group only
        ("Thanks, still looking", "en", False),
    ],
)
def test_closing_words(text: str, language: str, closes: bool) -> None:
    assert closure.is_closure(text, language) is closes


def test_decisions_limits_and_addresses() -> None:
    assert control.read_decision("APPROVE") == ("approve", "")
    assert control.read_decision("Approved, thanks") == ("approve", "")
    assert control.read_decision("HOLD: let's talk about it on Thursday") == ("hold", "let's talk about it on Thursday")
    assert control.read_decision("What is this?") is None
    status, note = control.initial_status(facilitator_only=False, needs_approval=False, asked_this_week=3, per_week=3)
    assert status == "held" and "limit is 3 asks a week" in (note or "")
    assert control.initial_status(facilitator_only=False, needs_approval=False, asked_this_week=9, per_week=0)[0] == "open"
    assert control.initial_status(facilitator_only=True, needs_approval=True, asked_this_week=0, per_week=3)[0] == (
        "facilitator_only"
    )
    assert group_slugs(["Hudson@IN.forum.example", "ask+bay@in.forum.example", "x@other.example",
                        f"reply+{'0' * 32}@in.forum.example", "reply-partners@in.forum.example"], FORUM) == [
                           "hudson", "bay", "reply-partners"]
    assert circulate.due_now("daily", NOW - timedelta(hours=23), NOW) is False
    assert circulate.due_now("daily", NOW - timedelta(hours=24), NOW) is True
    assert circulate.due_now("immediate", NOW - timedelta(minutes=1), NOW) is True
    assert mail_text("Re: Ask", "Intro to Thermo Fisher?") == "Intro to Thermo Fisher?"
    assert mail_text("Fractional CFO", "Has anyone used one?") == "Fractional CFO\n\nHas anyone used one?"


# --- building groups and mail ------------------------------------------------------------------------


def new_group(session: Session, slug: str, *, name: str = "Hudson Valley CEO Forum", **settings: Any) -> Group:
    group = roster.create_group(session, name=name, timezone="America/New_York", facilitator_name=DANA[0],
                                facilitator_email=DANA[1], slug=slug)
    for member_name, email, company in [(*ALICE, "Northwind Robotics"), (*BEN, "Okafor Logistics"),
                                        (*CARMEN, "Ruiz Foods")]:
        roster.add_member(session, group, name=member_name, email=email, company=company)
    for key, value in settings.items():
        setattr(group, key, value)
    session.flush()
    return group


def send(client: Any, message: EmailMessage, mode: str, envelope_to: list[str] | None = None) -> None:
    body = raw_mode(message, envelope_to) if mode == "raw" else parsed_mode(message, envelope_to=envelope_to)
    assert post(client, body).status_code == 200


def to_group(slug: str, body: str, *, sender: tuple[str, str] = ALICE, subject: str = "Ask",
             prefix: str = "") -> EmailMessage:
    message = reply(None, body, sender=sender, subject=subject)
    del message["To"]
    message["To"] = f"{slug} <{prefix}{slug}@{FORUM}>"
    return message


def member(session: Session, group: Group, email: str) -> Member:
    return session.scalars(select(Member).where(Member.group_id == group.id, Member.email == email)).one()


def sent(session: Session, kind: str) -> list[OutboundMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboundMessage).where(OutboundMessage.kind == kind).order_by(OutboundMessage.id)))


def circulation_for(session: Session, ask: Ask, email: str) -> AskCirculation:
    return next(c for c in ask.circulations if c.member.email == email)


def outbox_recipients(settings: Settings, kind: str) -> list[str]:
    """Who the emails of `kind` in the outbox went to, as written to disk."""
    found = []
    for path in sorted(Path(settings.outbox_dir).glob(f"*-{kind}-*.eml")):
        text = path.read_text()
        found.append(next(line for line in text.splitlines() if line.startswith("To: "))[4:])
    return found


# --- from an update ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_asks_from_an_update_circulate_to_the_other_members_once(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson", ask_circulation="immediate")
    cycle = make_cycle(session, group)
    queue_requests(session, settings, cycle)
    session.commit()
    alice = session.scalars(select(UpdateRequest).join(Member).where(Member.email == ALICE[1])).one()
    body = "WINS\nShipped v2.\n\nASKS\n- Intro to someone at Thermo Fisher\n- Has anyone used a fractional CFO?"
    send(client, reply(alice.token, body), mode)
    asks = session.scalars(select(Ask).order_by(Ask.id)).all()
    assert [(a.text, a.kind, a.status) for a in asks] == [
        ("Intro to someone at Thermo Fisher", "introduction", "open"),
        ("Has anyone used a fractional CFO?", "hire", "open"),
    ]
    circulated = sent(session, "ask_circulated")
    assert sorted(o.to_email for o in circulated) == sorted([BEN[1], CARMEN[1]] * 2)  # never Alice, never Dana
    assert all(o.status == "sent" and o.group_id == group.id for o in circulated)
    assert len({o.reply_to for o in circulated}) == 4  # a reply address per member and ask
    assert sorted(outbox_recipients(settings, "ask_circulated")) == sorted(
        [f"{BEN[0]} <{BEN[1]}>", f"{CARMEN[0]} <{CARMEN[1]}>"] * 2)
    statuses = sent(session, "ask_status")
    assert [o.to_email for o in statuses] == [ALICE[1]] * 2
    assert [o.to_email for o in sent(session, "ask_notice")] == [DANA[1]] * 2
    # A later version of the same update (a correction that keeps the asks) circulates nothing again;
    # an added ask circulates alone.
    send(client, reply(alice.token, "One more ask: a good co-packer in New Jersey"), mode)
    send(client, reply(alice.token, "Correction:\n\nWINS\nShipped v2 and v2.1."), mode)
    session.expire_all()
    assert [a.text for a in session.scalars(select(Ask).order_by(Ask.id))][2:] == ["a good co-packer in New Jersey"]
    assert len(sent(session, "ask_circulated")) == 6


# --- from the group's address ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_ask_to_the_group_address_circulates_and_a_stranger_is_held(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    group = new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Who knows a good construction litigator in Westchester?", sender=BEN,
                          prefix="ask+"), mode)
    ask = session.scalars(select(Ask)).one()
    assert (ask.member.email, ask.kind, ask.status, ask.group_id) == (BEN[1], "supplier", "open", group.id)
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [ALICE[1], CARMEN[1]]
    # A stranger writing to the group's address is held with the reason, never circulated.
    send(client, to_group("hudson", "Buy our leads list!", sender=("Spam", "promo@leads.example")), mode)
    row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert row.status == "held" and "promo@leads.example" in row.reason and "not a member" in row.reason
    assert session.scalars(select(Ask)).all() == [ask]
    # Mail that fails sender authentication is held too, even from a member's address.
    message = to_group("hudson", "Intro to Thermo Fisher?", sender=CARMEN)
    body = raw_mode(message, auth={"SPF": "fail", "dkim": "{@ruizfoods.example : fail}"}) if mode == "raw" else \
        parsed_mode(message, auth={"SPF": "fail", "dkim": "{@ruizfoods.example : fail}"})
    post(client, body)
    row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert row.status == "held" and "authentication" in row.reason
    assert len(session.scalars(select(Ask)).all()) == 1
    assert len(sent(session, "ask_circulated")) == 2


def test_facilitator_only_never_circulates(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "[facilitator only] A coach for my co-founder, quietly."), "raw")
    ask = session.scalars(select(Ask)).one()
    assert ask.status == "facilitator_only" and ask.text == "A coach for my co-founder, quietly."
    assert sent(session, "ask_circulated") == [] and session.scalars(select(AskCirculation)).all() == []
    assert [o.to_email for o in sent(session, "ask_notice")] == [DANA[1]]
    assert asks_tick(session, settings, NOW + timedelta(days=2)) == []
    # In an update, the mark on a line of its own keeps the whole asks section private.
    group = session.scalars(select(Group)).one()
    cycle = make_cycle(session, group)
    queue_requests(session, settings, cycle)
    session.commit()
    ben = session.scalars(select(UpdateRequest).join(Member).where(Member.email == BEN[1])).one()
    send(client, reply(ben.token, "ASKS\n[Facilitator only]\n- A divorce lawyer\n- A therapist", sender=BEN), "raw")
    assert [(a.text, a.status) for a in session.scalars(select(Ask).where(Ask.member_id == ben.member_id))] == [
        ("A divorce lawyer", "facilitator_only"), ("A therapist", "facilitator_only")]
    assert sent(session, "ask_circulated") == []


# --- offers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_offer_by_reply_all_goes_privately_to_the_asker(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), mode)
    ask = session.scalars(select(Ask)).one()
    ben = circulation_for(session, ask, BEN[1])
    carmen = circulation_for(session, ask, CARMEN[1])
    circulated = ben.outbound
    # Ben hits Reply-All: our address, the group's address, Carmen's own ask address and Carmen herself.
    offer = reply(ben.token, "I know their VP of procurement, happy to intro.\n\nBen", sender=BEN,
                  subject="Re: " + mail.render("ask_circulated", circulated.context).subject,
                  cc=f"hudson@{FORUM}, reply+{carmen.token}@{FORUM}, {CARMEN[1]}",
                  headers={"In-Reply-To": circulated.message_id})
    send(client, offer, mode, envelope_to=[f"reply+{ben.token}@{FORUM}", f"hudson@{FORUM}", f"reply+{carmen.token}@{FORUM}"])
    session.expire_all()
    logged = session.scalars(select(Offer)).one()
    assert (logged.member.email, logged.ask_id) == (BEN[1], ask.id)
    assert logged.text.startswith("I know their VP of procurement")
    to_asker, = sent(session, "ask_offer")
    copy, = sent(session, "ask_offer_copy")
    assert (to_asker.to_email, to_asker.reply_to) == (ALICE[1], BEN[1])
    assert (copy.to_email, copy.reply_to, copy.in_reply_to) == (BEN[1], ALICE[1], circulated.message_id)
    assert to_asker.context["helper_name"] == "Ben Okafor" and to_asker.context["helper_email"] == BEN[1]
    # Nobody else got anything: no new ask from the group address in Cc, nothing to Carmen.
    assert len(session.scalars(select(Ask)).all()) == 1
    assert sorted(o.to_email for o in session.scalars(select(OutboundMessage)) if o.kind != "ask_notice") == sorted(
        [ALICE[1], BEN[1], CARMEN[1], BEN[1], ALICE[1]])  # status to Alice, 2 circulated, offer, copy
    assert outbox_recipients(settings, "ask_offer") == [f"{ALICE[0]} <{ALICE[1]}>"]
    assert session.get_one(Ask, ask.id).status == "answered"
    # The same offer posted again (SendGrid retries) is stored once and routed once.
    send(client, offer, mode)
    assert len(sent(session, "ask_offer")) == 1


def test_a_reply_without_our_reply_address_is_placed_by_its_thread(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "raw")
    ask = session.scalars(select(Ask)).one()
    circulated = circulation_for(session, ask, CARMEN[1]).outbound
    status = sent(session, "ask_status")[0]
    # Carmen's client dropped the Reply-To: she wrote to our From address, in the thread.
    message = reply(None, "I can introduce you to their CSO.", sender=CARMEN,
                    headers={"In-Reply-To": circulated.message_id, "References": circulated.message_id})
    send(client, message, "raw")
    offer, = sent(session, "ask_offer")
    assert offer.to_email == ALICE[1] and offer.reply_to == CARMEN[1]
    message = reply(None, "done, thanks Carmen", headers={"In-Reply-To": status.message_id})
    send(client, message, "raw")
    session.expire_all()
    assert session.get_one(Ask, ask.id).status == "closed"


def test_through_sendgrid_the_offer_goes_to_the_asker_alone(client, session, sendgrid_settings, sendgrid_api) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "parsed")
    ask = session.scalars(select(Ask)).one()
    ben = circulation_for(session, ask, BEN[1])
    circulated = [c.body for c in sendgrid_api.calls if c.body["categories"] == ["ask_circulated"]]
    assert sorted(p["to"][0]["email"] for b in circulated for p in b["personalizations"]) == [BEN[1], CARMEN[1]]
    assert all(len(b["personalizations"]) == 1 and len(b["personalizations"][0]["to"]) == 1 for b in circulated)
    send(client, reply(ben.token, "Happy to intro.", sender=BEN, cc=f"hudson@{FORUM}, {CARMEN[1]}"), "parsed")
    offers = [c.body for c in sendgrid_api.calls if c.body["categories"] in (["ask_offer"], ["ask_offer_copy"])]
    assert [(b["personalizations"][0]["to"], b["reply_to"]["email"]) for b in offers] == [
        ([{"email": ALICE[1], "name": ALICE[0]}], BEN[1]),
        ([{"email": BEN[1], "name": BEN[0]}], ALICE[1]),
    ]
    assert all("cc" not in b["personalizations"][0] and "bcc" not in b["personalizations"][0] for b in offers)


def test_an_offer_from_someone_else_is_held(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "raw")
    ask = session.scalars(select(Ask)).one()
    ben = circulation_for(session, ask, BEN[1])
    send(client, reply(ben.token, "I can help!", sender=("Ben's EA", "ea@okafor.example")), "raw")
    row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert row.status == "held" and "ea@okafor.example" in row.reason
    assert sent(session, "ask_offer") == []


# --- closure and the follow-up --------------------------------------------------------------------------


def test_closure_by_reply_thanks_the_helper_and_corrections(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson", language="es")
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "raw")
    ask = session.scalars(select(Ask)).one()
    ben = circulation_for(session, ask, BEN[1])
    send(client, reply(ben.token, "Happy to intro you to Maria.", sender=BEN), "raw")
    # Alice corrects the kind, then closes it in the group's language, thanking Ben.
    send(client, reply(ask.token, "KIND: customer"), "raw")
    session.expire_all()
    assert session.get_one(Ask, ask.id).kind == "customer"
    send(client, reply(ask.token, "Resuelto, ¡gracias Ben!"), "raw")
    session.expire_all()
    ask = session.get_one(Ask, ask.id)
    assert (ask.status, ask.thanked) == ("closed", "Ben Okafor")
    thanks, = sent(session, "ask_thanks")
    assert thanks.to_email == BEN[1] and "gracias Ben" in thanks.context["words"]
    assert thanks.in_reply_to == ben.outbound.message_id  # in the thread of the ask Ben was sent
    threaded = [o for o in sent(session, "ask_status") + sent(session, "ask_offer")]
    assert len({o.in_reply_to for o in threaded[1:]}) == 1 == len({threaded[0].message_id} & {threaded[1].in_reply_to})
    # No follow-up for a closed ask.
    assert closure.queue_follow_ups(session, settings, NOW + timedelta(days=30)) == []


def test_one_follow_up_after_fourteen_days_open(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    from app import jobs

    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Has anyone used a fractional CFO?"), "raw")
    ask = session.scalars(select(Ask)).one()
    clock.set_now(NOW + timedelta(days=13, hours=23))
    jobs.run(jobs.TICK_JOB)
    assert sent(session, "ask_followup") == []
    clock.set_now(NOW + timedelta(days=14, minutes=5))
    jobs.run(jobs.TICK_JOB)
    jobs.run(jobs.TICK_JOB)
    follow_up, = sent(session, "ask_followup")
    assert (follow_up.to_email, follow_up.status) == (ALICE[1], "sent")
    assert follow_up.reply_to == mail.reply_address(settings, ask.token)
    clock.set_now(NOW + timedelta(days=40))
    jobs.run(jobs.TICK_JOB)
    assert len(sent(session, "ask_followup")) == 1
    # Answering it closes the ask.
    send(client, reply(ask.token, "Done, thanks"), "raw")
    session.expire_all()
    assert session.get_one(Ask, ask.id).status == "closed"


# --- control -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_approval_on_waits_for_the_facilitator(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson", asks_need_approval=True)
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), mode)
    send(client, to_group("hudson", "Any angel investors in hardware?", subject="Capital"), mode)
    first, second = session.scalars(select(Ask).order_by(Ask.id)).all()
    assert (first.status, second.status) == ("awaiting_approval", "awaiting_approval")
    assert sent(session, "ask_circulated") == []
    notices = sent(session, "ask_notice")
    assert [n.reply_to for n in notices] == [mail.reply_address(settings, a.approval_token) for a in (first, second)]
    # A member cannot approve their own ask with the facilitator's address.
    send(client, reply(first.approval_token, "APPROVE"), mode)
    assert session.get_one(Ask, first.id).status == "awaiting_approval"
    send(client, reply(first.approval_token, "APPROVE", sender=DANA), mode)
    send(client, reply(second.approval_token, "HOLD: let's talk it over on Thursday first.", sender=DANA), mode)
    session.expire_all()
    assert session.get_one(Ask, first.id).status == "open"
    held = session.get_one(Ask, second.id)
    assert (held.status, held.note) == ("held", "let's talk it over on Thursday first.")
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [BEN[1], CARMEN[1]]
    told = [o.context["event"] for o in sent(session, "ask_status") if o.context["ask_id"] == held.id]
    assert told == ["awaiting_approval", "held"]
    assert "let's talk it over" in mail.render("ask_status", sent(session, "ask_status")[-1].context).text
    # A second decision on a decided ask changes nothing.
    send(client, reply(first.approval_token, "HOLD no", sender=DANA), mode)
    assert session.get_one(Ask, first.id).status == "open"
    row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert "is open already" in row.reason


def test_approval_off_and_the_weekly_limit(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    from app.cli import main

    new_group(session, "hudson", asks_need_approval=True)
    session.commit()
    result = CliRunner().invoke(main, ["asks", "hudson", "--approval", "off", "--per-week", "2",
                                       "--circulation", "immediate"])
    assert result.exit_code == 0, result.output
    assert "asks circulate without approval, at most 2 per member a week, immediate" in result.output
    for n in range(3):
        send(client, to_group("hudson", f"Ask number {n}: intro to a buyer at chain {n}?"), "raw")
    asks = session.scalars(select(Ask).order_by(Ask.id)).all()
    assert [a.status for a in asks] == ["open", "open", "held"]
    assert "limit is 2 asks a week" in asks[2].note
    assert len(sent(session, "ask_circulated")) == 4
    # The facilitator lets the third through from the command line.
    result = CliRunner().invoke(main, ["asks", "hudson", "--approve", str(asks[2].id)])
    assert result.exit_code == 0, result.output
    assert "Open (3)" in result.output
    assert len(sent(session, "ask_circulated")) == 6


# --- digests -----------------------------------------------------------------------------------------------


def test_asks_that_arrive_together_go_as_one_digest_a_day(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    new_group(session, "hudson")  # "daily" is the default
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "raw")
    send(client, to_group("hudson", "A good co-packer in New Jersey?", sender=BEN), "raw")
    send(client, to_group("hudson", "Anyone who has sold a division?", sender=BEN), "raw")
    # The first ask of the day went at once; Ben got Alice's, Alice got Ben's first, the rest wait.
    assert sorted(o.to_email for o in sent(session, "ask_circulated")) == [ALICE[1], BEN[1], CARMEN[1]]
    assert asks_tick(session, settings, NOW + timedelta(hours=23)) == []
    queued = asks_tick(session, settings, NOW + timedelta(days=1))
    session.commit()
    digests = [o for o in sent(session, "ask_circulated") if o.id in queued]
    assert sorted(o.to_email for o in digests) == [ALICE[1], CARMEN[1]]
    carmen = next(o for o in digests if o.to_email == CARMEN[1])
    assert carmen.context["is_digest"] and len(carmen.context["asks"]) == 2
    assert asks_tick(session, settings, NOW + timedelta(days=1)) == []
    # A reply to the digest itself cannot be placed: nobody gets it, Carmen is asked which one.
    digest_token = carmen.reply_to.split("+")[1].split("@")[0]
    send(client, reply(digest_token, "I can help!", sender=CARMEN), "raw")
    which, = sent(session, "ask_which")
    assert which.to_email == CARMEN[1] and sent(session, "ask_offer") == []
    render = mail.render("ask_circulated", carmen.context)
    assert render.subject == "2 asks from your Hudson Valley CEO Forum peers"


# --- two groups that look alike ----------------------------------------------------------------------------


def test_nothing_crosses_between_groups_whose_members_collide(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    """Same group name, same member names and addresses, same facilitator: only the slug differs."""
    east = new_group(session, "east", ask_circulation="immediate")
    west = new_group(session, "west", ask_circulation="immediate")
    roster.add_member(session, west, name="Dev Patel", email="dev@patel.example")
    session.commit()
    send(client, to_group("east", "Intro to someone at Thermo Fisher?"), "raw")
    send(client, to_group("west", "A fractional CFO for Q1?"), "raw")
    east_ask = session.scalars(select(Ask).where(Ask.group_id == east.id)).one()
    west_ask = session.scalars(select(Ask).where(Ask.group_id == west.id)).one()
    assert east_ask.member_id == member(session, east, ALICE[1]).id
    assert west_ask.member_id == member(session, west, ALICE[1]).id
    for ask, group, others in ((east_ask, east, 2), (west_ask, west, 3)):
        assert len(ask.circulations) == others
        assert {c.member.group_id for c in ask.circulations} == {group.id}
    circulated = sent(session, "ask_circulated")
    for o in circulated:
        ask = session.get_one(Ask, o.context["asks"][0]["ask_id"])
        assert o.group_id == ask.group_id == session.get_one(Member, o.member_id).group_id
    assert [o.to_email for o in circulated if "CFO" in json.dumps(o.context)].count("dev@patel.example") == 1
    assert "dev@patel.example" not in [o.to_email for o in circulated if "Thermo" in json.dumps(o.context)]
    # Ben of the west group offers on the west ask, replying from the address he also has in the east.
    west_ben = circulation_for(session, west_ask, BEN[1])
    send(client, reply(west_ben.token, "Our CFO is fractional: happy to intro.", sender=BEN,
                       cc=f"east@{FORUM}"), "raw")
    offer = session.scalars(select(Offer)).one()
    assert offer.ask_id == west_ask.id and offer.member.group_id == west.id
    to_asker, = sent(session, "ask_offer")
    assert to_asker.member_id == member(session, west, ALICE[1]).id and to_asker.group_id == west.id
    assert session.get_one(Ask, east_ask.id).status == "open" and session.get_one(Ask, west_ask.id).status == "answered"
    # The east asker's "done" closes the east ask only, and thanks nobody in the west.
    send(client, reply(east_ask.token, "Sorted, thanks Ben"), "raw")
    session.expire_all()
    assert (session.get_one(Ask, east_ask.id).status, session.get_one(Ask, west_ask.id).status) == ("closed", "answered")
    thanks, = sent(session, "ask_thanks")
    assert thanks.member_id == member(session, east, BEN[1]).id
    # Dev, a member of the west group only, writing to the east group's address is a stranger there.
    send(client, to_group("east", "Intro to a Thermo Fisher buyer?", sender=("Dev Patel", "dev@patel.example")), "raw")
    row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert row.status == "held" and "not a member" in row.reason
    assert len(session.scalars(select(Ask)).all()) == 2
    # Each group's packet lists its own asks only.
    from app.asks.packet import listing

    east_listing = listing(session, make_cycle(session, east))
    west_listing = listing(session, make_cycle(session, west))
    assert [a["text"] for a in east_listing["closed"]] == ["Intro to someone at Thermo Fisher?"]
    assert east_listing["open"] == east_listing["answered"] == east_listing["helped"] == []
    assert [a["text"] for a in west_listing["answered"]] == ["A fractional CFO for Q1?"]
    assert west_listing["helped"] == [{"helper": "Ben Okafor", "asker": "Alice Chen", "ask": "A fractional CFO for Q1?"}]


# --- the packet and the command -----------------------------------------------------------------------------


def test_packet_lists_asks_and_who_helped_whom(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    from app.packets import compile_packet

    group = new_group(session, "hudson", ask_circulation="immediate")
    cycle = make_cycle(session, group)
    session.commit()
    send(client, to_group("hudson", "Intro to someone at Thermo Fisher?"), "raw")
    send(client, to_group("hudson", "A co-packer in New Jersey?", sender=BEN), "raw")
    send(client, to_group("hudson", "Anyone who has sold a division?", sender=CARMEN), "raw")
    first, second, _ = session.scalars(select(Ask).order_by(Ask.id)).all()
    send(client, reply(circulation_for(session, first, BEN[1]).token, "I know someone there.", sender=BEN), "raw")
    send(client, reply(circulation_for(session, second, CARMEN[1]).token, "Ours is great.", sender=CARMEN), "raw")
    send(client, reply(second.token, "Done! Thanks Carmen", sender=BEN), "raw")
    session.expire_all()  # the asks were loaded above, before the workers' sessions changed them
    compiled = compile_packet(session, settings, cycle.id, clock.now())
    session.commit()
    packet = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "packet")).first()
    text = mail.render("packet", packet.context).text
    assert "ASKS BETWEEN MEETINGS" in text, text
    assert "- Open, Carmen Ruiz (Advice or know-how): Anyone who has sold a division?" in text
    assert "- Answered, Alice Chen (Introduction): Intro to someone at Thermo Fisher? [offers from Ben Okafor]" in text
    assert "[thanked Carmen Ruiz]" in text
    assert "- Ben Okafor offered help to Alice Chen: Intro to someone at Thermo Fisher?" in text
    assert "Who helped whom</h3>" in mail.render("packet", packet.context).html
    assert compiled.version == 1
    result = CliRunner().invoke(__import__("app.cli", fromlist=["main"]).main, ["asks", "hudson"])
    assert result.exit_code == 0, result.output
    assert "Answered (1):" in result.output and "offer from Ben Okafor" in result.output
    assert "Closed (1):" in result.output and "thanked: Carmen Ruiz" in result.output


# --- real rq workers (PostgreSQL and Redis; skipped without REDIS_URL) -------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_asks_end_to_end_with_real_workers(redis_settings, session, web, mode) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.test_rq import fetch, run_worker

    group = new_group(session, "hudson", ask_circulation="immediate")
    cycle = make_cycle(session, group)
    queue_requests(session, redis_settings, cycle)
    session.commit()
    assert run_worker(redis_settings) == []
    [alice_token] = fetch(redis_settings, select(UpdateRequest.token).join(Member).where(Member.email == ALICE[1]))
    send(web, reply(alice_token, "ASKS\n- Intro to someone at Thermo Fisher"), mode)
    send(web, to_group("hudson", "A good co-packer in New Jersey?", sender=BEN), mode)
    assert fetch(redis_settings, select(Ask)) == []  # stored only: the workers read it
    assert run_worker(redis_settings) == []
    asks = fetch(redis_settings, select(Ask).order_by(Ask.id))
    assert [(a.text, a.status) for a in asks] == [("Intro to someone at Thermo Fisher", "open"),
                                                  ("A good co-packer in New Jersey?", "open")]
    circulated = fetch(redis_settings, select(OutboundMessage).where(OutboundMessage.kind == "ask_circulated"))
    assert sorted((o.to_email, o.status) for o in circulated) == sorted(
        [(BEN[1], "sent"), (CARMEN[1], "sent"), (ALICE[1], "sent"), (CARMEN[1], "sent")])
    [carmen_token] = fetch(redis_settings, select(AskCirculation.token).join(Member).where(
        Member.email == CARMEN[1], AskCirculation.ask_id == asks[0].id))
    send(web, reply(carmen_token, "My cousin runs their BD team.", sender=CARMEN,
                    cc=f"hudson@{FORUM}, {BEN[1]}"), mode)
    send(web, reply(asks[1].token, "Sorted, thanks", sender=BEN), mode)
    assert run_worker(redis_settings) == []
    [offer] = fetch(redis_settings, select(OutboundMessage).where(OutboundMessage.kind == "ask_offer"))
    assert (offer.to_email, offer.reply_to, offer.status) == (ALICE[1], CARMEN[1], "sent")
    assert [a.status for a in fetch(redis_settings, select(Ask).order_by(Ask.id))] == ["answered", "closed"]
    assert len(fetch(redis_settings, select(Ask))) == 2


def test_a_held_ask_cannot_be_released_as_an_update(run, client, session, settings) -> None:  # type: ignore[no-untyped-def]
    """`inbound release` vouches for a member's update; a stranger's mail to a group address is
    not one, and the command says so instead of claiming it was accepted."""
    new_group(session, "hudson")
    session.commit()
    send(client, to_group("hudson", "Buy our leads list!", sender=("Spam", "promo@leads.example")), "raw")
    row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert row.status == "held"
    result = run("inbound", "release", str(row.id))
    assert result.exit_code == 1 and "is not an update reply" in result.output and "accepted" not in result.output
    session.expire_all()
    assert session.get_one(InboundMessage, row.id).status == "held" and session.scalars(select(Ask)).all() == []


def test_an_ask_closed_before_its_email_went_out_is_not_sent(session, settings) -> None:  # type: ignore[no-untyped-def]
    """The asker says "sorted" while the circulation is still queued: the peers never get it."""
    from app.asks.sources import create_ask

    group = new_group(session, "hudson", ask_circulation="immediate")
    alice = member(session, group, ALICE[1])
    ask, queued = create_ask(session, settings, alice, "An intro to a good plant manager?", "test:1", NOW)
    assert ask is not None and len(sent(session, "ask_circulated")) == 2
    closure.close(session, settings, ask, "Sorted, thanks", NOW)
    session.commit()

    for outbound_id in queued:
        mail.deliver(session, settings, outbound_id)
    rows = sent(session, "ask_circulated")
    assert [r.status for r in rows] == ["cancelled", "cancelled"]
    assert all("closed or withdrew the ask before this went out" in (r.last_error or "") for r in rows)
    assert list(Path(settings.outbox_dir).glob("*ask_circulated*")) == []
