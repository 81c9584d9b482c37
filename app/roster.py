"""Groups, facilitators and members: creating them, importing a roster from CSV, and the
repairs a facilitator makes from the command line (an address, a leave, a removal, a bounce)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import addresses, mail
from app.models import Facilitator, Group, Member, MemberAddress
from app.settings import Settings

EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class RosterError(ValueError):
    """Bad roster input; the message says what and where."""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def normalize_email(address: str) -> str:
    return addresses.normalize(address)


def check_email(address: str) -> str:
    address = normalize_email(address)
    if not EMAIL_RE.match(address):
        raise RosterError(f"{address!r} is not an email address")
    return address


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "group"


def create_group(
    session: Session,
    *,
    name: str,
    timezone: str,
    facilitator_name: str,
    facilitator_email: str,
    location: str = "",
    slug: str | None = None,
) -> Group:
    """Add a group with its first facilitator. Flushes; raises RosterError on bad input."""
    if not name.strip():
        raise RosterError("the group needs a name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RosterError(f"{timezone!r} is not an IANA timezone (e.g. America/New_York)") from None
    slug = slugify(slug or name)
    if session.scalar(select(Group.id).where(Group.slug == slug)) is not None:
        raise RosterError(f"a group with the slug {slug!r} exists already")
    group = Group(name=name.strip(), slug=slug, timezone=timezone, default_location=location)
    group.facilitators.append(
        Facilitator(name=facilitator_name.strip(), email=check_email(facilitator_email))
    )
    session.add(group)
    session.flush()
    return group


def find_group(session: Session, slug: str) -> Group:
    group = session.scalar(select(Group).where(Group.slug == slug))
    if group is None:
        known = ", ".join(session.scalars(select(Group.slug).order_by(Group.slug))) or "none yet"
        raise RosterError(f"no group {slug!r} (groups: {known})")
    return group


def find_member(session: Session, group: Group, email: str) -> Member:
    """The member of `group` at `email`, removed ones included; RosterError when there is none."""
    email = normalize_email(email)
    member = session.scalar(select(Member).where(Member.group_id == group.id, func.lower(Member.email) == email))
    if member is None:
        raise RosterError(f"no member {email} in {group.name} (see: roundtable member list {group.slug})")
    return member


def _check_address_free(session: Session, group: Group, email: str, member: Member | None = None) -> None:
    """Refuse `email` as the address of `member` (or of a new member) when another member of
    `group` has it, as their address or as a registered alternate: a reply must name one member."""
    others = select(Member).where(Member.group_id == group.id)
    if member is not None:
        others = others.where(Member.id != member.id)
    owner = session.scalar(others.where(func.lower(Member.email) == email))
    if owner is not None and owner.removed_at is not None:
        raise RosterError(
            f"{email} belongs to {owner.name}, removed from {group.name};"
            f" to bring them back: roundtable member activate {group.slug} {email}"
        )
    if owner is not None:
        raise RosterError(f"{email} is already a member of {group.name} ({owner.name})")
    alternate_of = session.scalar(
        others.join(MemberAddress, MemberAddress.member_id == Member.id).where(
            func.lower(MemberAddress.email) == email
        )
    )
    if alternate_of is not None:
        raise RosterError(
            f"{email} is an alternate address of {alternate_of.name} in {group.name};"
            f" to free it: roundtable member alias {alternate_of.email} {email} --remove"
        )


def add_member(
    session: Session, group: Group, *, name: str, email: str, company: str = "", title: str = ""
) -> Member:
    """Add one member to `group`. Flushes; raises RosterError on bad input or a duplicate."""
    if not name.strip():
        raise RosterError("name is empty")
    email = check_email(email)
    _check_address_free(session, group, email)
    member = Member(group=group, name=name.strip(), email=email, company=company.strip(), title=title.strip())
    session.add(member)
    session.flush()
    return member


def edit_member(
    session: Session,
    member: Member,
    *,
    email: str | None = None,
    name: str | None = None,
    company: str | None = None,
    title: str | None = None,
) -> list[str]:
    """Change what is given (None leaves it); return what changed, one line each. Flushes.

    A new address clears the bounce mark: the old address bounced, the new one has not.
    """
    changes: list[str] = []
    if email is not None:
        email = check_email(email)
        group = member.group
        if email == member.email:
            hint = f"; to mail it again: roundtable member clear-bounce {group.slug} {email}" if member.bounced_at else ""
            raise RosterError(f"{email} is {member.name}'s address already{hint}")
        _check_address_free(session, group, email, member)
        for address in [a for a in member.addresses if a.email.lower() == email]:
            session.delete(address)  # their own alternate becomes their address
        changes.append(f"address {member.email} -> {email}")
        member.email = email
        if member.bounced_at is not None:
            member.bounced_at = None
            member.bounce_reason = None
            changes.append("bounce mark cleared")
    for field, value in (("name", name), ("company", company), ("title", title)):
        if value is None or value.strip() == getattr(member, field):
            continue
        if field == "name" and not value.strip():
            raise RosterError("name is empty")
        changes.append(f"{field} {getattr(member, field) or '(none)'} -> {value.strip() or '(none)'}")
        setattr(member, field, value.strip())
    session.flush()
    session.expire(member, ["addresses"])
    return changes


def set_active(session: Session, member: Member, is_active: bool) -> bool:
    """Put a member on leave (False) or back (True); activating a removed member puts them back
    on the roster. Flushes; safe twice; returns whether anything changed."""
    changed = member.is_active != is_active or (is_active and member.removed_at is not None)
    member.is_active = is_active
    if is_active:
        member.removed_at = None
    session.flush()
    return changed


def remove_member(session: Session, member: Member, now: datetime) -> bool:
    """Take a member off the roster: never mailed again, kept in past cycles' history (the row
    stays). Flushes; safe twice; returns whether anything changed."""
    if member.removed_at is not None:
        return False
    member.removed_at = now
    member.is_active = False
    session.flush()
    return True


def clear_bounce(session: Session, member: Member) -> bool:
    """Mail the member's address again. Flushes; safe twice; returns whether it was marked."""
    if member.bounced_at is None:
        return False
    member.bounced_at = None
    member.bounce_reason = None
    session.flush()
    return True


