"""A later message in the same cycle, read for what it is, and merged into the update. Pure.

A member's second and third email are rarely a whole new update: most say thanks, or fix one
section, or add something forgotten. `merge` decides which, from the message's own words and
headings, and returns the update as it stands after it:

- a note (thanks, "looks right", a question) with no section content changes nothing;
- a correction ("Correction: WINS ...", "please replace my challenges with ...") replaces only
  the sections it names;
- an addition ("one more ask: ...", "forgot to add under wins ...", "also ...") adds to them;
- a whole new update (three or more sections, no such words) replaces the update;
- a section rewritten with no such words is replaced when the new text is an edit of the old
  one, else both texts are kept and the section is flagged for the facilitator. Never dropped.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from app.reading.sections import OTHER, RATING_KEYS, SECTION_KEYS, SECTIONS, split_sections

# Sections named in prose ("one more ask:", "under wins", "replace my challenges with"). Bare
# "commitments" in a follow-up means the next ones: last month's are named as such.
_PROSE_NAMES: dict[str, tuple[str, ...]] = {
    "ratings": ("ratings", "rating", "scores", "score"),
    "wins": ("wins", "win"),
    "challenges": ("challenges", "challenge"),
    "commitments": ("last month's commitments", "last months commitments", "commitments progress",
                    "progress on commitments", "progress on my commitments"),
    "topic": ("topic for the group", "topic", "issue for the group"),
    "asks": ("asks", "ask", "request for the group"),
    "learned": ("what i learned", "learned", "learnings", "lessons"),
    "next_commitments": ("next commitments", "commitments for next month", "commitments"),
}
_NAME_TO_KEY = {name: key for key, names in _PROSE_NAMES.items() for name in names}
_NAMES = "|".join(re.escape(n).replace("'", "['’]?") for n in sorted(_NAME_TO_KEY, key=len, reverse=True))
# A section named as the thing being changed: after a determiner or "under", before a colon, a
# dash, "with" or the end of the clause. "I wanted to ask whether" names no section.
_NAMED = re.compile(
    r"\b(?:my|our|the|one\s+more|another|an\s+extra|under|to\s+(?:my|our|the))\s+"
    r"(?P<name>" + _NAMES + r")(?:\s+section)?"
    r"(?P<sep>\s*(?::|[-–—]+|\bwith\b|\bto\s+(?:say|read)\b)|\s*(?=[.,;!]|$|\s+(?:too|as\s+well)\b))",
    re.IGNORECASE,
)
# What a member says they are doing, at the start of a line of their opening words ("Correction:",
# "Sorry, a correction below", "Also:", "One more thing", "Here's the rest"). Inside a sentence
# ("Interest rates changed everything") such words say nothing about the message.
_LEAD = r"^[^\w\n]*(?:(?:hi|hello|sorry|oops|ok|okay|oh|and|quick|small|just|please|a)[^\w\n]+){0,3}"
_CORRECTION = re.compile(
    _LEAD + r"(?:corrections?|correct(?:ed|ing)?|replace[sd]?|replacing|updated?(?=\s*[:–—-]|\s*$)|amend(?:ed|ment)?"
    r"|fix(?:ed)?|typo|scratch\s+that|revised|ignore\s+(?:my|the)\s+(?:last|previous|earlier)|instead)\b",
    re.IGNORECASE | re.MULTILINE,
)
_ADDITION = re.compile(
    _LEAD + r"(?:also|one\s+more|two\s+more|a\s+few\s+more|forgot|p\.?\s?s\b|adding|add(?:ed)?\b|another"
    r"|in\s+addition|additionally|addendum|plus|here'?s\s+the\s+rest|the\s+rest|more\s+to\s+add)",
    re.IGNORECASE | re.MULTILINE,
)
# Thanks and confirmations, in the languages our members write in.
_ACKNOWLEDGEMENT = re.compile(
    r"\b(?:thanks?(?:\s+(?:a\s+lot|so\s+much|again))?|thank\s+you(?:\s+(?:so\s+much|again))?|thx|ty|cheers"
    r"|many\s+thanks|much\s+appreciated|appreciated?(?:\s+it)?|looks?\s+(?:good|right|great|fine|correct|perfect)"
    r"|all\s+good|perfect|great|got\s+it|received|ok(?:ay)?|sounds\s+good|that'?s\s+(?:right|correct|it|fine)"
    r"|spot\s+on|confirmed?|noted|will\s+do|see\s+you(?:\s+(?:there|soon|then|next\s+\w+|on\s+\w+))?|all\s+correct"
    r"|danke(?:\s+schön)?|vielen\s+dank|passt(?:\s+so)?|alles\s+(?:gut|klar|richtig)|gracias|todo\s+(?:correcto|bien)"
    r"|perfecto|merci(?:\s+beaucoup)?|parfait|c'?est\s+(?:bon|parfait)|grazie|perfetto|obrigad[oa]|dank\s+je(?:\s+wel)?"
    r"|bedankt|tack(?:\s+så\s+mycket)?|bien\s+reçu"
    # "see attached" (the file is the news) and "will send it by Friday" (the update is to come)
    r"|(?:please\s+)?(?:see|find)\s+(?:the\s+)?attach(?:ed|ment)[^.!?\n]{0,20}|attached|enclosed"
    r"|will\s+(?:send|reply|write|get\s+back|follow\s+up)\b[^.!?\n]{0,30}"
    r"|(?:more|details|the\s+rest)\s+(?:to\s+follow|later|soon)[^.!?\n]{0,20})\b|👍|🙏|✅|😊|🙂",
    re.IGNORECASE,
)
_GREETING_LINE = re.compile(
    # Starts only where a run of non-word characters starts: linear under `search` as well.
    r"(?<![^\w\n])[^\w\n]*(?:hi|hello|hey|dear|hallo|hola|bonjour|ciao|good\s+(?:morning|afternoon|evening))\b[^\n]{0,40}",
    re.IGNORECASE,
)
# Words that only carry a lead-in ("Hi, a quick correction below", "Here's the rest of it:").
_LEAD_IN_WORDS = frozenset(
    "a an the my our of it is are here heres below above following sorry quick small one more thing things few "
    "rest also forgot to add adding please see correction corrections corrected update updated fix revised version "
    "i just wanted new latest full and missed bit some some last earlier previous this that with in on for".split()
)
_SIGN_OFF = re.compile(
    r"(?<![\s,.!-])(?:best|regards|kind\s+regards|warm\s+regards|best\s+regards|cheers|thanks|br|sincerely|all\s+the\s+best|"
    r"talk\s+soon|sent\s+from\s+my\s+\w+)?[\s,.!-]*(?:[A-Z][\w'’.-]*(?:\s+[A-Z][\w'’.-]*){0,2}[\s,.!]*)?",
)
_SECTION_CORRECTED = re.compile(r"(?<!\W)\W*(?:corrected|corrections?|revised|updated?|amended)\b", re.IGNORECASE)
_MAX_NOTE_WORDS = 40  # room for "Thanks, looks right! See you on Thursday. Best, Alice"
_WHOLE_UPDATE_SECTIONS = 3  # this many sections answered again, with no "correction"/"also": a new update
_TYPO_SIMILARITY = 0.92  # this alike, character by character, a rewritten section is a typo fixed
_MAX_MATCH_CHARS = 20_000  # past this, texts are compared by containment only (difflib is quadratic)


@dataclass(frozen=True)
class Merge:
    """How one message changed the update, and the update after it (Sections.to_json's shape,
    plus "flagged": sections that hold two texts for the facilitator to settle)."""

    kind: str  # first | whole | correction | addition | mixed | unclear | attachment | note | skip
    sections: dict[str, Any]
    replaced: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    flagged: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # why, in words, for the record

    @property
    def changes_nothing(self) -> bool:
        return self.kind == "note"

    @property
    def change(self) -> dict[str, Any]:
        """What Update.change stores."""
        return {"kind": self.kind, "replaced": list(self.replaced), "added": list(self.added),
                "flagged": list(self.flagged)}


def has_content(sections: dict[str, Any] | None) -> bool:
    """An update with words or ratings in it (a SKIP has none)."""
    return bool(sections) and not sections.get("is_skip") and bool(sections.get("texts") or sections.get("ratings"))


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def _without_greeting(text: str) -> str:
    """The text without a salutation line at its top ("Hi Dana,")."""
    lines = text.strip().splitlines()
    start = 0
    while start < len(lines) and (not lines[start].strip() or _GREETING_LINE.fullmatch(lines[start].strip())):
        start += 1
    return "\n".join(lines[start:]).strip()


def _without_sign_off(text: str) -> str:
    lines = text.strip().splitlines()
    end = len(lines)
    for _ in range(2):
        last = lines[end - 1] if end else ""
        if end > 1 and len(last) <= 120 and len(last.split()) <= 4 and _SIGN_OFF.fullmatch(last.strip()):
            end -= 1
        while end and not lines[end - 1].strip():
            end -= 1
    return "\n".join(lines[:end]).strip()


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?…])\s+|\n+", text) if s.strip()]


def _is_acknowledgement(sentence: str) -> bool:
    """Thanks or a confirmation, and nothing else ("Thanks, looks right!", "Danke, passt so.")."""
    if _ACKNOWLEDGEMENT.search(sentence) is None:
        return False
    rest = _ACKNOWLEDGEMENT.sub(" ", sentence)
    return len([w for w in _words(rest) if w not in {"so", "much", "all", "you", "very", "again", "for", "it", "this", "that", "and", "everything", "dana", "the"}]) <= 1


def is_note(text: str) -> bool:
    """A short message that only thanks, confirms or asks: no update content."""
    body = _without_sign_off(_without_greeting(text))
    if len(_words(body)) > _MAX_NOTE_WORDS:
        return False
    return all(_is_acknowledgement(s) or s.endswith("?") for s in _sentences(body))


def is_question(text: str) -> bool:
    return any(s.endswith("?") for s in _sentences(text))


def _is_chatter(text: str) -> bool:
    """Opening words that only greet, thank or introduce what follows: not news for the update."""
    body = _without_sign_off(_without_greeting(text))
    if not body or (is_note(body) and not is_question(body)):
        return True
    rest = _ACKNOWLEDGEMENT.sub(" ", body)
    return "?" not in body and len([w for w in _words(rest) if w not in _LEAD_IN_WORDS]) <= 1


def _is_edit(old: str, new: str) -> bool:
    """The new text rewrites the old one: keeps all of it and adds, or fixes a typo. Anything
    else may be a different thing altogether (keep both)."""
    old_words, new_words = _words(old), _words(new)
    if not old_words or old_words == new_words:
        return True
    if f" {' '.join(old_words)} " in f" {' '.join(new_words)} ":
        return True
    if max(len(old), len(new)) > _MAX_MATCH_CHARS:
        return False
    return difflib.SequenceMatcher(None, old.casefold(), new.casefold(), autojunk=False).ratio() >= _TYPO_SIMILARITY


def _named_in_prose(text: str) -> tuple[str, str, bool, bool] | None:
    """(section, its new text, is_correction, is_addition) when the message's first words name
    one section to change ("one more ask: an intro to a CFO"), else None."""
    lines = _without_greeting(text).splitlines()
    if not lines:
        return None
    first = lines[0][:1000]
    named = _NAMED.search(first)
    if named is None:
        return None
    lead = first[: named.start()]
    with_words = bool(re.search(r"\bwith\b|\bto\s+(?:say|read)\b", named.group("sep")))
    correction = with_words or re.search(
        r"\b(?:correct(?:ion|ed)?|replace|change|update|fix|amend|revise)", lead, re.IGNORECASE
    ) is not None
    addition = re.search(
        r"\b(?:also|one\s+more|another|an\s+extra|forgot|add(?:ing|ed)?|plus)\b", lead + named.group(0), re.IGNORECASE
    ) is not None
    if not (correction or addition):
        return None
    key = _NAME_TO_KEY[re.sub(r"['’]", "'", re.sub(r"\s+", " ", named.group("name").lower()))]
    body = "\n".join([first[named.end() :].strip(" :–—-"), *lines[1:]]).strip()
    return (key, body, correction and not addition, addition) if body else None


def _join(old: str, new: str) -> str:
    return f"{old}\n\n{new}" if old and new else old or new


def merge(
    previous: dict[str, Any] | None,
    new: dict[str, Any],
    text: str,
    *,
    older: bool = False,
    has_attachments: bool = False,
) -> Merge:
    """Read message `text` (split into `new` by app.reading.sections) against the update so far.

    `older`: the message arrived before the update's latest version (a held message released
    late) or after the meeting: it may add, never replace; what differs is kept twice and flagged.
    `has_attachments`: a message that brings files is never a mere note.
    """
    body = _without_greeting(text)
    if has_content(previous) and not new.get("is_skip"):
        # A follow-up names the sections it changes; its prose adds to the update, and a cue
        # phrase in it ("closed the round") must not stand for a section it would replace.
        new = split_sections(body, place_prose=False).to_json()
    elif body != text.strip() and not new.get("is_skip"):
        new = split_sections(body).to_json()  # "Hi,\n\nCorrection: WINS ..." reads from "Correction:"
    new_texts: dict[str, str] = dict(new.get("texts", {}))
    new_ratings: dict[str, int] = dict(new.get("ratings", {}))
    named = [key for key in SECTION_KEYS if key in new_texts]
    bare = not named and not new_ratings  # no headings and no ratings: prose, or a note
    # An empty first reply still gets its receipt ("we could not find any text"): not a note.
    empty_first = not has_content(previous) and not _words(body)
    if bare and not new.get("is_skip") and not empty_first and is_note(new_texts.get(OTHER, "")):
        if has_attachments:
            return Merge("attachment", previous or _sections({}, {}, None, []), notes=("files only",))
        return Merge("note", previous or _sections({}, {}, None, []), notes=("no update content",))
    if not has_content(previous):
        kind = "skip" if new.get("is_skip") else "first"
        return Merge(kind, {**new, "flagged": []}, replaced=tuple(_answered(new)))
    assert previous is not None
    if new.get("is_skip"):
        # The update stands: a SKIP after it is kept for the facilitator, not applied.
        return Merge("note", previous, notes=("SKIP after an update: the update stands",))
    texts: dict[str, str] = dict(previous.get("texts", {}))
    ratings: dict[str, int] = dict(previous.get("ratings", {}))
    priority = previous.get("topic_priority")
    flagged = list(previous.get("flagged", []))
    if bare and new_texts.get(OTHER):
        # "Business: 6" alone reads as a rating only after a heading; in a follow-up to an
        # update, a message of nothing but rating lines is one.
        as_ratings = split_sections("RATINGS\n" + new_texts[OTHER])
        if as_ratings.ratings and not as_ratings.texts:
            new_ratings, new_texts = dict(as_ratings.ratings), {}
    opening = "\n".join(line[:500] for line in [*new_texts.get(OTHER, "").splitlines()[:5], *body.splitlines()[:1]])
    is_correction = bool(new.get("is_correction")) or _CORRECTION.search(opening) is not None
    is_addition = _ADDITION.search(opening) is not None and not is_correction
    prose = _named_in_prose(new_texts.get(OTHER, "")) if not named and not new_ratings else None
    if prose is not None:
        key, prose_body, is_correction, is_addition = prose
        if key == "ratings":
            as_ratings = split_sections("RATINGS\n" + prose_body)
            new_ratings, new_texts = (dict(as_ratings.ratings), {}) if as_ratings.ratings else ({}, {OTHER: new_texts[OTHER]})
            named = []
        else:
            new_texts, named = {key: prose_body}, [key]
    elif not named and not new_ratings:
        other = new_texts.get(OTHER, "")
        texts[OTHER] = _join(texts.get(OTHER, ""), other)
        return Merge("addition", _sections(texts, ratings, priority, flagged), added=(OTHER,))
    if older:
        is_correction = is_addition = False

    previous_named = [key for key in SECTION_KEYS if key in texts] + (["ratings"] if ratings else [])
    overlap = [key for key in (*named, *(["ratings"] if new_ratings else [])) if key in previous_named]
    answered = len(named) + bool(new_ratings)
    if (
        answered >= _WHOLE_UPDATE_SECTIONS
        and not (is_correction or is_addition or older)
        and len(overlap) >= max(2, (len(previous_named) + 1) // 2)
    ):
        return Merge("whole", {**new, "flagged": []}, replaced=tuple(_answered(new)))

    replaced: list[str] = []
    added: list[str] = []
    newly_flagged: list[str] = []
    for area in RATING_KEYS:
        if area in new_ratings and ratings.get(area) != new_ratings[area] and not (older and area in ratings):
            ratings[area] = new_ratings[area]
            if "ratings" not in replaced:
                replaced.append("ratings")
    for key in named:
        old, fresh = texts.get(key, ""), new_texts[key]
        if not old:
            texts[key] = fresh
            added.append(key)
        elif old.strip() == fresh.strip():
            continue
        elif older:
            texts[key] = _join(old, fresh)
            newly_flagged.append(key)
        elif is_correction or _SECTION_CORRECTED.match(fresh):
            texts[key] = fresh
            replaced.append(key)
        elif is_addition:
            texts[key] = _join(old, fresh)
            added.append(key)
        elif _is_edit(old, fresh):
            texts[key] = fresh
            replaced.append(key)
        else:  # cannot tell: keep both, and say so
            texts[key] = _join(old, fresh)
            newly_flagged.append(key)
        if key == "topic" and key in replaced:
            priority = new.get("topic_priority") or priority
        elif key == "topic":
            priority = priority or new.get("topic_priority")
    other = new_texts.get(OTHER, "") if prose is None else ""
    if other and not _is_chatter(other):  # "Hi, a correction below. Thanks!" is not news
        texts[OTHER] = _join(texts.get(OTHER, ""), other)
        added.append(OTHER)
    flagged += [key for key in newly_flagged if key not in flagged]
    flagged = [key for key in flagged if key not in replaced]
    kinds = {"correction": bool(replaced), "addition": bool(added), "unclear": bool(newly_flagged)}
    chosen = [kind for kind, present in kinds.items() if present]
    if not chosen:
        return Merge("note", previous, notes=("it repeats the update",))
    kind = chosen[0] if len(chosen) == 1 else "mixed"
    return Merge(kind, _sections(texts, ratings, priority, flagged), tuple(replaced), tuple(added), tuple(newly_flagged))


def combined(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Several versions' changes as one (what a packet version says changed since the last)."""
    if len(changes) == 1:
        return changes[0]
    whole = any(c.get("kind") == "whole" for c in changes)
    keys: dict[str, list[str]] = {"replaced": [], "added": [], "flagged": []}
    for change in changes:
        for name in keys:
            keys[name] += [k for k in change.get(name, []) if k not in keys[name]]
    return {"kind": "whole" if whole else "mixed", **keys}


