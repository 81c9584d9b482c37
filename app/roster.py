"""Groups, facilitators and members: creating them, importing a roster from CSV, and the
repairs a facilitator makes from the command line (an address, a leave, a removal, a bounce)."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import addresses, mail
from app.models import Facilitator, Group, Member, MemberAddress, PacketCadence
from app.settings import Settings

# The shape of an address we store: no spaces, brackets or quotes, an ASCII domain with a dot.
# check_email then asks the parser build_mime uses (see email_problem).
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MAX_EMAIL = 254  # RFC 5321's limit on a forward path, less its angle brackets
MAX_TEXT = 200  # names, companies and titles: the String(200) columns of models.py
# Line and paragraph breaks, tabs and their kin: what a multi-line spreadsheet cell brings.
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
_NEEDS_QUOTES = frozenset("()[]:\\")  # RFC 5322 specials that EMAIL_RE lets through


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


def email_problem(address: str) -> str | None:
    """Why `address` (normalised) is not one we take, as the end of a sentence; None when it is.

    Pure. The last word is the standard library's address parser, the one build_mime uses for
    `To:`: an address we take is one we can send to, so no roster row can stall a send batch.
    """
    if len(address) > MAX_EMAIL:
        return f"is longer than {MAX_EMAIL} characters"
    if not EMAIL_RE.match(address):
        return "is not an email address"
    try:
        Address(addr_spec=address)
    except (ValueError, HeaderParseError) as error:
        local = address.rpartition("@")[0]
        if ".." in local or local.startswith(".") or local.endswith("."):
            why = "a dot at the start or end of the part before the @, or two in a row"
        elif not local.isascii():
            why = "letters outside ASCII before the @"
        elif odd := sorted(_NEEDS_QUOTES & set(local)):
            word = "the character" if len(odd) == 1 else "the characters"
            why = f"{word} {' '.join(odd)} before the @"
        else:
            why = str(error)
        return f"is not an email address we can send to: {why}"
    return None


def check_email(address: str) -> str:
    """The address as we store it (normalize_email); RosterError when we could not send to it."""
    address = normalize_email(address)
    problem = email_problem(address)
    if problem is not None:
        raise RosterError(f"{address!r} {problem}")
    return address


def one_line(value: str, what: str = "name", *, required: bool = True) -> str:
    """`value` as we store a name, company or title: on one line, trimmed. Pure.

    A cell typed over two lines in Excel (Alt+Enter) is joined with a space, not refused: the
    name is right, only its layout is not. Any other control character (NUL, ESC, DEL, C1) is
    refused instead, since it means a file read in the wrong encoding, and a name goes into the
    `To:` header, where a line break would fail the email and a control character garble it.
    Bidirectional formatting characters are dropped: they only reorder how a name is shown.
    """
    value = addresses.without_bidi(value)
    value = " ".join(part.strip() for part in _LINE_BREAKS.split(value) if part.strip())
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise RosterError(
            f"{what} contains the control character U+{ord(bad):04X} (is the file UTF-8?)"
        )
    if required and not value:
        raise RosterError(f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise RosterError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "group"


# Zone names that keep one offset all year (or follow old US rules): a group set to "EST" would
# meet an hour off all summer. Suggest the IANA name people mean.
_FIXED_ZONES = {
    "EST": "America/New_York", "EDT": "America/New_York", "EST5EDT": "America/New_York",
    "CST": "America/Chicago", "CDT": "America/Chicago", "CST6CDT": "America/Chicago",
    "MST": "America/Denver", "MDT": "America/Denver", "MST7MDT": "America/Denver",
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles", "PST8PDT": "America/Los_Angeles",
    "HST": "Pacific/Honolulu", "GMT": "Europe/London", "BST": "Europe/London", "WET": "Europe/Lisbon",
    "CET": "Europe/Paris", "MET": "Europe/Paris", "EET": "Europe/Athens",
}


def check_timezone(name: str) -> str:
    """`name` if it is an IANA zone that follows its region's summer time; RosterError naming
    the zone to use instead for "EST", "CET", "Etc/GMT+5" and the like ("UTC" is fine)."""
    name = name.strip()
    if name.upper() in _FIXED_ZONES:
        raise RosterError(
            f"{name!r} keeps one offset all year, so meetings would move by an hour in summer:"
            f" use an IANA name such as {_FIXED_ZONES[name.upper()]}"
        )
    if name.startswith("Etc/") and name not in ("Etc/UTC", "Etc/UCT"):
        raise RosterError(f"{name!r} is a fixed offset with no summer time: use the IANA name of a place, such as Europe/Berlin")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RosterError(f"{name!r} is not an IANA timezone (e.g. America/New_York)") from None
    if "/" not in name and name not in ("UTC", "UCT", "Zulu"):
        raise RosterError(f"{name!r} is a legacy zone name: use an IANA name such as America/New_York or Europe/Paris")
    return name


# ISO 3166 alpha-2: paper size and the like (two letters; we do not keep a country list).
_COUNTRY = re.compile(r"[A-Z]{2}")
# Languages whose words the reader knows besides English (app/reading).
LANGUAGES = ("en", "es", "fr", "de", "pt", "nl")


def edit_group(
    session: Session,
    group: Group,
    *,
    name: str | None = None,
    timezone: str | None = None,
    location: str | None = None,
    country: str | None = None,
    language: str | None = None,
    packet_cadence: str | None = None,
    packet_to_members: bool | None = None,
) -> list[str]:
    """Change a group's settings; returns what changed, as "field: old -> new". Flushes.

    Meetings already scheduled keep their times (a new timezone applies to new meetings).
    """
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = one_line(name, "the group's name")
    if timezone is not None:
        changes["timezone"] = check_timezone(timezone)
    if location is not None:
        changes["default_location"] = one_line(location, "location", required=False)
    if country is not None:
        country = country.strip().upper()
        if country and not _COUNTRY.fullmatch(country):
            raise RosterError(f"{country!r} is not a two-letter country code such as US, CA, GB or DE")
        changes["country"] = country
    if language is not None:
        language = language.strip().lower()
        if language not in LANGUAGES:
            raise RosterError(f"{language!r} is not a language Roundtable reads: one of {', '.join(LANGUAGES)}")
        changes["language"] = language
    if packet_cadence is not None:
        if packet_cadence not in set(PacketCadence):
            raise RosterError(f"the packet cadence is one of {', '.join(PacketCadence)}, not {packet_cadence!r}")
        changes["packet_cadence"] = PacketCadence(packet_cadence)
    if packet_to_members is not None:
        changes["packet_to_members"] = packet_to_members
    said = []
    for field, value in changes.items():
        old = getattr(group, field)
        if old != value:
            setattr(group, field, value)
            said.append(f"{field.replace('_', ' ')}: {old or '(none)'} -> {value or '(none)'}")
    session.flush()
    return said


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
    name = one_line(name, "the group's name")
    facilitator_name = one_line(facilitator_name, "the facilitator's name", required=False)
    timezone = check_timezone(timezone)
    slug = slugify(slug or name)
    if session.scalar(select(Group.id).where(Group.slug == slug)) is not None:
        raise RosterError(f"a group with the slug {slug!r} exists already")
    group = Group(name=name, slug=slug, timezone=timezone, default_location=location)
    facilitator = Facilitator(name=facilitator_name, email=check_email(facilitator_email))
    group.facilitators.append(facilitator)
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
    name = one_line(name)
    company = one_line(company, "company", required=False)
    title = one_line(title, "title", required=False)
    email = check_email(email)
    _check_address_free(session, group, email)
    member = Member(group=group, name=name, email=email, company=company, title=title)
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
        if value is None:
            continue
        value = one_line(value, field, required=field == "name")
        if value == getattr(member, field):
            continue
        changes.append(f"{field} {getattr(member, field) or '(none)'} -> {value or '(none)'}")
        setattr(member, field, value)
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

    Flushes; safe twice. Refused (RosterError, one line) when `email` belongs to another member of
    the group, as their address or an alternate.
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
    alternate_of = session.scalar(
        select(Member)
        .join(MemberAddress, MemberAddress.member_id == Member.id)
        .where(Member.group_id == member.group_id, func.lower(MemberAddress.email) == email)
    )
    if alternate_of is not None:
        raise RosterError(
            f"{email} already counts as {alternate_of.name} in {member.group.name}: a reply must name one member"
            f" (roundtable member alias {alternate_of.email} {email} --remove first)"
        )
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
    name = one_line(name, required=False) or email
    if any(f.email == email for f in group.facilitators):
        raise RosterError(f"{email} is already a facilitator of {group.name}")
    facilitator = Facilitator(name=name, email=email)
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


# Header spellings seen in exports (Excel, Google Sheets, CRMs), compared lower-case, with
# spaces, dashes and underscores alike.
_COLUMNS = {
    "name": ("name", "full name", "member", "member name", "contact", "contact name", "nom", "nombre", "vollständiger name"),
    "first name": ("first name", "firstname", "given name", "first", "vorname", "prénom", "prenom"),
    "last name": ("last name", "lastname", "surname", "family name", "last", "nachname", "apellido", "nom de famille"),
    "email": ("email", "e mail", "email address", "e mail address", "mail", "emailaddress", "courriel", "correo", "correo electrónico"),
    "company": ("company", "company name", "organization", "organisation", "business", "firm", "employer", "firma", "empresa", "société"),
    "title": ("title", "job title", "position", "role", "titre", "cargo", "funktion"),
}
_COLUMN_OF = {spelling: column for column, spellings in _COLUMNS.items() for spelling in spellings}


def _column(header: str) -> str:
    """The column a header names ("Email Address" -> "email"); unknown ones as they are."""
    key = " ".join(re.sub(r"[-_.:*]+", " ", header.strip().lower()).split())
    return _COLUMN_OF.get(key, key)


def _delimiter(text: str) -> str:
    """Comma, semicolon (Excel where the decimal mark is a comma) or tab: whichever the header
    line holds most of."""
    header = text.split("\n", 1)[0]
    return max(",;\t", key=header.count) if any(c in header for c in ",;\t") else ","


def decode_csv(data: bytes) -> str:
    """A CSV file's text: UTF-8 (with or without a BOM), UTF-16 as Excel saves "Unicode text",
    else Windows-1252 as older Excel saves "CSV". RosterError when it is none of them."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig")
    if len(data) > 1 and data[1:2] == b"\x00" and data[0:1] != b"\x00":
        return data.decode("utf-16-le")  # UTF-16 without its BOM
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise RosterError("the file is not text in UTF-8, UTF-16 or Windows-1252: save it as CSV UTF-8") from None


