"""Malformed mail through `read_message`, the webhooks and `roundtable parse`.

Whatever arrives (broken boundaries, deep nesting, unknown charsets, NUL bytes, truncated
encodings, header names that look like Python attributes, or arbitrary bytes) must never crash
the reader, must be stored byte for byte with a 200, and must end up processed: a kind, and a
reason unless it was accepted. A multipart whose boundary is missing or wrong reads as a person
would read it: split at the boundary lines its body does have, else as plain text.
"""

from __future__ import annotations

import base64
import json
import os
import quopri
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import delete, func, inspect, select

from app import db
from app.cli import main
from app.cycles import queue_requests
from app.models import Base, Cycle, InboundMessage, OutboundMessage, Update
from app.reading.machine import Kind
from app.reading.message import CUT_NOTE, MAX_MIME_DEPTH, Reading, read_message
from app.settings import Settings
from tests.conftest import AUTH, NOW
from tests.mails import multipart

# Hypothesis imports its patch writer (libcst -> typing_inspect -> mypy_extensions.TypedDict, a
# DeprecationWarning) only when a property fails, and under `filterwarnings = error` that turns the
# failure report into an INTERNALERROR. Import it once, quietly. (Belongs in conftest.py.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst missing: hypothesis then skips the patch, no warning either
        pass

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
KINDS = {str(k) for k in Kind}
NL = b"\r\n"
ALICE = "Alice Chen <alice@northwind.example>"
FORUM = "in.forum.example"
DEEP = sys.getrecursionlimit() + 500  # multipart levels: past the limit however deep the stack



# --- building messages ---------------------------------------------------------------------------


def mime(*headers: str | bytes, body: str | bytes = b"hello\r\n", nl: bytes = NL) -> bytes:
    """A message from header lines and a body, bytes exactly as given (str is UTF-8)."""
    lines = [h.encode("utf-8") if isinstance(h, str) else h for h in headers]
    data = body.encode("utf-8") if isinstance(body, str) else body
    return nl.join(lines) + nl + nl + data


def common(*extra: str | bytes, subject: str | bytes = "Re: Your December update") -> tuple[str | bytes, ...]:
    subject_line = (b"Subject: " + subject) if isinstance(subject, bytes) else f"Subject: {subject}"
    return (
        f"From: {ALICE}",
        f"To: Roundtable <hello@{FORUM}>",
        subject_line,
        "Date: Thu, 19 Nov 2026 10:15:00 -0500",
        "Message-ID: <m1@mail.example>",
        "MIME-Version: 1.0",
        *extra,
    )


def shallow(error: BaseException) -> BaseException:
    """The same error without its traceback: pytest takes seconds over 1,000 recursive frames."""
    return type(error)(*error.args) if isinstance(error, RecursionError) else error


def read_shallow(raw: bytes) -> Reading:
    try:
        return read_message(raw)
    except RecursionError as error:
        raise shallow(error) from None


def part(content_type: str, body: bytes, *extra: str) -> bytes:
    return mime(f"Content-Type: {content_type}", *extra, body=body)


def multipart_body(boundary: str, *parts: bytes, close: bool = True) -> bytes:
    b = boundary.encode()
    return b"".join(b"--" + b + NL + p + NL for p in parts) + (b"--" + b + b"--" + NL if close else b"")


def nest(depth: int, inner: bytes) -> bytes:
    """`depth` levels of multipart/mixed around one part, under the common headers."""
    boundaries = [f"b{level}".encode() for level in range(depth)]
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=" + b + NL + NL + b"--" + b + NL for b in boundaries)
    closing = b"".join(NL + b"--" + b + b"--" + NL for b in reversed(boundaries))
    return b"".join(h.encode() + NL for h in common() if isinstance(h, str)) + opening + inner + closing


DEEP_TEXT = b"Content-Type: text/plain; charset=utf-8" + NL + NL + b"WINS" + NL + b"deep down here" + NL
JAPANESE = "WINS\r\n新しい工場が稼働しました。\r\n"


# --- hand-written cases for read_message ---------------------------------------------------------

Check = Callable[[Reading], bool]


def text_has(*needles: str) -> Check:
    return lambda r: all(needle in r.text for needle in needles)


def text_has_no_mime(*needles: str, boundary: str) -> Check:
    """The words are there, and none of the MIME around them."""
    return lambda r: (text_has(*needles)(r) and "Content-" not in r.text
                      and f"--{boundary}" not in r.text)


CASES: list[Any] = []


def case(name: str, raw: bytes, check: Check, *marks: pytest.MarkDecorator) -> None:
    CASES.append(pytest.param(raw, check, id=name, marks=marks))


