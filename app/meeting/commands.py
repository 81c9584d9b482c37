"""`roundtable meeting ...`: the meeting from the command line (the same operations as by reply)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

import click
from sqlalchemy.orm import Session

from app import clock, db, jobs, roster
from app.cycles import CycleError, current_cycle, local_label
from app.meeting import agenda as agendas
from app.meeting import recap
from app.meeting.meetings import (
    MeetingError,
    approve_agenda,
    cancel,
    change_logistics,
    draft_agenda,
    meeting_for,
    move,
    replace_agenda,
)
from app.meeting.poll import confirm, create_poll, open_poll, parse_hours, tally
from app.meeting.rsvp import meeting_headcount, record
from app.meeting.schedule import occurrences, rule_from_words
from app.models import Cycle, Group, Meeting, RsvpResponse
from app.settings import ConfigError, Settings, current_settings


@contextmanager
def _session() -> Iterator[tuple[Session, Settings]]:
    try:
        settings = current_settings()
        db.check_migrated(settings.database_url)
        with db.session_scope(settings.database_url) as session:
            yield session, settings
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from None
    except (roster.RosterError, CycleError, MeetingError, db.DatabaseNotMigrated) as error:
        raise click.ClickException(str(error)) from None


def _meeting(session: Session, settings: Settings, group: Group) -> Meeting:
    cycle = current_cycle(session, group, clock.now())
    if cycle is None:
        raise MeetingError(f"{group.name} has no meeting scheduled")
    return meeting_for(session, settings, cycle)


def _commit_and_send(session: Session, ids: list[int]) -> None:
    session.commit()
    jobs.enqueue_sends(ids)


@click.group("meeting")
def meeting_group() -> None:
    """The meeting: date poll, recurrence, logistics, agenda, invite, RSVPs and recap."""


@meeting_group.command("rule")
@click.argument("group_slug")
@click.argument("rule", required=False)
@click.option("--hours", help="Local hours, e.g. 08:30-12:30")
@click.option("--clear", is_flag=True, help="No recurrence: meetings are scheduled by hand or by poll")
def rule_command(group_slug: str, rule: str | None, hours: str | None, clear: bool) -> None:
    """Set the group's recurrence ("second Thursday" or an RRULE); the tick makes cycles ahead."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        if clear:
            group.meeting_rule = ""
        else:
            if not rule or not hours:
                raise click.UsageError("give a rule and --hours (or --clear)")
            parse_hours(hours)
            group.meeting_rule = rule_from_words(rule)
            group.meeting_hours = hours.replace(" ", "")
        session.commit()
        if group.meeting_rule:
            today = clock.now().astimezone(ZoneInfo(group.timezone)).date()
            dates = occurrences(group.meeting_rule, today, today + timedelta(days=100))[:3]
            click.echo(f"{group.name} meets {group.meeting_rule} {group.meeting_hours}; next: "
                       + ", ".join(d.strftime("%a %-d %b %Y") for d in dates))
        else:
            click.echo(f"{group.name} has no recurrence rule")


@meeting_group.command("logistics")
@click.argument("group_slug")
@click.option("--place")
@click.option("--address")
@click.option("--dial-in", "dial_in")
@click.option("--host", help='"Name <email>" of the member or person hosting')
@click.option("--parking")
@click.option("--notes")
@click.option("--default", "as_default", is_flag=True, help="Also the group's default for meetings to come")
def logistics_command(group_slug: str, place: str | None, address: str | None, dial_in: str | None,
                      host: str | None, parking: str | None, notes: str | None, as_default: bool) -> None:
    """Set the current meeting's logistics (place, address, video link, host, parking, notes)."""
    with _session() as (session, settings):
        host_name = host_email = None
        if host is not None:
            host_name, host_email = parseaddr(host)
            host_email = roster.check_email(host_email) if host_email else ""
        values = {"place": place, "address": address, "dial_in": dial_in, "host_name": host_name,
                  "host_email": host_email, "parking": parking, "notes": notes}
        group = roster.find_group(session, group_slug)
        meeting = _meeting(session, settings, group)
        ids = change_logistics(session, settings, meeting, clock.now(), **values)
        if as_default:
            group.meeting_logistics = {**group.meeting_logistics, **{k: v for k, v in values.items() if v is not None}}
        _commit_and_send(session, ids)
        if ids:
            click.echo(f"{len(ids)} updated invites queued")
        for key, value in meeting.logistics.items():
            if value:
                click.echo(f"{key:<11} {value}")


@meeting_group.command("poll")
@click.argument("group_slug")
@click.option("--options", help="Dates, comma separated: 2027-03-09,2027-03-11")
@click.option("--hours", help="Local hours, e.g. 08:30-12:30 (default: the group's)")
@click.option("--count", default=3, show_default=True, help="Without --options: this many dates from the rule")
def poll_command(group_slug: str, options: str | None, hours: str | None, count: int) -> None:
    """Mail every member the date options; their replies are tallied for the facilitator."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        now = clock.now()
        hours = hours or group.meeting_hours
        if not hours:
            raise click.UsageError("give --hours (the group has no usual hours)")
        if options:
            try:
                dates = [date.fromisoformat(d.strip()) for d in options.split(",") if d.strip()]
            except ValueError as error:
                raise click.UsageError(f"--options: {error}") from None
        elif group.meeting_rule:
            today = now.astimezone(ZoneInfo(group.timezone)).date()
            dates = occurrences(group.meeting_rule, today + timedelta(days=1), today + timedelta(days=400))[:count]
        else:
            raise click.UsageError("give --options (the group has no recurrence rule)")
        poll, ids = create_poll(session, settings, group, dates, hours, now)
        _commit_and_send(session, ids)
        click.echo(f"poll {poll.id} mailed to {len(ids)} members: " + ", ".join(d.isoformat() for d in dates))


@meeting_group.command("confirm")
@click.argument("group_slug")
@click.argument("option", type=int)
def confirm_command(group_slug: str, option: int) -> None:
    """Confirm option OPTION (1-based) of the group's open poll: the meeting is scheduled."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        poll = open_poll(session, group)
        if poll is None:
            raise MeetingError(f"{group.name} has no open poll")
        cycle, ids = confirm(session, settings, poll, option, clock.now())
        _commit_and_send(session, ids)
        click.echo(f"scheduled {group.name} on {local_label(cycle.meeting_starts_at, group.timezone)}")