def member_state(member: Member, tz: str) -> str:
    """active / inactive / removed (with the day), and whether the address bounces. Pure."""
    if member.removed_at is not None:
        return f"removed {member.removed_at.astimezone(ZoneInfo(tz)):%Y-%m-%d}"
    state = "active" if member.is_active else "inactive"
    if member.bounced_at is not None:
        state += f", bouncing: {member.bounce_reason or 'no reason given'}"
    return state


def add_alternate_address(session: Session, member: Member, email: str) -> MemberAddress:
    """Let `member` also write from `email` (an assistant, a personal account).

    Flushes; safe twice. Refused when `email` is the address of a member of the group.
    """
    email = check_email(email)
    existing = session.scalar(
        select(MemberAddress).where(MemberAddress.member_id == member.id, func.lower(MemberAddress.email) == email)
    )
    if existing is not None:
        return existing
    if email == member.email:
        raise RosterError(f"{email} is {member.name}'s own address")
    owner = session.scalar(
        select(Member).where(Member.group_id == member.group_id, func.lower(Member.email) == email)
    )
    if owner is not None:
        raise RosterError(f"{email} is the address of {owner.name}, a member of {member.group.name}")
    address = MemberAddress(member=member, email=email)
    session.add(address)
    session.flush()
    return address


def remove_alternate_address(session: Session, member: Member, email: str) -> None:
    """Stop taking mail from `email` as `member`'s. Flushes; RosterError when it is not theirs."""
    email = normalize_email(email)
    address = session.scalar(
        select(MemberAddress).where(MemberAddress.member_id == member.id, func.lower(MemberAddress.email) == email)
    )
    if address is None:
        raise RosterError(f"{email} is not an alternate address of {member.name}")
    session.delete(address)
    session.flush()
    session.expire(member, ["addresses"])


