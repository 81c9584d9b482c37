"""The asks' models (app/asks/): resource requests, their circulation to peers, and offers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app import clock
from app.models.core import Base, Group, Member, OutboundMessage


class AskStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # the group's facilitator approves each ask first
    HELD = "held"  # held by the facilitator (with a note), or over the weekly limit
    FACILITATOR_ONLY = "facilitator_only"  # marked `[facilitator only]`: never circulates
    OPEN = "open"  # circulated (or queued to circulate); no offer yet
    ANSWERED = "answered"  # at least one offer came back
    CLOSED = "closed"  # the asker said it is sorted


class AskCirculationMode(StrEnum):
    DAILY = "daily"  # at most one ask email a day per member: asks that arrive together go as one digest
    IMMEDIATE = "immediate"  # each ask at once


class Ask(Base):
    """One resource request by a member to their group ("intro to someone at Thermo Fisher?")."""

    __tablename__ = "asks"
    # Before the `text` column below, which would shadow sqlalchemy's `text` in this class body.
    __table_args__ = (
        # The tick's follow-up lookup: asks still open, not followed up yet.
        Index(
            "ix_asks_follow_up",
            "opened_at",
            postgresql_where=text("followed_up_at IS NULL AND status IN ('open', 'answered')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    # Where it came from, once: `update:<request id>:<hash of the item>` or `inbound:<message id>`,
    # so a later version of the same update never makes (or circulates) the same ask again.
    source_key: Mapped[str] = mapped_column(String(120), unique=True)
    update_request_id: Mapped[int | None] = mapped_column(ForeignKey("update_requests.id"))
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    text: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))  # app.asks.kinds.KINDS
    status: Mapped[str] = mapped_column(String(20), default=AskStatus.OPEN)
    note: Mapped[str | None] = mapped_column(Text)  # why it is held, for the asker
    token: Mapped[str] = mapped_column(String(64), unique=True)  # the asker's replies: done, kind
    approval_token: Mapped[str] = mapped_column(String(64), unique=True)  # the facilitator's APPROVE/HOLD
    thanked: Mapped[str | None] = mapped_column(Text)  # names the asker thanked on closing
    opened_at: Mapped[datetime | None]  # when it began to circulate
    closed_at: Mapped[datetime | None]
    followed_up_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    group: Mapped[Group] = relationship()
    member: Mapped[Member] = relationship()
    circulations: Mapped[list[AskCirculation]] = relationship(back_populates="ask", order_by="AskCirculation.id")
    offers: Mapped[list[Offer]] = relationship(back_populates="ask", order_by="Offer.id")


class AskCirculation(Base):
    """One ask for one other member of its group: their own reply token, and the email it went in."""

    __tablename__ = "ask_circulations"
    __table_args__ = (
        UniqueConstraint("ask_id", "member_id"),
        Index("ix_ask_circulations_unsent", "member_id", postgresql_where=text("sent_at IS NULL")),
        Index("ix_ask_circulations_member_sent", "member_id", "sent_at"),  # "an ask email today?"
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ask_id: Mapped[int] = mapped_column(ForeignKey("asks.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)  # a reply here is an offer
    outbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("outbound_messages.id"))
    # The email's own reply token when it carried several asks (a digest): a reply there is
    # ambiguous, and the helper is asked to use the ask's own address.
    digest_token: Mapped[str | None] = mapped_column(String(64), index=True)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    ask: Mapped[Ask] = relationship(back_populates="circulations")
    member: Mapped[Member] = relationship()
    outbound: Mapped[OutboundMessage | None] = relationship()


class Offer(Base):
    """A member's answer to a circulated ask, routed privately to the asker; logged here."""

    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    ask_id: Mapped[int] = mapped_column(ForeignKey("asks.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))  # the helper
    inbound_message_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)  # when its message arrived

    ask: Mapped[Ask] = relationship(back_populates="offers")
    member: Mapped[Member] = relationship()