def _answered(sections: dict[str, Any]) -> list[str]:
    keys = [key for key in (*SECTION_KEYS, OTHER) if key in sections.get("texts", {})]
    return (["ratings"] if sections.get("ratings") and "ratings" not in keys else []) + keys


def _sections(texts: dict[str, str], ratings: dict[str, int], priority: str | None, flagged: list[str]) -> dict[str, Any]:
    order = {key: index for index, key in enumerate((*SECTION_KEYS, OTHER))}
    return {
        "texts": dict(sorted(texts.items(), key=lambda item: order.get(item[0], len(order)))),
        "ratings": {area: ratings[area] for area in RATING_KEYS if area in ratings},
        "topic_priority": priority,
        "is_skip": False,
        "is_correction": False,
        "flagged": flagged,
    }


_TITLES = {s.key: s.label for s in SECTIONS} | {OTHER: "Other notes"}


def describe(change: dict[str, Any]) -> str:
    """What a version changed, in a sentence for a receipt or the packet ("" for a first update)."""
    kind = change.get("kind")
    if kind in (None, "first", "skip"):
        return ""
    if kind == "attachment":
        return "Added the attached files."
    if kind == "whole" and not (change.get("added") or change.get("flagged")):
        return "Replaced the whole earlier update."
    parts = []
    if change.get("replaced"):
        parts.append("replaced " + ", ".join(_TITLES[k] for k in change["replaced"]))
    if change.get("added"):
        parts.append("added to " + ", ".join(_TITLES[k] for k in change["added"]))
    if change.get("flagged"):
        parts.append("kept both the earlier and the new text of " + ", ".join(_TITLES[k] for k in change["flagged"]))
    sentence = "; ".join(parts)
    return sentence[:1].upper() + sentence[1:] + "." if sentence else ""
