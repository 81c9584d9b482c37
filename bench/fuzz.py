"""Fuzz the mail reader with messages mutated from our own test mail (issue 11, "Prove it").

    python bench/fuzz.py                          # 10,000 messages, seed 1
    python bench/fuzz.py --count 1000 --seed 1    # CI's slice: the first 1,000 of the same run
    python bench/fuzz.py --only 218 --dump DIR    # message 218 of seed 1 again, written to DIR

Seeds, built in memory from our own mail: the demo members' replies as five mail clients write
them (app.demo.reply_email), follow-ups and strangers' mail (tests.mails.reply), HTML-only and
multipart/alternative mail, an attachment and an inline image, an out-of-office (app.demo), a DSN
bounce (bench.soak.bounce_email), bodies in Latin-1, Shift-JIS, KOI8-R and UTF-16, and the MIME the
webhook rebuilds from a default-mode (parsed) post (tests.mails.parsed_mode + app.inbound).

Each message is one seed with one to three mutations: truncation, byte flips, header
duplication, deep nesting (multipart and message/rfc822, past Python's recursion limit),
odd charsets (unknown, stateful, UTF-16/32, bogus encoded-words), giant lines (up to 200,000
characters of one class: letters, spaces, tabs, NBSP, U+3000, `>`, `&nbsp;`...), NULs, broken
boundaries, bidi and control characters, broken transfer encodings (base64, quoted-printable),
mixed line endings, header folding runs, deep HTML, hundreds of parts. Message i depends only
on (seed, i), so `--count 1000` is the first thousand of the 10,000 run.

Each message goes through, each call timed on its own:
  read       app.replies.read_message(raw, envelope_from, envelope_to)
  sections   app.reading.sections.split_sections on the whole message decoded as text, its first
             100,000 characters (hostile, untrimmed text: harder than the trimmed text the
             worker splits; a quadratic pattern shows long before 100,000)
  merge      app.followups.merge of the reading (and of those sections) against a typical first
             update (the demo's Alice: every section and ratings)
  webhook    app.inbound.form_parts + from_sendgrid on a raw-mode post of the message and on a
             default-mode post made from its pieces (headers, text, html, from, subject, broken
             charsets field), and (every fourth message) read_message on the MIME the webhook
             rebuilt. form_parts may raise ValueError (the view then stores the body as it
             came); nothing else may raise.

Fails (exit 1) on any exception or any call over `--limit` seconds (2 by default); a call still
running after `--hang` seconds (60) is written to the dump folder and ends the run (exit 3).
Prints a summary, then one JSON object as the last line.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This checkout's code, not whatever checkout an editable install points at.
sys.path.insert(0, str(REPO))

import argparse
import base64
import json
import os
import random
import re
import signal
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

NL = b"\r\n"
FORUM = "in.forum.example"
TOKEN = "0123456789abcdef0123456789abcdef"  # a reply token's shape (app.addresses)


# --- seeds: our own mail ------------------------------------------------------------------------


def seed_mail() -> list[tuple[str, bytes]]:
    """(name, raw bytes) of every seed message."""
    from app.demo import GROUP, MEMBERS, REPLIES, out_of_office, reply_email
    from app.inbound import form_parts, from_sendgrid
    from app.reading.sections import SECTIONS
    from app.settings import Settings
    from bench.soak import bounce_email
    from tests.mails import parsed_mode, reply

    settings = Settings(mail_from="Roundtable <roundtable@forum.example>", inbound_domain=FORUM)
    context = {
        "group_name": GROUP["name"],
        "month_label": "December",
        "due_label": "Thu 3 Dec, 17:00 PST",
        "due_short": "Thu 3 Dec",
        "meeting_label": "Saturday 5 December, 08:30-12:30 PST",
        "location": GROUP["location"],
        "facilitator_name": GROUP["facilitator_name"],
        "sections": [{"key": s.key, "title": s.title, "hint": s.hint} for s in SECTIONS],
        "commitments": ["Name an interim engineering lead by Dec 15"],
        "unsubscribe_url": "https://roundtable.example/unsubscribe/abc",
    }
    seeds: list[tuple[str, bytes]] = []
    for number, (name, address, company, title) in enumerate(MEMBERS):
        if address not in REPLIES:
            continue
        member = SimpleNamespace(
            id=number + 1, name=name, email=address, title=title, company=company
        )
        request = SimpleNamespace(
            kind="update_request",
            context={**context, "first_name": name.split()[0]},
            message_id="<update_request.abc@forum.example>",
        )
        for client in ("gmail", "outlook", "apple", "iphone", "html_only"):
            message = reply_email(member, TOKEN, request, client, settings, 1)
            seeds.append((f"demo-{client}-{address.partition('@')[0]}", bytes(message)))

    alice = ("Alice Chen", "alice@northwind-robotics.example")
    follow_ups = {
        "thanks": "Thanks, looks right!",
        "correction": "Correction:\n\nCHALLENGES\nHiring line workers, and a 9% price rise.",
        "addition": "One more ask: an introduction to a good employment lawyer.",
        "question": "Can I bring a guest to the next meeting?",
        "skip": "SKIP - travelling all month.",
        "empty": "",
    }
    for name, body in follow_ups.items():
        seeds.append((f"follow-up-{name}", bytes(reply(TOKEN, body or " ", sender=alice))))
    first = REPLIES[alice[1]]
    seeds.append(
        (
            "stranger",
            bytes(reply(None, "Is this the forum's address?", sender=("X", "x@stranger.example"))),
        )
    )
    seeds.append(("html-alternative", bytes(reply(TOKEN, first, sender=alice, html=_html(first)))))
    seeds.append(("html-only", bytes(reply(TOKEN, "", sender=alice, html=_html(first)))))
    with_files = reply(TOKEN, first, sender=alice, cc="Dana <dana@forum-facilitation.example>")
    with_files.add_attachment(
        b"%PDF-1.4\n" + bytes(range(256)) * 8,
        maintype="application",
        subtype="pdf",
        filename="Q4 plan.pdf",
    )
    with_files.add_attachment(
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        maintype="image",
        subtype="png",
        filename="logo.png",
        cid="<logo@x>",
        disposition="inline",
    )
    seeds.append(("attachments", bytes(with_files)))
    seeds.append(("out-of-office", bytes(out_of_office(alice[0], alice[1], settings, TOKEN, 1))))
    seeds.append(
        (
            "bounce",
            bounce_email(
                alice[1],
                f"reply+{TOKEN}@{FORUM}",
                "<dsn.1@mx.example>",
                "Thu, 19 Nov 2026 10:15:00 +0000",
            ),
        )
    )
    for charset, text in (
        ("iso-8859-1", "WINS\nMüller Präzision wächst. Grüße"),
        ("shift_jis", "WINS\n新しい工場が稼働しました。"),
        ("koi8-r", "WINS\nНовый завод открыт."),
        ("utf-16", "WINS\nA good month — ünïcödé."),
    ):
        message = reply(TOKEN, "x", sender=alice)
        message.set_content(
            text.encode(charset),
            maintype="text",
            subtype="plain",
            cte="base64" if charset == "utf-16" else "8bit",
        )
        message.set_param("charset", charset)
        seeds.append((f"charset-{charset}", bytes(message)))
    for name, message in (
        ("parsed-plain", reply(TOKEN, first, sender=alice)),
        ("parsed-html", reply(TOKEN, first, sender=alice, html=_html(first))),
    ):
        body, content_type = parsed_mode(message)
        seeds.append((name, from_sendgrid(form_parts(body, content_type)).raw))
    return seeds


def _html(text: str) -> str:
    paragraphs = "".join(f"<p>{line}</p>" for line in text.splitlines() if line.strip())
    return f"<html><body><div dir=ltr>{paragraphs}</div><blockquote>Quoted request</blockquote></body></html>"


# --- mutations ----------------------------------------------------------------------------------


def split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, the blank line, body); a message without a blank line is all head."""
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw, b"", b""
    return raw[: match.start()], raw[match.start() : match.end()], raw[match.end() :]


def truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(len(raw) + 1)]


def flip_bytes(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.choice((1, 3, 10, 50, 300))):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


HEADERS = (
    b"From",
    b"To",
    b"Cc",
    b"Subject",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"Content-Type",
    b"Content-Transfer-Encoding",
    b"MIME-Version",
    b"Date",
    b"Reply-To",
    b"Auto-Submitted",
    b"Content-Disposition",
    b"Received",
    b"Authentication-Results",
)


def duplicate_headers(raw: bytes, rng: random.Random) -> bytes:
    head, blank, body = split_head(raw)
    lines = head.split(NL) if NL in head else head.split(b"\n")
    extra = []
    for _ in range(rng.choice((1, 5, 50, 500))):
        if rng.random() < 0.5 and lines:
            extra.append(rng.choice(lines))
        else:
            name = rng.choice(HEADERS)
            value = rng.choice(
                (
                    b"",
                    b"x",
                    b"<a@b>",
                    b"multipart/mixed",
                    b"text/html; charset=bogus",
                    b"Alice <alice@x> , , <>",
                    b"=?utf-8?q?=E2=80=AE?=",
                    b"reply+" + TOKEN.encode() + b"@" + FORUM.encode(),
                )
            )
            extra.append(name + b": " + value)
    position = rng.randrange(len(lines) + 1)
    lines[position:position] = extra
    return NL.join(lines) + (blank or NL + NL) + body


