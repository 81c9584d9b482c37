"""The `roundtable` command: set-up, roster, cycles, status, workers, serving and the demo."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from email.utils import parseaddr
from importlib import import_module
from pathlib import Path

import click
import redis.exceptions
import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock, db, jobs, roster
from app.asks.commands import asks_command
from app.cycles import (
    CycleError,
    current_cycle,
    excuse,
    local_label,
    month_label,
    request_new_members,
    schedule_meeting,
)
from app.meeting.commands import meeting_group
from app.models import (
    Cycle,
    Group,
    InboundMessage,
    Member,
    OutboundMessage,
    PacketCadence,
    UpdateRequest,
)
from app.packets import preview_packet
from app.settings import ConfigError, Settings, configure, current_settings
from app.status import status_report


def _settings() -> Settings:
    try:
        return current_settings()
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from None


@contextmanager
def _session(check: bool = True) -> Iterator[tuple[Session, Settings]]:
    """A session on a migrated database; domain errors become one clear line."""
    settings = _settings()
    try:
        if check:
            db.check_migrated(settings.database_url)
        with db.session_scope(settings.database_url) as session:
            yield session, settings
    except (roster.RosterError, CycleError, db.DatabaseNotMigrated) as error:
        raise click.ClickException(str(error)) from None


class _Main(click.Group):
    """The `roundtable` group: a database or Redis we cannot reach is one line naming the problem
    and what to do, never a traceback (`roundtable --debug ...` shows it)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.ArgumentError) as error:
            if ctx.params.get("debug"):
                raise
            url = os.environ.get("DATABASE_URL") or _settings().database_url
            raise click.ClickException(db.connection_problem(url, error)) from None
        except redis.exceptions.ConnectionError as error:
            if ctx.params.get("debug"):
                raise
            url = os.environ.get("REDIS_URL", "")
            raise click.ClickException(f"cannot reach Redis at {db.redacted(url)}: {error}. Is redis-server running?") from None


@click.group(cls=_Main)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error")
def main(debug: bool) -> None:
    """Roundtable: the monthly cycle of a peer group, run by email."""


# --- database -------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version. Safe to run twice."""
    settings = _settings()
    db.upgrade(settings.database_url)
    click.echo(f"database is at {db.head_revision(settings.database_url)}")


# --- roster ---------------------------------------------------------------------------------


@main.group("group")
def group_group() -> None:
    """Peer groups."""


@group_group.command("create")
@click.argument("name")
@click.option("--timezone", "tz", required=True, help="IANA timezone, e.g. America/New_York")
@click.option("--facilitator", required=True, help='"Name <email>"')
@click.option("--location", default="", help="Default meeting place")
@click.option("--slug", default=None, help="Short name used on the command line")
def group_create(name: str, tz: str, facilitator: str, location: str, slug: str | None) -> None:
    """Create a group with its facilitator."""
    facilitator_name, facilitator_email = parseaddr(facilitator)
    with _session() as (session, _):
        group = roster.create_group(
            session,
            name=name,
            timezone=tz,
            facilitator_name=facilitator_name or facilitator_email,
            facilitator_email=facilitator_email or facilitator,
            location=location,
            slug=slug,
        )
        session.commit()
        click.echo(f"created group {group.slug!r} ({group.name}, {group.timezone})")


@group_group.command("edit")
@click.argument("group_slug")
@click.option("--name", default=None)
@click.option("--timezone", "tz", default=None, help="IANA timezone; meetings already scheduled keep their times")
@click.option("--location", default=None, help="Default meeting place")
@click.option("--country", default=None, help="Two letters (US, CA, GB, DE...): Letter paper where it is used (US, CA, MX...), else A4")
@click.option("--language", default=None, help="Members may also answer in: en, es, fr, de, pt or nl")
@click.option("--packet-cadence", type=click.Choice([c.value for c in PacketCadence]), default=None,
              help="After the deadline, late replies make a new packet version at most daily, or at once")
