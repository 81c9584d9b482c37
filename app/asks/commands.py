"""`roundtable asks GROUP`: the group's asks (open, answered, closed, waiting); approve or hold one."""

from __future__ import annotations

import click
from sqlalchemy import select

from app import clock, db, jobs, roster
from app.asks import control
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
def asks_command(group_slug: str, approve_id: int | None, hold_id: int | None, note: str) -> None:
    """List GROUP's asks: waiting, open, answered, closed; who offered help."""
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
        for ask_id, action in ((approve_id, "approve"), (hold_id, "hold")):
            if ask_id is None:
                continue
            ask = session.scalar(select(Ask).where(Ask.id == ask_id, Ask.group_id == group.id).with_for_update())
            if ask is None:
                raise click.ClickException(f"no ask {ask_id} in {group.slug}")
            if action == "approve":
                queued += control.approve(session, settings, ask, clock.now())
            else:
                queued += control.hold(session, settings, ask, note, f"cli{clock.now().isoformat()}")
            if not queued:
                raise click.ClickException(f"ask {ask_id} is {ask.status}: only a waiting or held ask can be {action}d")
            click.echo(f"ask {ask_id}: {ask.status}")
        session.commit()
        asks = session.scalars(select(Ask).where(Ask.group_id == group.id).order_by(Ask.id)).all()
        if not asks:
            click.echo(f"{group.name}: no asks yet")
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
                if ask.thanked:
                    click.echo(f"      thanked: {ask.thanked}")
    jobs.enqueue_sends(queued)