def nest(raw: bytes, rng: random.Random) -> bytes:
    head, _blank, body = split_head(raw)
    depth = rng.choice((3, 10, 30, 300, 1200))
    kind = rng.choice(("multipart", "rfc822", "both"))
    inner = b"Content-Type: text/plain; charset=utf-8" + NL + NL + (body[:500] or b"WINS\r\nDeep.")
    for level in range(depth):
        if kind == "rfc822" or (kind == "both" and level % 2):
            inner = b"Content-Type: message/rfc822" + NL + NL + b"Subject: level" + NL + inner
        else:
            boundary = b"n%d" % level
            close = b"--" + boundary + b"--" + NL if rng.random() < 0.9 else b""
            inner = (
                b"Content-Type: multipart/mixed; boundary="
                + boundary
                + NL
                + NL
                + b"--"
                + boundary
                + NL
                + inner
                + NL
                + close
            )
    kept = [
        line
        for line in re.split(rb"\r?\n(?![ \t])", head)
        if not line.lower().startswith(b"content-")
    ]
    return NL.join(kept) + NL + b"MIME-Version: 1.0" + NL + inner


CHARSETS = (
    b"utf-7",
    b"iso-2022-jp",
    b"x-unknown",
    b"utf-16",
    b"utf-32",
    b"",
    b"binary",
    b"hz-gb-2312",
    b"cp1252",
    b"unicode-1-1-utf-7",
    b"x-mac-roman",
    b"ebcdic-cp-us",
    b"utf-8'en'",
    b'"utf-8',
    b"gb18030",
    b"big5",
    b"..",
    b"utf-8; charset=latin1",
    b"a" * 300,
    b"cp037",
)


