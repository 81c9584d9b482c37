"""The pre-read packet: what the facilitator reads in ten minutes before the meeting.

`packet_context` is pure (plain member entries in, template values out); `compile_packet`
loads the cycle, renders HTML, text and PDF, and saves a new version only when the content
changed. Member text is untrusted: it reaches the HTML only through Jinja's autoescaping.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import normalize, without_bidi
from app.asks.packet import listing as asks_listing
from app.cycles import local_label, meeting_label, month_label, open_commitments
from app.followups import combined, describe
from app.mail import template_env
from app.models import Cycle, CycleStatus, InboundMessage, Packet, UpdateRequest
from app.participation import Attendance, standing_in
from app.reading.sections import SECTIONS
from app.settings import Settings

log = logging.getLogger(__name__)

LOW_RATING = 5  # at or below this, a rating goes into the facilitator's brief


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
) -> dict[str, Any]:
    """Everything the packet templates show, computed from plain values. Pure.

    `previous` is the last version's context: a new version says what changed since it.
    """
    replied = [m for m in members if m.status in ("replied", "late")]
    # The packet is read, not answered: "Topic for the group", not its "(priority A, B or C)".
    titles = {s.key: s.label for s in SECTIONS} | {"other": "Other notes"}
    order = [s.key for s in SECTIONS] + ["other"]
    low_ratings = sorted(
        (
            {"name": m.name, "area": area, "value": value}
            for m in replied
            for area, value in m.ratings.items()
            if value <= LOW_RATING
        ),
        key=lambda r: (r["value"], r["name"]),
    )
    topics = sorted(
        (
            {"name": m.name, "priority": m.topic_priority or "–", "text": m.texts["topic"]}
            for m in replied
            if m.texts.get("topic")
        ),
        key=lambda t: ({"A": 0, "B": 1, "C": 2}.get(t["priority"], 3), t["name"]),
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
            "urgent_topics": [t for t in topics if t["priority"] == "A"],
            "asks": asks,
            # Sections where a later message left two texts: settle them with the member.
            "flagged": [
                {"name": m.name, "sections": [titles[key] for key in m.flagged if key in titles]}
                for m in replied
                if m.flagged
            ],
        },
        "topics": topics,
        "ledger": ledger,
        "members": [
            {
                **asdict(m),
                "sections": [
                    {"key": key, "title": titles[key], "text": m.texts[key], "is_flagged": key in m.flagged}
                    for key in order
                    if m.texts.get(key) and key != "ratings"
                ],
                "ratings_text": m.texts.get("ratings", ""),
            }
            for m in members
        ],
        "rating_areas": ["business", "personal", "family"],
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
                changed=describe(combined(changes)) if changes else "",
            )
        )
    # Who wrote most recently sits lowest; members who owe an update go last.
    rank = {"replied": 0, "late": 0, "excused": 1, "missing": 2}
    return sorted(entries, key=lambda e: (rank[e.status], e.name))


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
        )
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
    outbound_ids = queue_packet_emails(session, settings, cycle, packet)
    session.flush()
    return Compiled(packet.id, packet.version, is_new, outbound_ids)


def queue_packet_emails(session: Session, settings: Settings, cycle: Cycle, packet: Packet) -> list[int]:
    group = cycle.group
    recipients = [(f.name, f.email, None) for f in group.facilitators]
    if group.packet_to_members:
        recipients += [(m.name, m.email, m.id) for m in group.members if m.is_reachable]
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
            },
        )
        if row is not None:
            ids.append(row.id)
    return ids


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

