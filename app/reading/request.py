"""What only we know about a reply: the exact request it answers. Pure.

Every reply quotes our update request, whose text we rendered ourselves. A line of the reply that
is a piece of that text (after unquoting, rewrapping, HTML-to-text and whitespace) is ours, not the
member's, wherever the client put it and whatever it did to the `>` marks. `mark_ours` quotes
such lines again, so the trimmer treats an unquoted copy (Outlook's original under its header
block, a forward, a webmail that drops the marks) like any quote, and the member's inline answers
between them stay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line this long (letters and digits only) that is a piece of our request was copied from it;
# a shorter one must be a whole line of the request ("Wins", "Business:"), so a member's "Done"
# or "Second shift lead" is never taken for ours by chance.
_MIN_PIECE = 16
_MIN_STREAM_WORDS = 3
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> str:
    """Letters and digits only, words joined by one space, case folded: the form we compare."""
    return " ".join(_WORD.findall(text.casefold()))


@dataclass(frozen=True)
class SentRequest:
    """The text of the request a reply answers: its text alternative and its HTML as text."""

    text: str
    html_text: str = ""

    @property
    def lines(self) -> frozenset[str]:
        return frozenset(
            w for body in (self.text, self.html_text) for line in body.splitlines() if (w := _words(line))
        )

    @property
    def stream(self) -> str:
        """The words of both alternatives, in order, for finding a piece a client rewrapped.
        Short lines (labels, headings) are left out, each only a whole line of ours: "Business |
        Personal | Family" in a member's table is no piece of "Business:" / "Personal:" / "Family:"."""
        parts = [
            " ".join(w for line in body.splitlines() if len((w := _words(line)).split()) >= _MIN_STREAM_WORDS)
            for body in (self.text, self.html_text)
        ]
        return f" {parts[0]} | {parts[1]} "


class OwnText:
    """Answers "is this line ours?" for one request, fast enough for long replies."""

    def __init__(self, request: SentRequest) -> None:
        self._lines = request.lines
        self._stream = request.stream

    def prefix_end(self, line: str) -> int:
        """Where a whole line of ours that starts `line` ends, with more words after it; 0 if
        none does."""
        matches = []
        for m in _WORD.finditer(line):
            matches.append(m)
            if len(matches) > _MAX_PREFIX_WORDS:
                break
        words = [m.group().casefold() for m in matches]
        for count in range(len(words) - 1, _MIN_PREFIX_WORDS - 1, -1):
            if " ".join(words[:count]) in self._lines:
                return matches[count - 1].end()
        return 0

    def is_ours(self, line: str, previous: str = "") -> bool:
        """Whether `line` is ours; `previous`, the line of ours just above it, lets the short
        tail of a line the client wrapped ("this month.") count too."""
        words = _words(line)
        if not words:
            return False
        if words in self._lines:
            return True
        if len(words) >= _MIN_PIECE:
            return f" {words} " in self._stream
        above = _words(previous)
        return bool(above) and len(above) >= _MIN_PIECE and f" {above} {words} " in self._stream


_QUOTE = re.compile(r"\s*(?:>\s?)+")


def _line_verdicts(own: OwnText, lines: list[str]) -> list[int]:
    """Per line: 2 a piece of our request long enough to be sure, 1 a short whole line of it
    ("WINS", "Business:"), 0 neither (blank lines 0 too)."""
    verdicts: list[int] = []
    previous = ""  # the last line of ours, for the wrapped tail of a line
    for line in lines:
        quote = _QUOTE.match(line)
        bare = line[quote.end() :] if quote else line
        if not bare.strip():
            verdicts.append(0)
            continue
        words = _words(bare)
        if own.is_ours(bare, previous):
            strong = len(words) >= _MIN_PIECE or bool(previous)
            verdicts.append(2 if strong else 1)
            previous = bare
        else:
            verdicts.append(0)
            previous = ""
    return verdicts


def mark_ours(text: str, request: SentRequest) -> tuple[str, int]:
    """`text` with every line that is a piece of our request quoted ("> "), and how many lines
    were marked that were not quoted before. Lines already quoted stay as they are.

    A short line of ours ("WINS", "Business:") counts only inside a run of our lines that holds
    a long one or a quoted one: a member's own "Wins" between their paragraphs stays theirs.
    """
    own = OwnText(request)
    lines = text.split("\n")
    verdicts = _line_verdicts(own, lines)
    quoted = [_QUOTE.match(line) is not None and bool(line.strip(" >\t\r")) for line in lines]
    marked_lines = list(lines)
    marked = 0
    index = 0
    while index < len(lines):
        if not verdicts[index]:
            index += 1
            continue
        # A run of our lines, blank lines inside it allowed.
        end = index
        last = index
        while end < len(lines) and (verdicts[end] or not lines[end].strip()):
            if verdicts[end]:
                last = end
            end += 1
        run = range(index, last + 1)
        before = next((i for i in range(index - 1, -1, -1) if lines[i].strip()), None)
        after = next((i for i in range(last + 1, len(lines)) if lines[i].strip()), None)
        anchored = any(verdicts[i] == 2 for i in run) or any(
            i is not None and quoted[i] for i in (before, after)
        )
        if anchored:
            for i in run:
                if verdicts[i] and not quoted[i]:
                    marked_lines[i] = "> " + lines[i]
                    marked += 1
        index = last + 1
    typed_in = _typed_into_quote(marked_lines, verdicts)
    return "\n".join(_answers_after_our_words(own, typed_in)), marked