@click.option("--packet-to-members/--packet-to-facilitators", default=None, help="Who receives the packet")
def group_edit(group_slug: str, name: str | None, tz: str | None, location: str | None, country: str | None,
               language: str | None, packet_cadence: str | None, packet_to_members: bool | None) -> None:
    """Change a group's name, timezone, place, country, language or packet settings."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        said = roster.edit_group(
            session, group, name=name, timezone=tz, location=location, country=country, language=language,
            packet_cadence=packet_cadence, packet_to_members=packet_to_members,
        )
        session.commit()
        click.echo(f"{group.slug}: " + ("; ".join(said) if said else "nothing changed"))


@group_group.command("list")
def group_list() -> None:
    """List the groups."""
    with _session() as (session, _):
        for group in session.scalars(select(Group).order_by(Group.slug)):
            click.echo(f"{group.slug}\t{group.name}\t{group.timezone}\t{len(group.members)} members")


@main.group("member")
def member_group() -> None:
    """Group members."""


def _request_late_joiners(session: Session, settings: Settings, group: Group) -> tuple[list[int], list[str]]:
    """Queue the update request to reachable members who have none in a cycle still open for
    updates; return the outbound ids (to enqueue after the commit) and what to tell the user."""
    ids = request_new_members(session, settings, group, clock.now())
    told = []
    rows = session.execute(
        select(OutboundMessage.cycle_id, OutboundMessage.to_name).where(OutboundMessage.id.in_(ids)).order_by(OutboundMessage.id)
    ).all()
    for cycle_id in dict.fromkeys(cycle_id for cycle_id, _ in rows):
        names = ", ".join(name for row_cycle_id, name in rows if row_cycle_id == cycle_id)
        told.append(f"sent {names} the {month_label(session.get_one(Cycle, cycle_id))} update request")
    return ids, told


def _send(outbound_ids: list[int], told: list[str]) -> None:
    """After the commit: nudge the senders, then say what went out."""
    if outbound_ids and not jobs.enqueue_sends(outbound_ids):
        told = [*told, "(Redis was unreachable: `roundtable requeue` sends them)"]
    for line in told:
        click.echo(line)


@member_group.command("add")
@click.argument("group_slug")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--company", default="")
@click.option("--title", default="")
def member_add(group_slug: str, name: str, email: str, company: str, title: str) -> None:
    """Add one member to a group; after the requests went out, they get theirs at once."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        member = roster.add_member(session, group, name=name, email=email, company=company, title=title)
        ids, told = _request_late_joiners(session, settings, group)
        session.commit()
        click.echo(f"added {member.name} <{member.email}> to {group.name}")
    _send(ids, told)


@member_group.command("import")
@click.argument("group_slug")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def member_import(group_slug: str, csv_file: Path) -> None:
    """Import members from a CSV with columns name, email, company, title (all rows or none).

    Comma, semicolon or tab separated; UTF-8, UTF-16 or Windows-1252 (as Excel saves them)."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        members = roster.import_members_csv(session, group, roster.decode_csv(csv_file.read_bytes()))
        ids, told = _request_late_joiners(session, settings, group)
        session.commit()
        click.echo(f"imported {len(members)} members into {group.name}")
    _send(ids, told)


@member_group.command("edit")
@click.argument("group_slug")
@click.argument("member_email")
@click.option("--email", "new_email", default=None, help="A new address (clears a bounce mark)")
@click.option("--name", default=None)
@click.option("--company", default=None)
@click.option("--title", default=None)
def member_edit(
    group_slug: str, member_email: str, new_email: str | None, name: str | None, company: str | None, title: str | None
) -> None:
    """Change a member's address, name, company or title."""
    if new_email is None and name is None and company is None and title is None:
        raise click.UsageError("nothing to change: give --email, --name, --company or --title")
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        member = roster.find_member(session, group, member_email)
        changes = roster.edit_member(session, member, email=new_email, name=name, company=company, title=title)
        ids, told = _request_late_joiners(session, settings, group) if new_email else ([], [])
        session.commit()
        click.echo(f"{member.name}: " + ("; ".join(changes) if changes else "nothing changed"))
    _send(ids, told)


