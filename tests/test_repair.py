"""Repairs from the command line: a member's address, a leave, a removal, a bounce mark, an
alternate address, a co-facilitator; late joiners get their request; the notices name the commands."""

from __future__ import annotations

import shlex
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, jobs, roster
from app.cli import main
from app.cycles import group_schedule, month_label
from app.models import Cycle, Member, OutboundMessage, UpdateRequest
from app.settings import Settings, configure
from tests.conftest import NOW
from tests.mails import raw_mode, reply
from tests.test_webhook import post

SLUG = "hudson-valley-ceo-forum"  # make_group's group
ALICE, BEN, CARMEN = "alice@northwind.example", "ben@okafor.example", "carmen@ruizfoods.example"


@pytest.fixture()
def run(settings: Settings):  # type: ignore[no-untyped-def]
    """`roundtable ...` as a user runs it, on the test's database, mailing into its outbox."""
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": "",
        "MAIL_TRANSPORT": "outbox",
        "OUTBOX_DIR": str(settings.outbox_dir),
        "PACKETS_DIR": str(settings.packets_dir),
        "MAIL_FROM": settings.mail_from,
        "INBOUND_DOMAIN": settings.inbound_domain,
        "INBOUND_USERNAME": settings.inbound_username or "",
        "INBOUND_PASSWORD": settings.inbound_password or "",
        "BASE_URL": settings.base_url,
    }

    def invoke(*args: str) -> Result:
        configure(None)  # read the environment afresh, as a new process would
        try:
            return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        finally:
            configure(settings)

    return invoke


def fresh(session: Session) -> None:
    """End the test's transaction and forget what it loaded, to see what a command committed."""
    session.rollback()
    session.expire_all()


def member(session: Session, email: str) -> Member:
    """The member as committed."""
    fresh(session)
    return session.scalars(select(Member).where(Member.email == email)).one()


