"""`roundtable status`: the current cycle of a group as text, for the facilitator."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app import clock
from app.cycles import current_cycle, local_label
from app.models import Group, UpdateRequest
from app.participation import Attendance, group_standings, standing_in


def status_report(session: Session, group: Group) -> str:
    """The current cycle as text: who was asked, who replied when, excused, missing, streaks."""
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
    standings = group_standings(session, group, now, upto=cycle)
    requests = {r.member_id: r for r in cycle.requests}
    replied = 0
    for member in group.members:
        request: UpdateRequest | None = requests.get(member.id)
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
            elif standing is Attendance.MISSING:
                state = "missing"
            else:
                state = "asked, no reply yet"
        standing = standings[member.id]
        record = f"streak {standing.streak}" + (f", missed {standing.missed_in_a_row} in a row" if standing.missed_in_a_row > 1 else "")
        if member.bounced_at is not None:
            state += "  [address bouncing]"
        lines.append(f"  {member.name:<24} {member.email:<34} {state:<36} {record}")
    lines.append(f"  {replied} of {len(requests)} asked have replied")
    return "\n".join(lines)