def add_facilitator(session: Session, group: Group, *, name: str, email: str) -> Facilitator:
    """Add a co-facilitator: told of bounces and held mail, sent the packet. Flushes."""
    email = check_email(email)
    if any(f.email == email for f in group.facilitators):
        raise RosterError(f"{email} is already a facilitator of {group.name}")
    facilitator = Facilitator(name=name.strip() or email, email=email)
    group.facilitators.append(facilitator)
    session.flush()
    return facilitator


def remove_facilitator(session: Session, group: Group, email: str) -> Facilitator:
    """Remove a facilitator; the last one stays (someone must hear of bounces). Flushes."""
    email = normalize_email(email)
    facilitator = next((f for f in group.facilitators if f.email == email), None)
    if facilitator is None:
        raise RosterError(f"{email} is not a facilitator of {group.name}")
    if len(group.facilitators) == 1:
        raise RosterError(
            f"{facilitator.name} is the only facilitator of {group.name}:"
            f' add another first (roundtable facilitator add {group.slug} "Name <email>")'
        )
    group.facilitators.remove(facilitator)
    session.delete(facilitator)
    session.flush()
    return facilitator


def import_members_csv(session: Session, group: Group, text: str) -> list[Member]:
    """Add every row of a CSV (name, email, company, title) or none of them.

    Raises RosterError listing every bad row with its line number; nothing is flushed then.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    headers = [h.strip().lower() for h in reader.fieldnames or []]
    missing = {"name", "email"} - set(headers)
    if missing:
        raise RosterError(f"line 1: the header needs columns {', '.join(sorted(missing))} (got {', '.join(headers) or 'nothing'})")
    existing = set(
        session.scalars(select(func.lower(Member.email)).where(Member.group_id == group.id))
    )
    alternates = dict(
        session.execute(
            select(func.lower(MemberAddress.email), Member.name)
            .join(Member, MemberAddress.member_id == Member.id)
            .where(Member.group_id == group.id)
        ).all()
    )
    errors: list[RowError] = []
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not any(values.values()):
            continue
        if not values.get("name"):
            errors.append(RowError(line, "name is empty"))
        email = normalize_email(values.get("email", ""))
        if not EMAIL_RE.match(email):
            errors.append(RowError(line, f"{values.get('email', '')!r} is not an email address"))
        elif email in existing:
            errors.append(RowError(line, f"{email} is already a member of {group.name}"))
        elif email in alternates:
            errors.append(RowError(line, f"{email} is an alternate address of {alternates[email]}"))
        elif email in seen:
            errors.append(RowError(line, f"{email} appears twice (also on line {seen[email]})"))
        else:
            seen[email] = line
        rows.append({**values, "email": email})
    if errors:
        raise RosterError("nothing was imported:\n" + "\n".join(str(e) for e in errors))
    members = [
        Member(
            group=group,
            name=r["name"],
            email=r["email"],
            company=r.get("company", ""),
            title=r.get("title", ""),
        )
        for r in rows
    ]
    session.add_all(members)
    session.flush()
    return members


def mark_bouncing(session: Session, settings: Settings, address: str, reason: str, now: datetime) -> list[int]:
    """Stop mailing every member at `address` and tell their facilitators; return the notices.

    Flushes. Safe to call twice: an address already marked is left as it is, told once.
    """
    notices: list[int] = []
    for member in session.scalars(select(Member).where(func.lower(Member.email) == addresses.normalize(address))):
        if member.bounced_at is not None or member.removed_at is not None:
            continue
        member.bounced_at = now
        member.bounce_reason = reason[:500]
        for facilitator in member.group.facilitators:
            notice = mail.queue_email(
                session,
                settings,
                kind="bounce_notice",
                dedupe_key=f"bounce:{member.id}:{now.date().isoformat()}:{facilitator.id}",
                to_email=facilitator.email,
                to_name=facilitator.name,
                group_id=member.group_id,
                member_id=member.id,
                context={
                    "group_name": member.group.name,
                    "group_slug": member.group.slug,
                    "facilitator_name": facilitator.name,
                    "member_name": member.name,
                    "member_email": member.email,
                    "reason": member.bounce_reason,
                },
            )
            if notice is not None:
                notices.append(notice.id)
    session.flush()
    return notices