def outbox(settings: Settings) -> list[tuple[str, str, str]]:
    """(to, subject, text) of every email written to the outbox."""
    mails = []
    for path in sorted(Path(settings.outbox_dir).glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        body = message.get_body(("plain",))
        assert body is not None
        mails.append((message["To"].addresses[0].addr_spec, str(message["Subject"]), body.get_content()))
    return mails


def sent_to(settings: Settings, kind_subject: str = "") -> list[str]:
    return [to for to, subject, _ in outbox(settings) if kind_subject in subject]


def commands_in(text: str) -> list[list[str]]:
    """The command lines an email tells the facilitator to run, without `roundtable`."""
    return [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith("roundtable ")]


def open_cycle(run, session: Session, cycle: Cycle) -> str:  # type: ignore[no-untyped-def]
    """Send the cycle's requests with the tick; return its month, as the emails name it."""
    session.commit()
    assert run("tick").exit_code == 0
    return month_label(cycle)


# --- member edit ---------------------------------------------------------------------------------


def test_edit_changes_the_address_and_clears_the_bounce_mark(run, session, settings, group) -> None:  # type: ignore[no-untyped-def]
    roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    session.commit()

    result = run("member", "edit", SLUG, CARMEN, "--email", "Carmen@RuizFoods-Group.example", "--company", "Ruiz Group")

    assert result.exit_code == 0, result.output
    assert "bounce mark cleared" in result.output
    carmen = member(session, "carmen@ruizfoods-group.example")
    assert (carmen.bounced_at, carmen.bounce_reason, carmen.company) == (None, None, "Ruiz Group")
    assert carmen.is_reachable
    gone = run("member", "edit", SLUG, CARMEN, "--name", "Carmen R")
    assert gone.exit_code == 1 and f"no member {CARMEN} in Hudson Valley CEO Forum" in gone.output


def test_edit_refuses_an_address_that_names_another_member(run, session, group) -> None:  # type: ignore[no-untyped-def]
    roster.add_alternate_address(session, member(session, ALICE), "assistant@northwind.example")
    session.commit()

    taken = run("member", "edit", SLUG, BEN, "--email", ALICE.upper())
    alternate = run("member", "edit", SLUG, BEN, "--email", "assistant@northwind.example")
    bad = run("member", "edit", SLUG, BEN, "--email", "ben-at-okafor")
    unknown = run("member", "edit", SLUG, "nobody@x.example", "--email", "nobody@y.example")
    nothing = run("member", "edit", SLUG, BEN)

    assert taken.exit_code == 1 and "already a member of Hudson Valley CEO Forum (Alice Chen)" in taken.output
    assert alternate.exit_code == 1
    assert "an alternate address of Alice Chen" in alternate.output
    assert f"roundtable member alias {ALICE} assistant@northwind.example --remove" in alternate.output
    assert bad.exit_code == 1 and "'ben-at-okafor' is not an email address" in bad.output
    assert unknown.exit_code == 1 and "no member nobody@x.example" in unknown.output
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
    assert "Traceback" not in taken.output + alternate.output + bad.output + unknown.output
    assert member(session, BEN).name == "Ben Okafor"


def test_edit_to_the_members_own_alternate_makes_it_their_address(run, session, group) -> None:  # type: ignore[no-untyped-def]
    roster.add_alternate_address(session, member(session, BEN), "ben@home.example")
    session.commit()

    assert run("member", "edit", SLUG, BEN, "--email", "ben@home.example").exit_code == 0

    ben = member(session, "ben@home.example")
    assert ben.addresses == []


# --- leave, removal, bounce ---------------------------------------------------------------------


def test_deactivate_and_activate_a_member(run, session, group) -> None:  # type: ignore[no-untyped-def]
    assert "Ben Okafor is now inactive" in run("member", "deactivate", SLUG, BEN).output
    assert member(session, BEN).is_active is False
    assert "Ben Okafor is already inactive" in run("member", "deactivate", SLUG, BEN).output

    assert "Ben Okafor is active again" in run("member", "activate", SLUG, BEN).output
    assert member(session, BEN).is_active is True
    assert run("member", "activate", SLUG, "nobody@x.example").exit_code == 1


def test_remove_keeps_the_member_in_history_and_activate_brings_them_back(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    open_cycle(run, session, cycle)
    clock.set_now(NOW + timedelta(hours=1))

    result = run("member", "remove", SLUG, BEN)

    assert result.exit_code == 0 and "Ben Okafor is removed from Hudson Valley CEO Forum" in result.output
    ben = member(session, BEN)
    assert ben.removed_at == NOW + timedelta(hours=1) and ben.is_active is False
    assert session.scalars(select(UpdateRequest).where(UpdateRequest.member_id == ben.id)).one()  # history kept
    assert "was already removed" in run("member", "remove", SLUG, BEN).output
    assert member(session, BEN).removed_at == NOW + timedelta(hours=1)  # not moved by the second run
    again = run("member", "add", SLUG, "--name", "Ben Okafor", "--email", BEN)
    assert again.exit_code == 1
    assert f"removed from Hudson Valley CEO Forum; to bring them back: roundtable member activate {SLUG} {BEN}" in again.output

    assert run("member", "activate", SLUG, BEN).exit_code == 0
    ben = member(session, BEN)
    assert ben.removed_at is None and ben.is_reachable


def test_a_removed_member_gets_no_request_no_reminder_and_no_mail(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    assert run("member", "remove", SLUG, CARMEN).exit_code == 0  # before the requests
    open_cycle(run, session, cycle)
    assert sorted(sent_to(settings, "update")) == [ALICE, BEN]
    assert run("member", "remove", SLUG, BEN).exit_code == 0  # after them
    first_reminder = group_schedule(cycle.group, cycle.meeting_starts_at).reminder_ats[0]
    clock.set_now(first_reminder + timedelta(minutes=1))

    assert run("tick").exit_code == 0

    fresh(session)
    reminders = session.scalars(select(OutboundMessage.to_email).where(OutboundMessage.kind == "reminder")).all()
    assert reminders == [ALICE]
    assert sorted(sent_to(settings)) == [ALICE, ALICE, BEN]  # Ben's request went out before his removal
    carmen = member(session, CARMEN)
    assert session.scalar(select(UpdateRequest).where(UpdateRequest.member_id == carmen.id)) is None


def test_clear_bounce_mails_the_address_again(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    roster.mark_bouncing(session, settings, CARMEN, "4.2.2 mailbox full", NOW)
    month = open_cycle(run, session, cycle)
    assert CARMEN not in sent_to(settings, "update")

    result = run("member", "clear-bounce", SLUG, CARMEN)

    assert result.exit_code == 0, result.output
    assert f"sent Carmen Ruiz the {month} update request" in result.output
    carmen = member(session, CARMEN)
    assert carmen.bounced_at is None and carmen.bounce_reason is None
    assert sent_to(settings, "update").count(CARMEN) == 1
    assert "not marked as bouncing" in run("member", "clear-bounce", SLUG, CARMEN).output
    assert sent_to(settings, "update").count(CARMEN) == 1


# --- late joiners ---------------------------------------------------------------------------------


def test_a_late_joiner_gets_the_request_at_once_and_only_once(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    month = open_cycle(run, session, cycle)
    assert len(sent_to(settings)) == 3

    result = run("member", "add", SLUG, "--name", "David Park", "--email", "david@park.example")

    assert result.exit_code == 0, result.output
    assert f"sent David Park the {month} update request" in result.output
    david = member(session, "david@park.example")
    request = session.scalars(select(UpdateRequest).where(UpdateRequest.member_id == david.id)).one()
    [subject] = [subject for to, subject, _ in outbox(settings) if to == "david@park.example"]
    assert subject.startswith(f"Your {month} update for Hudson Valley CEO Forum")
    row = session.scalars(select(OutboundMessage).where(OutboundMessage.member_id == david.id)).one()
    assert row.reply_to == f"reply+{request.token}@in.forum.example" and row.status == "sent"

    again = run("member", "activate", SLUG, "david@park.example")  # asks for late joiners again
    assert again.exit_code == 0 and "sent" not in again.output
    assert run("tick").exit_code == 0
    assert len(sent_to(settings)) == 4


def test_no_request_before_the_requests_went_out_or_after_the_deadline(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    session.commit()
    early = run("member", "add", SLUG, "--name", "Early Bird", "--email", "early@bird.example")
    assert early.exit_code == 0 and "sent" not in early.output
    assert sent_to(settings) == []  # the tick sends theirs with everyone's
    open_cycle(run, session, cycle)
    assert "early@bird.example" in sent_to(settings)
    clock.set_now(cycle.deadline_at + timedelta(minutes=1))

    late = run("member", "add", SLUG, "--name", "Too Late", "--email", "late@x.example")

    assert late.exit_code == 0 and "sent" not in late.output
    too_late = member(session, "late@x.example")
    assert session.scalar(select(UpdateRequest).where(UpdateRequest.member_id == too_late.id)) is None
    assert "late@x.example" not in sent_to(settings)


def test_imported_late_joiners_get_their_requests(run, session, settings, cycle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    month = open_cycle(run, session, cycle)
    csv = tmp_path / "more.csv"
    csv.write_text("name,email,company,title\nDavid Park,david@park.example,Park Dental,CEO\nElena Petrova,elena@petrova.example,,\n")

    result = run("member", "import", SLUG, str(csv))

    assert result.exit_code == 0, result.output
    assert f"sent David Park, Elena Petrova the {month} update request" in result.output
    assert sorted(sent_to(settings))[-2:] == ["david@park.example", "elena@petrova.example"]


def test_a_new_address_for_a_member_who_bounced_before_the_requests_gets_the_request(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    month = open_cycle(run, session, cycle)

    result = run("member", "edit", SLUG, CARMEN, "--email", "carmen@ruiz.example")

    assert f"sent Carmen Ruiz the {month} update request" in result.output
    assert "carmen@ruiz.example" in sent_to(settings, "update")
    assert CARMEN not in sent_to(settings)


def test_a_corrected_address_gets_the_request_that_bounced_and_only_once(run, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    month = open_cycle(run, session, cycle)
    fresh(session)
    request_mail = session.scalars(
        select(OutboundMessage).where(OutboundMessage.kind == "update_request", OutboundMessage.to_email == CARMEN)
    ).one()
    request_mail.status = "bounced"  # as the Event Webhook records it
    roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    session.commit()

    result = run("member", "edit", SLUG, CARMEN, "--email", "carmen@ruiz.example")

    assert f"sent Carmen Ruiz the {month} update request" in result.output
    assert sent_to(settings, "update").count("carmen@ruiz.example") == 1
    fresh(session)
    resent = session.scalars(
        select(OutboundMessage).where(OutboundMessage.to_email == "carmen@ruiz.example")
    ).one()
    assert resent.reply_to == request_mail.reply_to  # the same request, the same token
    assert run("member", "activate", SLUG, "carmen@ruiz.example").exit_code == 0
    assert run("tick").exit_code == 0
    assert sent_to(settings, "update").count("carmen@ruiz.example") == 1


def test_a_request_bounced_by_a_dsn_goes_again_to_the_corrected_address(run, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from tests.test_machine import dsn

    month = open_cycle(run, session, cycle)
    raw = dsn("5.1.1", "failed", "550 5.1.1 User unknown").replace(b"jane@member.example", CARMEN.encode())
    assert post(client, raw_mode(raw, envelope_to=["bounces@in.forum.example"])).status_code == 200
    fresh(session)
    request_mail = session.scalars(
        select(OutboundMessage).where(OutboundMessage.kind == "update_request", OutboundMessage.to_email == CARMEN)
    ).one()
    assert request_mail.status == "bounced" and "5.1.1" in request_mail.last_error
    assert member(session, CARMEN).bounced_at is not None

    result = run("member", "edit", SLUG, CARMEN, "--email", "carmen@ruiz.example")

    assert f"sent Carmen Ruiz the {month} update request" in result.output
    assert sent_to(settings, "update").count("carmen@ruiz.example") == 1


# --- member list and alternates -------------------------------------------------------------------


def test_member_list_shows_each_state_and_the_alternates(run, session, settings, group) -> None:  # type: ignore[no-untyped-def]
    roster.add_alternate_address(session, member(session, ALICE), "assistant@northwind.example")
    roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    session.commit()
    run("member", "deactivate", SLUG, BEN)
    run("member", "add", SLUG, "--name", "David Park", "--email", "david@park.example")
    run("member", "remove", SLUG, "david@park.example")
    removed_day = NOW.astimezone(ZoneInfo(group.timezone)).strftime("%Y-%m-%d")

    lines = {line.split()[0] + " " + line.split()[1]: line for line in run("member", "list", SLUG).output.splitlines()}

    assert lines["Alice Chen"].rstrip().endswith("active  (also writes from assistant@northwind.example)")
    assert "Northwind Robotics" in lines["Alice Chen"]
    assert lines["Ben Okafor"].rstrip().endswith(" inactive")
    assert lines["Carmen Ruiz"].rstrip().endswith("active, bouncing: 5.1.1 no such user")
    assert lines["David Park"].rstrip().endswith(f"removed {removed_day}")


def test_alias_is_safe_twice_and_removable(run, session, group) -> None:  # type: ignore[no-untyped-def]
    assert run("member", "alias", ALICE, "assistant@northwind.example").exit_code == 0
    again = run("member", "alias", ALICE, "assistant@northwind.example")
    assert again.exit_code == 0 and "already counted as Alice Chen" in again.output  # no duplicate
    assert [a.email for a in member(session, ALICE).addresses] == ["assistant@northwind.example"]
    taken = run("member", "alias", ALICE, BEN)
    assert taken.exit_code == 1 and "is the address of Ben Okafor" in taken.output
    assert taken.output.count("\n") == 1 and "Traceback" not in taken.output
    ben = member(session, BEN)
    claimed = run("member", "alias", BEN, "assistant@northwind.example")
    assert claimed.exit_code == 1 and "already counts as Alice Chen" in claimed.output
    assert member(session, BEN).addresses == [] and ben.id

    removed = run("member", "alias", ALICE, "Assistant@Northwind.example", "--remove")

    assert removed.exit_code == 0 and "no longer counts as Alice Chen" in removed.output
    assert member(session, ALICE).addresses == []
    again = run("member", "alias", ALICE, "assistant@northwind.example", "--remove")
    assert again.exit_code == 1 and "is not an alternate address of Alice Chen" in again.output


def test_alias_with_a_group_touches_only_that_group(run, session, group) -> None:  # type: ignore[no-untyped-def]
    other = roster.create_group(
        session, name="Boston Forum", timezone="America/New_York", facilitator_name="Eve", facilitator_email="eve@x.example"
    )
    roster.add_member(session, other, name="Alice Chen", email=ALICE)
    session.commit()

    assert run("member", "alias", ALICE, "assistant@northwind.example", "--group", SLUG).exit_code == 0

    fresh(session)
    addresses = {m.group.slug: [a.email for a in m.addresses] for m in session.scalars(select(Member).where(Member.email == ALICE))}
    assert addresses == {SLUG: ["assistant@northwind.example"], "boston-forum": []}


# --- facilitators ---------------------------------------------------------------------------------


def test_co_facilitator_is_added_once_told_of_bounces_and_the_last_one_stays(run, session, settings, group) -> None:  # type: ignore[no-untyped-def]
    added = run("facilitator", "add", SLUG, "Eve Marsh <Eve@Facilitation.example>")
    assert added.exit_code == 0, added.output
    duplicate = run("facilitator", "add", SLUG, "Eve M <eve@facilitation.example>")
    assert duplicate.exit_code == 1 and "eve@facilitation.example is already a facilitator" in duplicate.output
    assert run("facilitator", "add", SLUG, "Nobody <nobody-at-x>").exit_code == 1
    listed = run("facilitator", "list", SLUG).output.split()
    assert listed == ["Dana", "Whitfield", "dana@facilitation.example", "Eve", "Marsh", "eve@facilitation.example"]

    fresh(session)  # see the facilitator the command added
    notices = roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    session.commit()
    told = session.scalars(select(OutboundMessage.to_email).where(OutboundMessage.id.in_(notices))).all()
    assert sorted(told) == ["dana@facilitation.example", "eve@facilitation.example"]

    assert run("facilitator", "remove", SLUG, "dana@facilitation.example").exit_code == 0
    last = run("facilitator", "remove", SLUG, "eve@facilitation.example")
    assert last.exit_code == 1 and "Eve Marsh is the only facilitator" in last.output
    unknown = run("facilitator", "remove", SLUG, "dana@facilitation.example")
    assert unknown.exit_code == 1 and "is not a facilitator" in unknown.output
    assert run("facilitator", "list", SLUG).output.split() == ["Eve", "Marsh", "eve@facilitation.example"]


# --- the notices name the commands that fix things -----------------------------------------------


def test_the_bounce_notice_names_the_commands_and_they_work(run, session, settings, group) -> None:  # type: ignore[no-untyped-def]
    ids = roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    session.commit()
    jobs.enqueue_sends(ids)
    [(to, subject, text)] = outbox(settings)
    assert (to, subject) == ("dana@facilitation.example", "Email to Carmen Ruiz is bouncing")
    assert f"    roundtable member edit {SLUG} {CARMEN} --email NEW-ADDRESS\n" in text
    assert f"    roundtable member clear-bounce {SLUG} {CARMEN}\n" in text
    edit, clear = commands_in(text)

    assert run(*clear).exit_code == 0
    assert member(session, CARMEN).bounced_at is None
    roster.mark_bouncing(session, settings, CARMEN, "5.1.1 no such user", NOW)
    session.commit()
    assert run(*[word.replace("NEW-ADDRESS", "carmen@ruiz.example") for word in edit]).exit_code == 0
    assert member(session, "carmen@ruiz.example").bounced_at is None


def test_the_held_notice_names_the_commands_and_they_work(run, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    open_cycle(run, session, cycle)
    alice = member(session, ALICE)
    token = session.scalars(select(UpdateRequest.token).where(UpdateRequest.member_id == alice.id)).one()
    assistant = ("Pat Assistant", "pat@northwind.example")
    post(client, raw_mode(reply(token, "WINS\nForwarded along.", sender=assistant)))
    [text] = [text for to, subject, text in outbox(settings) if subject.startswith("Held for you")]
    commands = commands_in(text)
    assert [c[:2] for c in commands] == [["inbound", "release"], ["member", "alias"]]
    assert commands[1][2:4] == [ALICE, "pat@northwind.example"]

    for command in commands:
        result = run(*command)
        assert result.exit_code == 0, result.output

    fresh(session)
    assert [a.email for a in member(session, ALICE).addresses] == ["pat@northwind.example"]
    post(client, raw_mode(reply(token, "WINS\nA correction.", sender=assistant)))
    receipts = [s for to, s, _ in outbox(settings) if to == ALICE and s.startswith("Got it")]
    assert len(receipts) == 2  # the released message and the next one, taken at once


def test_the_held_notice_renders_without_the_newer_keys() -> None:
    """Notices queued before `reason` and `group_slug` were added still render."""
    from app import mail

    context = {
        "group_name": "Hudson Valley CEO Forum",
        "facilitator_name": "Dana Whitfield",
        "member_name": "Alice Chen",
        "member_email": ALICE,
        "sender": ALICE,
        "subject": "Re: update",
        "inbound_id": 7,
    }
    text = mail.render("held_notice", context).text
    assert "roundtable inbound release 7" in text
    assert "member alias" not in text  # the member's own address (failed authentication): no alias to add
    assert "roundtable member edit GROUP" in mail.render("bounce_notice", {**context, "reason": "550"}).text


def test_inbound_release_says_what_happened_and_recompiles_a_packet_already_out(run, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.models import InboundMessage, Packet
    from app.packets import compile_packet

    open_cycle(run, session, cycle)
    alice = member(session, ALICE)
    token = session.scalars(select(UpdateRequest.token).where(UpdateRequest.member_id == alice.id)).one()
    post(client, raw_mode(reply(token, "WINS\nOpened the Denver office.", sender=("Alice", "alice.c@gmail.example"))))
    fresh(session)
    held = session.scalars(select(InboundMessage)).one()
    clock.set_now(cycle.deadline_at + timedelta(hours=1))
    compile_packet(session, settings, cycle.id, clock.now())
    session.commit()

    assert "there is no message 999" in run("inbound", "release", "999").output
    result = run("inbound", "release", str(held.id))

    assert result.exit_code == 0, result.output
    assert f"message {held.id} accepted: released by the facilitator" in result.output, result.output
    fresh(session)
    # A version went out an hour ago: the next comes tomorrow morning, at most one a day.
    assert "the packet's next version, with it, goes out" in result.output, result.output
    assert [p.version for p in session.scalars(select(Packet))] == [1]
    due = session.get_one(type(cycle), cycle.id).packet_due_at
    assert due is not None and due.date() > cycle.deadline_at.date() and due < cycle.meeting_starts_at
    clock.set_now(due)
    assert run("tick").exit_code == 0
    fresh(session)
    packets = session.scalars(select(Packet).order_by(Packet.version)).all()
    assert [p.version for p in packets] == [1, 2] and "Opened the Denver office." in packets[1].text
    again = run("inbound", "release", str(held.id))
    assert again.exit_code != 0 and f"message {held.id} is not held: it is accepted" in again.output


@pytest.mark.parametrize("mode", ["raw", "parsed"])
def test_a_late_joiners_reply_reaches_the_packet(mode, run, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.packets import compile_packet
    from tests.mails import parsed_mode

    open_cycle(run, session, cycle)
    assert run("member", "add", SLUG, "--name", "David Park", "--email", "david@park.example", "--company", "Park Dental").exit_code == 0
    david = member(session, "david@park.example")
    token = session.scalars(select(UpdateRequest.token).where(UpdateRequest.member_id == david.id)).one()
    message = reply(token, "WINS\nSigned the sixth office lease.", sender=("David Park", "david@park.example"))
    post(client, raw_mode(message) if mode == "raw" else parsed_mode(message))
    fresh(session)
    clock.set_now(cycle.deadline_at + timedelta(minutes=5))
    packet = compile_packet(session, settings, cycle.id, clock.now())
    session.commit()
    from app.models import Packet

    text = session.get_one(Packet, packet.packet_id).text
    assert "David Park (Park Dental): replied" in text and "Signed the sixth office lease." in text
    assert "David Park" in run("status", SLUG).output
