"""`roundtable status`: the current cycle of a group as text, for the facilitator."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock
from app.cycles import current_cycle, local_label
from app.meeting.rsvp import status_lines as meeting_status_lines
from app.models import Cycle, Group, OutboundMessage, OutboundStatus, UpdateRequest
from app.participation import Attendance, group_standings, standing_in

# The emails that ask a member for their update: one of them reaching the member is enough.
ASKING_KINDS = ("update_request", "reminder")
REACHED = frozenset({OutboundStatus.SENT, OutboundStatus.DELIVERED})


def request_email_problem(
    emails: Sequence[tuple[str, str | None]],
) -> tuple[str, str | None] | None:
    """Why a member was not asked after all, from their asking emails' (status, last_error),
    oldest first: a state such as "request email failed" and the latest error. None when one
    reached them, or when there is nothing to say. Pure."""
    if any(status in REACHED for status, _ in emails):
        return None
    latest = [(status, error) for status, error in emails if status != OutboundStatus.CANCELLED]
    if not latest:
        return None  # cancelled: the member left or bounced, which the line says already
    status, error = latest[-1]
    if status == OutboundStatus.QUEUED:
        return "request email not sent yet", error  # a retry's reason, if any
    return f"request email {status}", error


def request_email_state(emails: Sequence[tuple[str, str | None]]) -> str:
    """How far the asking emails got, oldest first: "delivered" once the provider says one
    arrived, "sent" once one left us, else the latest's status ("queued", "bounced", ...). Pure."""
    statuses = [status for status, _ in emails]
    if OutboundStatus.DELIVERED in statuses:
        return "delivered"
    if OutboundStatus.SENT in statuses:
        return "sent"
    live = [status for status in statuses if status != OutboundStatus.CANCELLED]
    return str(live[-1]) if live else "not sent"


def shown(text: str) -> str:
    """`text` on one line, control characters as U+FFFD: a roster row from before names were
    checked (app.roster.one_line) must not break the table or the terminal. Pure."""
    one_line = " ".join(text.split())
    return "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in one_line)


def _asking_emails(session: Session, cycle: Cycle) -> dict[int, list[tuple[str, str | None]]]:
    emails: dict[int, list[tuple[str, str | None]]] = {}
    for member_id, status, error in session.execute(
        select(OutboundMessage.member_id, OutboundMessage.status, OutboundMessage.last_error)
        .where(OutboundMessage.cycle_id == cycle.id, OutboundMessage.kind.in_(ASKING_KINDS))
        .order_by(OutboundMessage.id)
    ):
        if member_id is not None:
            emails.setdefault(member_id, []).append((status, error))
    return emails


def status_report(session: Session, group: Group) -> str:
    """The current cycle as text: who was asked, who replied when, excused, missing, streaks,
    and whose request email never reached them (with the reason at the end of their line)."""
    now = clock.now()
    tz = group.timezone
    cycle = current_cycle(session, group, now)
    lines = [f"{group.name} ({group.slug}, {tz})"]
    if cycle is None:
        lines.append("  no meeting scheduled: roundtable cycle schedule ...")
        return "\n".join(lines)
    lines.append(f"  meeting   {local_label(cycle.meeting_starts_at, tz)}  {cycle.location}")
    lines.append(f"  requests  {local_label(cycle.request_at, tz)}   deadline {local_label(cycle.deadline_at, tz)}")
    lines.append(f"  status    {cycle.status}; packet versions: {len(cycle.packets)}")
    lines += meeting_status_lines(session, cycle.id)
    standings = group_standings(session, group, now, upto=cycle)
    requests = {r.member_id: r for r in cycle.requests}
    asking_emails = _asking_emails(session, cycle)
    replied = 0
    for member in group.members:
        request: UpdateRequest | None = requests.get(member.id)
        problem: tuple[str, str | None] | None = None
        if member.removed_at is not None and (request is None or request.replied_at is None):
            continue
        if request is None:
            state = "not asked yet" if member.is_active else "inactive"
        elif not member.is_active and request.replied_at is None:
            state = "inactive"
        else:
            standing = standing_in(cycle, request, now)
            if standing in (Attendance.ON_TIME, Attendance.LATE):
                replied += 1
                late = " (late)" if standing is Attendance.LATE else ""
                versions = len(request.updates)
                state = f"replied {local_label(request.replied_at, tz)}{late}" + (f", {versions} versions" if versions > 1 else "")
            elif standing is Attendance.EXCUSED:
                state = f"excused {local_label(request.excused_at, tz)}"
            else:
                problem = request_email_problem(asking_emails.get(member.id, []))
                if standing is Attendance.MISSING:
                    state = "missing" + (f", {problem[0]}" if problem else "")
                else:
                    state = problem[0] if problem else f"asked ({request_email_state(asking_emails.get(member.id, []))}), no reply yet"
        standing = standings[member.id]
        record = f"streak {standing.streak}" + (f", missed {standing.missed_in_a_row} in a row" if standing.missed_in_a_row > 1 else "")
        if member.bounced_at is not None:
            state += "  [address bouncing]"
        reason = f"  ({shown(problem[1])})" if problem and problem[1] else ""
        name, email = shown(member.name), shown(member.email)
        lines.append(f"  {name:<24} {email:<34} {state:<36} {record}{reason}")
    reached: dict[str, int] = {}
    for member_id in requests:
        state = request_email_state(asking_emails.get(member_id, []))
        reached[state] = reached.get(state, 0) + 1
    emails = ", ".join(f"{n} {state}" for state, n in sorted(reached.items()))
    lines.append(f"  {replied} of {len(requests)} asked have replied; request emails: {emails or 'none yet'}")
    return "\n".join(lines)
