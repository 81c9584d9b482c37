"""Participation: per member and cycle, on time / late / excused / missing, and streaks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Cycle, Group, UpdateRequest


class Attendance(StrEnum):
    ON_TIME = "on time"
    LATE = "late"
    EXCUSED = "excused"
    MISSING = "missing"
    PENDING = "pending"  # asked, deadline not reached yet
    NOT_ASKED = "not asked"


def attendance(
    *, asked: bool, replied_at: datetime | None, excused_at: datetime | None, deadline_at: datetime, now: datetime
) -> Attendance:
    """One member's standing in one cycle. Pure. The one rule for "late": the member's first
    real update arrived after the deadline (a correction after it does not make them late). A
    real update outweighs an excuse (a SKIP or the "no more reminders" link)."""
    if replied_at is not None:
        return Attendance.ON_TIME if replied_at <= deadline_at else Attendance.LATE
    if excused_at is not None:
        return Attendance.EXCUSED
    if not asked:
        return Attendance.NOT_ASKED
    return Attendance.MISSING if now >= deadline_at else Attendance.PENDING


def standing_in(cycle: Cycle, request: UpdateRequest, now: datetime) -> Attendance:
    """`attendance` for one member's request in `cycle`."""
    return attendance(
        asked=True, replied_at=request.replied_at, excused_at=request.excused_at, deadline_at=cycle.deadline_at, now=now
    )


@dataclass(frozen=True)
class Standing:
    """A member's record over the group's cycles, newest last."""

    history: tuple[Attendance, ...]

    @property
    def streak(self) -> int:
        """Cycles in a row with an update (on time or late); an excused month does not break it."""
        count = 0
        for item in reversed(self.history):
            if item in (Attendance.PENDING, Attendance.NOT_ASKED, Attendance.EXCUSED):
                continue
            if item is Attendance.MISSING:
                break
            count += 1
        return count

    @property
    def missed_in_a_row(self) -> int:
        count = 0
        for item in reversed(self.history):
            if item in (Attendance.PENDING, Attendance.NOT_ASKED, Attendance.EXCUSED):
                continue
            if item is not Attendance.MISSING:
                break
            count += 1
        return count

    @property
    def current(self) -> Attendance:
        return self.history[-1] if self.history else Attendance.NOT_ASKED


def group_standings(session: Session, group: Group, now: datetime, upto: Cycle | None = None) -> dict[int, Standing]:
    """Each member's standing over the group's cycles up to `upto` (default: all)."""
    query = select(Cycle).where(Cycle.group_id == group.id).order_by(Cycle.meeting_starts_at)
    if upto is not None:
        query = query.where(Cycle.meeting_starts_at <= upto.meeting_starts_at)
    cycles = list(session.scalars(query))
    requests = {
        (r.cycle_id, r.member_id): r
        for r in session.scalars(
            select(UpdateRequest).where(UpdateRequest.cycle_id.in_([c.id for c in cycles]))
        )
    }
    standings = {}
    for member in group.members:
        history = []
        for cycle in cycles:
            request = requests.get((cycle.id, member.id))
            history.append(
                attendance(
                    asked=request is not None,
                    replied_at=request.replied_at if request else None,
                    excused_at=request.excused_at if request else None,
                    deadline_at=cycle.deadline_at,
                    now=now,
                )
            )
        standings[member.id] = Standing(tuple(history))
    return standings