@member_group.command("deactivate")
@click.argument("group_slug")
@click.argument("member_email")
def member_deactivate(group_slug: str, member_email: str) -> None:
    """Put a member on leave: no requests or reminders until `member activate`."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        member = roster.find_member(session, group, member_email)
        changed = roster.set_active(session, member, False)
        session.commit()
        click.echo(f"{member.name} is {'now' if changed else 'already'} inactive")


@member_group.command("activate")
@click.argument("group_slug")
@click.argument("member_email")
def member_activate(group_slug: str, member_email: str) -> None:
    """Bring a member back from leave (or back on the roster); mailed again from now on."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        member = roster.find_member(session, group, member_email)
        changed = roster.set_active(session, member, True)
        ids, told = _request_late_joiners(session, settings, group)
        session.commit()
        click.echo(f"{member.name} is {'active again' if changed else 'already active'}")
    _send(ids, told)


@member_group.command("remove")
@click.argument("group_slug")
@click.argument("member_email")
def member_remove(group_slug: str, member_email: str) -> None:
    """Take a member off the roster: never mailed again, kept in past cycles' history."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        member = roster.find_member(session, group, member_email)
        changed = roster.remove_member(session, member, clock.now())
        session.commit()
        click.echo(f"{member.name} {'is removed from' if changed else 'was already removed from'} {group.name}")


@member_group.command("clear-bounce")
@click.argument("group_slug")
@click.argument("member_email")
def member_clear_bounce(group_slug: str, member_email: str) -> None:
    """Mail a member's address again after a bounce (the address was right after all)."""
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        member = roster.find_member(session, group, member_email)
        changed = roster.clear_bounce(session, member)
        ids, told = _request_late_joiners(session, settings, group)
        session.commit()
        click.echo(f"{member.email}: " + ("bounce mark cleared" if changed else "not marked as bouncing"))
    _send(ids, told)


@member_group.command("list")
@click.argument("group_slug")
def member_list(group_slug: str) -> None:
    """List a group's members: address, company, state and alternate addresses."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        if not group.members:
            click.echo(f"{group.name} has no members yet: roundtable member add {group.slug} ...")
        for member in group.members:
            alternates = ", ".join(a.email for a in member.addresses)
            line = f"{member.name:<24} {member.email:<34} {member.company or '-':<24} {roster.member_state(member, group.timezone)}"
            click.echo(line + (f"  (also writes from {alternates})" if alternates else ""))


@member_group.command("alias")
@click.argument("member_email")
@click.argument("alternate_email")
@click.option("--group", "group_slug", default=None, help="Only the member of this group (default: every group)")
@click.option("--remove", is_flag=True, help="Stop taking mail from the alternate address")
def member_alias(member_email: str, alternate_email: str, group_slug: str | None, remove: bool) -> None:
    """Let a member also write from another address (or, with --remove, no longer)."""
    with _session() as (session, _):
        query = select(Member).where(Member.email == roster.normalize_email(member_email))
        if group_slug is not None:
            query = query.where(Member.group_id == roster.find_group(session, group_slug).id)
        members = list(session.scalars(query))
        if not members:
            raise click.ClickException(f"no member with the address {member_email}")
        alternate = roster.normalize_email(alternate_email)
        known = all(any(a.email == alternate for a in member.addresses) for member in members)
        for member in members:
            if remove:
                roster.remove_alternate_address(session, member, alternate_email)
            else:
                roster.add_alternate_address(session, member, alternate_email)
        session.commit()
        name = members[0].name
        if remove:
            click.echo(f"{alternate_email} no longer counts as {name}")
        else:
            click.echo(f"{alternate_email} {'already counted' if known else 'now counts'} as {name}")


@main.group("facilitator")
def facilitator_group() -> None:
    """Facilitators: told of bounces and held mail, sent the packet."""


@facilitator_group.command("add")
@click.argument("group_slug")
@click.argument("facilitator")
def facilitator_add(group_slug: str, facilitator: str) -> None:
    """Add a co-facilitator, given as "Name <email>"."""
    name, email = parseaddr(facilitator)
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        added = roster.add_facilitator(session, group, name=name, email=email or facilitator)
        session.commit()
        click.echo(f"{added.name} <{added.email}> now facilitates {group.name}")


@facilitator_group.command("remove")
@click.argument("group_slug")
@click.argument("email")
def facilitator_remove(group_slug: str, email: str) -> None:
    """Remove a facilitator (never the last one)."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        removed = roster.remove_facilitator(session, group, email)
        session.commit()
        click.echo(f"{removed.name} <{removed.email}> no longer facilitates {group.name}")


