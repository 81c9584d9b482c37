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

from app.sections import OTHER, RATING_KEYS, SECTION_KEYS, SECTIONS, split_sections

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
_CORRECTION = re.compile(
    r"\b(?:corrections?|correct(?:ed|ing)?|replace[sd]?|replacing|instead|should\s+(?:read|say|be)"
    r"|change[sd]?|changing|amend(?:ed)?|fix(?:ed)?|typo|scratch\s+that|update\s+(?:my|the|our))\b",
    re.IGNORECASE,
)
_ADDITION = re.compile(
    r"\b(?:forgot|one\s+more|also|add(?:ed|ing)?|addition(?:al|ally)?|another|an\s+extra|plus"
    r"|as\s+well|p\.?\s?s\b)",
    re.IGNORECASE,
)
_ACKNOWLEDGEMENT = re.compile(
    r"\b(?:thanks?|thank\s+you|thx|ty|cheers|many\s+thanks|much\s+appreciated|appreciate\s+it"
    r"|looks?\s+(?:good|right|great|fine|correct|perfect)|all\s+good|perfect|great|got\s+it"
    r"|received|ok(?:ay)?|sounds\s+good|that'?s\s+(?:right|correct|it)|spot\s+on|confirmed?"
    r"|noted|will\s+do|see\s+you)\b|👍|🙏",
    re.IGNORECASE,
)
# "WINS / Corrected: closed two deals": the section says it replaces what it said before.
_SECTION_CORRECTED = re.compile(r"\W*(?:corrected|corrections?|revised|updated?|amended)\b", re.IGNORECASE)
_MAX_NOTE_WORDS = 40  # room for "Thanks, looks right! See you on Thursday. Best, Alice"
_WHOLE_UPDATE_SECTIONS = 3  # this many sections answered again, with no "correction"/"also": a new update
_EDIT_SIMILARITY = 0.5  # at least this alike, a rewritten section is an edit of the old one


@dataclass(frozen=True)
class Merge:
    """How one message changed the update, and the update after it (Sections.to_json's shape,
    plus "flagged": sections that hold two texts for the facilitator to settle)."""

    kind: str  # first | whole | correction | addition | mixed | note | skip
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


def is_note(text: str) -> bool:
    """A short message that only thanks, confirms or asks: no update content."""
    words = _words(text)
    if len(words) > _MAX_NOTE_WORDS:
        return False
    return not words or "?" in text or _ACKNOWLEDGEMENT.search(text) is not None


def _is_chatter(text: str) -> bool:
    """Words around a correction or an addition that only introduce it or thank."""
    if is_note(text):
        return True
    return len(_words(text)) <= 15 and (_CORRECTION.search(text) or _ADDITION.search(text)) is not None


def _is_edit(old: str, new: str) -> bool:
    """The new text rewrites the old one (most of its words kept, or the old one within it)."""
    old_words, new_words = _words(old), _words(new)
    if not old_words or old_words == new_words:
        return True
    if " ".join(old_words) in " ".join(new_words):
        return True
    return difflib.SequenceMatcher(None, old_words, new_words, autojunk=False).ratio() >= _EDIT_SIMILARITY


def _named_in_prose(text: str) -> tuple[str, str, bool, bool] | None:
    """(section, its new text, is_correction, is_addition) when the message's first words name
    one section to change ("one more ask: an intro to a CFO"), else None."""
    lines = text.strip().splitlines()
    if not lines:
        return None
    first = lines[0]
    named = _NAMED.search(first)
    if named is None:
        return None
    lead = first[: named.start()]
    correction = _CORRECTION.search(lead) is not None or bool(re.search(r"\bwith\b|\bto\s+(?:say|read)\b", named.group("sep")))
    addition = _ADDITION.search(lead + named.group(0)) is not None
    if not (correction or addition):
        return None
    key = _NAME_TO_KEY[re.sub(r"['’]", "'", re.sub(r"\s+", " ", named.group("name").lower()))]
    body = "\n".join([first[named.end() :].strip(" :–—-"), *lines[1:]]).strip()
    return (key, body, correction and not addition, addition) if body else None


def _join(old: str, new: str) -> str:
    return f"{old}\n\n{new}" if old and new else old or new


def merge(previous: dict[str, Any] | None, new: dict[str, Any], text: str) -> Merge:
    """Read message `text` (split into `new` by app.sections) against the update so far."""
    if not has_content(previous):
        kind = "skip" if new.get("is_skip") else "first"
        return Merge(kind, {**new, "flagged": []}, replaced=tuple(_answered(new)))
    assert previous is not None
    texts: dict[str, str] = dict(previous.get("texts", {}))
    ratings: dict[str, int] = dict(previous.get("ratings", {}))
    priority = previous.get("topic_priority")
    flagged = list(previous.get("flagged", []))
    new_texts: dict[str, str] = dict(new.get("texts", {}))
    new_ratings: dict[str, int] = dict(new.get("ratings", {}))
    named = [key for key in SECTION_KEYS if key in new_texts]
    # The member says what they are doing in their opening words, not inside a section.
    opening = "\n".join([new_texts.get(OTHER, "")[:200], *text.strip().splitlines()[:1]])
    is_correction = bool(new.get("is_correction")) or _CORRECTION.search(opening) is not None
    is_addition = _ADDITION.search(opening) is not None and not is_correction

    if new.get("is_skip"):
        # The update stands: a SKIP after it is kept for the facilitator, not applied.
        return Merge("note", previous, notes=("SKIP after an update: the update stands",))
    if not named and not new_ratings and new_texts.get(OTHER):
        # "Business: 6" alone reads as a rating only after a heading; in a follow-up to an
        # update, a message of nothing but rating lines is one.
        as_ratings = split_sections("RATINGS\n" + new_texts[OTHER])
        if as_ratings.ratings and set(as_ratings.texts) == set():
            new_ratings, new_texts = dict(as_ratings.ratings), {}
    prose = _named_in_prose(new_texts.get(OTHER, "")) if not named else None
    if prose is not None:
        key, body, is_correction, is_addition = prose
        new_texts = {key: body}
        named = [key]
        if key == "ratings":
            return Merge("note", previous, notes=("ratings named but none could be read",))
    elif not named and not new_ratings:
        other = new_texts.get(OTHER, "")
        if is_note(other):
            return Merge("note", previous, notes=("no update content",))
        texts[OTHER] = _join(texts.get(OTHER, ""), other)
        return Merge("addition", _sections(texts, ratings, priority, flagged), added=(OTHER,))

    answered = len(named) + bool(new_ratings)
    if answered >= _WHOLE_UPDATE_SECTIONS and not is_correction and not is_addition:
        return Merge("whole", {**new, "flagged": []}, replaced=tuple(_answered(new)))

    replaced: list[str] = []
    added: list[str] = []
    newly_flagged: list[str] = []
    for area in RATING_KEYS:
        if area in new_ratings and ratings.get(area) != new_ratings[area]:
            ratings[area] = new_ratings[area]
            if "ratings" not in replaced:
                replaced.append("ratings")
    for key in named:
        old, fresh = texts.get(key, ""), new_texts[key]
        if not old:
            texts[key] = fresh
            added.append(key)
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
    kind = chosen[0] if len(chosen) == 1 else ("mixed" if chosen else "note")
    return Merge(kind, _sections(texts, ratings, priority, flagged), tuple(replaced), tuple(added), tuple(newly_flagged))


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
    if kind == "whole":
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
