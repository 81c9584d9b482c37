"""The date poll: options mailed to every member, answers read from their replies, the tally to
the facilitator as it grows, and the date confirmed ("CONFIRM 2" or the CLI), which schedules
the cycle."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import mail
from app.addresses import new_token
from app.cycles import CycleError, local_at, local_label, meeting_label, schedule_meeting
from app.meeting.meetings import MeetingError, meeting_for
from app.meeting.poll_reading import read_choices
from app.models import Cycle, Group, Poll, PollStatus, PollVote
from app.settings import Settings

MAX_OPTIONS = 9


def parse_hours(hours: str) -> tuple[str, float]:
    """"08:30-12:30" as its start and its length in hours."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*", hours or "")
    if m is None:
        raise MeetingError(f"{hours!r} is not a time range like 08:30-12:30")
    start_h, start_m, end_h, end_m = (int(g) for g in m.groups())
    minutes = (end_h * 60 + end_m) - (start_h * 60 + start_m)
    if not (0 <= start_h < 24 and 0 <= end_h < 24 and start_m < 60 and end_m < 60) or minutes <= 0:
        raise MeetingError(f"{hours!r} is not a time range like 08:30-12:30")
    return f"{start_h:02d}:{start_m:02d}", minutes / 60


def option_labels(poll: Poll) -> list[str]:
    start, _ = parse_hours(poll.hours)
    tz = poll.group.timezone
    return [local_label(local_at(date.fromisoformat(d), start, tz), tz, "%A %-d %B")
            for d in poll.options["dates"]]


def poll_context(poll: Poll) -> dict[str, object]:
    return {
        "group_name": poll.group.name,
        "hours": poll.hours,
        "options": [{"number": n, "label": label} for n, label in enumerate(option_labels(poll), 1)],
        "facilitator_name": poll.group.facilitators[0].name if poll.group.facilitators else "your facilitator",
    }


def create_poll(session: Session, settings: Settings, group: Group, dates: list[date], hours: str,
                now: datetime) -> tuple[Poll, list[int]]:
    """Open a poll and mail each reachable member the options. Flushes."""
    parse_hours(hours)
    dates = sorted(set(dates))
    if not 2 <= len(dates) <= MAX_OPTIONS:
        raise MeetingError(f"a poll needs 2 to {MAX_OPTIONS} dates")
    today = now.astimezone(ZoneInfo(group.timezone)).date()
    if dates[0] <= today:
        raise MeetingError("every date must be after today")
    poll = Poll(group_id=group.id, token=new_token(), options={"dates": [d.isoformat() for d in dates]},
                hours=hours.replace(" ", ""), status=PollStatus.OPEN)
    session.add(poll)
    session.flush()
    shared = poll_context(poll)
    ids = []
    for member in group.members:
        if not member.is_reachable:
            continue
        vote = PollVote(poll_id=poll.id, member_id=member.id, token=new_token())
        session.add(vote)
        session.flush()
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_poll",
            dedupe_key=f"poll:{poll.id}:{member.id}",
            to_email=member.email,
            to_name=member.name,
            reply_to=mail.reply_address(settings, vote.token),
            group_id=group.id,
            member_id=member.id,
            context={**shared, "first_name": member.first_name},
        )
        if row is not None:
            ids.append(row.id)
    return poll, ids


def tally(poll: Poll) -> list[dict[str, object]]:
    """Per option: who can come; the options as labelled."""
    labels = option_labels(poll)
    rows = []
    for number, label in enumerate(labels, 1):
        names = [v.member.name for v in poll.votes if v.choices is not None and number in v.choices["options"]]
        rows.append({"number": number, "label": label, "count": len(names), "names": names})
    return rows


def record_vote(session: Session, settings: Settings, vote: PollVote, text: str, now: datetime,
                *, cause: str) -> tuple[list[int] | None, list[int]]:
    """Read a member's answer; on an answer we can read, store it and send the facilitators the
    tally. Returns (the options read or None, outbound ids). Flushes."""
    poll = vote.poll
    options = [date.fromisoformat(d) for d in poll.options["dates"]]
    choices = read_choices(text, options)
    if choices is None:
        return None, []
    vote.choices = {"options": choices}
    vote.text = text.strip()[:2000]
    vote.answered_at = now
    session.flush()
    session.refresh(poll, ["votes"])
    return choices, queue_tally(session, settings, poll, vote, cause=cause)