@facilitator_group.command("list")
@click.argument("group_slug")
def facilitator_list(group_slug: str) -> None:
    """List a group's facilitators."""
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        for facilitator in group.facilitators:
            click.echo(f"{facilitator.name:<24} {facilitator.email}")


# --- cycles ---------------------------------------------------------------------------------


@main.group("cycle")
def cycle_group() -> None:
    """Meetings and their cycles."""


@cycle_group.command("schedule")
@click.argument("group_slug")
@click.option("--date", "day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="YYYY-MM-DD")
@click.option("--time", "start", required=True, help="Local start time, HH:MM")
@click.option("--hours", default=4.0, show_default=True, help="Meeting length")
@click.option("--location", default=None, help="Defaults to the group's usual place")
@click.option("--force", is_flag=True, help="Record a past meeting (a back-fill): checked against nothing, sends nothing")
def cycle_schedule(group_slug: str, day, start: str, hours: float, location: str | None, force: bool) -> None:  # type: ignore[no-untyped-def]
    """Schedule a meeting; requests, reminders and the deadline follow from it."""
    now = clock.now()
    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        cycle = schedule_meeting(
            session, group, day=day.date(), start=start, hours=hours, location=location, now=now, backfill=force
        )
        session.commit()
        tz = group.timezone
        if force:
            click.echo(f"recorded the meeting of {local_label(cycle.meeting_starts_at, tz)} as past: nothing will be sent for it")
            return
        click.echo(f"scheduled {group.name} on {local_label(cycle.meeting_starts_at, tz)}")
        when = "now (their time has come)" if cycle.request_at <= now else local_label(cycle.request_at, tz)
        click.echo(f"  requests go out {when}")
        click.echo(f"  deadline        {local_label(cycle.deadline_at, tz)}")


@main.command("excuse")
@click.argument("group_slug")
@click.argument("member_email")
def excuse_member(group_slug: str, member_email: str) -> None:
    """Excuse a member from the current cycle: no reminders, shown as excused."""
    from app.cycles import request_for

    with _session() as (session, _):
        group = roster.find_group(session, group_slug)
        cycle = current_cycle(session, group, clock.now())
        member = session.scalar(
            select(Member).where(Member.group_id == group.id, Member.email == roster.normalize_email(member_email))
        )
        if cycle is None or member is None:
            raise click.ClickException("no current cycle or no such member in that group")
        excuse(session, request_for(session, cycle, member), clock.now())
        session.commit()
        click.echo(f"{member.name} is excused from the {local_label(cycle.meeting_starts_at, group.timezone, '%B')} cycle")


@main.command("status")
@click.argument("group_slug", required=False)
def status(group_slug: str | None) -> None:
    """Show the current cycle of each group: who was asked, who replied, when."""
    with _session() as (session, _):
        groups = [roster.find_group(session, group_slug)] if group_slug else list(
            session.scalars(select(Group).order_by(Group.slug))
        )
        if not groups:
            click.echo("no groups yet: roundtable group create ...")
        for group in groups:
            click.echo(status_report(session, group))


def _emails_by_kind(session: Session, outbound_ids: list[int]) -> str:
    kinds: dict[str, int] = {}
    for kind in session.scalars(select(OutboundMessage.kind).where(OutboundMessage.id.in_(outbound_ids))):
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind.replace('_', ' ')}{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items()))


def _not_enqueued(settings: Settings) -> str:
    where = db.redacted(settings.redis_url or "")
    return (f"could not reach Redis at {where}: what was queued is stored and goes out once Redis and a"
            " worker are back (roundtable requeue)")


@main.command("tick")
def tick_command() -> None:
    """Send whatever is due now for every group (run it every few minutes). Safe to run twice."""
    with _session():
        pass
    done = jobs.run(jobs.TICK_JOB)
    outbound_ids, compiled = done["outbound_ids"], done["compile_cycle_ids"]
    inbound, outbound = done["swept"]
    with _session() as (session, settings):
        if outbound_ids:
            click.echo(f"queued {len(outbound_ids)} emails: {_emails_by_kind(session, outbound_ids)}")
        for cycle_id in compiled:
            cycle = session.get_one(Cycle, cycle_id)
            click.echo(f"compiled the {month_label(cycle)} packet of {cycle.group.name}")
        if inbound or outbound:
            click.echo(f"requeued {inbound} received and {outbound} unsent messages left from earlier")
        if not (outbound_ids or compiled or inbound or outbound):
            click.echo("nothing was due")
        if not done["enqueued"] or (settings.redis_url and not jobs.redis_ok(settings)):
            raise click.ClickException(_not_enqueued(settings))


@main.command("compile")
@click.argument("group_slug")
def compile_command(group_slug: str) -> None:
    """Before the deadline: mail the facilitators a preview (nobody else). After it: compile a new
    version if anything changed and mail it. After the meeting: nothing (the packet stands)."""
    now = clock.now()
    with _session() as (session, settings):
        group = roster.find_group(session, group_slug)
        cycle = current_cycle(session, group, now)
        if cycle is None:
            raise click.ClickException(f"{group.name} has no meeting scheduled (roundtable cycle schedule ...)")
        cycle_id, tz, month = cycle.id, group.timezone, month_label(cycle)
        if now >= cycle.meeting_starts_at:
            versions = f"version {cycle.packets[-1].version}" if cycle.packets else "none"
            raise click.ClickException(
                f"the {month} meeting began {local_label(cycle.meeting_starts_at, tz)}: its packet stands ({versions});"
                " mail that arrives now shows in the next cycle"
            )
        if now < cycle.deadline_at:
            preview = preview_packet(session, settings, cycle_id, now)
            session.commit()
            deadline = local_label(cycle.deadline_at, tz)
            to = ", ".join(preview.recipients) or "nobody (the group has no facilitator)"
            if not preview.outbound_ids:
                click.echo(f"nothing changed since the last preview to {to}: nothing mailed")
            else:
                reached = jobs.enqueue_sends(preview.outbound_ids)
                click.echo(f"preview of the {month} packet mailed to {to} only")
                if not reached:
                    raise click.ClickException(_not_enqueued(settings))
            click.echo(f"the packet itself goes out at the deadline, {deadline}; nothing else changed")
            return
    done = jobs.run(jobs.COMPILE_JOB, cycle_id)
    with _session() as (session, settings):
        recipients = list(
            session.execute(
                select(OutboundMessage.to_email, OutboundMessage.status).where(OutboundMessage.id.in_(done["outbound_ids"]))
            )
        )
        version = done["version"]
        if not done["is_new"] and not recipients:
            click.echo(f"no change since version {version} of the {month} packet: nothing mailed")
        else:
            said = "new version" if done["is_new"] else "version"
            to = ", ".join(f"{email} ({status})" for email, status in recipients) or "nobody (no facilitator)"
            click.echo(f"{said} {version} of the {month} packet mailed to {to}")
        click.echo(f"files in {settings.packets_dir}")
        if not done["enqueued"]:
            raise click.ClickException(_not_enqueued(settings))


