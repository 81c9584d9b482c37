"""The one clock. Pure code takes `now` from its caller; the edges (commands, views, jobs and
column defaults) read it here, so that a test can set it for everything at once."""

from __future__ import annotations

from datetime import UTC, datetime

_fixed: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware UTC (or the time `set_now` fixed)."""
    return _fixed if _fixed is not None else datetime.now(UTC)


def set_now(value: datetime | None) -> None:
    """Fix the clock at `value` for this process; None gives it back to the real time."""
    global _fixed
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given; pass a timezone-aware datetime")
    _fixed = None if value is None else value.astimezone(UTC)
