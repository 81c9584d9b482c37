"""Schedules in the group's timezone, DST-safe, and what the tick finds due."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.cycles import (
    CycleError,
    CycleState,
    Due,
    due_actions,
    local_at,
    schedule_for,
    schedule_meeting,
    tick,
)
from app.models import OutboundMessage, UpdateRequest
from tests.conftest import MEETING_DAY, NOW

UTC = timezone.utc


def local(moment: datetime, tz: str) -> tuple[str, str]:
    value = moment.astimezone(ZoneInfo(tz))
    return value.strftime("%Y-%m-%d"), value.strftime("%H:%M")


@pytest.mark.parametrize(
    ("tz", "meeting_local"),
    [
        ("America/New_York", datetime(2026, 11, 12, 8, 30)),  # DST ends 1 Nov, between request and meeting
        ("America/New_York", datetime(2026, 3, 19, 8, 30)),  # DST starts 8 Mar
        ("Europe/Berlin", datetime(2026, 4, 2, 9, 0)),  # DST starts 29 Mar
        ("Europe/Berlin", datetime(2026, 11, 5, 9, 0)),  # DST ends 25 Oct
        ("Asia/Kolkata", datetime(2026, 12, 10, 10, 0)),  # +05:30, no DST
    ],
)
def test_schedule_keeps_local_wall_clock_times_across_dst(tz: str, meeting_local: datetime) -> None:
    starts_at = meeting_local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    schedule = schedule_for(starts_at, tz)
    day = meeting_local.date()
    assert local(schedule.request_at, tz) == ((day - timedelta(days=14)).isoformat(), "09:00")
    assert [local(r, tz) for r in schedule.reminder_ats] == [
        ((day - timedelta(days=7)).isoformat(), "09:00"),
        ((day - timedelta(days=3)).isoformat(), "09:00"),
    ]
    assert local(schedule.deadline_at, tz) == ((day - timedelta(days=2)).isoformat(), "17:00")
    assert all(t.tzinfo == UTC for t in (schedule.request_at, schedule.deadline_at))


def test_dst_change_shows_in_utc_not_in_local_time() -> None:
    # New York: 09:00 local is 13:00 UTC in summer time and 14:00 UTC in winter.
    before = local_at(datetime(2026, 10, 29).date(), "09:00", "America/New_York")
    after = local_at(datetime(2026, 11, 5).date(), "09:00", "America/New_York")
    assert (before.hour, after.hour) == (13, 14)


def test_kolkata_half_hour_offset() -> None:
    assert local_at(datetime(2026, 12, 1).date(), "09:00", "Asia/Kolkata") == datetime(2026, 12, 1, 3, 30, tzinfo=UTC)


def test_due_actions() -> None:
    schedule = schedule_for(datetime(2026, 12, 3, 13, 30, tzinfo=UTC), "America/New_York")
    fresh = CycleState(schedule)
    assert due_actions(fresh, schedule.request_at - timedelta(minutes=1)) == Due()
    assert due_actions(fresh, schedule.request_at) == Due(requests=True)
    sent = CycleState(schedule, requests_sent=True)
    assert due_actions(sent, schedule.request_at + timedelta(days=1)) == Due()
    assert due_actions(sent, schedule.reminder_ats[0]).reminder_index == 0
    first_done = CycleState(schedule, requests_sent=True, reminder_index_sent=0)
    assert due_actions(first_done, schedule.reminder_ats[0] + timedelta(hours=2)) == Due()
    # After downtime past both reminders, only the latest is due: one reminder, not two at once.
    assert due_actions(sent, schedule.reminder_ats[1] + timedelta(hours=1)).reminder_index == 1
    # The digest comes with (or after) the last reminder, once.
    assert due_actions(first_done, schedule.reminder_ats[1]) == Due(reminder_index=1, digest=True)
    assert not due_actions(CycleState(schedule, True, 1, digest_sent=True), schedule.reminder_ats[1]).digest
    # Requests that go out late make the passed reminders moot.
    late = due_actions(fresh, schedule.reminder_ats[0] + timedelta(hours=1))
    assert (late.requests, late.reminder_index, late.digest, late.reminders_moot_upto) == (True, None, False, 0)
    at_deadline = due_actions(CycleState(schedule, True, 1, True), schedule.deadline_at)
    assert at_deadline == Due(compile=True)
    assert due_actions(CycleState(schedule, True, 1, True, has_packet=True), schedule.deadline_at) == Due()


def test_schedule_meeting_twice_is_refused(session, group) -> None:  # type: ignore[no-untyped-def]
    schedule_meeting(session, group, day=MEETING_DAY, start="08:30", now=NOW)
    with pytest.raises(CycleError, match="already has a meeting"):
        schedule_meeting(session, group, day=MEETING_DAY, start="08:30", now=NOW)
    with pytest.raises(CycleError, match="time of day"):
        schedule_meeting(session, group, day=MEETING_DAY + timedelta(days=1), start="half past eight", now=NOW)


def test_tick_sends_requests_once_and_catches_up(session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    early = tick(session, settings, cycle.request_at - timedelta(hours=1))
    assert early.outbound_ids == []
    late = cycle.request_at + timedelta(days=2)  # the service was down at request time
    first = tick(session, settings, late)
    session.commit()
    assert len(first.outbound_ids) == 3
    again = tick(session, settings, late + timedelta(minutes=5))
    session.commit()
    assert again.outbound_ids == []
    assert session.scalar(select(func.count(OutboundMessage.id))) == 3
    tokens = session.scalars(select(UpdateRequest.token)).all()
    assert len(set(tokens)) == 3 and all(len(t) == 32 for t in tokens)


def test_tick_asks_for_the_packet_at_the_deadline(session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    assert tick(session, settings, cycle.deadline_at - timedelta(minutes=1)).compile_cycle_ids == []
    assert tick(session, settings, cycle.deadline_at).compile_cycle_ids == [cycle.id]
