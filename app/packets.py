"""The pre-read packet: what the facilitator reads in ten minutes before the meeting.

`packet_context` is pure (plain member entries in, template values out); `compile_packet`
loads the cycle, renders HTML, text and PDF, and saves a new version only when the content
changed. Member text is untrusted: it reaches the HTML only through Jinja's autoescaping.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
import zoneinfo
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, mail
from app.addresses import normalize, without_bidi
from app.asks.packet import listing as asks_listing
from app.cycles import local_label, meeting_label, month_label, open_commitments
from app.followups import combined, describe
from app.mail import template_env
from app.meeting.rsvp import packet_cover
from app.models import (
    Cycle,
    CycleStatus,
    InboundMessage,
    Packet,
    StoredAttachment,
    Update,
    UpdateRequest,
)
from app.participation import Attendance, standing_in
from app.reading.sections import SECTIONS
from app.settings import Settings

log = logging.getLogger(__name__)

LOW_RATING = 4  # at or below this, a rating goes into the facilitator's brief
RATING_AREAS = ("business", "personal", "family")

# Where Letter is the national paper size (the US and Canada, and the countries that follow
# them); everywhere else, A4.
LETTER_COUNTRIES = frozenset({"US", "CA", "MX", "PH", "CL", "CO", "VE", "CR", "GT", "DO", "PR"})


def paper_size(country: str, timezone: str) -> str:
    """The packet PDF's paper: the group's country decides; a group with no country set (all
    groups made before it existed) goes by its timezone's country, so a Bay Area group prints on
    Letter and a London one on A4. A4, the ISO size, when neither says."""
    country = country.strip().upper() or _timezone_countries().get(timezone, "")
    return "Letter" if country in LETTER_COUNTRIES else "A4"


@cache
def _timezone_countries() -> dict[str, str]:
    """IANA timezone -> ISO country code, from the tz database's zone.tab (empty if absent)."""
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / "zone.tab"
        if path.is_file():
            rows = (line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#"))
            return {row[2]: row[0] for row in rows if len(row) >= 3}
    return {}


def name_key(name: str) -> tuple[str, str]:
    """Sort names as people expect: case and accents ignored ("Émile" with the Es, "de Vries"
    with the Ds), then the exact spelling to break ties. Decomposes (NFKD) and drops the
    combining marks; no collation library (PyICU is a heavy system dependency for this)."""
    decomposed = unicodedata.normalize("NFKD", name.casefold()).translate(_UNDECOMPOSED)
    return ("".join(c for c in decomposed if not unicodedata.combining(c)), name)


# Letters NFKD leaves whole, spelled as the base letters they are sorted with.
_UNDECOMPOSED = str.maketrans({"ø": "o", "đ": "d", "ł": "l", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d", "ı": "i"})


# The priority marker a member put on their topic ("Priority A. How do I...", "(priority B)",
# "A - pricing", "C: when to hire"): read into `topic_priority`, and taken out of the text the
# packet shows, which gives the priority its own column. Only a marker naming the priority read.
# Possessive quantifiers and a look-behind keep them linear on hostile runs (tests/test_regex_safety.py).
_LEADING_PRIORITY = (
    re.compile(
        r"^[\s*_]*+[(\[]?\s*+priority\s*+(?:is\s++)?[:=–—-]?\s*+[(\[]?(?P<p>[abc])[)\]]?\s*+[)\]]?[*_]*+"
        r"(?=[\s:.,;!–—-]|$)[\s:.,;!–—-]*+",
        re.IGNORECASE,
    ),
    re.compile(r"^[\s*_]*+(?:[(\[](?P<b>[ABC])[)\]][:.–—-]?|(?P<p>[ABC])\s*+(?:[:.–—]|-++)(?=\s|$))\s*+"),
)
# Searched from each position: none starts with a quantifier a run could feed.
_TRAILING_PRIORITY = (
    re.compile(r"[(\[]\s*+priority\s*+[:=–—-]?\s*+(?P<p>[abc])\s*+[)\]]\s*+\.?$", re.IGNORECASE),
    re.compile(r"(?<![–—-])[–—-]++\s*+priority\s*+[:=]?\s*+(?P<p>[abc])\s*+\.?$", re.IGNORECASE),
    re.compile(r"[(\[](?P<p>[ABC])[)\]]\s*+\.?$"),
)


def without_priority(text: str, priority: str | None) -> str:
    """The topic's text without the marker that gave it `priority`. Pure."""
    if priority is None:
        return text
    stripped = None
    for pattern in _LEADING_PRIORITY:
        match = pattern.match(text)
        if match and (match.group("p") or match.groupdict().get("b") or "").upper() == priority:
            stripped = text[match.end():]
            break
    else:
        for pattern in _TRAILING_PRIORITY:
            match = pattern.search(text)
            if match and match.group("p").upper() == priority:
                stripped = text[: match.start()]
                break
    if stripped is None or not stripped.strip():
        return text  # no marker, or the marker was all there was: show it rather than nothing
    stripped = stripped.strip()
    return stripped[:1].upper() + stripped[1:]


@dataclass(frozen=True)
class MemberEntry:
    name: str
    company: str
    status: str  # replied | late | excused | missing
    replied_label: str = ""
    ratings: dict[str, int] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    topic_priority: str | None = None
    commitments: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    version: int = 0
    flagged: list[str] = field(default_factory=list)  # sections holding two texts to settle
    notes: list[str] = field(default_factory=list)  # messages that changed nothing ("Thanks!")
    read_unsure: bool = False  # the reader kept more than it could place (Reading.flags)
    changed: str = ""  # what the latest version changed, in words


def packet_context(
    *,
    group_name: str,
    month: str,
    meeting: str,
    location: str,
    generated: str,
    version: int,
    members: list[MemberEntry],
    previous: dict[str, Any] | None = None,
    paper: str = "A4",
) -> dict[str, Any]:
    """Everything the packet templates show, computed from plain values. Pure.

    `previous` is the last version's context: a new version says what changed since it.
    """
    replied = [m for m in members if m.status in ("replied", "late")]
    # The packet is read, not answered: "Topic for the group", not its "(priority A, B or C)".
    titles = {s.key: s.label for s in SECTIONS} | {"other": "Other notes"}
    order = [s.key for s in SECTIONS] + ["other"]
    # One line per member, all three ratings on it: a 3 for family next to a 9 for business
    # reads differently from a 3 alone.
    low_ratings = sorted(
        (
            {
                "name": m.name,
                "lowest": min(m.ratings.values()),
                "ratings": [
                    {"area": area, "value": m.ratings[area], "is_low": m.ratings[area] <= LOW_RATING}
                    for area in RATING_AREAS
                    if area in m.ratings
                ],
            }
            for m in replied
            if any(value <= LOW_RATING for value in m.ratings.values())
        ),
        key=lambda r: (r["lowest"], name_key(r["name"])),
    )
    topics = sorted(
        (
            {
                "name": m.name,
                "priority": m.topic_priority or "–",
                "text": without_priority(m.texts["topic"], m.topic_priority),
            }
            for m in replied
            if m.texts.get("topic")
        ),
        key=lambda t: ({"A": 0, "B": 1, "C": 2}.get(t["priority"], 3), name_key(t["name"])),
    )
    asks = [{"name": m.name, "text": m.texts["asks"]} for m in replied if m.texts.get("asks")]
    ledger = [
        {"name": m.name, "commitments": m.commitments, "progress": m.texts.get("commitments", "")}
        for m in members
        if m.commitments or m.texts.get("commitments")
    ]
    return {
        "group_name": group_name,
        "month_label": month,
        "meeting_label": meeting,
        "location": location,
        "generated_label": generated,
        "version": version,
        "paper": paper,
        "low_rating": LOW_RATING,
        "counts": {
            "members": len(members),
            "replied": len(replied),
            "excused": sum(m.status == "excused" for m in members),
            "missing": sum(m.status == "missing" for m in members),
        },
        "missing": [m.name for m in members if m.status == "missing"],
        "excused": [m.name for m in members if m.status == "excused"],
        "brief": {
            "low_ratings": low_ratings,
            # Names only: their topics head the topics table just below, which the brief points to.
            "urgent_topics": [t for t in topics if t["priority"] == "A"],
            "asks": asks,
            # Sections where a later message left two texts: settle them with the member.
            "flagged": [
                {"name": m.name, "sections": [titles[key] for key in m.flagged if key in titles]}
                for m in replied
                if m.flagged
            ],
            # Updates the reader was unsure of (nothing left after trimming quotes, so the widest
            # plausible cut was kept): the member's words are all there, maybe with some quote.
            "read_unsure": [m.name for m in replied if m.read_unsure],
        },
        "topics": topics,
        "ledger": ledger,
        "members": [
            {
                **asdict(m),
                "sections": [
                    {
                        "key": key,
                        "title": titles[key],
                        "text": without_priority(m.texts[key], m.topic_priority) if key == "topic" else m.texts[key],
                        "is_flagged": key in m.flagged,
                    }
                    for key in order
                    if m.texts.get(key) and key != "ratings"
                ],
                "ratings_text": m.texts.get("ratings", ""),
            }
            for m in members
        ],
        "rating_areas": list(RATING_AREAS),
        "changes": changes_since(previous, members) if previous is not None else [],
    }


def changes_since(previous: dict[str, Any], members: list[MemberEntry]) -> list[str]:
    """What a facilitator needs to know about a new version: whose update is new or changed."""
    before = {m["name"]: (m["status"], m["version"], m["texts"], m["ratings"]) for m in previous.get("members", [])}
    changes = []
    for m in members:
        old = before.get(m.name)
        if old is None or old == (m.status, m.version, m.texts, m.ratings):
            continue
        old_status = old[0]
        if m.status in ("replied", "late") and old_status in ("missing", "excused"):
            changes.append(f"{m.name}: new update ({'late reply' if m.status == 'late' else 'reply'})")
        elif m.status in ("replied", "late"):
            said = m.changed.rstrip(".") if m.changed else "update corrected"
            changes.append(f"{m.name}: {said[:1].lower() + said[1:]} (version {m.version})")
        elif m.status == "excused":
            changes.append(f"{m.name}: now excused")
        else:
            changes.append(f"{m.name}: {m.status}")
    return changes


def member_entries(
    session: Session, cycle: Cycle, now: datetime, shown_versions: dict[str, int] | None = None
) -> list[MemberEntry]:
    """Each member asked this cycle, as the packet shows them. `shown_versions`: the update
    version of each member (by name) in the last packet, so a new one says what changed since."""
    tz = cycle.group.timezone
    requests = {r.member_id: r for r in cycle.requests}
    all_commitments = open_commitments(session, cycle)
    notes = _notes(session, [r.id for r in requests.values()])
    status_of = {Attendance.ON_TIME: "replied", Attendance.LATE: "late", Attendance.EXCUSED: "excused"}
    entries = []
    for member in cycle.group.members:
        request: UpdateRequest | None = requests.get(member.id)
        if request is None or (not member.is_listed and request.replied_at is None):
            continue  # not asked this cycle, or gone (on leave, removed) without a word
        # Rows stored before names and file names were cleaned on the way in (app.roster,
        # app.replies.safe_filename) are cleaned here, for what the packet shows.
        name, company = without_bidi(member.name), without_bidi(member.company)
        commitments = all_commitments.get(member.id, [])
        status = status_of.get(standing_in(cycle, request, now), "missing")
        updates = [u for u in request.updates if not u.is_skip]
        member_notes = notes.get(request.id, [])
        if status not in ("replied", "late") or not updates or request.replied_at is None:
            entries.append(MemberEntry(name, company, status, commitments=commitments, notes=member_notes))
            continue
        update = updates[-1]
        since = (shown_versions or {}).get(name, 1)
        changes = [u.change for u in updates if u.version > since]
        sections = update.sections
        files = [a for u in request.updates for a in u.attachments.get("files", [])]
        label = local_label(request.replied_at, tz)
        if update.version > 1:
            label += f"; last changed {local_label(update.created_at, tz)}"
        entries.append(
            MemberEntry(
                name=name,
                company=company,
                status=status,
                replied_label=label,
                ratings=sections.get("ratings", {}),
                texts=sections.get("texts", {}),
                topic_priority=sections.get("topic_priority"),
                commitments=commitments,
                attachments=list(dict.fromkeys(without_bidi(a["filename"]) for a in files)),
                version=update.version,
                flagged=list(sections.get("flagged", [])),
                notes=member_notes,
                read_unsure=bool(update.change.get("reading_flags")),
                changed=describe(combined(changes)) if changes else "",
            )
        )
    # Members who replied, by name; then the excused; members who owe an update go last.
    rank = {"replied": 0, "late": 0, "excused": 1, "missing": 2}
    return sorted(entries, key=lambda e: (rank[e.status], name_key(e.name)))


MAX_NOTE_CHARS = 300


def _notes(session: Session, request_ids: list[int]) -> dict[int, list[str]]:
    """Per request, the words of its messages that changed nothing (thanks, questions), oldest
    first: the facilitator still sees them."""
    rows = session.execute(
        select(InboundMessage.update_request_id, InboundMessage.note)
        .where(InboundMessage.update_request_id.in_(request_ids), InboundMessage.note.is_not(None))
        .order_by(InboundMessage.received_at, InboundMessage.id)
    )
    notes: dict[int, list[str]] = {}
    for request_id, note in rows:
        notes.setdefault(request_id, []).append(note[:MAX_NOTE_CHARS])
    return notes


def render_packet(context: dict[str, Any]) -> tuple[str, str]:
    env = template_env()
    values = {"p": context, "group_name": context["group_name"]}
    return env.get_template("packet_document.html").render(values), env.get_template("packet_document.txt").render(values)


def render_pdf(html: str) -> bytes | None:
    """The packet as PDF, from the same HTML (WeasyPrint); None if Pango is not installed."""
    try:
        from weasyprint import HTML
    except OSError as error:  # WeasyPrint loads Pango with ctypes: a system package, not pip's
        log.warning("packet PDF skipped: WeasyPrint cannot load its system libraries (%s)", error)
        return None
    return HTML(string=html).write_pdf()


@dataclass(frozen=True)
class Compiled:
    packet_id: int
    version: int
    is_new: bool
    outbound_ids: list[int]


def compile_packet(session: Session, settings: Settings, cycle_id: int, now: datetime) -> Compiled:
    """Compile the cycle's packet; a new version only if the content changed. Flushes.

    Queues the packet email to each facilitator (and members, if the group says so) once per
    version. Safe to call twice.
    """
    cycle = session.scalars(select(Cycle).where(Cycle.id == cycle_id).with_for_update()).one()
    group = cycle.group
    latest = cycle.packets[-1] if cycle.packets else None
    shown = {m["name"]: m["version"] for m in latest.context.get("members", [])} if latest is not None else None
    members = member_entries(session, cycle, now, shown)
    base = dict(
        group_name=group.name,
        month=month_label(cycle),
        meeting=meeting_label(cycle),
        location=cycle.location,
        members=members,
    )
    asks = asks_listing(session, cycle)
    content_hash = hashlib.sha256(
        # What changed since the last version is about the versions, not the content: left out.
        json.dumps({**base, "members": [asdict(m) | {"changed": ""} for m in members]}
                   | ({"asks": asks} if any(asks.values()) else {}), sort_keys=True).encode()
    ).hexdigest()
    if latest is not None and latest.content_hash == content_hash:
        packet, is_new = latest, False
    else:
        version = (latest.version if latest else 0) + 1
        context = packet_context(
            **base,
            generated=local_label(now, group.timezone),
            version=version,
            previous=latest.context if latest is not None else None,
            paper=paper_size(group.country, group.timezone),
        )
        context["meeting"] = packet_cover(session, cycle.id)
        context["asks"] = asks
        html, text = render_packet(context)
        packet = Packet(
            cycle=cycle,
            version=version,
            content_hash=content_hash,
            context=context,
            html=html,
            text=text,
            pdf=render_pdf(html),
        )
        session.add(packet)
        session.flush()
        is_new = True
    if cycle.status in (CycleStatus.SCHEDULED, CycleStatus.REQUESTED):
        cycle.status = CycleStatus.COMPILED
    cycle.packet_due_at = None
    outbound_ids = queue_packet_emails(session, settings, cycle, packet)
    session.flush()
    return Compiled(packet.id, packet.version, is_new, outbound_ids)


@dataclass(frozen=True)
class Preview:
    recipients: list[str]  # the facilitators' addresses
    outbound_ids: list[int]  # empty when this very content was previewed already


def preview_packet(session: Session, settings: Settings, cycle_id: int, now: datetime) -> Preview:
    """Mail the facilitators the packet as it stands, marked as a preview. Flushes.

    A preview is no version: it is not stored, nothing about the deadline changes, members never
    get it, and the deadline's packet still goes out. The same content previewed twice mails once.
    """
    cycle = session.get_one(Cycle, cycle_id)
    group = cycle.group
    members = member_entries(session, cycle, now, None)
    context = packet_context(
        group_name=group.name,
        month=month_label(cycle),
        meeting=meeting_label(cycle),
        location=cycle.location,
        generated=local_label(now, group.timezone),
        version=1,
        members=members,
    )
    digest = hashlib.sha256(json.dumps([asdict(m) for m in members], sort_keys=True).encode()).hexdigest()[:16]
    ids = []
    for facilitator in group.facilitators:
        name = without_bidi(facilitator.name)
        row = mail.queue_email(
            session,
            settings,
            kind="packet_preview",
            dedupe_key=f"packet-preview:{cycle.id}:{digest}:{normalize(facilitator.email)}",
            to_email=facilitator.email,
            to_name=name,
            group_id=group.id,
            cycle_id=cycle.id,
            context={
                "group_name": group.name,
                "first_name": name.split()[0] if name.split() else name,
                "month_label": month_label(cycle),
                "deadline_label": local_label(cycle.deadline_at, group.timezone),
                "replied": sum(1 for m in members if m.status in ("replied", "late")),
                "asked": len(members),
                "p": context,
            },
        )
        if row is not None:
            ids.append(row.id)
    session.flush()
    return Preview([f.email for f in group.facilitators], ids)


def queue_packet_emails(session: Session, settings: Settings, cycle: Cycle, packet: Packet) -> list[int]:
    group = cycle.group
    recipients = [(f.name, f.email, None) for f in group.facilitators]
    if group.packet_to_members:
        recipients += [(m.name, m.email, m.id) for m in group.members if m.is_reachable]
    files = packet_files(session, settings, cycle)
    ids = []
    for name, email, member_id in recipients:
        name = without_bidi(name)  # a name stored before app.roster cleaned them
        row = mail.queue_email(
            session,
            settings,
            kind="packet",
            dedupe_key=f"packet:{cycle.id}:{packet.version}:{normalize(email)}",
            to_email=email,
            to_name=name,
            group_id=group.id,
            cycle_id=cycle.id,
            member_id=member_id,
            context={
                "group_name": group.name,
                "first_name": name.split()[0] if name.split() else name,
                "month_label": month_label(cycle),
                "meeting_label": meeting_label(cycle),
                "version": packet.version,
                "packet_id": packet.id,
                "pdf_name": packet_file_stem(packet) + ".pdf",
                "p": packet.context,
                "files": files,
                "file_link_days": FILE_LINK_DAYS,
            },
        )
        if row is not None:
            ids.append(row.id)
    return ids


# --- the files members sent ------------------------------------------------------------------

# Files go with the packet email while they add up to this; past it, each is a signed link
# (SendGrid takes 30 MB, base64 makes 10 MB of files about 13.7, and many inboxes refuse 25).
MAX_ATTACHED_BYTES = 10 * 1024 * 1024
FILE_LINK_DAYS = 30  # past the meeting and the recap, a link stops working


class _ClockSigner(TimestampSigner):
    """Signs and checks ages by app.clock, so a link's age follows the same clock as the rest."""

    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


@cache
def _file_serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="packet-file", signer=_ClockSigner)


def file_url(settings: Settings, attachment_id: int) -> str:
    """A signed link to one stored attachment, good for FILE_LINK_DAYS from now."""
    return f"{settings.base_url}/files/{_file_serializer(settings.secret_key).dumps(attachment_id)}"


def read_file_link(settings: Settings, signed: str) -> int | str:
    """The attachment id a link names, or why it does not: "expired" or "invalid"."""
    try:
        value = _file_serializer(settings.secret_key).loads(signed, max_age=FILE_LINK_DAYS * 86400)
    except SignatureExpired:
        return "expired"
    except BadSignature:
        return "invalid"
    return value if isinstance(value, int) else "invalid"


def size_label(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{max(1, round(size / 1024))} KB"


def packet_files(session: Session, settings: Settings, cycle: Cycle) -> list[dict[str, Any]]:
    """The files members sent this cycle, for the packet email: attached while they fit under
    MAX_ATTACHED_BYTES, otherwise a signed link; files too large to keep are named only.
    A file sent again in a later version counts once (its latest copy)."""
    rows = session.execute(
        select(StoredAttachment.id, StoredAttachment.filename, StoredAttachment.size,
               StoredAttachment.data.is_not(None).label("is_kept"), UpdateRequest.member_id)
        .join(Update, StoredAttachment.update_id == Update.id)
        .join(UpdateRequest, Update.update_request_id == UpdateRequest.id)
        .where(UpdateRequest.cycle_id == cycle.id)
        .order_by(Update.version.desc(), StoredAttachment.position)
    ).all()
    names = {m.id: without_bidi(m.name) for m in cycle.group.members}
    latest: dict[tuple[int, str], Any] = {}
    for row in rows:
        latest.setdefault((row.member_id, row.filename), row)
    files = []
    total = 0
    for row in sorted(latest.values(), key=lambda r: (name_key(names.get(r.member_id, "")), r.id)):
        is_kept = bool(row.is_kept)
        attached = is_kept and total + row.size <= MAX_ATTACHED_BYTES
        total += row.size if attached else 0
        files.append({
            "id": row.id,
            "member": names.get(row.member_id, ""),
            "filename": without_bidi(row.filename),
            "size_label": size_label(row.size),
            "is_kept": is_kept,
            "is_attached": attached,
            "url": file_url(settings, row.id) if is_kept and not attached else None,
        })
    return files


def packet_file_stem(packet: Packet) -> str:
    cycle = packet.cycle
    day = local_label(cycle.meeting_starts_at, cycle.group.timezone, "%Y-%m-%d")
    return f"{cycle.group.slug}-{day}-v{packet.version}"


def write_packet_files(packet: Packet, folder: Path) -> list[Path]:
    """Write the packet's HTML, text and PDF to `folder`; same names on a rerun."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = packet_file_stem(packet)
    paths = []
    for suffix, data in ((".html", packet.html.encode()), (".txt", packet.text.encode()), (".pdf", packet.pdf)):
        if data is None:
            continue
        path = folder / f"{stem}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths

