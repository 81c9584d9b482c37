"""`roundtable asks GROUP`: the group's asks (open, answered, closed, waiting); approve or hold one."""

from __future__ import annotations

import click
from sqlalchemy import select

from app import clock, db, jobs, roster
from app.asks import closure, control, held
from app.asks.kinds import KIND_LABELS
from app.models import Ask, AskStatus
from app.settings import ConfigError, current_settings

ORDER = (AskStatus.AWAITING_APPROVAL, AskStatus.HELD, AskStatus.OPEN, AskStatus.ANSWERED,
         AskStatus.FACILITATOR_ONLY, AskStatus.CLOSED)


@click.command("asks")
@click.argument("group_slug")
@click.option("--approve", "approve_id", type=int, help="Let this ask (awaiting approval or held) circulate.")
@click.option("--hold", "hold_id", type=int, help="Hold this ask; --note says why, for the member.")
@click.option("--note", default="", help="The note the member reads with --hold.")
@click.option("--release", "release_id", type=int,
              help="Let a held message to the group's address through as a member's ask (its sender's, or --as).")
@click.option("--as", "as_email", help="With --release: the member whose ask it is (you vouch for the sender).")
@click.option("--approval", type=click.Choice(["on", "off"]), help="Set: the facilitator approves each ask first.")
@click.option("--per-week", type=click.IntRange(min=0), help="Set: at most this many asks per member a week (0: no limit).")
@click.option("--circulation", type=click.Choice(["daily", "immediate"]),
              help="Set: one ask email a day per member (a digest), or each ask at once.")
def asks_command(
    group_slug: str, approve_id: int | None, hold_id: int | None, note: str, release_id: int | None,
    as_email: str | None, approval: str | None, per_week: int | None, circulation: str | None,
) -> None:
    """List GROUP's asks: waiting, open, answered, closed; who offered help. Approve or hold one,
    release a held message to the group's address as a member's ask, or change the group's asks
    settings."""
    if as_email is not None and release_id is None:
        raise click.UsageError("--as goes with --release")
    try:
        settings = current_settings()
        db.check_migrated(settings.database_url)
    except (ConfigError, db.DatabaseNotMigrated) as error:
        raise click.ClickException(str(error)) from None
    queued: list[int] = []
    with db.session_scope(settings.database_url) as session:
        try:
            group = roster.find_group(session, group_slug)
        except roster.RosterError as error:
            raise click.ClickException(str(error)) from None
        if approval is not None:
            group.asks_need_approval = approval == "on"
        if per_week is not None:
            group.asks_per_week = per_week
        if circulation is not None:
            group.ask_circulation = circulation
        if release_id is not None:
            try:
                released = held.release(session, settings, group, release_id, as_email, clock.now())
            except held.ReleaseError as error:
                raise click.ClickException(str(error)) from None
            queued += released.outbound_ids
            click.echo(released.said)
        for ask_id, action in ((approve_id, "approve"), (hold_id, "hold")):
            if ask_id is None:
                continue
            ask = session.scalar(select(Ask).where(Ask.id == ask_id, Ask.group_id == group.id).with_for_update())
            if ask is None:
                raise click.ClickException(f"no ask {ask_id} in {group.slug}")
            if ask.status not in control.WAITING:
                raise click.ClickException(f"ask {ask_id} is {ask.status}: only a waiting or held ask can be {action}d")
            if action == "approve":
                queued += control.approve(session, settings, ask, clock.now())
            else:
                queued += control.hold(session, settings, ask, note, f"cli{clock.now().isoformat()}")
            click.echo(f"ask {ask_id}: {ask.status}")
        session.commit()
        limit = f"at most {group.asks_per_week} per member a week" if group.asks_per_week else "no weekly limit"
        click.echo(f"{group.name}: asks {'need approval' if group.asks_need_approval else 'circulate without approval'}"
                   f", {limit}, {group.ask_circulation}")
        asks = session.scalars(select(Ask).where(Ask.group_id == group.id).order_by(Ask.id)).all()
        if not asks:
            click.echo("No asks yet.")
        for status in ORDER:
            these = [a for a in asks if a.status == status]
            if not these:
                continue
            click.echo(f"{status.replace('_', ' ').capitalize()} ({len(these)}):")
            for ask in these:
                text = " ".join(ask.text.split())
                click.echo(f"  #{ask.id} {ask.member.name} [{KIND_LABELS.get(ask.kind, 'Other')}]: "
                           f"{text[:100]}{'…' if len(text) > 100 else ''}")
                for offer in ask.offers:
                    click.echo(f"      offer from {offer.member.name} ({offer.created_at:%Y-%m-%d})")
                if ask.note and status == AskStatus.HELD:
                    click.echo(f"      held: {ask.note}")
                if closure.is_withdrawn(ask):
                    click.echo("      withdrawn by the asker")
                if ask.thanked:
                    click.echo(f"      thanked: {ask.thanked}")
    jobs.enqueue_sends(queued)
