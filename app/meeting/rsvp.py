"""RSVPs: reading "yes", "no", "maybe", "joining by video" in English and the group's language,
and the headcount. `read_rsvp` and `headcount` are pure."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.cycles import local_label
from app.meeting.meetings import meeting_context
from app.models import Meeting, MeetingStatus, OutboundMessage, OutboundStatus, Rsvp, RsvpResponse
from app.settings import Settings

# Phrases per language, most specific first: "joining by video" before "joining", "not sure"
# before "sure", "can't make it" before "make it". Written without accents (see _plain).
PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (
        ("video", r"\b(?:by|via|on|over) (?:video|zoom|teams|meet|webex|the link)\b|\bvideo\b|\bremote(?:ly)?\b|\bdial(?:ling)? in\b|\bvirtual(?:ly)?\b"),
        ("maybe", r"\bmaybe\b|\bperhaps\b|\bnot sure\b|\btentative(?:ly)?\b|\bunsure\b|\bmight\b|\bpossibly\b|\bhope to\b"),
        ("no", r"\bno\b(?! (?:problem|worries|doubt))|\bnope\b|\bdecline[sd]?\b|\bcan ?not\b(?! wait)|\bcan'?t\b(?! wait)|\bwon'?t\b|\bunable\b|\bnot (?:be )?(?:able|coming|attending|joining|there)\b|\bmiss(?:ing)? (?:it|this|the)\b|\bapologies\b|\bregrets\b|\baway\b"),
        ("yes", r"\byes\b|\byep\b|\byeah\b|\bsure\b|\baccept(?:ed|s)?\b|\battending\b|\bcoming\b|\bi'?ll be there\b|\bsee you\b|\bcount me in\b|\bjoining\b|\bwill attend\b|\bi'?m in\b|\bin person\b|\bcan'?t wait\b|\blooking forward\b"),
    ),
    "es": (
        ("video", r"\bpor (?:video|zoom|videollamada)\b|\ben linea\b|\bremoto\b|\bvirtual\b"),
        ("maybe", r"\bquizas?\b|\btal vez\b|\bno (?:estoy )?segur[oa]\b|\ba lo mejor\b"),
        ("no", r"\bno (?:puedo|podre|voy|ire|asistire)\b|\bno\b|\blo siento\b"),
        ("yes", r"\bsi\b|\bclaro\b|\basistire\b|\balli estare\b|\bvoy\b|\bcuenta conmigo\b"),
    ),
    "fr": (
        ("video", r"\ben (?:visio|video|ligne)\b|\bpar (?:visio|zoom|video)\b|\ba distance\b"),
        ("maybe", r"\bpeut-etre\b|\bpas sur\b|\bje ne sais pas\b"),
        ("no", r"\bje ne (?:pourrai|peux|serai) pas\b|\bnon\b|\bempeche\b|\babsent\b"),
        ("yes", r"\boui\b|\bbien sur\b|\bje serai (?:la|present)\b|\bpresent\b|\bj'y serai\b"),
    ),
    "de": (
        ("video", r"\bper (?:video|zoom|teams)\b|\bonline\b|\bvirtuell\b|\bremote\b"),
        ("maybe", r"\bvielleicht\b|\bmoglicherweise\b|\bweiss (?:es )?noch nicht\b|\bunsicher\b"),
        ("no", r"\bnein\b|\bkann nicht\b|\bleider nicht\b|\babsage\b|\bverhindert\b"),
        ("yes", r"\bja\b|\bgerne\b|\bbin dabei\b|\bkomme\b|\bzusage\b"),
    ),
    "pt": (
        ("video", r"\bpor (?:video|zoom)\b|\bonline\b|\bremoto\b"),
        ("maybe", r"\btalvez\b|\bnao (?:tenho )?certeza\b"),
        ("no", r"\bnao (?:posso|vou|poderei)\b|\bnao\b"),
        ("yes", r"\bsim\b|\bvou\b|\bestarei\b|\bclaro\b"),
    ),
    "nl": (
        ("video", r"\bvia (?:video|zoom|teams)\b|\bonline\b|\bop afstand\b"),
        ("maybe", r"\bmisschien\b|\bweet (?:het )?nog niet\b"),
        ("no", r"\bnee\b|\bkan niet\b|\bhelaas niet\b|\bverhinderd\b"),
        ("yes", r"\bja\b|\bkom\b|\bben erbij\b|\bgraag\b"),
    ),
    "it": (
        ("video", r"\bin (?:video|videochiamata|collegamento)\b|\bda remoto\b|\bonline\b"),
        ("maybe", r"\bforse\b|\bnon (?:sono )?sicur[oa]\b"),
        ("no", r"\bnon (?:posso|vengo|ci saro)\b|\bno\b"),
        ("yes", r"\bsi\b|\bci saro\b|\bvengo\b|\bcerto\b"),
    ),
}
_COMPILED = {lang: tuple((answer, re.compile(p)) for answer, p in phrases) for lang, phrases in PHRASES.items()}
MAX_READ = 400  # an answer is in the first lines; the rest may be a signature or a question


def _plain(text: str) -> str:
    """Lower case, accents off, typographic apostrophes straight: "Sí", "peut-être", "can’t"."""
    text = text.replace("\u2019", "'").lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def read_rsvp(text: str, language: str = "en") -> RsvpResponse | None:
    """The answer in a member's reply to an invite, or None when it says none we can tell.

    The first line that gives an answer decides; in it, joining by video wins over yes ("yes,
    by video"), and doubt over both ("maybe, by video" is a maybe).
    """
    languages = ["en"] + ([language] if language in _COMPILED and language != "en" else [])
    for line in _plain(text[:MAX_READ]).splitlines():
        if not line.strip() or "reply yes" in line:
            continue  # our own instruction, quoted back by a client the trimming did not recognize
        found = {answer for lang in languages for answer, pattern in _COMPILED[lang] if pattern.search(line)}
        if "maybe" in found:
            return RsvpResponse.MAYBE
        if "no" in found and "yes" not in found and "video" not in found:
            return RsvpResponse.NO
        if "video" in found and "no" not in found:
            return RsvpResponse.VIDEO
        if "yes" in found and "no" not in found:
            return RsvpResponse.YES
        if "no" in found and ("yes" in found or "video" in found):
            return None  # "yes ... no" on one line: ask, do not guess
    return None


@dataclass(frozen=True)
class Headcount:
    yes: int
    video: int
    maybe: int
    no: int
    waiting: int

    @property
    def coming(self) -> int:
        return self.yes + self.video

    def line(self) -> str:
        parts = [f"{self.coming} coming" + (f" ({self.video} by video)" if self.video else "")]
        parts += [f"{self.maybe} maybe", f"{self.no} not coming", f"{self.waiting} no answer yet"]
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {"yes": self.yes, "video": self.video, "maybe": self.maybe, "no": self.no,
                "waiting": self.waiting, "coming": self.coming, "line": self.line()}


def headcount(responses: list[str]) -> Headcount:
    counts = Counter(responses)
    return Headcount(
        yes=counts[RsvpResponse.YES],
        video=counts[RsvpResponse.VIDEO],
        maybe=counts[RsvpResponse.MAYBE],
        no=counts[RsvpResponse.NO],
        waiting=counts[RsvpResponse.NONE],
    )


# --- recording answers (flush; the caller commits) ---------------------------------------------


def meeting_headcount(meeting: Meeting) -> Headcount:
    """The answers of the members still on the roster."""
    return headcount([r.response for r in meeting.rsvps if r.member.is_listed])


def headcount_context(meeting: Meeting) -> dict[str, object]:
    """The headcount with names, for the facilitator, the host and the packet's cover."""
    names: dict[str, list[str]] = {answer.value: [] for answer in RsvpResponse}
    for rsvp in meeting.rsvps:
        if rsvp.member.is_listed:
            names[rsvp.response].append(rsvp.member.name)
    return {**meeting_headcount(meeting).to_json(), "names": names}


def record(session: Session, settings: Settings, rsvp: Rsvp, response: RsvpResponse, source: str, now: datetime,
           *, cause: str, note: str = "") -> list[int]:
    """Set the member's answer and pass it, with the headcount, on to the facilitators and the
    host (batched: see queue_headcount). Flushes. The same answer again changes nothing and
    sends nothing."""
    if rsvp.response == response:
        return []
    rsvp.response = response
    rsvp.responded_at = now
    rsvp.response_source = source
    session.flush()
    return queue_headcount(session, settings, rsvp.meeting, rsvp, cause=cause, note=note, now=now)


# At most one headcount email per recipient this often; the answers in between ride together.
HEADCOUNT_EVERY = timedelta(hours=1)


def headcount_recipients(meeting: Meeting) -> list[tuple[str, str]]:
    """(name, address) of each facilitator and of the host when the host is someone else."""
    recipients = [(f.name, f.email) for f in meeting.group.facilitators]
    host_email = str(meeting.logistics.get("host_email") or "").strip().lower()
    if host_email and host_email not in {email.lower() for _, email in recipients}:
        recipients.append((str(meeting.logistics.get("host_name") or ""), host_email))
    return recipients


def send_after(last_sent_at: datetime | None, now: datetime) -> datetime | None:
    """When the next headcount to one recipient may go: None for at once (the first one, or
    after a quiet hour), else an hour after the last. Pure."""
    if last_sent_at is None or now >= last_sent_at + HEADCOUNT_EVERY:
        return None
    return last_sent_at + HEADCOUNT_EVERY


def queue_headcount(session: Session, settings: Settings, meeting: Meeting, changed: Rsvp, *, cause: str,
                    note: str = "", now: datetime) -> list[int]:
    """Pass `changed`'s answer (and the member's own words) with the headcount to each
    facilitator and the host: added to the headcount email still waiting for that recipient, or
    in a new one, sent at once after a quiet hour and else held until an hour after the last
    (the tick sends it then). Returns the ids to send now. Flushes.

    `cause` makes the dedupe key: one new email per answer received, at most."""
    # One answer at a time per meeting: two workers must not both start a new email.
    session.scalars(select(Meeting.id).where(Meeting.id == meeting.id).with_for_update()).one()
    shared = meeting_context(meeting)
    count = headcount_context(meeting)
    answer = {
        "member_name": changed.member.name,
        "answer": changed.response,
        "source": changed.response_source or "",
        "note": " ".join(note.split())[:300],
        "at_label": local_label(now, meeting.group.timezone, "%a %-d %b, %H:%M"),
    }
    ids = []
    for name, email in headcount_recipients(meeting):
        mine = (OutboundMessage.kind == "meeting_headcount", OutboundMessage.cycle_id == meeting.cycle_id,
                OutboundMessage.to_email == email)
        # The send job locks the row and sends only a queued one: it went before, or has this answer.
        waiting = session.scalars(
            select(OutboundMessage).where(*mine, OutboundMessage.status == OutboundStatus.QUEUED)
            .order_by(OutboundMessage.id.desc()).limit(1).with_for_update()
        ).first()
        if waiting is not None:
            waiting.context = {**waiting.context, **shared, "headcount": count,
                               "answers": [*waiting.context.get("answers", []), answer]}
            continue
        last_sent_at = session.scalar(
            select(OutboundMessage.sent_at).where(*mine, OutboundMessage.sent_at.is_not(None))
            .order_by(OutboundMessage.sent_at.desc()).limit(1)
        )
        later = send_after(last_sent_at, now)
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_headcount",
            dedupe_key=f"headcount:{cause}:{email}",
            to_email=email,
            to_name=name,
            group_id=meeting.group_id,
            cycle_id=meeting.cycle_id,
            context={**shared, "first_name": name.split()[0] if name.split() else "", "headcount": count,
                     "answers": [answer], "send_after": later.isoformat() if later is not None else ""},
        )
        if row is not None and later is None:
            ids.append(row.id)
    session.flush()
    return ids


