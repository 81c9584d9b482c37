"""When the packet goes out, through a whole cycle as a facilitator runs it: an early `compile`
is a preview for the facilitator only; the deadline sends the packet once; late replies,
corrections and released mail make at most one new version a day; after the meeting nothing
re-issues it. Scheduling refuses meetings in the past and cycles on top of each other."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app import clock
from app.cycles import CycleError, next_packet_at, schedule_meeting
from app.models import Cycle, CycleStatus, OutboundMessage, Packet, PacketCadence, UpdateRequest
from tests.conftest import MEETING_DAY, NOW, TZ
from tests.mails import raw_mode, reply
from tests.test_repair import ALICE, BEN, CARMEN, SLUG, fresh, open_cycle, run  # noqa: F401 - run is a fixture
from tests.test_webhook import post

DANA = "dana@facilitation.example"  # make_group's facilitator


def packet_mail(session) -> list[tuple[str, str, int | None]]:  # type: ignore[no-untyped-def]
    """(kind, to, packet version) of every packet email, oldest first."""
    fresh(session)
    rows = session.scalars(
        select(OutboundMessage).where(OutboundMessage.kind.in_(("packet", "packet_preview"))).order_by(OutboundMessage.id)
    )
    return [(r.kind, r.to_email, r.context.get("version") if r.kind == "packet" else None) for r in rows]


def versions(session) -> list[int]:  # type: ignore[no-untyped-def]
    fresh(session)
    return list(session.scalars(select(Packet.version).order_by(Packet.version)))


def token_of(session, email: str) -> str:  # type: ignore[no-untyped-def]
    fresh(session)
    return session.scalars(
        select(UpdateRequest.token).join(UpdateRequest.member).where(UpdateRequest.member.has(email=email))
    ).one()


def answer(client, session, email: str, name: str, text: str) -> None:  # type: ignore[no-untyped-def]
    post(client, raw_mode(reply(token_of(session, email), text, sender=(name, email))))


def test_a_whole_cycle_mails_one_packet_at_the_deadline_and_one_version_a_day_after(run, client, session, cycle) -> None:  # type: ignore[no-untyped-def]
    open_cycle(run, session, cycle)
    answer(client, session, ALICE, "Alice Chen", "WINS\nOpened the Denver office.")

    # Before the deadline: a preview to the facilitator, and it says so.
    early = run("compile", SLUG)
    assert early.exit_code == 0, early.output
    assert "preview of the" in early.output and f"mailed to {DANA} only" in early.output
    assert "the packet itself goes out at the deadline" in early.output
    assert packet_mail(session) == [("packet_preview", DANA, None)] and versions(session) == []
    preview = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "packet_preview")).one()
    assert preview.status == "sent"
    assert "Opened the Denver office." in (preview.context["p"]["members"][0]["texts"].get("wins") or "")
    again = run("compile", SLUG)  # nothing changed: no second preview
    assert "nothing changed since the last preview" in again.output and len(packet_mail(session)) == 1
    fresh(session)
    assert session.get_one(Cycle, cycle.id).status != CycleStatus.COMPILED  # the deadline is untouched

    # Replies before the deadline make no packet.
    answer(client, session, BEN, "Ben Okafor", "WINS\nTwo new depots.")
    assert versions(session) == []

    # The deadline: the packet goes out once, with every reply in by then.
    clock.set_now(cycle.deadline_at + timedelta(minutes=1))
    tick = run("tick")
    assert tick.exit_code == 0 and "compiled the" in tick.output, tick.output
    assert versions(session) == [1]
    assert packet_mail(session)[1:] == [("packet", DANA, 1)]
    packet = session.scalars(select(Packet)).one()
    assert "Opened the Denver office." in packet.text and "Two new depots." in packet.text
    assert "nothing was due" in run("tick").output and versions(session) == [1]

    # Two late replies the same evening: no new version tonight ...
    clock.set_now(cycle.deadline_at + timedelta(hours=2))
    answer(client, session, CARMEN, "Carmen Ruiz", "WINS\nSalsa in 120 more stores.")
    answer(client, session, BEN, "Ben Okafor", "Correction: WINS\nThree new depots.")
    assert versions(session) == [1]
    fresh(session)
    due = session.get_one(Cycle, cycle.id).packet_due_at
    local_due = due.astimezone(ZoneInfo(TZ))
    assert local_due.date() == (cycle.deadline_at.astimezone(ZoneInfo(TZ)) + timedelta(days=1)).date()
    assert local_due.strftime("%H:%M") == "09:00"
    clock.set_now(due - timedelta(minutes=5))
    run("tick")
    assert versions(session) == [1]

    # ... one the next morning, with both, saying what changed.
    clock.set_now(due)
    run("tick")
    assert versions(session) == [1, 2]
    v2 = session.scalars(select(Packet).where(Packet.version == 2)).one()
    assert "Salsa in 120 more stores." in v2.text and "Three new depots." in v2.text
    assert "New in version 2:" in v2.text and "Carmen Ruiz: new update (late reply)" in v2.text
    assert packet_mail(session)[2:] == [("packet", DANA, 2)]
    run("tick")
    assert versions(session) == [1, 2]

    # After the meeting: mail is kept, the packet stands, and compile says so.
    clock.set_now(cycle.meeting_starts_at + timedelta(minutes=10))
    answer(client, session, ALICE, "Alice Chen", "One more ask: an intro to a good litigator.")
    run("tick")
    after = run("compile", SLUG)
    assert after.exit_code == 1 and "its packet stands (version 2)" in after.output
    assert versions(session) == [1, 2] and len(packet_mail(session)) == 3


def test_an_immediate_group_gets_each_late_reply_at_once(run, client, session, cycle) -> None:  # type: ignore[no-untyped-def]
    assert run("group", "edit", SLUG, "--packet-cadence", "immediate").output.strip() == f"{SLUG}: packet cadence: daily -> immediate"
    open_cycle(run, session, cycle)
    clock.set_now(cycle.deadline_at + timedelta(minutes=1))
    run("tick")
    answer(client, session, CARMEN, "Carmen Ruiz", "WINS\nSalsa in 120 more stores.")
    answer(client, session, BEN, "Ben Okafor", "WINS\nTwo new depots.")
    assert versions(session) == [1, 2, 3]


def test_compile_after_the_deadline_says_what_it_mailed_and_to_whom(run, client, session, cycle) -> None:  # type: ignore[no-untyped-def]
    open_cycle(run, session, cycle)
    clock.set_now(cycle.deadline_at + timedelta(minutes=1))
    first = run("compile", SLUG)
    assert first.exit_code == 0 and "new version 1 of the" in first.output and f"{DANA} (sent)" in first.output
    second = run("compile", SLUG)
    assert "no change since version 1" in second.output and "nothing mailed" in second.output
    assert versions(session) == [1]


def test_next_packet_at_is_one_a_day_and_never_after_the_meeting() -> None:
    zone = ZoneInfo(TZ)
    meeting = NOW.astimezone(zone).replace(hour=8, minute=30, second=0, microsecond=0) + timedelta(days=3)
    last = meeting - timedelta(days=2, hours=15, minutes=30)  # the deadline, 17:00 two days before
    rule = dict(cadence=PacketCadence.DAILY, tz=TZ, send_local_time="09:00", last_packet_at=last, meeting_starts_at=meeting)

    evening = next_packet_at(**rule, now=last + timedelta(hours=3))
    assert evening is not None and evening.astimezone(zone).strftime("%d %H:%M") == (last + timedelta(days=1)).astimezone(zone).strftime("%d 09:00")
    assert next_packet_at(**rule, now=last + timedelta(days=1, hours=1)) == last + timedelta(days=1, hours=1)  # a new day: now
    assert next_packet_at(**rule, now=meeting) is None
    assert next_packet_at(**rule | {"cadence": PacketCadence.IMMEDIATE}, now=last + timedelta(minutes=5)) == last + timedelta(minutes=5)
    # A version went out on the meeting's own morning: the next would be the same day, so none.
    morning = meeting - timedelta(hours=1)
    assert next_packet_at(**rule | {"last_packet_at": morning}, now=morning + timedelta(minutes=20)) is None
    # The meeting starts before the group's send time: the version goes an hour before it.
    early = rule | {"send_local_time": "09:00", "meeting_starts_at": meeting - timedelta(hours=1, minutes=30)}
    day_before = early["meeting_starts_at"] - timedelta(days=1)  # a version the morning before
    assert next_packet_at(**early | {"last_packet_at": day_before}, now=day_before + timedelta(hours=1)) == early["meeting_starts_at"] - timedelta(hours=1)


def test_meetings_in_the_past_or_on_top_of_a_cycle_are_refused(run, session, group) -> None:  # type: ignore[no-untyped-def]
    today = NOW.astimezone(ZoneInfo(TZ)).date()
    with pytest.raises(CycleError, match="is in the past"):
        schedule_meeting(session, group, day=today - timedelta(days=3), start="08:30", now=NOW)
    with pytest.raises(CycleError, match="deadline .* has passed"):
        schedule_meeting(session, group, day=today + timedelta(days=1), start="08:30", now=NOW)
    schedule_meeting(session, group, day=MEETING_DAY, start="08:30", now=NOW)
    with pytest.raises(CycleError, match="would overlap the meeting of"):
        schedule_meeting(session, group, day=MEETING_DAY + timedelta(days=7), start="08:30", now=NOW)
    schedule_meeting(session, group, day=MEETING_DAY + timedelta(days=28), start="08:30", now=NOW)  # next month: fine
    session.commit()

    past = run("cycle", "schedule", SLUG, "--date", f"{today - timedelta(days=30):%Y-%m-%d}", "--time", "08:30")
    assert past.exit_code == 1 and "is in the past" in past.output and "--force" in past.output
    assert past.output.count("\n") == 1
    backfill = run("cycle", "schedule", SLUG, "--date", f"{today - timedelta(days=30):%Y-%m-%d}", "--time", "08:30", "--force")
    assert backfill.exit_code == 0 and "nothing will be sent for it" in backfill.output
    assert run("tick").exit_code == 0  # the tick leaves the back-filled meeting alone
    fresh(session)
    old = session.scalars(select(Cycle).order_by(Cycle.meeting_starts_at)).first()
    assert old is not None and old.status == CycleStatus.DONE
    assert session.scalars(select(OutboundMessage).where(OutboundMessage.cycle_id == old.id)).all() == []


def test_an_update_the_reader_was_unsure_of_is_flagged_in_the_brief(run, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    """A reply that starts with a signature separator leaves nothing after trimming; the widest
    plausible cut is kept, and the facilitator is asked to read it with care."""
    from app.models import Update
    from app.packets import compile_packet

    open_cycle(run, session, cycle)
    answer(client, session, ALICE, "Alice Chen",
           "--\nClosed Acme this month.\n\nOn Mon, 3 Nov 2025 at 09:00, R <r@x.example> wrote:\n> WINS\n")
    answer(client, session, BEN, "Ben Okafor", "WINS\nTwo new depots.")
    fresh(session)
    updates = {u.request.member.email: u for u in session.scalars(select(Update))}
    assert updates[ALICE].change.get("reading_flags") and "reading_flags" not in updates[BEN].change
    packet = session.get_one(Packet, compile_packet(session, settings, cycle.id, clock.now()).packet_id)
    assert "Closed Acme this month." in packet.text
    assert "- Read Alice Chen's update with care" in packet.text and "Read Ben Okafor" not in packet.text
    assert "<h3>Read with care</h3>" in packet.html
