"""The core aggregates: groups and their members, cycles, update requests and updates, inbound
and outbound mail, packets; the declarative base and column types every model shares."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app import clock


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass a timezone-aware UTC datetime")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# Named constraints so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), bytes: LargeBinary()}


class CycleStatus(StrEnum):
    SCHEDULED = "scheduled"
    REQUESTED = "requested"
    COMPILED = "compiled"
    DONE = "done"


class PacketCadence(StrEnum):
    """How a packet is re-issued after the deadline, as late mail arrives."""

    DAILY = "daily"  # at most one new version a day
    IMMEDIATE = "immediate"


class InboundStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet processed
    ACCEPTED = "accepted"  # became an update (or an excuse)
    IGNORED = "ignored"  # machine mail: recorded, never answered
    REJECTED = "rejected"  # a person's mail we could not take; `reason` says why
    HELD = "held"  # valid token from a stranger's address: waits for the facilitator
    FAILED = "failed"  # we could not read it (it raised, or ran out of time); kept, `reason` says why


class OutboundStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    CANCELLED = "cancelled"  # no longer wanted when its turn came (a reminder after a reply)


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    default_location: Mapped[str] = mapped_column(String(300), default="")
    # Schedule offsets, in days before the meeting, at a local time of day (DESIGN.md defaults).
    request_days_before: Mapped[int] = mapped_column(default=14)
    reminder_days_before: Mapped[dict[str, Any]] = mapped_column(default=lambda: {"days": [7, 3]})
    send_local_time: Mapped[str] = mapped_column(String(5), default="09:00")
    deadline_days_before: Mapped[int] = mapped_column(default=2)
    deadline_local_time: Mapped[str] = mapped_column(String(5), default="17:00")
    packet_to_members: Mapped[bool] = mapped_column(default=False)
    country: Mapped[str] = mapped_column(String(2), default="")  # ISO 3166 alpha-2: paper size
    language: Mapped[str] = mapped_column(String(8), default="en")  # members may also answer in it
    packet_cadence: Mapped[str] = mapped_column(String(10), default=PacketCadence.DAILY)
    # The meeting (app/meeting/): a recurrence rule (RFC 5545 RRULE, e.g. "FREQ=MONTHLY;BYDAY=+2TH")
    # with its local hours ("08:30-12:30"), and the logistics each new meeting starts from.
    meeting_rule: Mapped[str] = mapped_column(String(200), default="", server_default="")
    meeting_hours: Mapped[str] = mapped_column(String(11), default="", server_default="")
    meeting_logistics: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # Asks (app/asks/): the facilitator approves each before it circulates; at most this many
    # per member a week (0: no limit); "daily" digests or "immediate" (AskCirculationMode).
    asks_need_approval: Mapped[bool] = mapped_column(default=False)
    asks_per_week: Mapped[int] = mapped_column(default=3)
    ask_circulation: Mapped[str] = mapped_column(String(10), default="daily")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    facilitators: Mapped[list[Facilitator]] = relationship(back_populates="group", order_by="Facilitator.id")
    members: Mapped[list[Member]] = relationship(back_populates="group", order_by="Member.id")
    cycles: Mapped[list[Cycle]] = relationship(back_populates="group", order_by="Cycle.meeting_starts_at")


class Facilitator(Base):
    __tablename__ = "facilitators"
    __table_args__ = (UniqueConstraint("group_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))

    group: Mapped[Group] = relationship(back_populates="facilitators")


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("group_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    company: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    is_active: Mapped[bool] = mapped_column(default=True)
    bounced_at: Mapped[datetime | None]
    bounce_reason: Mapped[str | None] = mapped_column(Text)
    removed_at: Mapped[datetime | None]  # off the roster; kept for the history of past cycles
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    group: Mapped[Group] = relationship(back_populates="members")
    addresses: Mapped[list[MemberAddress]] = relationship(back_populates="member")

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name

    @property
    def is_listed(self) -> bool:
        """On the roster and active (not on leave, not removed)."""
        return self.is_active and self.removed_at is None

    @property
    def is_reachable(self) -> bool:
        """We may mail this member: listed, and their address not bouncing."""
        return self.is_listed and self.bounced_at is None


class MemberAddress(Base):
    """An alternate address a member may write from (an assistant, a personal account)."""

    __tablename__ = "member_addresses"
    __table_args__ = (UniqueConstraint("member_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    email: Mapped[str] = mapped_column(String(320), index=True)

    member: Mapped[Member] = relationship(back_populates="addresses")


class Cycle(Base):
    __tablename__ = "cycles"
    __table_args__ = (UniqueConstraint("group_id", "meeting_starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    meeting_starts_at: Mapped[datetime]
    meeting_ends_at: Mapped[datetime]
    location: Mapped[str] = mapped_column(String(300), default="")
    request_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default=CycleStatus.SCHEDULED)
    # What the tick has done, so an idle tick touches no member rows.
    requests_sent_at: Mapped[datetime | None]
    reminder_index_sent: Mapped[int | None]  # the latest reminder queued (0-based)
    digest_sent_at: Mapped[datetime | None]
    packet_due_at: Mapped[datetime | None]  # late mail changed the packet: its next version is due then
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    group: Mapped[Group] = relationship(back_populates="cycles")
    requests: Mapped[list[UpdateRequest]] = relationship(back_populates="cycle", order_by="UpdateRequest.id")
    packets: Mapped[list[Packet]] = relationship(back_populates="cycle", order_by="Packet.version")


class UpdateRequest(Base):
    """One member's invitation to report for one cycle; its token routes the reply."""

    __tablename__ = "update_requests"
    __table_args__ = (UniqueConstraint("cycle_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    replied_at: Mapped[datetime | None]
    excused_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    cycle: Mapped[Cycle] = relationship(back_populates="requests")
    member: Mapped[Member] = relationship()
    updates: Mapped[list[Update]] = relationship(back_populates="request", order_by="Update.version")

    @property
    def latest_update(self) -> Update | None:
        return self.updates[-1] if self.updates else None


class InboundMessage(Base):
    """One received email, stored raw before anything else happens."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Message-ID, or a content hash when there is none: the same mail is stored once.
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    source: Mapped[str] = mapped_column(String(30))  # sendgrid-raw | sendgrid-parsed | raw
    raw: Mapped[bytes]
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)  # form fields besides the MIME
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    envelope_to: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=InboundStatus.RECEIVED)
    kind: Mapped[str | None] = mapped_column(String(30))  # reply | bounce | auto_reply | ...
    reason: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)  # the words of a message that changed nothing
    update_request_id: Mapped[int | None] = mapped_column(ForeignKey("update_requests.id"))
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
    processed_at: Mapped[datetime | None]

    update_request: Mapped[UpdateRequest | None] = relationship()

    __table_args__ = (
        # The sweep looks for stored-but-unprocessed rows: keep that lookup cheap.
        Index("ix_inbound_pending", "received_at", postgresql_where=text("status = 'received'")),
    )


class Update(Base):
    """What one reply said; a later reply to the same request makes a new version."""

    __tablename__ = "updates"
    __table_args__ = (UniqueConstraint("update_request_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    update_request_id: Mapped[int] = mapped_column(ForeignKey("update_requests.id"))
    inbound_message_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), unique=True)
    version: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    sections: Mapped[dict[str, Any]]
    attachments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_skip: Mapped[bool] = mapped_column(default=False)
    # How this message changed the update (app.followups.Merge.change): kind and sections touched.
    change: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)  # when its message arrived

    request: Mapped[UpdateRequest] = relationship(back_populates="updates")


class OutboundMessage(Base):
    """One email we send: a row first, sent by a worker after commit."""

    __tablename__ = "outbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)  # ours, made once
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    to_email: Mapped[str] = mapped_column(String(320))
    to_name: Mapped[str] = mapped_column(String(200), default="")
    reply_to: Mapped[str | None] = mapped_column(String(320))
    in_reply_to: Mapped[str | None] = mapped_column(String(255))
    context: Mapped[dict[str, Any]]  # plain values the template renders
    status: Mapped[str] = mapped_column(String(20), default=OutboundStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbound_pending", "created_at", postgresql_where=text("status = 'queued'")),
        Index("ix_outbound_cycle_kind", "cycle_id", "kind"),  # the tick's "queued already?" lookup
    )


class DeliveryEvent(Base):
    """One SendGrid event about an email we sent; stored once per sg_event_id."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str] = mapped_column(String(128), unique=True)
    outbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("outbound_messages.id"), index=True)
    event: Mapped[str] = mapped_column(String(30))
    email: Mapped[str] = mapped_column(String(320))
    occurred_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=clock.now)


class StoredAttachment(Base):
    """A file a member attached to a reply, kept under a safe name (up to the size cap)."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("update_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("updates.id"))
    position: Mapped[int]
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    data: Mapped[bytes | None]  # None when over the cap: listed, not kept

    update: Mapped[Update] = relationship()


class Packet(Base):
    """The compiled pre-read for one cycle; every version is kept."""

    __tablename__ = "packets"
    __table_args__ = (UniqueConstraint("cycle_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"))
    version: Mapped[int]
    content_hash: Mapped[str] = mapped_column(String(64))
    context: Mapped[dict[str, Any]]  # the plain values the packet was rendered from
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    cycle: Mapped[Cycle] = relationship(back_populates="packets")