def import_members_csv(session: Session, group: Group, text: str) -> list[Member]:
    """Add every row of a CSV (name, email, company, title) or none of them. Commas, semicolons
    or tabs; common header spellings ("Email Address", "Full name", first and last name).

    Raises RosterError listing every bad row with the line it starts on; nothing is flushed then.
    """
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(text))
    read = next(reader, [])
    headers = [_column(h) for h in read]
    if "name" not in headers and {"first name", "last name"} <= set(headers):
        headers = ["name" if h == "first name" else h for h in headers]  # joined with the last name below
    missing = {"name", "email"} - set(headers)
    if missing:
        got = ", ".join(h.strip() for h in read) or "nothing"
        raise RosterError(
            f"line 1: the header needs columns {', '.join(sorted(missing))} (got {got});"
            " e.g. name,email,company,title"
        )
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
    end = reader.line_num
    for cells in reader:
        # A quoted cell may span lines (Alt+Enter in Excel): name the line its row starts on.
        line, end = end + 1, reader.line_num
        values = {header: cell.strip() for header, cell in zip(headers, cells) if header}
        if values.get("last name"):
            values["name"] = f"{values.get('name', '')} {values.pop('last name')}".strip()
        if not any(values.values()):
            continue
        for field in ("name", "company", "title"):
            try:
                values[field] = one_line(values.get(field, ""), field, required=field == "name")
            except RosterError as error:
                errors.append(RowError(line, str(error)))
        email = normalize_email(values.get("email", ""))
        problem = email_problem(email)
        if problem is not None:
            errors.append(RowError(line, f"{values.get('email', '')!r} {problem}"))
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