@main.command("requeue")
def requeue() -> None:
    """Enqueue stored mail that was never processed and email that was never sent."""
    now = clock.now()
    with _session() as (_, settings):
        inbound, outbound = jobs.sweep(settings, now)
        young_in, young_out = jobs.within_grace(settings, now)
    click.echo(f"requeued {inbound} received messages and {outbound} unsent emails")
    if young_in or young_out:
        seconds = int(jobs.SWEEP_GRACE.total_seconds())
        click.echo(
            f"left {young_in} received and {young_out} unsent less than {seconds} s old to the jobs already"
            " on their way; run it again in a minute if they stay"
        )
    if settings.redis_url and not jobs.redis_ok(settings):
        raise click.ClickException(_not_enqueued(settings))


@main.group("inbound")
def inbound_group() -> None:
    """Received mail."""


@inbound_group.command("list")
@click.option("--status", "status_filter", default=None, help="received, accepted, ignored, rejected, held, failed")
@click.option("--limit", default=30, show_default=True)
def inbound_list(status_filter: str | None, limit: int) -> None:
    """List received mail, newest first, with the reason for anything not accepted."""
    with _session() as (session, _):
        query = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
        if status_filter:
            query = query.where(InboundMessage.status == status_filter)
        rows = session.scalars(query).all()
        if not rows:
            click.echo("no mail" + (f" with status {status_filter}" if status_filter else ""))
            return
        click.echo(f"{'id':>6} {'received (UTC)':<16} {'status':<9} {'kind':<11} {'sender':<32} reason")
        for row in rows:
            # The sender in From is read by the worker; until then, the envelope's.
            sender = row.from_address or row.envelope_from or "-"
            at = row.received_at
            received = f"{at.astimezone(UTC) if at.tzinfo else at:%Y-%m-%d %H:%M}"
            line = f"{row.id:>6} {received:<16} {row.status:<9} {row.kind or '-':<11} {sender:<32} {row.reason or ''}"
            click.echo(line.rstrip())


@inbound_group.command("release")
@click.argument("inbound_id", type=int)
def inbound_release(inbound_id: int) -> None:
    """Accept a held message (sent from an address that is not the member's) as their update."""
    from app.replies import release_held

    with _session() as (session, settings):
        row = session.get(InboundMessage, inbound_id)
        if row is None:
            raise click.ClickException(f"there is no message {inbound_id} (roundtable inbound list --status held)")
        if row.status != "held":
            raise click.ClickException(f"message {inbound_id} is not held: it is {row.status} ({row.reason or 'no reason'})")
        if row.update_request_id is None:
            # Held by the asks or the meeting (a stranger writing to a group's address, say):
            # only a member's update can be vouched for here.
            raise click.ClickException(
                f"message {inbound_id} is not an update reply ({row.reason or 'held'}): it cannot be released"
                " here; mail held at a group's address is let through as a member's ask with"
                f" roundtable asks GROUP --release {inbound_id} (--as MEMBER_EMAIL when you vouch for the sender)"
            )
        outcome = release_held(session, settings, inbound_id, clock.now())
        session.commit()
        said = row.reason
        request = session.get(UpdateRequest, row.update_request_id) if row.update_request_id else None
        cycle = request.cycle if request is not None else None
        due = local_label(cycle.packet_due_at, cycle.group.timezone) if cycle and cycle.packet_due_at else None
    jobs.enqueue_sends(outcome.outbound_ids)
    click.echo(f"message {inbound_id} accepted: {said}")
    for cycle_id in outcome.recompile_cycle_ids:  # after the deadline: the packet gets a new version
        jobs.enqueue_compile(cycle_id)
        click.echo("the packet gets a new version with it now")
    if due and not outcome.recompile_cycle_ids:
        click.echo(f"the packet's next version, with it, goes out {due} (at most one a day; see roundtable group edit --packet-cadence)")


