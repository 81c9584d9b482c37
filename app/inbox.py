"""What every capability that answers inbound mail shares: the job's `Outcome` and who a sender is.

`app.replies` routes a stored message to the capability that owns its token (an update request,
a meeting, an ask); each capability's handler takes the locked `InboundMessage` row and the
`Reading`, sets the row's status and reason, flushes, and returns an `Outcome` for after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.addresses import normalize, same
from app.authentication import sender_authentication
from app.models import InboundMessage, Member, MemberAddress


@dataclass
class Outcome:
    """What the job does after its commit."""

    outbound_ids: list[int] = field(default_factory=list)
    recompile_cycle_ids: list[int] = field(default_factory=list)

    def extend(self, other: Outcome) -> Outcome:
        self.outbound_ids += other.outbound_ids
        self.recompile_cycle_ids += other.recompile_cycle_ids
        return self


def is_members_address(session: Session, member: Member, address: str) -> bool:
    """The member's own address or one registered for them (stored normalized by app.roster)."""
    if not address:
        return False
    if same(member.email, address):
        return True
    return session.scalar(
        select(MemberAddress.id).where(MemberAddress.member_id == member.id, MemberAddress.email == normalize(address))
    ) is not None


def untrusted_sender(session: Session, row: InboundMessage, member: Member, from_address: str) -> str | None:
    """Why this message may not speak for `member` (None when it may): another address, or a
    failed sender authentication. Such mail is held or refused, never acted on."""
    if not is_members_address(session, member, from_address):
        return (f"it came from {from_address or 'no address'}, which is not {member.name}'s address"
                " or one of their registered alternates")
    authentication = sender_authentication(row.raw, row.fields or {}, from_address)
    if authentication.verdict == "fail":
        return f"it failed sender authentication ({authentication.reason})"
    return None
