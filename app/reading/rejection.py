"""Why an inbound message did not become part of an update: named reasons, as Discourse's
receiver names its rejections. Stored at the start of the row's `reason`, the detail after it."""

from __future__ import annotations

from enum import StrEnum


class Rejection(StrEnum):
    MACHINE_MAIL = "machine mail"  # a bounce, an auto-reply, a feedback report...: never answered
    NO_TOKEN = "no reply token or thread of ours"  # not an answer to any request of ours


def rejected(why: Rejection, detail: str) -> str:
    """The stored reason: the named rejection, then what exactly."""
    return f"{why}: {detail}" if detail else str(why)


def rejection_of(reason: str | None) -> Rejection | None:
    """The named rejection a stored reason starts with, if any."""
    return next((why for why in Rejection if (reason or "").startswith(str(why))), None)