def odd_charsets(raw: bytes, rng: random.Random) -> bytes:
    charset = rng.choice(CHARSETS)
    mutated = re.sub(rb"(?i)charset=\"?[\w.:'-]*\"?", b"charset=" + charset, raw)
    if mutated == raw:
        head, blank, body = split_head(raw)
        mutated = (
            head + NL + b"Content-Type: text/plain; charset=" + charset + (blank or NL + NL) + body
        )
    if rng.random() < 0.5:
        word = (
            b"=?"
            + rng.choice(CHARSETS)
            + b"?"
            + rng.choice((b"B", b"Q", b"X"))
            + b"?"
            + rng.choice(
                (b"w6k=", b"=C3=A9", b"!!!", b"", b"=FF=FE", base64.b64encode("é".encode("utf-16")))
            )
            + b"?="
        )
        mutated = re.sub(
            rb"(?im)^(Subject|From): ", lambda m: m.group(0) + word + b" ", mutated, count=2
        )
    if rng.random() < 0.3:  # a body really in the declared stateful or wide encoding
        head, blank, body = split_head(mutated)
        codec = rng.choice(("utf-7", "utf-16", "utf-32", "iso-2022-jp"))
        try:
            body = body.decode("utf-8", "replace").encode(codec, "replace")
        except (LookupError, UnicodeError):
            pass
        mutated = head + blank + body
    return mutated


RUNS = (
    " ",
    "\t",
    "\u00a0",
    "\u3000",
    ">",
    "> ",
    "-",
    "=",
    "_",
    "*",
    ".",
    "a",
    "0",
    "&nbsp;",
    "<pre>",
    "<div>",
    "\u200b",
    "é",
    "-- ",
    "\r",
    ":",
    "#",
    "|",
    "~",
    "On ",
    "wrote:",
)