# Boundaries.
case(
    "boundary_parameter_missing",
    mime(*common("Content-Type: multipart/mixed"),
         body=multipart_body("x", part("text/plain", b"WINS\r\nno boundary param"))),
    text_has("no boundary param"),
)
case(
    "boundary_never_appears",
    mime(*common('Content-Type: multipart/mixed; boundary="declared"'),
         body=multipart_body("other", part("text/plain", b"WINS\r\nwrong boundary"))),
    text_has("wrong boundary"),
)
case(
    "boundary_parameter_missing_html_only",
    mime(*common("Content-Type: multipart/alternative"),
         body=multipart_body("x", part("text/html; charset=utf-8", b"<p>WINS</p><p>only <b>html</b></p>"))),
    lambda r: text_has_no_mime("WINS", "only", "html", boundary="x")(r) and "<p>" not in r.text,
)
case(
    "boundary_parameter_missing_html_before_plain",
    mime(*common("Content-Type: multipart/alternative"),
         body=multipart_body("x", part("text/html", b"<p>WINS</p><p>marked up</p>"),
                             part("text/plain", b"WINS\r\nplain words"))),
    lambda r: text_has_no_mime("plain words", boundary="x")(r) and "marked up" not in r.text,
)
case(
    "boundary_never_appears_quoted_printable_part",
    mime(*common('Content-Type: multipart/mixed; boundary="declared"'),
         body=b"This is a multi-part message in MIME format.\r\n"
         + multipart_body("other", part("text/plain; charset=utf-8", b"WINS\r\nCaf=C3=A9 =\r\nopens soon",
                                        "Content-Transfer-Encoding: quoted-printable"),
                          part("application/pdf", b"%PDF-1.4", 'Content-Disposition: attachment; filename="a.pdf"'))),
    lambda r: text_has_no_mime("Café opens soon", boundary="other")(r) and "=C3" not in r.text
    and "PDF" not in r.text,
)
case(
    "boundary_never_appears_attachments_still_listed",
    mime(*common('Content-Type: multipart/mixed; boundary="declared"'),
         body=multipart_body("other", part("text/plain", b"WINS\r\nsee the deck"),
                             part("application/pdf", b"JVBERi0xLjQ=", "Content-Transfer-Encoding: base64",
                                  'Content-Disposition: attachment; filename="deck.pdf"'),
                             part("image/png", b"iVBORw0KGgo=", "Content-Transfer-Encoding: base64",
                                  "Content-ID: <logo@x>", "Content-Disposition: inline"))),
    lambda r: text_has_no_mime("see the deck", boundary="other")(r)
    and [(a.filename, a.content_type, a.data) for a in r.attachments] == [("deck.pdf", "application/pdf", b"%PDF-1.4")],
)
case(
    "boundary_parameter_missing_in_a_nested_part",
    mime(*common('Content-Type: multipart/mixed; boundary="outer"'),
         body=multipart_body("outer", mime("Content-Type: multipart/alternative",
                                           body=multipart_body("x", part("text/plain", b"WINS\r\nnested words"))),
                             part("application/pdf", b"%PDF-1.4", 'Content-Disposition: attachment; filename="a.pdf"'))),
    lambda r: text_has_no_mime("nested words", boundary="x")(r) and [a.filename for a in r.attachments] == ["a.pdf"],
)
case(
    "boundary_parameter_missing_no_boundary_lines",
    mime(*common("Content-Type: multipart/mixed; charset=iso-8859-1"), body=b"WINS\r\nM\xfcller said so\r\n"),
    text_has("Müller said so"),
)
case(
    "part_unterminated",
    mime(*common('Content-Type: multipart/alternative; boundary="b1"'),
         body=multipart_body("b1", part("text/plain", b"WINS\r\nnever closed"), close=False)),
    text_has("never closed"),
)
case(
    "part_header_block_unterminated",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64"),
    lambda r: r.kind == "reply" and r.text == "" and r.attachments == [],
)
case(
    "boundary_empty_string",
    mime(*common('Content-Type: multipart/mixed; boundary=""'),
         body=b"--\r\nContent-Type: text/plain\r\n\r\nWINS\r\nempty boundary\r\n----\r\n"),
    text_has("empty boundary"),
)
case(
    "second_part_opens_a_boundary_of_the_outer_level",
    mime(*common('Content-Type: multipart/mixed; boundary="outer"'),
         body=b"--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\n"
         b"Content-Type: text/plain\r\n\r\nWINS\r\ninner text\r\n--outer\r\nContent-Type: text/html\r\n\r\n"
         b"<p>stray</p>\r\n--outer--\r\n"),
    text_has("inner text"),
)
# Nesting: 200 levels must read (mail-parser raises MailParserRecursionError somewhere past 900):
# to MAX_MIME_DEPTH as a tree, below it flat, the text kept and the cut said.
case("nesting_200_levels", nest(200, DEEP_TEXT),
     lambda r: text_has("deep down here", CUT_NOTE)(r) and f"MIME cut at depth {MAX_MIME_DEPTH}" in r.reason)