_MAX_PREFIX_WORDS = 16
_MIN_PREFIX_WORDS = 3


def _answers_after_our_words(own: OwnText, lines: list[str]) -> list[str]:
    """Inside an unquoted copy of our request (Outlook's original), a line that starts with one
    of our lines and goes on with the member's answer ("Have the succession conversation with my
    brother [JW] Partial – ...") splits in two: our words quoted, the answer kept. Such lines
    count only in a run of them with our quoted lines right above and below."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    quoted = {i for i in content if _QUOTE.match(lines[i])}
    ends = {i: own.prefix_end(lines[i]) for i in content if i not in quoted}
    candidates = [i for i in content if ends.get(i)]
    if not candidates:
        return lines
    order = {index: n for n, index in enumerate(content)}
    split: set[int] = set()
    for index in candidates:
        n = order[index]
        up = n - 1
        while up >= 0 and ends.get(content[up]):
            up -= 1
        down = n + 1
        while down < len(content) and ends.get(content[down]):
            down += 1
        if up >= 0 and down < len(content) and content[up] in quoted and content[down] in quoted:
            split.add(index)
    result: list[str] = []
    for index, line in enumerate(lines):
        if index in split:
            result += ["> " + line[: ends[index]], line[ends[index] :].strip()]
        else:
            result.append(line)
    return result


def _depth(line: str) -> int:
    quote = _QUOTE.match(line)
    return quote.group().count(">") if quote else 0


_MIN_OURS_SHARE = 0.6  # of a quote's lines, for it to be our request (not a receipt quoting titles)


def _blocks_mostly_ours(lines: list[str], depths: list[int], verdicts: list[int]) -> set[int]:
    """Indexes of the lines of quotes (runs of quoted and blank lines) mostly made of our
    request's lines: a quote of our request, where a line not ours was typed by the member. A
    quote of our receipt shares the section titles only, and the member's earlier words in it
    stay quoted."""
    inside: set[int] = set()
    start = 0
    while start < len(lines):
        if not depths[start]:
            start += 1
            continue
        end = start
        while end < len(lines) and (depths[end] or not lines[end].strip()):
            end += 1
        quoted = [i for i in range(start, end) if depths[i] and lines[i].strip(" >\t\r")]
        ours = sum(1 for i in quoted if verdicts[i])
        if quoted and ours >= _MIN_OURS_SHARE * len(quoted):
            inside.update(range(start, end))
        start = end
    return inside


def _typed_into_quote(lines: list[str], verdicts: list[int]) -> list[str]:
    """Unquote what the member typed inside our quoted request ("> Business: 6" under the
    quoted label line): a quoted line that is not ours, with long lines of ours at its quote
    depth both above and below it in the same quote (a run of quoted and blank lines)."""
    depths = [_depth(line) for line in lines]
    ours_blocks = _blocks_mostly_ours(lines, depths, verdicts)
    # Per line, the quote depths with a long line of ours above it in its quote; then below.
    above: list[frozenset[int]] = []
    seen: set[int] = set()
    for index, line in enumerate(lines):
        if depths[index] == 0 and line.strip():
            seen = set()
        above.append(frozenset(seen))
        if verdicts[index] == 2 and depths[index]:
            seen.add(depths[index])
    result = list(lines)
    seen = set()
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if depths[index] == 0 and line.strip():
            seen = set()
            continue
        depth = depths[index]
        typed = depth and not verdicts[index] and line.strip(" >\t\r") and index in ours_blocks
        if typed and depth in seen and depth in above[index]:
            quote = _QUOTE.match(line)
            result[index] = line[quote.end() :] if quote else line
        if verdicts[index] == 2 and depth:
            seen.add(depth)
    return result


def is_ours(line: str, request: SentRequest) -> bool:
    """Whether one line (quote marks aside) is a piece of our request."""
    quote = _QUOTE.match(line)
    return OwnText(request).is_ours(line[quote.end() :] if quote else line)
