"""The meeting's models (app/meeting/): the meeting of a cycle, RSVPs, date polls and their votes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app import clock
from app.models.core import Base, Cycle, Group, Member


class MeetingStatus(StrEnum):
    PLANNED = "planned"
    CANCELLED = "cancelled"


class AgendaStatus(StrEnum):
    NONE = "none"  # not drafted yet
    DRAFT = "draft"  # with the facilitator
    APPROVED = "approved"  # sent to the members with the invite


class RsvpResponse(StrEnum):
    NONE = "none"  # no answer (or reset by a move)
    YES = "yes"
    VIDEO = "video"  # joining by video: counts as coming
    MAYBE = "maybe"
    NO = "no"


class PollStatus(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"


class Meeting(Base):
    """The meeting of one cycle: logistics, agenda, the calendar invite's UID and SEQUENCE, recap."""

    __tablename__ = "meetings"
    __table_args__ = (UniqueConstraint("group_id", "occurrence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"), unique=True)
    occurrence: Mapped[str | None] = mapped_column(String(10))  # the rule's date it was made for
    uid: Mapped[str] = mapped_column(String(255), unique=True)  # the invite's UID, for good
    sequence: Mapped[int] = mapped_column(default=0)  # raised on every change members were sent
    status: Mapped[str] = mapped_column(String(20), default=MeetingStatus.PLANNED)
    logistics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # address, dial_in, host_*, notes
    agenda: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"items": [{title, minutes, owner}]}
    agenda_status: Mapped[str] = mapped_column(String(20), default=AgendaStatus.NONE)
    agenda_token: Mapped[str] = mapped_column(String(64), unique=True)  # the facilitator's replies
    agenda_drafted_at: Mapped[datetime | None]
    agenda_approved_at: Mapped[datetime | None]
    invited_sequence: Mapped[int | None]  # the SEQUENCE the members' invites last carried
    rsvp_reminder_sent_at: Mapped[datetime | None]
    recap_token: Mapped[str] = mapped_column(String(64), unique=True)  # the facilitator's notes
    recap_requested_at: Mapped[datetime | None]
    recap_notes: Mapped[str | None] = mapped_column(Text)
    recap_sent_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    cycle: Mapped[Cycle] = relationship()
    group: Mapped[Group] = relationship()
    rsvps: Mapped[list[Rsvp]] = relationship(back_populates="meeting", order_by="Rsvp.id")


class Rsvp(Base):
    """One member's answer to one meeting, and the commitments they confirmed in its recap."""

    __tablename__ = "rsvps"
    __table_args__ = (UniqueConstraint("meeting_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)  # invite replies and iMIP REPLYs
    recap_token: Mapped[str] = mapped_column(String(64), unique=True)  # answers to the recap
    response: Mapped[str] = mapped_column(String(10), default=RsvpResponse.NONE)
    responded_at: Mapped[datetime | None]
    response_source: Mapped[str | None] = mapped_column(String(20))  # text | calendar | cli
    invited_at: Mapped[datetime | None]
    commitments: Mapped[dict[str, Any] | None] = mapped_column(JSON())  # {"items": [...]} confirmed
    commitments_confirmed_at: Mapped[datetime | None]

    meeting: Mapped[Meeting] = relationship(back_populates="rsvps")
    member: Mapped[Member] = relationship()


class Poll(Base):
    """A date poll for a group's next meeting: options, the members' votes, the confirmed date."""

    __tablename__ = "polls"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)  # the facilitator's CONFIRM
    options: Mapped[dict[str, Any]]  # {"dates": ["2027-03-09", ...]}
    hours: Mapped[str] = mapped_column(String(11))  # "08:30-12:30", local
    status: Mapped[str] = mapped_column(String(20), default=PollStatus.OPEN)
    confirmed_option: Mapped[int | None]  # 1-based
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    group: Mapped[Group] = relationship()
    votes: Mapped[list[PollVote]] = relationship(back_populates="poll", order_by="PollVote.id")


class PollVote(Base):
    """One member's answer to a poll; a later reply replaces it."""

    __tablename__ = "poll_votes"
    __table_args__ = (UniqueConstraint("poll_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    choices: Mapped[dict[str, Any] | None] = mapped_column(JSON())  # {"options": [1, 3]}, 1-based
    text: Mapped[str | None] = mapped_column(Text)  # what they wrote, as read
    answered_at: Mapped[datetime | None]

    poll: Mapped[Poll] = relationship(back_populates="votes")
    member: Mapped[Member] = relationship()