# Huge headers.
case(
    "subject_1mb",
    mime(*common(subject="x" * (1 << 20)), body=b"WINS\r\nbig subject\r\n"),
    lambda r: r.subject.startswith("x" * 900) and "big subject" in r.text,
)
case(
    "ten_thousand_header_lines",
    mime(*common(*(f"X-Filler-{i}: value {i}" for i in range(10_000))), body=b"WINS\r\nmany headers\r\n"),
    lambda r: r.from_address == "alice@northwind.example" and "many headers" in r.text,
)
case(
    "one_header_folded_ten_thousand_times",
    mime(*common("X-Long: start" + "".join(f"\r\n\tfold {i}" for i in range(10_000))), body=b"WINS\r\nfolded\r\n"),
    text_has("folded"),
)
# Charsets.
case(
    "charset_x_unknown",
    mime(*common("Content-Type: text/plain; charset=x-unknown"), body=b"WINS\r\nunknown label\r\n"),
    text_has("unknown label"),
)
case(
    "charset_not_a_codec",
    mime(*common('Content-Type: text/plain; charset="no-such-charset-\\"x"'), body=b"WINS\r\nbogus label\r\n"),
    text_has("bogus label"),
)
case(  # mail-parser does not handle text/calendar, so the stdlib fallback reads it
    "text_calendar_unknown_charset",
    mime(*common("Content-Type: text/calendar; charset=x-unknown"), body=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"),
    lambda r: r.kind == "reply",
)
case(  # a blank text/plain part sends read_message to the fallback too
    "blank_text_unknown_charset",
    mime(*common("Content-Type: text/plain; charset=x-bogus"), body=b"  \r\n"),
    lambda r: r.kind == "reply" and r.text == "",
)
case(  # a NUL in the label: bytes.decode raises ValueError, not LookupError
    "charset_label_with_nul",
    mime(*common(b"Content-Type: text/plain; charset=utf-8\x00"), body=b""),
    lambda r: r.kind == "reply" and r.text == "",
)
case(
    "charset_utf8_with_latin1_bytes",
    mime(*common("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"),
         body="WINS\r\nGr\xfc\xdfe aus M\xfcnchen, caf\xe9.\r\n".encode("latin-1")),
    # The words around the bad bytes survive (today as U+FFFD; a cp1252 fallback would be nicer).
    text_has("WINS\nGr", "e aus M", "nchen, caf"),
)
case(
    "charset_utf7",
    mime(*common("Content-Type: text/plain; charset=utf-7"), body=b"WINS\r\nL'+AOk-t+AOk- was good.\r\n"),
    text_has("L'été was good."),
)
case(
    "charset_utf7_broken_shift",
    mime(*common("Content-Type: text/plain; charset=utf-7"), body=b"WINS\r\nbroken +AOk shift +ZZZ!\r\n"),
    text_has("WINS", "broken"),
)
case(
    "charset_iso_2022_jp_7bit",
    mime(*common("Content-Type: text/plain; charset=iso-2022-jp", "Content-Transfer-Encoding: 7bit"),
         body=JAPANESE.encode("iso-2022-jp")),
    text_has("新しい工場が稼働しました。"),
)
case(
    "charset_iso_2022_jp_base64",
    mime(*common("Content-Type: text/plain; charset=iso-2022-jp", "Content-Transfer-Encoding: base64"),
         body=base64.b64encode(JAPANESE.encode("iso-2022-jp"))),
    text_has("新しい工場が稼働しました。"),
)
case(
    "charset_iso_2022_jp_truncated_escape",
    mime(*common("Content-Type: text/plain; charset=iso-2022-jp", "Content-Transfer-Encoding: base64"),
         body=base64.b64encode(JAPANESE.encode("iso-2022-jp")[:-7] + b"\x1b$")),
    text_has("WINS"),
)
case(
    "encoded_subject_iso_2022_jp",
    mime(*common(subject="=?ISO-2022-JP?B?" + base64.b64encode("会議".encode("iso-2022-jp")).decode() + "?=")),
    lambda r: r.subject == "会議",
)
case(
    "encoded_words_unknown_charset_and_bad_base64",
    mime(*common(b"From: =?x-bogus?b?////?= <bob@example.com>",
                 subject="=?x-bogus?q?caf=E9?= =?utf-8?b?!!!notbase64?=")),
    lambda r: r.from_address == "alice@northwind.example" and r.text == "hello",
)
# NUL bytes.
case(
    "nul_in_headers_and_body",
    mime(b"From: Alice\x00Chen <alice@northwind.example>", b"Subject: a\x00b", b"X-Nul: \x00\x00",
         body=b"WINS\r\nbefore\x00after\r\n"),
    lambda r: r.from_address == "alice@northwind.example" and "before" in r.text and "after" in r.text,
)
# Truncated transfer encodings.
case(
    "base64_truncated",
    mime(*common("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"),
         body=base64.b64encode(b"WINS\nHello from the truncated world")[:-5]),
    text_has("Hello from the"),
)
case(
    "base64_garbage_characters",
    mime(*common("Content-Type: text/plain", "Content-Transfer-Encoding: base64"),
         body=b"V0lOUwp!!!@@@\x80\xffaGk=\r\n==="),
    text_has("WINS"),
)
case(
    "quoted_printable_truncated",
    mime(*common("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"),
         body=quopri.encodestring("WINS\nCafé crème brûlée".encode())[:-4] + b"=C3="),
    text_has("WINS\nCafé crème br"),
)
case(
    "unknown_transfer_encoding",
    mime(*common("Content-Type: text/plain", "Content-Transfer-Encoding: x-rot13-ish"), body=b"WINS\r\nplain anyway\r\n"),
    text_has("plain anyway"),
)
# Missing or garbage headers.
case(
    "no_message_id_date_or_from",
    mime(f"To: hello@{FORUM}", "Subject: anonymous", body=b"WINS\r\nwho am I\r\n"),
    lambda r: r.from_address == "" and r.reply_to_ids == [] and "who am I" in r.text,
)
case(
    "date_garbage",
    mime(*common("Date: the day after tomorrow, 99:99 +9999"), body=b"WINS\r\ndate?\r\n"),
    text_has("date?"),
)
case(
    "rfc2047_from_with_comma",
    mime("From: =?iso-8859-1?Q?M=FCller=2C_Hans?= <hans@example.de>", *common()[1:], body=b"WINS\r\nHallo\r\n"),
    lambda r: r.from_address == "hans@example.de",
)
case(
    "from_address_repeated_as_display_name",
    mime("From: alice@northwind.example <alice@northwind.example>", *common()[1:]),
    lambda r: r.from_address == "alice@northwind.example",
)
case(
    "header_names_colliding_with_python_attributes",
    mime(*common("headers: boom", "__class__: x", "__dict__: y", "text_plain: z", "attachments: none",
                 "body: b", "message: m", "defects: d", "mail: q", "from_: evil@example.com"),
         body=b"WINS\r\nattribute names\r\n"),
    lambda r: r.attachments == [] and r.from_address == "alice@northwind.example" and "attribute names" in r.text,
)
case(
    "header_lines_without_colon_and_8bit_names",
    mime(*common(), b"this line has no colon", b"X-\xff\xfe: v", b": empty name", body=b"WINS\r\ncolons\r\n"),
    lambda r: r.from_address == "alice@northwind.example" and "colons" in r.text,
)
# Bodies.
case("empty_body", mime(*common(), body=b""), lambda r: r.kind == "reply" and r.text == "")
case("empty_message", b"", lambda r: r.from_address == "" and r.text == "" and r.tokens == [])
case(
    "only_an_attachment",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=multipart_body("b1", part("application/pdf", base64.b64encode(b"%PDF-1.4 fake"),
                                        "Content-Transfer-Encoding: base64",
                                        'Content-Disposition: attachment; filename="../Q4 plan.pdf"'))),
    lambda r: r.text == ""
    and [(a.filename, a.content_type, a.size) for a in r.attachments] == [("Q4 plan.pdf", "application/pdf", 13)],
)
case(
    "attachment_filename_rfc2231_garbage",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=multipart_body("b1", part("text/plain", b"WINS\r\nsee attached"),
                             part("application/octet-stream", b"AAAA", "Content-Transfer-Encoding: base64",
                                  "Content-Disposition: attachment; filename*=x-bogus'en'%E2%80%FF%00evil/..\\name"))),
    lambda r: len(r.attachments) == 1
    and not set("/\\\x00") & set(r.attachments[0].filename)
    and "see attached" in r.text,
)
case(
    "forwarded_message_rfc822",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=multipart_body("b1", part("text/plain", b"WINS\r\nForwarding what I sent last week."),
                             part("message/rfc822", mime("From: old@example.com", "Subject: old",
                                                         body=b"THE OLD ORIGINAL TEXT\r\n")))),
    lambda r: "Forwarding what I sent" in r.text and "THE OLD ORIGINAL TEXT" not in r.text,
)
case(
    "message_rfc822_truncated",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=b"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: old@example.com\r\n"
         b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n"),
    lambda r: r.kind == "reply" and r.from_address == "alice@northwind.example",
)
case(
    "backslash_u_and_windows_paths",
    mime(*common("Content-Type: text/plain; charset=utf-8"),
         body="WINS\r\nSaved to C:\\Users\\alice\\new\\plan.txt, see \\u00e9, \\N{BULLET} and \\x41\r\n"),
    text_has("C:\\Users\\alice\\new\\plan.txt", "\\u00e9", "\\N{BULLET}", "\\x41"),
)
case(
    "eight_bit_utf8_without_cte",
    mime(*common("Content-Type: text/plain; charset=utf-8"), body="WINS\r\nHallo — ja, passt.\r\n"),
    text_has("Hallo — ja, passt."),
)
case("cr_only_line_ends", mime(*common(), body=b"WINS\rold mac line ends\r", nl=b"\r"), text_has("old mac line ends"))
case(
    "html_only_broken_markup_unknown_charset",
    mime(*common("Content-Type: text/html; charset=x-bogus"),
         body=b"<html><body><p>WINS<p>unclosed <b>bold <script>alert(1)</script><div><table><tr><td>cell"),
    lambda r: "unclosed" in r.text and "cell" in r.text and "alert" not in r.text,
)
case(
    "content_type_parameters_garbage",
    mime(*common('Content-Type: text/plain; charset="utf-8; ;;; format=flowed; charset*=\'\'%FF; =='),
         body=b"WINS\r\nparams\r\n"),
    text_has("params"),
)