@meeting_group.command("tally")
@click.argument("group_slug")
def tally_command(group_slug: str) -> None:
    """Show the open poll's answers."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        poll = open_poll(session, group)
        if poll is None:
            raise MeetingError(f"{group.name} has no open poll")
        for row in tally(poll):
            click.echo(f"{row['number']}. {row['label']:<28} {row['count']}  {', '.join(row['names'])}")  # type: ignore[arg-type]


@meeting_group.command("agenda")
@click.argument("group_slug")
@click.option("--draft", is_flag=True, help="Draft it now (the tick does at the deadline) and send it to the facilitator")
@click.option("--edit", "edit_file", type=click.File("r"), help="Replace it with the lines in this file ('-': stdin)")
@click.option("--approve", is_flag=True, help="Approve it: members get the agenda and the invite")
def agenda_command(group_slug: str, draft: bool, edit_file, approve: bool) -> None:  # type: ignore[no-untyped-def]
    """Show, draft, edit or approve the current meeting's agenda."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        meeting = _meeting(session, settings, group)
        now = clock.now()
        ids: list[int] = []
        changed = False
        if draft:
            ids += draft_agenda(session, settings, meeting, now)
        if edit_file is not None:
            items = agendas.read_agenda(edit_file.read())
            if not items:
                raise MeetingError("no agenda lines found (like '20 min Check-in — Dana')")
            changed = agendas.items_from_json(meeting.agenda) != items
            replace_agenda(meeting, items)
        if approve:
            ids += approve_agenda(session, settings, meeting, now, changed=changed)
        _commit_and_send(session, ids)
        cycle = meeting.cycle
        items = agendas.items_from_json(meeting.agenda)
        click.echo(f"agenda ({meeting.agenda_status}, {agendas.total(items)} of "
                   f"{int((cycle.meeting_ends_at - cycle.meeting_starts_at).total_seconds() // 60)} minutes)")
        for line in agendas.as_lines(items, cycle.meeting_starts_at, group.timezone):
            click.echo(f"  {line}")
        if ids:
            click.echo(f"{len(ids)} emails queued")


@meeting_group.command("move")
@click.argument("group_slug")
@click.option("--date", "day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--time", "start", required=True, help="Local start, HH:MM")
@click.option("--hours", type=float, default=None, help="New length (default: as it was)")
def move_command(group_slug: str, day, start: str, hours: float | None) -> None:  # type: ignore[no-untyped-def]
    """Move the current meeting; requests, reminders, deadline and invites follow."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        meeting = _meeting(session, settings, group)
        ids = move(session, settings, meeting, day=day.date(), start=start, hours=hours, now=clock.now())
        _commit_and_send(session, ids)
        cycle: Cycle = meeting.cycle
        click.echo(f"moved to {local_label(cycle.meeting_starts_at, group.timezone)}; {len(ids)} updates queued")


@meeting_group.command("cancel")
@click.argument("group_slug")
@click.option("--reason", default="")
def cancel_command(group_slug: str, reason: str) -> None:
    """Cancel the current meeting: members get the cancellation, nothing more is sent for it."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        meeting = _meeting(session, settings, group)
        ids = cancel(session, settings, meeting, clock.now(), reason)
        _commit_and_send(session, ids)
        click.echo(f"cancelled; {len(ids)} emails queued")


@meeting_group.command("rsvp")
@click.argument("group_slug")
@click.argument("member_email")
@click.argument("answer", type=click.Choice([r.value for r in RsvpResponse if r != RsvpResponse.NONE]))
def rsvp_command(group_slug: str, member_email: str, answer: str) -> None:
    """Record a member's answer (one they gave by phone, say)."""
    from app.meeting.meetings import rsvp_for

    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        member = roster.find_member(session, group, member_email)
        meeting = _meeting(session, settings, group)
        rsvp = rsvp_for(session, meeting, member)
        now = clock.now()
        ids = record(session, settings, rsvp, RsvpResponse(answer), "cli", now, cause=f"cli:{rsvp.id}:{now.isoformat()}")
        _commit_and_send(session, ids)
        click.echo(f"{member.name}: {answer}; {meeting_headcount(meeting).line()}")


@meeting_group.command("recap")
@click.argument("group_slug")
@click.option("--notes", default=None, help="The facilitator's notes ('-': read stdin)")
def recap_command(group_slug: str, notes: str | None) -> None:
    """Send the last meeting's recap to the members now, with these notes."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        meeting = _meeting(session, settings, group)
        if notes == "-":
            notes = sys.stdin.read()
        ids = recap.send_recaps(session, settings, meeting, clock.now(), notes)
        _commit_and_send(session, ids)
        click.echo(f"{len(ids)} recaps queued" if ids else "the recap had gone out already")