def due_headcounts(session: Session, now: datetime) -> list[int]:
    """Held headcount emails whose hour has come (the tick sends them)."""
    rows = session.execute(
        select(OutboundMessage.id, OutboundMessage.context).where(
            OutboundMessage.kind == "meeting_headcount", OutboundMessage.status == OutboundStatus.QUEUED
        )
    ).all()
    return [row_id for row_id, context in rows
            if context.get("send_after") and datetime.fromisoformat(context["send_after"]) <= now]


def queue_rsvp_reminders(session: Session, settings: Settings, meeting: Meeting, now: datetime) -> list[int]:
    """One reminder to each invited member who has not answered. Flushes; safe twice."""
    shared = meeting_context(meeting)
    ids = []
    for rsvp in meeting.rsvps:
        member = rsvp.member
        if rsvp.response != RsvpResponse.NONE or rsvp.invited_at is None or not member.is_reachable:
            continue
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_rsvp_reminder",
            dedupe_key=f"rsvp_reminder:{meeting.id}:{member.id}:{meeting.sequence}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, rsvp.token),
            group_id=meeting.group_id,
            cycle_id=meeting.cycle_id,
            member_id=member.id,
            context={**shared, "first_name": member.first_name, "rsvp_id": rsvp.id},
        )
        if row is not None:
            ids.append(row.id)
    meeting.rsvp_reminder_sent_at = now
    session.flush()
    return ids


def meeting_of(session: Session, cycle_id: int) -> Meeting | None:
    return session.scalar(select(Meeting).where(Meeting.cycle_id == cycle_id))


def status_lines(session: Session, cycle_id: int) -> list[str]:
    """The meeting's lines in `roundtable status`: agenda state and headcount."""
    meeting = meeting_of(session, cycle_id)
    if meeting is None:
        return []
    if meeting.status == MeetingStatus.CANCELLED:
        return ["  meeting   CANCELLED"]
    lines = [f"  agenda    {meeting.agenda_status}" + (f", invite sequence {meeting.invited_sequence}"
                                                       if meeting.invited_sequence is not None else "")]
    if meeting.rsvps:
        lines.append(f"  rsvps     {meeting_headcount(meeting).line()}")
    return lines


def packet_cover(session: Session, cycle_id: int) -> dict[str, object] | None:
    """What the packet's cover shows of the meeting: headcount (once invites are out) and the
    agenda's state. Plain values."""
    meeting = meeting_of(session, cycle_id)
    if meeting is None:
        return None
    count = headcount_context(meeting) if meeting.rsvps else None
    return {"is_cancelled": meeting.status == MeetingStatus.CANCELLED, "agenda_status": meeting.agenda_status,
            "headcount": count}