def assert_sound(reading: Reading) -> dict[str, Any]:
    """What every reading must be, however bad the input: a known kind, a reason, JSON."""
    assert isinstance(reading, Reading)
    assert isinstance(reading.kind, str) and reading.kind in KINDS
    assert isinstance(reading.reason, str) and reading.reason
    assert isinstance(reading.text, str) and isinstance(reading.from_address, str)
    assert all(isinstance(t, str) and len(t) == 32 for t in reading.tokens)
    data = reading.to_json()
    assert json.loads(json.dumps(data)) == data
    return data


@pytest.mark.parametrize(("raw", "check"), CASES)
def test_read_message_on_malformed_mail(raw: bytes, check: Check) -> None:
    reading = read_message(raw)
    assert_sound(reading)
    assert check(reading), {k: str(v)[:200] for k, v in reading.to_json().items()}


@pytest.mark.parametrize(
    "headers",
    [("Content-Type: application/pdf", "Content-Disposition: attachment"), ("Content-Type: text/rtf",)],
    ids=["disposition_without_filename", "rtf_without_filename"],
)
def test_an_unnamed_attachment_reads_the_same_every_time(headers: tuple[str, ...]) -> None:
    raw = mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
               body=multipart_body("b1", part("text/plain", b"WINS\r\nsee attached"),
                                   mime(*headers, body=b"{\\rtf1 plan}")))
    names = {tuple(a.filename for a in read_message(raw).attachments) for _ in range(5)}
    assert len(names) == 1, names


def test_read_message_survives_nesting_past_the_recursion_limit() -> None:
    reading = read_shallow(nest(DEEP, DEEP_TEXT))
    assert_sound(reading)


def test_deep_nesting_is_read_to_the_limit_and_the_text_below_kept() -> None:
    """1,000+ levels used to read as an empty update. Now: a tree to MAX_MIME_DEPTH, the parts
    below it read flat, and the reading says so, in its reason and in the text the update keeps."""
    reading = read_shallow(nest(DEEP, DEEP_TEXT))
    assert reading.kind == "reply"
    assert f"MIME cut at depth {MAX_MIME_DEPTH}" in reading.reason
    assert reading.text == f"{CUT_NOTE}\n\nWINS\ndeep down here"
    assert reading.sections["texts"] == {"other": CUT_NOTE, "wins": "deep down here"}


def test_nesting_to_the_limit_reads_as_before_and_one_more_level_is_cut() -> None:
    at_limit = read_message(nest(MAX_MIME_DEPTH, DEEP_TEXT))
    assert at_limit.text == "WINS\ndeep down here" and "cut" not in at_limit.reason
    past = read_message(nest(MAX_MIME_DEPTH + 1, DEEP_TEXT))
    assert past.text == f"{CUT_NOTE}\n\nWINS\ndeep down here"


def test_parts_below_the_cut_keep_their_files_and_prefer_plain_text() -> None:
    inner = mime(
        'Content-Type: multipart/mixed; boundary="leaf"',
        body=multipart_body(
            "leaf",
            mime('Content-Type: multipart/alternative; boundary="alt"',
                 body=multipart_body("alt", part("text/plain", b"WINS\r\nsee the plan"),
                                     part("text/html", b"<p>WINS</p><p>see the plan (html)</p>"))),
            part("application/pdf", b"%PDF-1.4 plan", 'Content-Disposition: attachment; filename="plan.pdf"'),
        ),
    )
    reading = read_shallow(nest(DEEP, inner))
    assert reading.sections["texts"]["wins"] == "see the plan"
    assert [(a.filename, a.data) for a in reading.attachments] == [("plan.pdf", b"%PDF-1.4 plan")]


def test_a_deep_chain_of_attached_messages_keeps_the_innermost_text() -> None:
    body = DEEP_TEXT
    for _ in range(DEEP):  # message/rfc822 inside message/rfc822: no boundary lines at all
        body = b"Content-Type: message/rfc822" + NL + NL + b"From: fwd@example.com" + NL + body
    raw = b"".join(h.encode() + NL for h in common() if isinstance(h, str)) + body
    reading = read_shallow(raw)
    assert reading.sections["texts"]["wins"] == "deep down here"
    assert reading.text.startswith(CUT_NOTE)


