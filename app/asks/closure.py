"""Closing an ask: the asker's "done" (in English or the group's language), thanks to a helper by
name, and the one follow-up after 14 days open; or the asker's "withdraw", which closes it with the
note WITHDRAWN (no status of its own: a withdrawn ask is closed, and circulates no further)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.asks.emails import ask_context, ask_thread_id
from app.models import Ask, AskCirculation, AskStatus, Member, OutboundMessage
from app.settings import Settings

FOLLOW_UP_AFTER = timedelta(days=14)

# Words that close an ask, by the group's language (English always counts).
CLOSING_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("done", "sorted", "resolved", "solved", "all set", "all good", "found one", "found someone",
           "close it", "closed", "got what i needed", "no longer needed", "not needed anymore"),
    "es": ("resuelto", "listo", "hecho", "solucionado", "ya esta", "cerrado", "conseguido"),
    "fr": ("resolu", "regle", "c'est bon", "fait", "trouve", "termine"),
    "de": ("erledigt", "gelost", "geklart", "fertig", "hat sich erledigt"),
    "pt": ("resolvido", "feito", "pronto", "conseguido"),
    "it": ("risolto", "fatto", "sistemato", "trovato"),
    "nl": ("opgelost", "geregeld", "klaar", "gevonden"),
}
# Words that withdraw an ask, by the group's language (English always counts).
WITHDRAWING_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("withdraw", "withdrawn", "withdrawing", "cancel", "cancelled", "canceled", "cancel this ask",
           "retract", "take it back", "never mind", "nevermind", "please ignore", "ignore this ask", "call it off"),
    "es": ("retirar", "retiro", "retiro mi pedido", "cancelar", "cancelado", "anular", "olvidenlo", "olvidalo"),
    "fr": ("retirer", "je retire", "annuler", "annule", "laissez tomber", "oubliez"),
    "de": ("zuruckziehen", "ziehe zuruck", "zuruckgezogen", "abbrechen", "stornieren", "storniert",
           "vergesst es", "hinfallig"),
    "pt": ("retirar", "cancelar", "cancelado", "cancelada", "esquecam"),
    "it": ("ritirare", "ritiro", "annullare", "annullato", "lasciate perdere"),
    "nl": ("intrekken", "trek in", "annuleren", "geannuleerd", "laat maar"),
}
WITHDRAWN = "Withdrawn by the asker."  # the closed ask's note
_NEGATIONS = ("not ", "no ", "n't ", "nicht ", "pas ", "todavia no", "aun no", "nog niet", "non ", "ainda nao")


def _plain(text: str) -> str:
    """Lower case, accents off ("résolu" -> "resolu"), curly apostrophes straight."""
    text = text.replace("\u2019", "'").lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _first_line_says(text: str, words: tuple[str, ...]) -> bool:
    """Whether the reply's first line says one of `words` and does not negate it. Pure."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    line = " " + re.sub(r"[^\w' ]+", " ", _plain(first)) + " "
    if len(line.split()) > 14:
        return False  # a paragraph that happens to say "done" is not a closing word
    for word in words:
        at = line.find(f" {word} ")
        if at >= 0 and not any(line[max(0, at - 12):at + 1].endswith(n) for n in _NEGATIONS):
            return True
    return False


def is_closure(text: str, language: str = "en") -> bool:
    """Whether the asker's reply closes the ask: its first line says done, sorted, resolved...
    ("Sorted, thanks Ben!", "Resuelto, gracias") and does not negate it ("not sorted yet"). Pure."""
    return _first_line_says(text, CLOSING_WORDS["en"] + CLOSING_WORDS.get(language.lower()[:2], ()))


def is_withdrawal(text: str, language: str = "en") -> bool:
    """Whether the asker's reply withdraws the ask: its first line says withdraw, cancel this
    ask, never mind... ("Bitte zurückziehen") and does not negate it ("don't cancel"). Pure."""
    return _first_line_says(text, WITHDRAWING_WORDS["en"] + WITHDRAWING_WORDS.get(language.lower()[:2], ()))


def is_withdrawn(ask: Ask) -> bool:
    return ask.status == AskStatus.CLOSED and ask.note == WITHDRAWN