# --- inspecting a message -------------------------------------------------------------------


@main.command("parse")
@click.argument("eml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.option(
    "--request",
    "request_eml",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The update request this message answers, as sent (.eml): our own quoted words are recognised",
)
@click.option("--explain", is_flag=True, help="Show every line of the body, kept or cut, and why")
def parse(eml: Path, as_json: bool, request_eml: Path | None, explain: bool) -> None:
    """Show how a message would be read, storing nothing."""
    from app.reading.explain import explain as explain_lines
    from app.reading.message import read_message, sent_request

    request = sent_request(request_eml.read_bytes()) if request_eml is not None else None
    reading = read_message(eml.read_bytes(), request=request)
    data = reading.to_json()
    verdicts = explain_lines(reading.body, reading.text, request) if explain else []
    if as_json:
        if explain:
            data["explain"] = [
                {"line": v.number, "text": v.text, "kept": v.is_kept, "reason": v.reason} for v in verdicts
            ]
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo(f"kind:   {data['kind']}  ({data['reason']})")
    click.echo(f"from:   {data['from_address']}")
    click.echo(f"token:  {data['token'] or '-'}")
    if data["bounced"]:
        for recipient in data["bounced"]:
            click.echo(f"bounced: {recipient['address']} {recipient['status']} {'hard' if recipient['is_hard'] else 'soft'}")
    if reading.kind == "reply":
        if explain:
            click.echo("lines (+ kept, - cut):")
            for v in verdicts:
                click.echo(f"  {'+' if v.is_kept else '-'} {v.number:>4} {v.text}" + (f"    [{v.reason}]" if v.reason else ""))
        click.echo("text:\n  " + "\n  ".join(reading.text.splitlines() or ["(empty)"]))
        sections = reading.sections
        if sections.get("ratings"):
            click.echo(f"ratings: {sections['ratings']}")
        if sections.get("topic_priority"):
            click.echo(f"priority: {sections['topic_priority']}")
        if sections.get("is_skip"):
            click.echo("skip: the member asks to be excused this month")
        if sections.get("is_correction"):
            click.echo("correction: the member changes an update already sent")
        for key, value in sections.get("texts", {}).items():
            click.echo(f"[{key}]\n  " + "\n  ".join(value.splitlines()))
        for attachment in data["attachments"]:
            click.echo(f"attachment: {attachment['filename']} ({attachment['content_type']}, {attachment['size']} bytes)")


# --- running ----------------------------------------------------------------------------------