def queue_tally(session: Session, settings: Settings, poll: Poll, vote: PollVote, *, cause: str) -> list[int]:
    shared = poll_context(poll)
    rows = tally(poll)
    answered = sum(1 for v in poll.votes if v.choices is not None)
    best = max(rows, key=lambda r: (r["count"], -int(r["number"])))  # type: ignore[call-overload]
    ids = []
    for facilitator in poll.group.facilitators:
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_poll_tally",
            dedupe_key=f"poll_tally:{poll.id}:{cause}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            reply_to=mail.reply_address(settings, poll.token),
            group_id=poll.group_id,
            context={**shared, "first_name": facilitator.name.split()[0] if facilitator.name.split() else "",
                     "tally": rows, "answered": answered, "asked": len(poll.votes), "best": best["number"],
                     "member_name": vote.member.name, "status": poll.status},
        )
        if row is not None:
            ids.append(row.id)
    return ids


# Linear: each run of spaces has one place to go (tests/test_regex_safety.py).
_CONFIRM_RE = re.compile(r"^\W*confirm(?:ed)?\s*(?:option\s*)?(?:#\s*)?(\d{1,2})\b", re.IGNORECASE)


def read_confirm(text: str) -> int | None:
    """The option in a facilitator's "CONFIRM 2". Pure."""
    for line in text.splitlines():
        if line.strip():
            m = _CONFIRM_RE.match(line)
            return int(m.group(1)) if m else None
    return None


def confirm(session: Session, settings: Settings, poll: Poll, number: int, now: datetime) -> tuple[Cycle, list[int]]:
    """Confirm option `number`: the cycle is scheduled (with its meeting) and the members are told
    the date. Flushes. Confirming the same option twice returns the same cycle and sends nothing."""
    if poll.status == PollStatus.CONFIRMED:
        if poll.confirmed_option == number and poll.cycle_id is not None:
            return session.get_one(Cycle, poll.cycle_id), []
        raise MeetingError(f"the poll was confirmed already (option {poll.confirmed_option})")
    dates = poll.options["dates"]
    if not 1 <= number <= len(dates):
        raise MeetingError(f"there is no option {number} (1 to {len(dates)})")
    start, hours = parse_hours(poll.hours)
    try:
        with session.begin_nested():
            cycle = schedule_meeting(session, poll.group, day=date.fromisoformat(dates[number - 1]), start=start,
                                     hours=hours, now=now)
    except IntegrityError:
        raise MeetingError("that meeting was just scheduled by someone else") from None
    except CycleError as error:  # in the past by now, or on top of another cycle
        raise MeetingError(str(error)) from None
    poll.status = PollStatus.CONFIRMED
    poll.confirmed_option = number
    poll.cycle_id = cycle.id
    meeting_for(session, settings, cycle)
    session.flush()
    shared = {
        "group_name": poll.group.name,
        "meeting_label": meeting_label(cycle),
        "date_label": local_label(cycle.meeting_starts_at, poll.group.timezone, "%A %-d %B"),
        "place": cycle.location,
    }
    ids = []
    for vote in poll.votes:
        member = vote.member
        if not member.is_reachable:
            continue
        row = mail.queue_email(
            session,
            settings,
            kind="meeting_date",
            dedupe_key=f"poll_date:{poll.id}:{member.id}",
            to_email=member.email,
            to_name=member.name,
            group_id=poll.group_id,
            cycle_id=cycle.id,
            member_id=member.id,
            context={**shared, "first_name": member.first_name},
        )
        if row is not None:
            ids.append(row.id)
    return cycle, ids


def open_poll(session: Session, group: Group) -> Poll | None:
    return session.scalar(
        select(Poll).where(Poll.group_id == group.id, Poll.status == PollStatus.OPEN).order_by(Poll.id.desc()).limit(1)
    )
