"""Malformed mail through `read_message`, the webhooks and `roundtable parse`.

Whatever arrives (broken boundaries, 1,000-level nesting, unknown charsets, NUL bytes, truncated
encodings, header names that look like Python attributes, or arbitrary bytes) must never crash
the reader, must be stored byte for byte with a 200, and must end up processed: a kind, and a
reason unless it was accepted.
"""

from __future__ import annotations

import base64
import json
import os
import quopri
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import delete, func, select

from app import db
from app.cli import main
from app.machine import Kind
from app.models import InboundMessage, OutboundMessage, Update
from app.replies import Reading, read_message
from tests.conftest import AUTH
from tests.mails import multipart, raw_mode

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
KINDS = {str(k) for k in Kind}
NL = b"\r\n"
ALICE = "Alice Chen <alice@northwind.example>"
FORUM = "in.forum.example"


# --- building messages ---------------------------------------------------------------------------


def mime(*headers: str | bytes, body: str | bytes = b"hello\r\n", nl: bytes = NL) -> bytes:
    """A message from header lines and a body, bytes exactly as given (str headers are UTF-8)."""
    lines = [h.encode("utf-8") if isinstance(h, str) else h for h in headers]
    data = body.encode("utf-8") if isinstance(body, str) else body
    return nl.join(lines) + nl + nl + data


def common(*extra: str | bytes, message_id: str = "<m1@mail.example>") -> tuple[str | bytes, ...]:
    return (
        f"From: {ALICE}",
        f"To: Roundtable <hello@{FORUM}>",
        "Subject: Re: Your December update",
        "Date: Thu, 19 Nov 2026 10:15:00 -0500",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        *extra,
    )


def nest(depth: int, inner: bytes) -> bytes:
    """`depth` levels of multipart/mixed around one part."""
    body = inner
    for level in reversed(range(depth)):
        boundary = f"b{level}".encode()
        body = (
            b"Content-Type: multipart/mixed; boundary=" + boundary + NL + NL
            + b"--" + boundary + NL + body + NL + b"--" + boundary + b"--" + NL
        )
    head = b"".join(h.encode() + NL for h in common()[:-1])
    return head + b"MIME-Version: 1.0" + NL + body


def part(content_type: str, body: bytes, *extra: str) -> bytes:
    return mime(f"Content-Type: {content_type}", *extra, body=body)


def multipart_body(boundary: str, *parts: bytes, close: bool = True) -> bytes:
    b = boundary.encode()
    chunks = [b"--" + b + NL + p + NL for p in parts]
    return b"".join(chunks) + (b"--" + b + b"--" + NL if close else b"")


# --- hand-written cases for read_message ---------------------------------------------------------

Check = Callable[[Reading], None]
LATIN1_IN_UTF8 = "WINS\r\nGr\xfc\xdfe aus M\xfcnchen, caf\xe9 sign\xe9.\r\n".encode("latin-1")
JAPANESE = "WINS\r\n新しい工場が稼働しました。\r\n"
DEEP_TEXT = b"Content-Type: text/plain; charset=utf-8" + NL + NL + b"WINS" + NL + b"deep down here" + NL


def _text_has(*needles: str) -> Check:
    def check(reading: Reading) -> None:
        for needle in needles:
            assert needle in reading.text, (needle, reading.text[:300])

    return check


CASES: dict[str, tuple[bytes, Check]] = {}


def case(name: str, raw: bytes, check: Check) -> None:
    CASES[name] = (raw, check)