SIZE_PROBE = """
import sys
from app.reading.message import read_message
raw = sys.stdin.buffer.read()
reading = read_message(raw)
assert "WINS" in reading.text, reading.text[:40]
"""
REPLY_HEAD = b"From: Alice Chen <alice@northwind.example>\r\nSubject: Re: x\r\n\r\nWINS\r\nhello\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(REPLY_HEAD + b"a" * (1 << 18), id="a_256kb_word"),
        pytest.param(REPLY_HEAD + b"\r\n" * 40_000 + b"bye\r\n", id="forty_thousand_blank_lines"),
    ],
)
def test_big_but_plain_bodies_are_read_in_seconds(raw: bytes) -> None:
    """A pasted blob or a page of blank lines must not hang the worker (today: 2 s for a 20 KB
    word, 66 s for 40,000 blank lines). Run apart so a hang can be killed; each of these reads
    in under 2 s, interpreter start included, once the patterns are linear."""
    subprocess.run([sys.executable, "-c", SIZE_PROBE], input=raw, check=True, timeout=5,
                   cwd=Path(__file__).resolve().parent.parent)


@pytest.mark.parametrize("depth", [DEEP, 20 * DEEP])
def test_deep_nesting_is_read_in_bounded_time(depth: int) -> None:
    """Linear below the cut: 30,000 levels (2 MB) read in seconds, not a stack overflow."""
    raw = nest(depth, DEEP_TEXT)
    result = subprocess.run(
        [sys.executable, "-c", SIZE_PROBE], input=raw, capture_output=True, timeout=20,
        cwd=Path(__file__).resolve().parent.parent, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]


# --- generated input -------------------------------------------------------------------------------

CHARSETS = [
    "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "utf-7", "iso-2022-jp", "shift_jis", "utf-16",
    "x-unknown", "unknown-8bit", "x-bogus", "", '"utf-8', "utf-8\x00", "ks_c_5601-1987", "gb2312",
]
CTES = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "garbage", ""]
HEADER_NAMES = [
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Reply-To",
    "Sender", "Return-Path", "Auto-Submitted", "Precedence", "X-Autoreply", "List-Id", "Delivered-To",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID", "MIME-Version",
    "Received", "X-Failed-Recipients", "headers", "__class__", "text_plain", "body", "attachments",
]
HEADER_VALUES = [
    ALICE, "<>", "MAILER-DAEMON@mx.example", "auto-replied", "bulk", "yes", "undisclosed-recipients:;",
    "=?iso-8859-1?Q?M=FCller=2C_Hans?= <hans@example.de>", "=?utf-8?b?!!!?=", "=?x-bogus?q?a=FF?=",
    "garbage date 99:99", "<id@x> <id2@y>", "multipart/report; report-type=delivery-status; boundary=r",
    "text/plain; charset=x-unknown", "attachment; filename*=utf-8''%E2%80", f"reply+{'a' * 32}@{FORUM}",
]
NAME_CHARS = "".join(chr(c) for c in range(33, 127) if chr(c) != ":")
# Strategies are built once here: building them inside composites makes generation the slow part.
SHORT_TEXT = st.text(st.sampled_from("aZ09 .,;:<>@=?\\\"'-\t\x00äé€日本\U0001f600\u202e"), max_size=40)
HEADER_NAME = st.one_of(st.sampled_from(HEADER_NAMES), st.text(NAME_CHARS, min_size=1, max_size=20))
ENCODED_WORD = st.tuples(st.sampled_from(CHARSETS), st.sampled_from("bqBQx"), st.binary(max_size=20)).map(
    lambda t: f"=?{t[0]}?{t[1]}?".encode() + base64.b64encode(t[2]) + b"?="
)
HEADER_VALUE = st.one_of(
    st.sampled_from(HEADER_VALUES).map(str.encode),
    SHORT_TEXT.map(lambda s: s.encode("utf-8")),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    ENCODED_WORD,
)
HEADER_LINE = st.builds(
    lambda name, value, folded: name.encode() + b": " + value + (b"\r\n\t" + value[:10] if folded else b""),
    HEADER_NAME, HEADER_VALUE, st.booleans(),
)
BODY_TEXT = st.one_of(SHORT_TEXT, st.just("WINS\nC:\\Users\\x \\u00e9\n\nCHALLENGES\nmore"))


def leaf(charset: str, cte: str, text: str, junk: bytes, cut: float | None, content_type: str, attached: bool) -> bytes:
    try:
        data = text.encode(charset.strip('"').rstrip("\x00") or "utf-8")
    except (LookupError, UnicodeError):
        data = junk
    if cte == "base64":
        data = base64.b64encode(data)
    elif cte == "quoted-printable":
        data = quopri.encodestring(data)
    if cut is not None:  # truncated somewhere
        data = data[: int(len(data) * cut)]
    head = [f"Content-Type: {content_type}; charset={charset}".encode()]
    if attached:
        head.append(b'Content-Disposition: attachment; filename="a.bin"')
    if cte:
        head.append(f"Content-Transfer-Encoding: {cte}".encode())
    return NL.join(head) + NL + NL + data


LEAF = st.builds(
    leaf,
    st.sampled_from(CHARSETS),
    st.sampled_from(CTES),
    BODY_TEXT,
    st.binary(max_size=60),
    st.one_of(st.none(), st.floats(0, 1)),
    st.sampled_from(["text/plain", "text/plain", "text/html", "text/calendar", "application/pdf", "image/png",
                     "message/delivery-status", "text/x-unknown"]),
    st.booleans(),
)


def multipart_part(
    children: list[bytes], subtype: str, boundary: str, wrong: str | None, declared: bool, preamble: bytes, close: bool
) -> bytes:
    used = boundary if wrong is None else wrong
    params = f'; boundary="{boundary}"' if declared else ""
    body = preamble.replace(b"@", used.encode()) + multipart_body(used, *children, close=close)
    return f"Content-Type: multipart/{subtype}{params}".encode() + NL + NL + body


