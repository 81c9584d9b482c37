"""Groups, facilitators and members: creating them and importing a roster from CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import mail
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
    return address.strip().lower()


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


def add_member(
    session: Session, group: Group, *, name: str, email: str, company: str = "", title: str = ""
) -> Member:
    """Add one member to `group`. Flushes; raises RosterError on bad input or a duplicate."""
    if not name.strip():
        raise RosterError("name is empty")
    email = check_email(email)
    duplicate = session.scalar(
        select(Member.id).where(Member.group_id == group.id, func.lower(Member.email) == email)
    )
    if duplicate is not None:
        raise RosterError(f"{email} is already a member of {group.name}")
    member = Member(group=group, name=name.strip(), email=email, company=company.strip(), title=title.strip())
    session.add(member)
    session.flush()
    return member


def add_alternate_address(session: Session, member: Member, email: str) -> MemberAddress:
    """Let `member` also write from `email` (an assistant, a personal account). Flushes."""
    address = MemberAddress(member=member, email=check_email(email))
    session.add(address)
    session.flush()
    return address


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
    for member in session.scalars(select(Member).where(func.lower(Member.email) == address.lower())):
        if member.bounced_at is not None:
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
