"""The agenda: drafted from a template and the members' topics, shown as lines a facilitator can
edit in a reply, and read back from them. Pure."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

# The group's template: share of the meeting's length, in order. "topics" is issue processing,
# split among the members' topics by priority.
TEMPLATE: tuple[tuple[str, str, float], ...] = (
    ("check_in", "Check-in", 0.10),
    ("updates", "Updates round", 0.25),
    ("topics", "Issue processing", 0.35),
    ("presentation", "Presentation", 0.15),
    ("commitments", "Commitments round", 0.10),
    ("close", "Close", 0.05),
)
PRIORITY_WEIGHT = {"A": 3, "B": 2, "C": 1}
STEP = 5  # minutes: timings are rounded to five
MAX_TOPICS = 4  # more than this do not fit one morning: the rest wait in the packet


@dataclass(frozen=True)
class Item:
    title: str
    minutes: int
    owner: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Topic:
    owner: str
    text: str
    priority: str | None  # A, B, C or None


def _round(minutes: float) -> int:
    return max(STEP, round(minutes / STEP) * STEP)


def ranked(topics: list[Topic]) -> list[Topic]:
    """Topics by priority (A first; none last), then by owner."""
    return sorted(topics, key=lambda t: (PRIORITY_WEIGHT.get(t.priority or "", 0) * -1, t.owner))


def topic_title(text: str, priority: str | None = None, limit: int = 70) -> str:
    """A topic's first line, short enough for an agenda line, without the priority the member
    wrote in front of it ("Priority A:", "(A)", "A -"; the agenda shows it in its own place)."""
    first = " ".join((text.strip().splitlines() or [""])[0].split())
    first = re.sub(r"^\(?priority\s*(?:[:=]\s*)?[ABC]\b\)?[\s:.\-–—]*", "", first, flags=re.IGNORECASE)
    if priority in ("A", "B", "C"):
        first = re.sub(rf"^(?:\({priority}\)|{priority}\s*[:.\-–—])[\s:.\-–—]*", "", first)
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def draft(length_minutes: int, topics: list[Topic], facilitator: str) -> list[Item]:
    """The agenda for a meeting of `length_minutes`: the template's items, issue processing split
    among the top topics by priority; the timings add up to the length exactly."""
    if length_minutes < STEP * len(TEMPLATE):
        raise ValueError(f"a {length_minutes}-minute meeting is too short for the agenda template")
    chosen = ranked(topics)[:MAX_TOPICS]
    fixed = {key: _round(length_minutes * share) for key, _, share in TEMPLATE if key != "topics"}
    topic_minutes = length_minutes - sum(fixed.values())
    items: list[Item] = []
    for key, title, _ in TEMPLATE:
        if key != "topics":
            owner = "everyone" if key in ("updates", "commitments") else facilitator
            if key == "presentation":
                owner = "speaker to be confirmed"
            items.append(Item(title, fixed[key], owner))
            continue
        if not chosen:
            items.append(Item("Issue processing: topics from the room", topic_minutes, facilitator))
            continue
        weights = [PRIORITY_WEIGHT.get(t.priority or "", 1) for t in chosen]
        shares = [_round(topic_minutes * w / sum(weights)) for w in weights]
        shares[0] += topic_minutes - sum(shares)  # the rounding goes to the most urgent topic
        if shares[0] < STEP:  # many topics in a short meeting: equal shares instead
            each = topic_minutes // len(chosen)
            shares = [each] * len(chosen)
            shares[0] += topic_minutes - sum(shares)
        for topic, minutes in zip(chosen, shares):
            label = f" ({topic.priority})" if topic.priority else ""
            items.append(Item(f"Issue{label}: {topic_title(topic.text, topic.priority)}", minutes, topic.owner))
    return items


def total(items: list[Item]) -> int:
    return sum(item.minutes for item in items)


def timed(items: list[Item], starts_at: datetime, tz: str) -> list[dict[str, object]]:
    """The items with their local start times, for templates."""
    zone = ZoneInfo(tz)
    at = starts_at
    rows = []
    for item in items:
        rows.append({**item.to_json(), "starts": at.astimezone(zone).strftime("%H:%M")})
        at += timedelta(minutes=item.minutes)
    return rows


def as_lines(items: list[Item], starts_at: datetime, tz: str) -> list[str]:
    """The agenda as the lines a facilitator edits: `08:30  20 min  Check-in — Dana`."""
    return [
        f"{row['starts']}  {row['minutes']} min  {row['title']}" + (f" — {row['owner']}" if row["owner"] else "")
        for row in timed(items, starts_at, tz)
    ]


# One agenda line as written back: an optional start time, the minutes, the title, an owner after a
# dash. Linear: the pieces are separated by fixed words and the owner split is done by rpartition.
_LINE_RE = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:\d{1,2}[:.h]\d{2}(?:\s*[ap]m)?\s+)?(\d{1,3})\s*(?:min(?:ute)?s?|m|')\.?\s+(\S.*)$",
    re.IGNORECASE,
)
_OWNER_SEPARATORS = (" — ", " – ", " -- ", " - ")


def read_line(line: str) -> Item | None:
    m = _LINE_RE.match(line)
    if m is None:
        return None
    minutes = int(m.group(1))
    rest = m.group(2).strip()
    title, owner = rest, ""
    for separator in _OWNER_SEPARATORS:
        head, found, tail = rest.rpartition(separator)
        if found and head.strip() and tail.strip():
            title, owner = head.strip(), tail.strip()
            break
    if not 0 < minutes <= 600 or not title:
        return None
    return Item(title[:200], minutes, owner[:200])


def read_agenda(text: str) -> list[Item]:
    """The agenda lines in a facilitator's reply, in their order ([] when there are none)."""
    return [item for line in text.splitlines() if (item := read_line(line)) is not None]


_APPROVE_RE = re.compile(r"^\W*(approved?|ok|okay|looks good|lgtm|go|send it|yes)\b", re.IGNORECASE)


def is_approval(text: str) -> bool:
    """A reply that approves the draft as it stands: APPROVE (or "ok", "looks good") first."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return bool(_APPROVE_RE.match(first))


def items_from_json(agenda: dict[str, object]) -> list[Item]:
    raw = agenda.get("items", [])
    return [Item(str(i["title"]), int(i["minutes"]), str(i.get("owner", ""))) for i in raw] if isinstance(raw, list) else []