def wrapped(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A multipart around some children (wrong, missing or unclosed boundaries at times), or
    a message/rfc822 around one."""
    boundaries = st.sampled_from(["b", "==x==", "a b", "very-long-" + "y" * 80])
    return st.one_of(
        st.builds(
            multipart_part,
            st.lists(children, max_size=3),
            st.sampled_from(["mixed", "alternative", "related", "report", "signed", "digest"]),
            boundaries,
            st.one_of(st.none(), st.none(), st.none(), st.sampled_from(["other", ""])),
            st.integers(0, 6).map(bool),
            st.sampled_from([b"", b"This is a multi-part message.\r\n", b"--@x\r\n"]),
            st.booleans(),
        ),
        st.builds(
            lambda lines, inner: b"Content-Type: message/rfc822" + NL + NL + NL.join(lines) + NL + inner,
            st.lists(HEADER_LINE, max_size=3),
            children,
        ),
    )


MIME_TREE = st.recursive(LEAF, wrapped, max_leaves=8)


@st.composite
def near_mime(draw: st.DrawFn) -> bytes:
    """Header lines, then a MIME tree with wrong boundaries, truncations and odd charsets;
    line ends of any kind; sometimes a few random bytes spliced in."""
    raw = NL.join(draw(st.lists(HEADER_LINE, max_size=8))) + NL + draw(MIME_TREE)
    raw = raw.replace(b"\r\n", draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r"])))
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    return raw


READ = hsettings(max_examples=100, deadline=None)


def read(raw: bytes, *args: Any) -> Reading:
    return read_message(raw, *args)


@READ
@given(st.binary(max_size=4000))
def test_read_message_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert_sound(read(raw))


@READ
@given(near_mime())
def test_read_message_never_raises_on_near_mime(raw: bytes) -> None:
    data = assert_sound(read(raw))
    again = read(raw).to_json()
    assert again == data  # the same bytes read the same twice, attachment names included
    if data["kind"] != "reply":
        assert data["text"] == "" and data["sections"] == {}


@READ
@given(near_mime(), st.text("0123456789abcdef", min_size=32, max_size=32))
def test_reply_token_in_to_survives_any_body(raw: bytes, token: str) -> None:
    reading = read(f"To: Roundtable <reply+{token}@{FORUM}>".encode() + NL + raw)
    assert_sound(reading)
    assert token in reading.tokens


# --- through the webhooks ---------------------------------------------------------------------------

KEEP = {"groups", "facilitators", "members", "member_addresses", "cycles", "update_requests"}


def send_requests(session: Any, settings: Settings, cycle: Cycle) -> dict[str, str]:
    queue_requests(session, settings, cycle)
    session.commit()
    return {r.member.email: r.token for r in cycle.requests}


def raw_mode_post(raw: bytes, envelope_to: list[str], envelope_from: str = "alice@northwind.example") -> tuple[bytes, str]:
    """A raw-mode post built without parsing `raw` (tests/mails.raw_mode parses it)."""
    return multipart({
        "envelope": json.dumps({"to": envelope_to, "from": envelope_from}),
        "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
        "SPF": "pass",
        "email": raw,
    })


def post(client: Any, body_and_type: tuple[bytes, str], path: str = "/inbound/sendgrid") -> Any:
    body, content_type = body_and_type
    return client.post(path, data=body, headers={**AUTH, "Content-Type": content_type})


def stored(settings: Settings) -> list[InboundMessage]:
    with db.session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))
        session.expunge_all()
    return rows


def assert_processed(row: InboundMessage) -> None:
    summary = (row.id, row.status, row.kind, row.reason)
    assert row.status != "received", summary
    assert row.kind, summary
    if row.status != "accepted":
        assert row.reason, summary


def outbound_floor(settings: Settings) -> int:
    with db.session_scope(settings.database_url) as session:
        return session.scalar(select(func.coalesce(func.max(OutboundMessage.id), 0))) or 0


def forget_mail(settings: Settings, floor: int) -> None:
    """Delete what one example made: inbound rows, updates, and the mail they queued."""
    engine = db.engine_for(settings.database_url)
    with engine.begin() as connection:
        present = set(inspect(connection).get_table_names())
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in KEEP or table.name not in present:
                continue
            if table.name == OutboundMessage.__tablename__:
                connection.execute(delete(table).where(table.c.id > floor))
            else:
                connection.execute(delete(table))


SLOW = {"subject_1mb", "ten_thousand_header_lines"}  # on /inbound/raw below


WEBHOOK_CASES = [pytest.param(p.values[0], id=p.id) for p in CASES if p.id not in SLOW]


@pytest.mark.parametrize("raw", WEBHOOK_CASES)
def test_webhook_stores_and_processes_malformed_mail(client, settings, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    response = post(client, raw_mode_post(raw, [f"hello@{FORUM}"]))
    assert response.status_code == 200, response.data
    (row,) = stored(settings)
    assert row.raw == raw and row.source == "sendgrid-raw"
    assert_processed(row)
    assert row.kind == read_message(raw).kind


@pytest.mark.parametrize(
    "name", ["subject_1mb", "ten_thousand_header_lines", "nesting_200_levels", "empty_message", "backslash_u"]
)
def test_raw_endpoint_stores_and_processes_malformed_mail(client, settings, name: str) -> None:  # type: ignore[no-untyped-def]
    raw = next(p.values[0] for p in CASES if p.id.startswith(name))
    response = client.post("/inbound/raw", query_string={"to": f"hello@{FORUM}"}, data=raw,
                           headers={**AUTH, "Content-Type": "message/rfc822"})
    assert response.status_code == 200, response.data
    (row,) = stored(settings)
    assert row.raw == raw and row.source == "raw"
    assert_processed(row)


MEMBER_CASES = [
    "nesting_200_levels", "charset_x_unknown", "charset_utf8_with_latin1_bytes", "base64_truncated",
    "quoted_printable_truncated", "header_names_colliding_with_python_attributes", "only_an_attachment",
    "forwarded_message_rfc822", "backslash_u_and_windows_paths", "html_only_broken_markup_unknown_charset",
    "empty_body", "date_garbage", "boundary_never_appears_quoted_printable_part",
]


@pytest.mark.parametrize("name", MEMBER_CASES)
def test_malformed_reply_from_a_member_becomes_an_update(client, session, settings, cycle, name: str) -> None:  # type: ignore[no-untyped-def]
    token = send_requests(session, settings, cycle)["alice@northwind.example"]
    raw = next(p.values[0] for p in CASES if p.id == name)
    response = post(client, raw_mode_post(raw, [f"reply+{token}@{FORUM}"]))
    assert response.status_code == 200, response.data
    (row,) = stored(settings)
    assert row.status == "accepted", (row.status, row.reason)
    update = session.scalars(select(Update).where(Update.inbound_message_id == row.id)).one()
    assert update.text == read_message(raw, "alice@northwind.example", [f"reply+{token}@{FORUM}"]).text


def test_webhook_deep_nesting_is_processed_not_left_pending(client, settings) -> None:  # type: ignore[no-untyped-def]
    raw = nest(DEEP, DEEP_TEXT)
    response = post(client, raw_mode_post(raw, [f"hello@{FORUM}"]))
    assert response.status_code == 200
    (row,) = stored(settings)
    assert row.raw == raw
    if row.status == "received":  # the in-process job logged the failure and left the row pending
        read_shallow(raw)  # raise it here so the xfail names the error
    assert_processed(row)


def test_deep_nesting_from_a_member_keeps_the_text_found_and_the_facilitator_sees_the_cut(  # type: ignore[no-untyped-def]
    client, session, settings, cycle
) -> None:
    from app.models import Packet
    from app.packets import compile_packet

    token = send_requests(session, settings, cycle)["alice@northwind.example"]
    assert post(client, raw_mode_post(nest(DEEP, DEEP_TEXT), [f"reply+{token}@{FORUM}"])).status_code == 200
    (row,) = stored(settings)
    assert row.status == "accepted", (row.status, row.reason)
    update = session.scalars(select(Update).where(Update.inbound_message_id == row.id)).one()
    assert update.sections["texts"] == {"other": CUT_NOTE, "wins": "deep down here"}
    # The receipt tells the member, the packet the facilitator, in the update's own words.
    receipt = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "receipt")).one()
    assert CUT_NOTE in [c["text"] for c in receipt.context["captured"]]
    session.expire_all()  # the webhook's own session wrote the update
    packet = session.get_one(Packet, compile_packet(session, settings, cycle.id, NOW).packet_id)
    assert CUT_NOTE in packet.text and "deep down here" in packet.text


@pytest.mark.parametrize(
    "header",
    [b"Subject: before\x00after", b"From: Eve <e\x00ve@example.com>", b"Message-ID: <a\x00b@mail.example>"],
    ids=["subject", "from", "message_id"],
)
def test_nul_in_a_header_is_stored_not_503(client, settings, header: bytes) -> None:  # type: ignore[no-untyped-def]
    raw = mime(header, f"To: hello@{FORUM}".encode(), body=b"hi\r\n")
    response = post(client, raw_mode_post(raw, [f"hello@{FORUM}"]))
    assert response.status_code == 200, response.data
    (row,) = stored(settings)
    assert row.raw == raw
    assert_processed(row)


def test_nul_in_an_envelope_field_is_stored_not_503(client, settings) -> None:  # type: ignore[no-untyped-def]
    raw = mime(*common(), body=b"hi\r\n")
    response = post(client, raw_mode_post(raw, [f"hello@{FORUM}"], envelope_from="a\x00b@example.com"))
    assert response.status_code == 200, response.data
    assert [row.raw for row in stored(settings)] == [raw]


def test_nul_in_a_members_reply_becomes_an_update(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    token = send_requests(session, settings, cycle)["alice@northwind.example"]
    raw = mime(*common(), body=b"WINS\r\nbefore\x00after\r\n")
    assert post(client, raw_mode_post(raw, [f"reply+{token}@{FORUM}"])).status_code == 200
    (row,) = stored(settings)
    assert row.status == "accepted", (row.status, row.reason)
    update = session.scalars(select(Update)).one()
    assert "before" in update.text and "after" in update.text


def test_overlong_envelope_sender_is_stored_not_503(client, settings) -> None:  # type: ignore[no-untyped-def]
    raw = mime(*common(), body=b"hi\r\n")
    response = post(client, raw_mode_post(raw, [f"hello@{FORUM}"], envelope_from="x" * 400 + "@example.com"))
    assert response.status_code == 200, response.data
    assert [row.raw for row in stored(settings)] == [raw]


def test_notice_to_a_stranger_shows_the_decoded_subject(client, settings) -> None:  # type: ignore[no-untyped-def]
    raw = mime("From: Bob <bob@example.com>", f"To: hello@{FORUM}", "Subject: =?utf-8?q?Caf=C3=A9_news?=",
               "Message-ID: <bob1@example.com>", body=b"hello\r\n")
    assert post(client, raw_mode_post(raw, [f"hello@{FORUM}"], "bob@example.com")).status_code == 200
    (row,) = stored(settings)
    assert row.status == "rejected"
    with db.session_scope(settings.database_url) as session:
        notice = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "notice")).one()
        assert notice.context["subject"] == "Café news"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--xYz\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nFrom: a@example.com\r\n\r\ntruncated",
         "multipart/form-data; boundary=xYz"),
        (b"not a form at all", "multipart/form-data; boundary=xYz"),
        (b"email=From%3A+a%40example.com%0D%0A%0D%0Ahi%00%FF", "application/x-www-form-urlencoded"),
        (b"\x00\xff garbage", "text/plain"),
        (b"", "multipart/form-data"),
    ],
    ids=["form_unterminated", "form_boundary_never_appears", "urlencoded_with_nul", "not_a_form", "empty_no_boundary"],
)
def test_malformed_form_posts_are_kept(client, settings, body: bytes, content_type: str) -> None:  # type: ignore[no-untyped-def]
    response = post(client, (body, content_type))
    assert response.status_code == 200, response.data
    (row,) = stored(settings)
    assert_processed(row)
    if row.source == "sendgrid-unreadable":
        assert row.raw == body  # not a form we can read: the post itself is what is kept


@pytest.mark.parametrize("mode", ["parsed", "raw"])
@pytest.mark.parametrize("charsets", [{"text": 5, "SPF": 5}, {"text": "utf-8\x00", "SPF": "utf-8\x00"}], ids=["int", "nul"])
def test_odd_charsets_field_is_stored_not_500(client, settings, mode: str, charsets: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    raw = mime(*common(), body=b"hi\r\n")
    fields: dict[str, Any] = {"charsets": json.dumps(charsets), "SPF": "pass",
                              "envelope": json.dumps({"to": [f"hello@{FORUM}"], "from": "alice@northwind.example"})}
    if mode == "raw":
        fields["email"] = raw
    else:
        fields.update({"headers": "Message-ID: <odd@mail.example>\n", "from": ALICE, "text": "hi"})
    response = post(client, multipart(fields))
    assert response.status_code == 200, response.status_code
    (row,) = stored(settings)
    assert_processed(row)


HOOK = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HOOK
@given(
    raw=st.one_of(st.binary(max_size=3000), near_mime()),
    as_member=st.booleans(),
    endpoint=st.sampled_from(["sendgrid", "raw"]),
)
def test_webhook_property_any_bytes_are_stored_once_and_processed(  # type: ignore[no-untyped-def]
    client, session, settings, cycle, raw: bytes, as_member: bool, endpoint: str
) -> None:
    tokens = {r.member.email: r.token for r in cycle.requests} or send_requests(session, settings, cycle)
    token = tokens["alice@northwind.example"]
    floor = outbound_floor(settings)
    if as_member:  # from the member, so the accepted path is taken too
        raw = f"From: {ALICE}".encode() + NL + raw
    to = f"reply+{token}@{FORUM}" if as_member else f"hello@{FORUM}"
    try:
        if endpoint == "sendgrid":
            response = post(client, raw_mode_post(raw, [to]))
        else:
            response = client.post("/inbound/raw", query_string={"to": to}, data=raw,
                                   headers={**AUTH, "Content-Type": "message/rfc822"})
        assert response.status_code == 200, response.data
        rows = stored(settings)
        assert len(rows) == 1
        assert rows[0].raw == raw
        assert_processed(rows[0])
        event(f"{rows[0].status} {rows[0].kind}")  # pytest --hypothesis-show-statistics
    finally:
        forget_mail(settings, floor)


@HOOK
@given(
    headers=st.lists(HEADER_LINE, max_size=6).map(lambda lines: b"\n".join(lines)),
    text=st.one_of(st.none(), st.binary(max_size=300)),
    html=st.one_of(st.none(), st.binary(max_size=300)),
    charsets=st.one_of(
        st.sampled_from(['{"text": "x-bogus", "html": "utf-7"}', "[1]", "not json", '{"text": null}', "{}"]),
        st.dictionaries(st.sampled_from(["text", "html", "headers", "subject"]),
                        st.sampled_from([c for c in CHARSETS if "\x00" not in c])).map(json.dumps),
    ),
    attachment=st.one_of(st.none(), st.tuples(st.text(max_size=20), st.binary(max_size=100))),
    info=st.sampled_from(["", "{", '{"attachment1": "x"}', '{"attachment1": {"type": "///", "filename": ""}}']),
)
def test_parsed_mode_property_malformed_fields_are_stored_and_processed(  # type: ignore[no-untyped-def]
    client, settings, headers, text, html, charsets, attachment, info
) -> None:
    fields: dict[str, Any] = {"headers": headers, "from": ALICE, "to": f"hello@{FORUM}", "charsets": charsets,
                              "envelope": json.dumps({"to": [f"hello@{FORUM}"], "from": "alice@northwind.example"})}
    if ON_POSTGRES:
        fields["headers"] = headers.replace(b"\x00", b"")
    if text is not None:
        fields["text"] = text
    if html is not None:
        fields["html"] = html
    if attachment is not None:
        fields["attachment1"] = (attachment[0].replace('"', "").replace("\r", "").replace("\n", ""), attachment[1],
                                 "application/octet-stream")
        fields["attachment-info"] = info
    floor = outbound_floor(settings)
    try:
        response = post(client, multipart(fields))
        assert response.status_code == 200, response.data
        (row,) = stored(settings)
        assert row.source == "sendgrid-parsed"
        assert_processed(row)
        event(f"{row.status} {row.kind}")
        assert_sound(read(row.raw))
    finally:
        forget_mail(settings, floor)


# --- roundtable parse ------------------------------------------------------------------------------


CLI_CASES = [
    pytest.param(nest(200, DEEP_TEXT), id="nesting_200"),
    pytest.param(b"\x00\xff\xfe garbage \r\n\r\n\x80", id="binary_garbage"),
    pytest.param(b"", id="empty_file"),
    pytest.param(mime(b"From: a\x00b@example.com", b"Subject: \xff\xfe", body=b"\x00\x01"), id="nul_and_8bit"),
    pytest.param(mime(*common(subject="x" * (1 << 20))), id="subject_1mb"),
    pytest.param(mime(*common('Content-Type: multipart/mixed; boundary="b"'), body=b"--b\r\n"), id="unterminated"),
    pytest.param(nest(DEEP, DEEP_TEXT), id="nesting_past_the_recursion_limit"),
]


@pytest.mark.parametrize("raw", CLI_CASES)
def test_cli_parse_json_on_malformed_files(tmp_path: Path, raw: bytes) -> None:
    eml = tmp_path / "message.eml"
    eml.write_bytes(raw)
    result = CliRunner().invoke(main, ["parse", str(eml), "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise shallow(result.exception)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output[:500]
    data = json.loads(lines[0])
    assert isinstance(data, dict) and data["kind"] in KINDS and isinstance(data["reason"], str)
    assert data == json.loads(json.dumps(read_shallow(raw).to_json(), ensure_ascii=False))


@pytest.mark.parametrize(
    ("inner", "words"),
    [
        (b"Content-Type: text/plain; charset=utf-8" + NL + NL + "WINS\r\nLa fábrica abrió ✓\r\n".encode(), "La fábrica abrió ✓"),
        (b"Content-Type: text/plain; charset=iso-8859-1" + NL + NL + b"WINS\r\nf\xe1brica nueva\r\n", "fábrica nueva"),
    ],
    ids=["utf8", "latin1"],
)
def test_text_below_the_depth_cut_keeps_its_non_ascii_letters(inner: bytes, words: str) -> None:
    """Found by bench/fuzz.py: 8-bit text below the cut raised UnicodeEncodeError."""
    reading = read_message(nest(150, inner))
    assert words in reading.text


def test_a_broken_encoded_word_in_from_is_read_not_raised() -> None:
    """Found by bench/fuzz.py: mail-parser raised HeaderParseError, which escaped read_message."""
    raw = (b"From: =?utf-8?B?YWJjZ?= <alice@northwind.example>\r\nTo: reply+0123456789abcdef0123456789abcdef"
           b"@in.forum.example\r\nSubject: x\r\n\r\nWINS\r\nok\r\n")
    reading = read_message(raw)
    assert (reading.kind, reading.from_address, reading.sections["texts"]["wins"]) == ("reply", "alice@northwind.example", "ok")