# Boundaries.
case(
    "boundary_parameter_missing",
    mime(*common("Content-Type: multipart/mixed"),
         body=multipart_body("x", part("text/plain", b"WINS\r\nno boundary param"))),
    lambda r: (r.kind == "reply") or pytest.fail(r.kind),
)
case(
    "boundary_never_appears",
    mime(*common('Content-Type: multipart/mixed; boundary="declared"'),
         body=multipart_body("other", part("text/plain", b"WINS\r\nwrong boundary"))),
    lambda r: (r.kind == "reply") or pytest.fail(r.kind),
)
case(
    "part_unterminated",
    mime(*common('Content-Type: multipart/alternative; boundary="b1"'),
         body=multipart_body("b1", part("text/plain", b"WINS\r\nnever closed"), close=False)),
    _text_has("never closed"),
)
case(
    "part_header_block_unterminated",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64"),
    lambda r: (r.kind == "reply") or pytest.fail(r.kind),
)
case(
    "boundary_empty_string",
    mime(*common('Content-Type: multipart/mixed; boundary=""'),
         body=b"--\r\nContent-Type: text/plain\r\n\r\nWINS\r\nempty boundary\r\n----\r\n"),
    lambda r: (r.kind == "reply") or pytest.fail(r.kind),
)
case(
    "boundary_inside_text_and_preamble_only",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=b"WINS\r\nonly a preamble, --b1 mentioned mid-line\r\n"),
    lambda r: (r.kind == "reply") or pytest.fail(r.kind),
)
# Nesting.
case("nesting_200_levels", nest(200, DEEP_TEXT), _text_has("deep down here"))
# Huge headers.
case(
    "subject_1mb",
    mime(*common()[:2], "Subject: " + "x" * (1 << 20), *common()[3:], body=b"WINS\r\nbig subject\r\n"),
    lambda r: (r.subject.startswith("x" * 1000) and "big subject" in r.text) or pytest.fail(r.subject[:50]),
)
case(
    "ten_thousand_header_lines",
    mime(*common(*(f"X-Filler-{i}: value {i}" for i in range(10_000))), body=b"WINS\r\nmany headers\r\n"),
    lambda r: (r.from_address == "alice@northwind.example" and "many headers" in r.text) or pytest.fail(r.text),
)
case(
    "one_header_folded_ten_thousand_times",
    mime(*common(), "X-Long: start" + "".join(f"\r\n\tfold {i}" for i in range(10_000)), body=b"WINS\r\nfolded\r\n"),
    _text_has("folded"),
)
# Charsets.
case(
    "charset_x_unknown",
    mime(*common("Content-Type: text/plain; charset=x-unknown"), body=b"WINS\r\nunknown label\r\n"),
    _text_has("unknown label"),
)
case(
    "charset_not_a_codec",
    mime(*common('Content-Type: text/plain; charset="no-such-charset-\\"x"'), body=b"WINS\r\nbogus label\r\n"),
    _text_has("bogus label"),
)
case(
    "charset_utf8_with_latin1_bytes",
    mime(*common("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"), body=LATIN1_IN_UTF8),
    _text_has("Gr", "e aus M", "nchen"),
)
case(
    "charset_utf7",
    mime(*common("Content-Type: text/plain; charset=utf-7"), body=b"WINS\r\nL'+AOk-t+AOk- was good.\r\n"),
    _text_has("L'été was good."),
)
case(
    "charset_utf7_broken_shift",
    mime(*common("Content-Type: text/plain; charset=utf-7"), body=b"WINS\r\nbroken +AOk shift +ZZZ!\r\n"),
    _text_has("WINS", "broken"),
)
case(
    "charset_iso_2022_jp",
    mime(*common("Content-Type: text/plain; charset=iso-2022-jp", "Content-Transfer-Encoding: 7bit"),
         body=JAPANESE.encode("iso-2022-jp")),
    _text_has("新しい工場が稼働しました。"),
)
case(
    "charset_iso_2022_jp_truncated_escape",
    mime(*common("Content-Type: text/plain; charset=iso-2022-jp"), body=JAPANESE.encode("iso-2022-jp")[:-7] + b"\x1b$"),
    _text_has("WINS"),
)
case(
    "encoded_word_unknown_charset_and_bad_base64",
    mime(*common()[:2], "Subject: =?x-bogus?q?caf=E9?= =?utf-8?b?!!!notbase64?=", *common()[3:],
         b"From: =?x-bogus?b?////?= <bob@example.com>", body=b"hi\r\n"),
    lambda r: (r.from_address == "alice@northwind.example") or pytest.fail(r.from_address),
)
# NUL bytes.
case(
    "nul_in_headers_and_body",
    mime(b"From: Alice\x00Chen <alice@northwind.example>", b"Subject: a\x00b", b"X-Nul: \x00\x00",
         body=b"WINS\r\nbefore\x00after\r\n"),
    lambda r: ("before" in r.text and "after" in r.text) or pytest.fail(r.text),
)
# Truncated transfer encodings.
case(
    "base64_truncated",
    mime(*common("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"),
         body=base64.b64encode("WINS\nHello from the truncated world".encode())[:-5]),
    _text_has("Hello from the"),
)
case(
    "base64_garbage_characters",
    mime(*common("Content-Type: text/plain", "Content-Transfer-Encoding: base64"), body=b"V0lOUwp!!!@@@\x80\xffaGk=\r\n==="),
    lambda r: isinstance(r.text, str) or pytest.fail("text"),
)
case(
    "quoted_printable_truncated",
    mime(*common("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"),
         body=quopri.encodestring("WINS\nCafé crème brûlée".encode())[:-4] + b"=C3="),
    _text_has("WINS", "Caf"),
)
case(
    "unknown_transfer_encoding",
    mime(*common("Content-Type: text/plain", "Content-Transfer-Encoding: x-rot13-ish"), body=b"WINS\r\nplain anyway\r\n"),
    _text_has("plain anyway"),
)
# Missing or garbage headers.
case(
    "no_message_id_date_or_from",
    mime(f"To: hello@{FORUM}", "Subject: anonymous", body=b"WINS\r\nwho am I\r\n"),
    lambda r: (r.from_address == "" and r.reply_to_ids == [] and "who am I" in r.text) or pytest.fail(repr(r)),
)
case(
    "date_garbage",
    mime(*common()[:3], "Date: the day after tomorrow, 99:99 +9999", *common()[4:], body=b"WINS\r\ndate?\r\n"),
    _text_has("date?"),
)
case(
    "rfc2047_from_with_comma",
    mime("From: =?iso-8859-1?Q?M=FCller=2C_Hans?= <hans@example.de>", *common()[1:], body=b"WINS\r\nHallo\r\n"),
    lambda r: (r.from_address == "hans@example.de") or pytest.fail(r.from_address),
)
case(
    "from_address_repeated_as_display_name",
    mime("From: alice@northwind.example <alice@northwind.example>", *common()[1:]),
    lambda r: (r.from_address == "alice@northwind.example") or pytest.fail(r.from_address),
)
case(
    "header_names_colliding_with_python_attributes",
    mime(*common(), "headers: boom", "__class__: x", "__dict__: y", "text_plain: z", "attachments: none",
         "body: b", "message: m", "defects: d", "mail: q", body=b"WINS\r\nattribute names\r\n"),
    lambda r: (r.attachments == [] and "attribute names" in r.text) or pytest.fail(repr(r)),
)
case(
    "header_lines_without_colon_and_8bit_names",
    mime(*common(), b"this line has no colon", b"X-\xff\xfe: v", b": empty name", body=b"WINS\r\ncolons\r\n"),
    lambda r: (r.from_address == "alice@northwind.example") or pytest.fail(r.from_address),
)
# Bodies.
case("empty_body", mime(*common(), body=b""), lambda r: (r.kind == "reply" and r.text == "") or pytest.fail(repr(r)))
case("empty_message", b"", lambda r: (r.from_address == "" and r.text == "") or pytest.fail(repr(r)))
case(
    "only_an_attachment",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=multipart_body("b1", part("application/pdf", base64.b64encode(b"%PDF-1.4 fake"),
                                        "Content-Transfer-Encoding: base64",
                                        'Content-Disposition: attachment; filename="../Q4 plan.pdf"'))),
    lambda r: (
        r.text == ""
        and [(a.filename, a.content_type, a.size) for a in r.attachments] == [("Q4 plan.pdf", "application/pdf", 13)]
    ) or pytest.fail(repr(r)),
)
case(
    "attachment_filename_rfc2231_garbage",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=multipart_body("b1", part("text/plain", b"WINS\r\nsee attached"),
                             part("application/octet-stream", b"AAAA", "Content-Transfer-Encoding: base64",
                                  "Content-Disposition: attachment; filename*=x-bogus'en'%E2%80%FF%00evil/..\\name"))),
    lambda r: (len(r.attachments) == 1 and "/" not in r.attachments[0].filename
               and "\\" not in r.attachments[0].filename and "\x00" not in r.attachments[0].filename)
    or pytest.fail(repr(r.attachments)),
)
case(
    "forwarded_message_rfc822",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=multipart_body("b1", part("text/plain", b"WINS\r\nForwarding what I sent last week."),
                             part("message/rfc822", mime("From: old@example.com", "Subject: old",
                                                         body=b"THE OLD ORIGINAL TEXT\r\n")))),
    lambda r: ("Forwarding what I sent" in r.text and "THE OLD ORIGINAL TEXT" not in r.text) or pytest.fail(r.text),
)
case(
    "message_rfc822_truncated",
    mime(*common('Content-Type: multipart/mixed; boundary="b1"'),
         body=b"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: old@example.com\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n"),
    lambda r: (r.kind in KINDS) or pytest.fail(r.kind),
)
case(
    "backslash_u_and_windows_paths",
    mime(*common("Content-Type: text/plain; charset=utf-8"),
         body="WINS\r\nSaved to C:\\Users\\alice\\Documents\\new\\plan.txt, see \\u00e9 and \\N{BULLET} and \\x41\r\n"),
    _text_has("C:\\Users\\alice\\Documents\\new\\plan.txt", "\\u00e9", "\\N{BULLET}", "\\x41"),
)
case(
    "eight_bit_utf8_without_cte",
    mime(*common("Content-Type: text/plain; charset=utf-8"), body="WINS\r\nHallo — ja, passt.\r\n"),
    _text_has("Hallo — ja, passt."),
)
case(
    "cr_only_line_ends",
    mime(*common(), body=b"WINS\rold mac line ends\r", nl=b"\r"),
    _text_has("old mac line ends"),
)
case(
    "html_only_broken_markup_unknown_charset",
    mime(*common("Content-Type: text/html; charset=x-bogus"),
         body=b"<html><body><p>WINS<p>unclosed <b>bold <script>alert(1)</script><div><table><tr><td>cell"),
    _text_has("unclosed", "cell"),
)
case(
    "content_type_parameters_garbage",
    mime(*common('Content-Type: text/plain; charset="utf-8; ;;; format=flowed; charset*=\'\'%FF; =='),
         body=b"WINS\r\nparams\r\n"),
    _text_has("params"),
)
case(
    "two_megabyte_single_line",
    mime(*common(), body=b"WINS\r\n" + b"a" * (2 << 20)),
    lambda r: (r.text.startswith("WINS")) or pytest.fail(r.text[:40]),
)