def thanked(text: str, candidates: list[Member]) -> list[Member]:
    """The candidates the text names, full name first, else an unambiguous first name. Pure."""
    plain = _plain(text)

    def says(name: str) -> bool:
        return bool(name) and re.search(rf"(?<!\w){re.escape(_plain(name))}(?!\w)", plain) is not None

    named = [m for m in candidates if says(m.name)]
    if named:
        return named
    firsts = [m for m in candidates if says(m.first_name)]
    if len({_plain(m.first_name) for m in firsts}) == len(firsts):
        return firsts
    return []


def close(session: Session, settings: Settings, ask: Ask, text: str, at: datetime) -> list[int]:
    """Close `ask` and thank the helpers the asker named (those who offered first, else the
    group's other members). Flushes; returns the thanks emails queued. Safe twice."""
    if ask.status == AskStatus.CLOSED:
        return []
    ask.status = AskStatus.CLOSED
    ask.closed_at = at
    helpers = list(dict.fromkeys(o.member for o in ask.offers))
    others = [m for m in ask.group.members if m.id != ask.member_id and m.is_listed and m not in helpers]
    names = thanked(text, helpers) or thanked(text, others)
    ask.thanked = ", ".join(m.name for m in names) or None
    ids = []
    for helper in names:
        if not helper.is_reachable:
            continue
        row = mail.queue_email(
            session,
            settings,
            kind="ask_thanks",
            dedupe_key=f"askthanks:{ask.id}:{helper.id}",
            to_email=helper.email,
            to_name=helper.name,
            reply_to=ask.member.email,
            in_reply_to=_circulated_to(session, ask, helper),  # under the ask they were sent
            group_id=ask.group_id,
            member_id=helper.id,
            context={**ask_context(settings, ask), "first_name": helper.first_name, "words": text.strip()[:1000]},
        )
        if row is not None:
            ids.append(row.id)
    session.flush()
    return ids


def withdraw(ask: Ask, at: datetime) -> bool:
    """The asker takes the ask back: closed, with the note WITHDRAWN. Emails not yet sent for it
    are not sent (app.asks.circulate skips a closed ask; app.mail cancels a queued email whose
    asks are all closed). Flushes nothing; True when it changed. Safe twice."""
    if ask.status == AskStatus.CLOSED:
        return False
    ask.status = AskStatus.CLOSED
    ask.closed_at = at
    ask.note = WITHDRAWN
    return True


def _circulated_to(session: Session, ask: Ask, member: Member) -> str | None:
    """The Message-ID of the email that carried `ask` to `member`, if one did."""
    return session.scalar(
        select(OutboundMessage.message_id)
        .join(AskCirculation, AskCirculation.outbound_message_id == OutboundMessage.id)
        .where(AskCirculation.ask_id == ask.id, AskCirculation.member_id == member.id)
    )


def queue_follow_ups(session: Session, settings: Settings, now: datetime) -> list[int]:
    """One follow-up to each asker whose ask has been open 14 days: did you get what you needed?
    Flushes; safe twice (the ask is marked, and the dedupe key holds)."""
    due = session.scalars(
        select(Ask)
        .where(
            Ask.status.in_((AskStatus.OPEN, AskStatus.ANSWERED)),
            Ask.followed_up_at.is_(None),
            Ask.opened_at <= now - FOLLOW_UP_AFTER,
        )
        .order_by(Ask.id)
        .with_for_update(skip_locked=True)
    ).all()
    ids = []
    for ask in due:
        ask.followed_up_at = now
        if not ask.member.is_reachable:
            continue
        row = mail.queue_email(
            session,
            settings,
            kind="ask_followup",
            dedupe_key=f"askfollowup:{ask.id}",
            to_email=ask.member.email,
            to_name=ask.member.name,
            reply_to=mail.reply_address(settings, ask.token),
            in_reply_to=ask_thread_id(session, ask),
            group_id=ask.group_id,
            member_id=ask.member_id,
            context={**ask_context(settings, ask), "first_name": ask.member.first_name,
                     "days_open": (now - (ask.opened_at or now)).days,
                     "helpers": [o.member.name for o in ask.offers]},
        )
        if row is not None:
            ids.append(row.id)
    session.flush()
    return ids
