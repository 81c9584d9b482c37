"""Reading a member's answer to a date poll: "1 and 3", "Thursday works, not the 16th", "any".
Pure."""

from __future__ import annotations

import re
from datetime import date

WEEKDAYS = {
    name: index
    for index, names in enumerate(
        (("monday", "mon"), ("tuesday", "tue", "tues"), ("wednesday", "wed"), ("thursday", "thu", "thur", "thurs"),
         ("friday", "fri"), ("saturday", "sat"), ("sunday", "sun"))
    )
    for name in names
}
MONTHS = {
    name: index
    for index, names in enumerate(
        (("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")),
        start=1,
    )
    for name in names
}
_ALL_RE = re.compile(r"\b(any|all|either|whichever|every|all of them|any of them|all work|anything)\b")
_NONE_RE = re.compile(r"\b(none|neither)\b|\bno(?:ne)? of (?:them|these|those)\b|\bcan'?t make any\b")
_NEGATIVE_RE = re.compile(r"\b(not|no|can'?t|cannot|won'?t|unable|except|out|busy|conflict|away)\b")
_CLAUSE_RE = re.compile(r"[,;.\n]|\bbut\b|\bhowever\b|\bexcept\b")
_TOKEN_RE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}(?:st|nd|rd|th)?|[a-z]+")
MAX_READ = 600


def _clauses(text: str) -> list[tuple[str, bool]]:
    """(clause, is_negative): "except" starts a negative clause whatever follows."""
    clauses = []
    position = 0
    negate_next = False
    for m in _CLAUSE_RE.finditer(text):
        clauses.append((text[position:m.start()], negate_next))
        negate_next = m.group(0).strip() == "except"
        position = m.end()
    clauses.append((text[position:], negate_next))
    return [(c, forced or bool(_NEGATIVE_RE.search(c))) for c, forced in clauses if c.strip()]


def _options_in(clause: str, options: list[date]) -> set[int]:
    """The 1-based options a clause names: by number, weekday, day of the month or date."""
    named: set[int] = set()
    tokens = _TOKEN_RE.findall(clause)
    for i, token in enumerate(tokens):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", token):
            named |= {n for n, d in enumerate(options, 1) if d.isoformat() == token}
        elif token in WEEKDAYS or (token.endswith("s") and token[:-1] in WEEKDAYS):
            weekday = WEEKDAYS.get(token, WEEKDAYS.get(token[:-1]))
            named |= {n for n, d in enumerate(options, 1) if d.weekday() == weekday}
        elif token[0].isdigit():
            number = int(re.sub(r"\D", "", token))
            is_ordinal = not token.isdigit()
            near_month = any(t in MONTHS for t in tokens[max(0, i - 1): i + 2])
            if not is_ordinal and not near_month and 1 <= number <= len(options):
                named.add(number)
            else:
                named |= {n for n, d in enumerate(options, 1) if d.day == number}
    return named


def read_choices(text: str, options: list[date]) -> list[int] | None:
    """The options (1-based, sorted) a reply says work; [] for none; None when it names nothing.

    Positive clauses add what they name; negative ones ("not the 16th") take it away, from all
    options when nothing positive was named.
    """
    lines = [line for line in text[:MAX_READ].lower().replace("\u2019", "'").splitlines() if line.strip()]
    body = "\n".join(lines[:6])
    if not body:
        return None
    if _NONE_RE.search(body):
        return []
    chosen: set[int] = set()
    removed: set[int] = set()
    positive_any = False
    for clause, negative in _clauses(body):
        named = _options_in(clause, options)
        if negative:
            removed |= named
        else:
            if _ALL_RE.search(clause):
                named = set(range(1, len(options) + 1))
            if named:
                positive_any = True
            chosen |= named
    if not positive_any and not removed:
        return None
    if not positive_any:
        chosen = set(range(1, len(options) + 1))
    return sorted(chosen - removed)