def giant_line(raw: bytes, rng: random.Random) -> bytes:
    unit = rng.choice(RUNS)
    length = rng.choices((2_000, 10_000, 50_000, 200_000), (50, 30, 15, 5))[0]
    line = (
        rng.choice(("", "Best, ", "WINS ", "> ", "On Tue ")) + unit * (length // len(unit))
    ).encode()
    head, blank, body = split_head(raw)
    lines = body.split(b"\n")
    position = rng.randrange(len(lines) + 1)
    lines[position:position] = [line, line] if rng.random() < 0.2 else [line]
    return head + (blank or NL + NL) + b"\n".join(lines)


def nuls(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.choice((1, 10, 100))):
        position = rng.randrange(len(data) + 1)
        data[position:position] = b"\x00" * rng.choice((1, 1, 5, 1000))
    return bytes(data)


def broken_boundaries(raw: bytes, rng: random.Random) -> bytes:
    match = re.search(rb"boundary=\"?([^\";\r\n]+)\"?", raw, re.IGNORECASE)
    if match is None:
        head, blank, body = split_head(raw)
        return (
            head
            + NL
            + b"Content-Type: multipart/mixed; boundary=zz"
            + (blank or NL + NL)
            + b"--zz"
            + NL
            + body
            + NL
            + b"--zz"
            + NL
            + b"--zz"
            + NL
        )
    boundary = match.group(1)
    choice = rng.randrange(7)
    if choice == 0:  # the parameter gone
        return raw[: match.start()] + raw[match.end() :]
    if choice == 1:  # a different boundary declared
        return raw[: match.start(1)] + b"other" + raw[match.end(1) :]
    if choice == 2:  # no closing line
        return raw.replace(b"--" + boundary + b"--", b"")
    if choice == 3:  # every boundary line cut short
        return raw.replace(b"--" + boundary, b"--" + boundary[: len(boundary) // 2])
    if choice == 4:  # the boundary inside a text part too
        return raw.replace(b"\n\n", b"\n\n--" + boundary + b"\n", 3)
    if choice == 5:  # a 70+ character boundary with spaces and quotes
        long = b'" ' + b"x" * 200 + b' "'
        return raw.replace(boundary, long)
    return raw.replace(b"--" + boundary + NL, b"--" + boundary + b"   trailing" + NL, 2)


BIDI = (
    "\u202e",
    "\u202d",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200f",
    "\u200e",
    "\u061c",
    "\x01",
    "\x07",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufffd",
    "\udc80".encode("utf-8", "surrogatepass").decode("latin-1"),
)


def bidi_controls(raw: bytes, rng: random.Random) -> bytes:
    data = raw
    for _ in range(rng.choice((1, 5, 40))):
        char = rng.choice(BIDI).encode("utf-8", "surrogatepass")
        target = rng.choice(
            (rb"(?im)^(From: )", rb"(?im)^(Subject: )", rb"(filename=\"?)", rb"(\n)", rb"(WINS)")
        )
        data = re.sub(target, lambda m, c=char: m.group(1) + c, data, count=rng.choice((1, 3)))
    if rng.random() < 0.3:
        data = data.replace(b".pdf", "\u202efdp.exe".encode())
    return data


def broken_encoding(raw: bytes, rng: random.Random) -> bytes:
    head, blank, body = split_head(raw)
    kind = rng.choice((b"base64", b"quoted-printable", b"x-uuencode", b"8bit", b"bogus"))
    head = (
        re.sub(rb"(?im)^Content-Transfer-Encoding:.*$", b"", head)
        + NL
        + b"Content-Transfer-Encoding: "
        + kind
    )
    noise = rng.choice(
        (
            b"====",
            b"!!!\r\n",
            b"=\r\n=\r\n=",
            b"=XY=ZZ",
            b"QUJD\x00RE",
            b"=" * 5000,
            b"begin 644 x\r\n",
        )
    )
    return head + (blank or NL + NL) + noise + body + noise


def line_endings(raw: bytes, rng: random.Random) -> bytes:
    ending = rng.choice((b"\r", b"\n", b"\r\r\n", b"\n\r"))
    return re.sub(rb"\r?\n", lambda _m: ending if rng.random() < 0.7 else NL, raw)


def folding(raw: bytes, rng: random.Random) -> bytes:
    head, blank, body = split_head(raw)
    unit = rng.choice((NL + b" x", NL + b"\t", NL + b" =?utf-8?b?w6k=?=", b" " * 80 + NL + b" "))
    folded = b"Subject: Re:" + unit * rng.choices((10, 300, 3000), (50, 35, 15))[0]
    return head + NL + folded + (blank or NL + NL) + body


def deep_html(raw: bytes, rng: random.Random) -> bytes:
    depth = rng.choices((100, 1000, 3000), (50, 35, 15))[0]
    tag = rng.choice((b"div", b"blockquote", b"table><tr><td", b"b", b"p", b"span style='x'"))
    closing = b"</" + tag.split(b" ")[0].split(b">")[0] + b">"
    html = b"<html><body>" + (b"<" + tag + b">") * depth + b"WINS: deep" + closing * (depth // 2)
    head, blank, _body = split_head(raw)
    head = re.sub(rb"(?im)^Content-Type:.*(\r?\n[ \t].*)*$", b"", head)
    return head + NL + b"Content-Type: text/html; charset=utf-8" + (blank or NL + NL) + html


def many_parts(raw: bytes, rng: random.Random) -> bytes:
    head, blank, body = split_head(raw)
    head = re.sub(rb"(?im)^Content-Type:.*(\r?\n[ \t].*)*$", b"", head)
    count = rng.choices((20, 100, 500), (50, 35, 15))[0]
    part = b"--mp" + NL + b"Content-Type: text/plain" + NL + NL + (body[:80] or b"x") + NL
    if rng.random() < 0.5:
        part = (
            b"--mp"
            + NL
            + b"Content-Type: application/octet-stream"
            + NL
            + b'Content-Disposition: attachment; filename="a.bin"'
            + NL
            + NL
            + b"AAAA"
            + NL
        )
    return (
        head
        + NL
        + b"Content-Type: multipart/mixed; boundary=mp"
        + (blank or NL + NL)
        + part * count
        + b"--mp--"
        + NL
    )


Mutation = Callable[[bytes, random.Random], bytes]
MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate,
    "flip_bytes": flip_bytes,
    "duplicate_headers": duplicate_headers,
    "nest": nest,
    "odd_charsets": odd_charsets,
    "giant_line": giant_line,
    "nuls": nuls,
    "broken_boundaries": broken_boundaries,
    "bidi_controls": bidi_controls,
    "broken_encoding": broken_encoding,
    "line_endings": line_endings,
    "folding": folding,
    "deep_html": deep_html,
    "many_parts": many_parts,
}
RAW_TEXT_CHARS = 100_000  # of the whole message, for split_sections and merge: linear, but CI waits
MAX_BYTES = 1024 * 1024  # a mutated message is cut back to this (SendGrid posts up to 30 MB)


def make_message(
    seeds: list[tuple[str, bytes]], seed: int, number: int
) -> tuple[str, list[str], bytes]:
    """Message `number` of the run `seed`: (seed mail's name, mutations applied, bytes)."""
    rng = random.Random(f"{seed}:{number}")
    name, raw = seeds[rng.randrange(len(seeds))]
    applied = rng.sample(sorted(MUTATIONS), rng.choice((1, 1, 2, 2, 3)))
    for mutation in applied:
        raw = MUTATIONS[mutation](raw, rng)[:MAX_BYTES]
    return name, applied, raw


# --- the webhook's side -------------------------------------------------------------------------


def posts_for(raw: bytes, rng: random.Random) -> list[tuple[bytes, str]]:
    """A raw-mode post of the message, and a default-mode post made from its pieces."""
    from tests.mails import multipart

    head, _blank, body = split_head(raw)

    def first(name: bytes) -> bytes:
        match = re.search(rb"(?im)^" + name + rb":[ \t]*(.*)$", head)
        return match.group(1) if match else b""

    charsets = rng.choice(
        (
            '{"to": "UTF-8", "text": "iso-8859-1"}',
            '{"text": "x-bogus"}',
            "[1]",
            '{"subject": null}',
            "not json",
            '{"text": "utf-16"}',
        )
    )
    raw_post = multipart(
        {
            "envelope": json.dumps({"to": [f"reply+{TOKEN}@{FORUM}"], "from": "a@b"}),
            "charsets": '{"to": "UTF-8"}',
            "SPF": "pass",
            "email": raw,
        }
    )
    fields: dict[str, Any] = {
        "headers": head,
        "from": first(b"From"),
        "to": first(b"To"),
        "subject": first(b"Subject"),
        "envelope": rng.choice((json.dumps({"to": [f"reply+{TOKEN}@{FORUM}"]}), "{", '{"to": 5}')),
        "charsets": charsets,
        "text": body,
        "attachments": rng.choice(("0", "1", "x")),
    }
    if b"html" in head.lower():
        fields["html"] = body
    if rng.random() < 0.3:
        fields["attachment1"] = ("a\u202efdp.exe", body[:500], "application/pdf")
        fields["attachment-info"] = rng.choice(
            ('{"attachment1": {"filename": 5}}', "[]", '{"attachment1": {}}')
        )
    return [raw_post, multipart(fields)]


# --- the run ------------------------------------------------------------------------------------


class Watchdog:
    """Ends the run when one call runs past `hang_s`, after writing its message to `folder`.

    A timer signal, not a thread: a regular expression backtracking in C holds the GIL, so no
    thread would run, but the `re` engine checks for signals as it goes.
    """

    def __init__(self, hang_s: float, folder: Path) -> None:
        self.hang_s, self.folder = hang_s, folder
        self.current: tuple[int, str] = (0, "")
        self.raw = b""
        signal.signal(signal.SIGALRM, self._expired)

    def arm(self, number: int, target: str, raw: bytes) -> None:
        self.current, self.raw = (number, target), raw
        signal.setitimer(signal.ITIMER_REAL, self.hang_s)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _expired(self, _signum: int, _frame: object) -> None:
        number, target = self.current
        path = _dump(self.folder, number, self.raw, prefix="hang")
        print(
            json.dumps(
                {
                    "hang": {
                        "message": number,
                        "target": target,
                        "seconds": self.hang_s,
                        "file": str(path),
                    }
                }
            ),
            flush=True,
        )
        os._exit(3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages (default 10,000)")
    parser.add_argument("--seed", type=int, default=1, help="the run's seed (default 1)")
    parser.add_argument("--limit", type=float, default=2.0, help="seconds one call may take")
    parser.add_argument(
        "--hang", type=float, default=60.0, help="seconds before a call counts as hung"
    )
    parser.add_argument("--only", type=int, default=None, help="run only message number ONLY")
    parser.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="where failing messages are written (default: TMPDIR/roundtable-fuzz-<seed>)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 10_000_000:
        parser.error("--count must be 1 to 10,000,000")
    args.dump = args.dump or Path(tempfile.gettempdir()) / f"roundtable-fuzz-{args.seed}"
    return args


class Tally:
    """Runs each call on one message, timed; counts exceptions, calls over the limit, slowest."""

    def __init__(self, limit_s: float, dump: Path, watchdog: Watchdog) -> None:
        self.limit_s, self.dump, self.watchdog = limit_s, dump, watchdog
        self.exceptions: list[dict[str, Any]] = []
        self.slow: list[dict[str, Any]] = []
        self.slowest: dict[str, tuple[float, int]] = {}
        self.seconds: Counter[str] = Counter()
        self.message: tuple[int, str, list[str], bytes] = (0, "", [], b"")

    def call(
        self,
        target: str,
        function: Callable[..., Any],
        *args: Any,
        allowed: tuple[type[Exception], ...] = (),
        **kwargs: Any,
    ) -> Any:
        number, seed_mail_name, applied, raw = self.message
        self.watchdog.arm(number, target, raw)
        began = time.perf_counter()
        result = None
        try:
            result = function(*args, **kwargs)
        except allowed:
            pass
        except Exception as error:  # noqa: BLE001 - what we count
            frame = traceback.extract_tb(error.__traceback__)[-1]
            self.exceptions.append(
                {
                    "message": number,
                    "seed_mail": seed_mail_name,
                    "mutations": applied,
                    "target": target,
                    "error": f"{type(error).__name__}: {error}"[:300],
                    "where": f"{Path(frame.filename).name}:{frame.lineno}",
                }
            )
            _dump(self.dump, number, raw)
        finally:
            self.watchdog.disarm()
        took = time.perf_counter() - began
        self.seconds[target] += took  # type: ignore[assignment]
        if took > self.slowest.get(target, (0.0, -1))[0]:
            self.slowest[target] = (took, number)
        if took > self.limit_s:
            self.slow.append(
                {
                    "message": number,
                    "target": target,
                    "seconds": round(took, 2),
                    "mutations": applied,
                    "bytes": len(raw),
                }
            )
            _dump(self.dump, number, raw)
        return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging
    import warnings

    from app.demo import REPLIES
    from app.followups import merge
    from app.inbound import form_parts, from_sendgrid
    from app.reading.message import read_message
    from app.reading.sections import split_sections

    warnings.simplefilter("ignore")  # the email package's complaints about bad mail
    logging.disable(logging.CRITICAL)  # mail-parser logs every defect it meets

    first_update = split_sections(REPLIES["alice@northwind-robotics.example"]).to_json()
    first_update["flagged"] = []
    envelope_to = [f"reply+{TOKEN}@{FORUM}"]
    seeds = seed_mail()
    numbers = [args.only] if args.only is not None else list(range(args.count))
    applied_count: Counter[str] = Counter()
    sizes: list[int] = []
    watchdog = Watchdog(args.hang, args.dump)
    tally = Tally(args.limit, args.dump, watchdog)
    started = time.perf_counter()
    for number in numbers:
        name, applied, raw = make_message(seeds, args.seed, number)
        tally.message = (number, name, applied, raw)
        applied_count.update(applied)
        sizes.append(len(raw))
        if args.only is not None:
            _dump(args.dump, number, raw)
        reading = tally.call(
            "read", read_message, raw, "alice@northwind-robotics.example", envelope_to
        )
        text = raw.decode("utf-8", "replace")[:RAW_TEXT_CHARS]
        sections = tally.call("sections", split_sections, text)
        if reading is not None:
            tally.call(
                "merge",
                merge,
                first_update,
                reading.sections,
                reading.text,
                has_attachments=bool(reading.attachments),
            )
        if sections is not None:
            tally.call("merge", merge, first_update, sections.to_json(), text)
        for body, content_type in posts_for(raw, random.Random(f"{args.seed}:{number}:posts")):
            parts = tally.call("webhook", form_parts, body, content_type, allowed=(ValueError,))
            received = None if parts is None else tally.call("webhook", from_sendgrid, parts)
            # The MIME rebuilt from a default-mode post is read too, for every fourth message.
            if received is not None and received.source == "sendgrid-parsed" and number % 4 == 0:
                tally.call(
                    "read", read_message, received.raw, received.envelope_from, received.envelope_to
                )
    elapsed = time.perf_counter() - started

    exceptions, slow, slowest = tally.exceptions, tally.slow, tally.slowest
    result = {
        "count": len(numbers),
        "seed": args.seed,
        "exceptions": len(exceptions),
        "over_limit": len(slow),
        "limit_s": args.limit,
        "slowest_s": round(max((t for t, _n in slowest.values()), default=0.0), 3),
        "slowest": {
            target: {"seconds": round(t, 3), "message": n}
            for target, (t, n) in sorted(slowest.items())
        },
        "seconds_by_target": {target: round(t, 1) for target, t in sorted(tally.seconds.items())},
        "elapsed_s": round(elapsed, 1),
        "messages_per_s": round(len(numbers) / elapsed, 1) if elapsed else None,
        "bytes_median": sorted(sizes)[len(sizes) // 2] if sizes else 0,
        "bytes_max": max(sizes, default=0),
        "mutations": dict(sorted(applied_count.items())),
        "seed_mail": len(seeds),
        "exception_kinds": dict(Counter(_kind(e) for e in exceptions)),
        "exception_examples": _first_of_each_kind(exceptions)[:10],
        "over_limit_examples": slow[:5],
        "failures_in": str(args.dump) if exceptions or slow else None,
    }
    print(
        f"{result['count']} messages from {len(seeds)} seed mails (seed {args.seed}) in "
        f"{elapsed:.1f} s: {len(exceptions)} exceptions, {len(slow)} calls over {args.limit} s"
    )
    for target, (took, number) in sorted(slowest.items()):
        print(
            f"  slowest {target:8} {took:7.3f} s  (message {number}); "
            f"all {target} calls {tally.seconds[target]:.1f} s"
        )
    for example in result["exception_examples"]:
        print(
            f"  exception: message {example['message']} {example['mutations']} in "
            f"{example['target']}: {example['error'][:160]} ({example['where']})"
        )
    for example in slow[:10]:
        print(f"  over the limit: {example}")
    print(json.dumps(result))
    return 0 if not exceptions and not slow else 1


def _kind(exception: dict[str, Any]) -> str:
    return f"{exception['error'].partition(':')[0]} at {exception['where']}"


def _first_of_each_kind(exceptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first: dict[str, dict[str, Any]] = {}
    for exception in exceptions:
        first.setdefault(_kind(exception), exception)
    return list(first.values())


def _dump(folder: Path, number: int, raw: bytes, prefix: str = "message") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}-{number}.eml"
    path.write_bytes(raw)
    return path


if __name__ == "__main__":
    sys.exit(main())