@main.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty")
@click.option("--fork", is_flag=True, help="Fork a process per job (rq's Worker) instead of running jobs in-process")
def worker(burst: bool, fork: bool) -> None:
    """Run one rq worker (needs REDIS_URL). Run as many as you like, on any machines."""
    import ctypes
    import signal

    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import SimpleWorker, Worker

    settings = _settings()
    if settings.redis_url is None:
        raise click.ClickException("REDIS_URL is not set: without Redis, jobs run inside the web process")
    db.use_worker_sessions()  # lock and idle timeouts; no connection handed down to a child
    if sys.platform.startswith("linux"):
        # rq forks its scheduler (and, with --fork, a work horse per job), and nothing stops
        # them when this process is killed alone (kill -9, the OOM killer): each child asks the
        # kernel for SIGTERM when its parent dies (strictly: when the forking thread ends; rq
        # forks from the main one). SIGTERM, not SIGKILL: the scheduler then gives up its
        # Redis lock, so the next worker's scheduler takes over at once.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        forked_by = [0]

        def note_parent() -> None:
            forked_by[0] = os.getpid()

        def die_with_parent() -> None:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != forked_by[0]:  # the parent died before we asked
                os._exit(1)

        os.register_at_fork(before=note_parent, after_in_child=die_with_parent)
    try:
        db.check_migrated(settings.database_url)
    except db.DatabaseNotMigrated as error:
        raise click.ClickException(str(error)) from None
    configure(settings)
    # Import the jobs (and WeasyPrint, mail-parser...) once here: each forked work horse then
    # starts warm instead of importing them again for every job.
    import_module("workers.jobs")
    queue = jobs.queue(settings)
    # In-process by default: ten times the throughput of a fork per job (warm imports, Jinja's
    # template cache and a pooled database connection survive between jobs). Jobs are
    # idempotent and rows are the truth, so a worker that dies loses nothing: the sweep re-runs.
    worker_class = Worker if fork else SimpleWorker
    # rq gives up when Redis goes away (a restart, a failover): wait for it instead of exiting,
    # as a supervisor would restart us. The job it was running is handed back by rq's own
    # bookkeeping, and rows are the truth.
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            worker_class([queue], connection=queue.connection).work(burst=burst, with_scheduler=True)
            return
        except RedisConnectionError as error:
            if burst:
                raise click.ClickException(f"Redis is unreachable ({error})") from None
            if time.monotonic() - started > 60:
                delay = 1.0  # it ran a while: a fresh outage
            click.echo(f"Redis is unreachable ({error}); trying again in {delay:.0f} s", err=True)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def gunicorn_args(*, workers: int, worker_class: str, threads: int, connections: int) -> list[str]:
    """How `roundtable serve` runs gunicorn; the webhook benchmark runs both its apps with these."""
    args = [f"--workers={workers}", f"--worker-class={worker_class}", "--timeout=60"]
    if worker_class == "gthread":
        return [*args, f"--threads={threads}"]
    return [*args, f"--worker-connections={connections}"]


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes")
@click.option("--worker-class", type=click.Choice(["gevent", "gthread"]), default="gevent", show_default=True,
              help="gevent: one thread per worker, requests switch while they wait; gthread: a thread pool")  # fmt: skip
@click.option("--connections", default=100, show_default=True, help="requests at once per gevent worker")
@click.option("--threads", default=4, show_default=True, help="threads per gthread worker")
def serve(host: str, port: int, workers: int, worker_class: str, connections: int, threads: int) -> None:
    """Serve the web app (webhooks, health check) with gunicorn.

    gevent by default: a webhook request spends its time waiting for the database commit, and
    a thread pool spent more CPU handing the GIL between threads at every wait (9 to 18 context
    switches per request, against 0.1 with gevent; see bench/webhook.py). gunicorn is started
    afresh (exec) so that its gevent worker patches the standard library before the app is
    imported, as gevent requires.
    """
    settings = _settings()
    try:
        db.check_migrated(settings.database_url)
    except db.DatabaseNotMigrated as error:
        raise click.ClickException(str(error)) from None
    args = gunicorn_args(workers=workers, worker_class=worker_class, threads=threads, connections=connections)
    command = [sys.executable, "-m", "gunicorn", f"--bind={host}:{port}", "--access-logfile=-", *args]
    db.engine_for(settings.database_url).dispose()  # close the check's connection, not drop it
    sys.stdout.flush()
    os.execv(sys.executable, [*command, "app.web:create_app()"])


@main.command("demo")
@click.option("--dir", "folder", default="roundtable-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
def demo(folder: Path) -> None:
    """Run one whole cycle for a demo group of 12 on the embedded default; no services needed."""
    from app.demo import run_demo

    summary = run_demo(folder)
    click.echo(summary)


main.add_command(meeting_group)
main.add_command(asks_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
