"""Why each line of a reply was kept or cut: what `roundtable parse --explain` shows. Pure.

The trimmer decides once; this reads its result back against the body, line by line, and names
the rule that explains each cut line, so a facilitator (or a developer) can see why a member's
words went missing, or why a quote leaked.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.reading import trimming
from app.reading.request import OwnText, SentRequest


@dataclass(frozen=True)
class LineVerdict:
    number: int  # 1-based, in the body as read (after MIME decoding and HTML to text)
    text: str
    is_kept: bool
    reason: str  # "" when kept


def explain(body: str, kept_text: str, request: SentRequest | None = None) -> list[LineVerdict]:
    """Each line of `body`, kept or cut and why, given the text the trimmer kept from it."""
    lines = [line.rstrip() for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    own = OwnText(request) if request is not None else None
    kept = [" ".join(trimming._unquote(line).split()) for line in kept_text.split("\n")]
    kept_at = 0
    below = ""  # the cut the lines under it belong to
    verdicts: list[LineVerdict] = []
    for index, line in enumerate(lines):
        bare = " ".join(trimming._unquote(line).split())
        if not bare:
            verdicts.append(LineVerdict(index + 1, line, True, ""))
            continue
        window = range(kept_at, min(kept_at + 50, len(kept)))
        found = next((k for k in window if bare in kept[k]), None)
        if found is not None:
            kept_at = found + (1 if kept[found] == bare else 0)
            verdicts.append(LineVerdict(index + 1, line, True, ""))
            continue
        part = next((k for k in window if len(kept[k]) > 3 and kept[k] in bare), None)
        if part is not None:
            kept_at = part + 1
            verdicts.append(LineVerdict(index + 1, line, True, "kept in part: a quote header ended the line"))
            continue
        reason = _reason(lines, index, own)
        if reason is None:
            reason = below or "a closing, signature or note around the update"
        elif reason.startswith(("signature delimiter", "quote header", "separator")):
            below = f"below the {reason.split(' (')[0]} on line {index + 1}"
        verdicts.append(LineVerdict(index + 1, line, False, reason))
    return verdicts


def _reason(lines: list[str], index: int, own: OwnText | None) -> str | None:
    line = lines[index]
    if own is not None and own.is_ours(trimming._unquote(line)):
        return "our request (matched against the request we sent)"
    if trimming._is_our_marker(line):
        return "our request's reply-above marker"
    if trimming._is_footer(line):
        return "mobile or webmail footer"
    if trimming._is_quoted(line):
        return "quoted (>)"
    if trimming._SEPARATOR.fullmatch(line):
        return "separator (Original or Forwarded message)"
    if trimming._quote_header(lines, index) is not None:
        return "quote header (On ... wrote:, From:/Sent:/To: block)"
    if trimming._is_delimiter(line):
        return "signature delimiter (-- or a line of underscores)"
    return None
