"""The asks' part of the periodic tick: digests due, and follow-ups on asks open 14 days."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.asks import circulate, closure
from app.settings import Settings


def tick(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Queue the ask emails due now; returns their ids for after the commit. Flushes; safe to
    run twice and two at once (row locks, dedupe keys)."""
    return circulate.queue_due(session, settings, now) + closure.queue_follow_ups(session, settings, now)
