"""Receiving mail: the webhooks store every message raw and commit before answering 200.

SendGrid drops mail it gets a 4xx for and retries 5xx for three days, so we answer 5xx only
when we could not store, and never reject a message here for what it says: that is the
worker's job, which records a reason on the row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from email import encoders
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from flask import Blueprint, Response, current_app, request
from sqlalchemy import Connection, Dialect, Insert, bindparam, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from app import clock, db, jobs
from app.models import InboundMessage, InboundStatus
from app.reading.machine import decode_bytes
from app.settings import Settings

log = logging.getLogger(__name__)

blueprint = Blueprint("inbound", __name__)

# Headers we rebuild ourselves when assembling a parsed-mode post back into MIME.
_BODY_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version", "content-length"})


# --- multipart, byte-exact --------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def form_parts(body: bytes, content_type: str) -> dict[str, Part]:
    """Split a form post (multipart or url-encoded) into its parts, keeping each part's exact bytes.

    Werkzeug's form decoding replaces bytes that are not UTF-8, which would garble an 8-bit
    Latin-1 message; its sans-io decoder gives us the bytes untouched.
    """
    if (content_type or "").lower().startswith("application/x-www-form-urlencoded"):
        # Latin-1 maps bytes 1:1, so percent-decoded values keep their exact bytes.
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        return {k: Part(k, None, None, v.encode("latin-1")) for k, v in pairs}
    match = re.search(r'boundary="?([^";]+)"?', content_type or "", re.I)
    if not match:
        raise ValueError(f"not a form post (Content-Type {content_type or 'missing'})")
    decoder = MultipartDecoder(match.group(1).encode("latin-1"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: dict[str, Part] = {}
    current: Field | File | None = None
    chunks: list[bytes] = []
    while True:
        event = decoder.next_event()
        if isinstance(event, (NeedData, Epilogue)):
            break
        if isinstance(event, (Field, File)):
            current, chunks = event, []
        elif isinstance(event, Data) and current is not None:
            chunks.append(event.data)
            if not event.more_data:
                filename = current.filename if isinstance(current, File) else None
                name = current.name or ""  # a part without a name is kept under ""
                parts[name] = Part(name, filename, current.headers.get("content-type"), b"".join(chunks))
                current = None
    return parts


def _text(parts: dict[str, Part], name: str, charsets: dict[str, str]) -> str | None:
    part = parts.get(name)
    if part is None:
        return None
    label = charsets.get(name)
    charset = (label if isinstance(label, str) else None) or _charset_of(part.content_type) or "utf-8"
    try:
        return part.data.decode(charset)
    except (LookupError, UnicodeDecodeError, ValueError):  # unknown label, bad bytes, a NUL in it
        return part.data.decode("utf-8", "replace")


def _clean(address: str) -> str:
    """An address as we store it: no NUL (PostgreSQL text refuses it), at most 320 characters."""
    return address.replace("\x00", "")[:320]


def _charset_of(content_type: str | None) -> str | None:
    match = re.search(r'charset="?([\w.:-]+)', content_type or "", re.I)
    return match.group(1) if match else None


# --- turning a post into a stored message ----------------------------------------------------


@dataclass(frozen=True)
class Received:
    raw: bytes
    source: str
    fields: dict[str, Any]
    envelope_from: str | None
    envelope_to: list[str]


def from_sendgrid(parts: dict[str, Part]) -> Received:
    """Read a SendGrid Inbound Parse post, raw mode (`email`) or the default parsed mode."""
    try:
        charsets = json.loads(_text(parts, "charsets", {}) or "{}")
    except ValueError:
        charsets = {}
    if not isinstance(charsets, dict):
        charsets = {}
    try:
        envelope = json.loads(_text(parts, "envelope", {}) or "{}")
    except ValueError:
        envelope = {}
    if not isinstance(envelope, dict):
        envelope = {}
    to = envelope.get("to") or []
    envelope_to = [_clean(str(a)) for a in (to if isinstance(to, list) else [to])]
    envelope_from = envelope.get("from")
    envelope_from = None if envelope_from is None else _clean(str(envelope_from))
    skip = {"email", "headers", "text", "html"}
    fields = {
        name: _text(parts, name, charsets)
        for name, part in parts.items()
        if part.filename is None and name not in skip and not name.startswith("attachment")
    }
    if "email" in parts:
        return Received(parts["email"].data, "sendgrid-raw", fields, envelope_from, envelope_to)
    return Received(_mime_from_parsed(parts, charsets), "sendgrid-parsed", fields, envelope_from, envelope_to)


def _mime_from_parsed(parts: dict[str, Part], charsets: dict[str, str]) -> bytes:
    """Rebuild one MIME message from parsed-mode fields so every later step reads one format.

    The header fields go back as SendGrid sent them, in UTF-8 (RFC 6532, as raw mode and any
    SMTPUTF8 relay bring them, and the reader takes): re-encoding a field whole made a single
    encoded-word of a display name and its address together, and the sender unreadable.
    """
    text = _text(parts, "text", charsets)
    html = _text(parts, "html", charsets)
    try:
        info = json.loads(_text(parts, "attachment-info", charsets) or "{}")
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    bodies: list[Message] = []
    if text is not None:
        bodies.append(MIMEText(text, "plain", "utf-8"))
    if html is not None:
        bodies.append(MIMEText(html, "html", "utf-8"))
    if len(bodies) == 2:
        body: Message = MIMEMultipart("alternative", _subparts=bodies)
    elif bodies:
        body = bodies[0]
    else:
        body = MIMEText("", "plain", "utf-8")
    attachments = [p for name, p in sorted(parts.items()) if p.filename is not None or name in info]
    if attachments:
        message: Message = MIMEMultipart("mixed", _subparts=[body])
        for part in attachments:
            message.attach(_attachment(part, info.get(part.name)))
    else:
        message = body
    lines, names = _header_lines(_text(parts, "headers", charsets) or "")
    for name, field in (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Subject", "subject")):
        value = fields_value(parts, field, charsets)
        if name.lower() not in names and value:
            # SendGrid decodes these fields, so an encoded CR or LF arrives as one: a line break
            # here would end the header section early and make the rest of it the body.
            lines.append(f"{name}: {_LINE_BREAKS.sub(' ', value)}")
    head = "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")
    return head + message.as_bytes(policy=compat32.clone(linesep="\r\n", max_line_length=0))


_LINE_BREAKS = re.compile(r"[\r\n]+")
_FIELD_NAME = re.compile(r"([!-9;-~]+)[ \t]*:")  # RFC 5322 ftext, then the colon
_MIME_TYPE = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+")


def _header_lines(block: str) -> tuple[list[str], set[str]]:
    """The lines of a parsed-mode `headers` block to write back, and the field names in it
    (lower-case). Our own body's fields (Content-Type and the rest) are left out. A line that
    is neither a field nor a continuation (a stray CR splits a value in two) continues the field
    before it: no line can end the header section early, and none is lost but blank ones and
    any before the first field."""
    lines: list[str] = []
    names: set[str] = set()
    keep = False
    for line in _LINE_BREAKS.split(block):
        if not line.strip():
            continue
        if field := _FIELD_NAME.match(line):
            name = field.group(1).lower()
            keep = name not in _BODY_HEADERS
            names.add(name)
            if keep:
                lines.append(line)
        elif keep:
            lines.append(line if line[0] in " \t" else " " + line)
    return lines, names


def _attachment(part: Part, meta: Any) -> Message:
    """One attachment. `attachment-info` is the sender's to shape: a value there that is not a
    string is ignored, and a type that is not a MIME type goes out as octet-stream."""
    meta = meta if isinstance(meta, dict) else {}

    def given(key: str) -> str | None:
        value = meta.get(key)
        return value if isinstance(value, str) and value.strip() else None

    offered = (t.split(";")[0].strip() for t in (given("type"), part.content_type) if t)
    content_type = next((t for t in offered if _MIME_TYPE.fullmatch(t)), "application/octet-stream")
    maintype, _, subtype = content_type.partition("/")
    attachment = MIMEBase(maintype, subtype)
    attachment.set_payload(part.data)
    encoders.encode_base64(attachment)
    filename = given("filename") or part.filename or part.name or "attachment"
    # RFC 2231 percent-encodes the name: a CR or LF in it stays inside the field.
    attachment.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    if content_id := "".join((given("content-id") or "").split()).strip("<>"):
        attachment.add_header("Content-ID", f"<{content_id}>")
    return attachment


def fields_value(parts: dict[str, Part], name: str, charsets: dict[str, str]) -> str | None:
    value = _text(parts, name, charsets)
    return value.strip() if value else None


def dedupe_key(raw: bytes, message_id: str | None) -> str:
    if message_id:
        cleaned = message_id.strip().strip("<>").strip().lower()
        if cleaned:
            return "mid:" + (cleaned if len(cleaned) <= 240 else hashlib.sha256(cleaned.encode()).hexdigest())
    return "sha256:" + hashlib.sha256(raw).hexdigest()


_HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_HEADER_BLOCK = 256 * 1024


def header_block(raw: bytes) -> bytes:
    """The message's header lines, without the body."""
    end = _HEADER_END.search(raw, 0, MAX_HEADER_BLOCK)
    return raw[: end.end() if end else MAX_HEADER_BLOCK]


# What the webhook stores. The sender and subject are read by the worker, which parses the whole
# message anyway: parsing them here cost a quarter of the webhook's own time.
_COLUMNS = ("dedupe_key", "message_id", "source", "raw", "fields", "envelope_from", "envelope_to", "status", "received_at")
DATABASE_ERRORS = (SQLAlchemyError, psycopg.Error)
CONNECTION_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def _row(received: Received) -> dict[str, Any]:
    message_id = header_value(header_block(received.raw), "Message-ID")
    return dict(
        dedupe_key=dedupe_key(received.raw, message_id),
        message_id=(message_id or "")[:998] or None,
        source=received.source,
        raw=received.raw,
        fields=received.fields,
        envelope_from=received.envelope_from,
        envelope_to=",".join(received.envelope_to) or None,
        status=InboundStatus.RECEIVED,
        received_at=clock.now(),
        queued_at=time.monotonic(),  # not a column: when it was handed to the writer
    )


@cache
def _insert_rows_once(dialect: str, count: int) -> Insert:
    """An insert of `count` rows, each value a parameter named `<column>_<row>`; built once per size."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = InboundMessage.__table__
    rows = [{c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in _COLUMNS} for i in range(count)]
    return (
        insert(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id, table.c.dedupe_key)
    )


@cache
def _driver_sql(dialect: Dialect, count: int) -> tuple[str, tuple[str, ...]]:
    """That insert with PostgreSQL's own $n parameters, and the parameter names in their
    order; compiled once per size. psycopg's RawCursor sends it as it is, where its usual
    cursor would parse %s placeholders again on every execution of a statement with more than
    50 parameters (past five rows)."""
    compiled = _insert_rows_once(dialect.name, count).compile(dialect=type(dialect)(paramstyle="numeric_dollar"))
    return str(compiled), tuple(compiled.positiontup or ())


def _insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert rows with distinct dedupe keys in one statement; the new ids by dedupe key (a
    duplicate of a stored message gets none).

    On PostgreSQL the compiled statement goes straight to psycopg: SQLAlchemy's per-execution
    bookkeeping cost a tenth of the webhook's time and buys nothing for one fixed statement
    whose parameters psycopg adapts itself (the JSON column takes its text).
    """
    params = {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in _COLUMNS}
    if connection.dialect.name != "postgresql":
        return {key: id for id, key in connection.execute(_insert_rows_once(connection.dialect.name, len(rows)), params)}
    for i, row in enumerate(rows):
        params[f"fields_{i}"] = json.dumps(row["fields"])
    sql, names = _driver_sql(connection.dialect, len(rows))
    cursor = psycopg.RawCursor(connection.connection.driver_connection)
    return {key: id for id, key in cursor.execute(sql, [params[name] for name in names])}


@dataclass(frozen=True)
class Stored:
    id: int
    created: bool
    pending: bool  # not processed yet: worth a nudge


def _store_rows(connection: Connection, rows: list[dict[str, Any]]) -> list[Stored | None]:
    """Store rows in one statement on an autocommit connection: committed when it returns.

    `INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`: the schema decides what is a duplicate,
    even between two concurrent retries; the same message twice in one batch goes in once.
    None for a duplicate whose stored row is gone by the time we look (nothing deletes them
    today): the sender is asked to retry.
    """
    distinct: dict[str, dict[str, Any]] = {}
    for row in rows:
        distinct.setdefault(row["dedupe_key"], row)
    inserted = _insert_rows(connection, list(distinct.values()))
    existing = {}
    if missing := {row["dedupe_key"] for row in rows} - inserted.keys():
        query = select(InboundMessage.dedupe_key, InboundMessage.id, InboundMessage.status)
        found = connection.execute(query.where(InboundMessage.dedupe_key.in_(missing)))
        existing = {key: (id, status) for key, id, status in found}
    stored: list[Stored | None] = []
    claimed = set()
    for row in rows:
        key = row["dedupe_key"]
        if key in inserted:
            stored.append(Stored(inserted[key], created=key not in claimed, pending=True))
            claimed.add(key)
        elif key in existing:
            id, status = existing[key]
            stored.append(Stored(id, created=False, pending=status == InboundStatus.RECEIVED))
        else:
            stored.append(None)
    return stored


class NoAnswer(Exception):
    """The database did not answer within the web's DATABASE_TIMEOUT."""


class _Writer:
    """Stores batches for one process on a connection of its own, which it keeps: one batch
    writes at a time (`db.GroupCommit`), and a pool checkout and return per request cost more
    than the insert itself. A connection that fails is dropped and replaced.

    With `timeout_s` (the web's DATABASE_TIMEOUT) its connection has a web session's limits
    (`db.engine_for`), and a server that stops answering is given `timeout_s` and a second
    before the connection is cut (`db.Watchdog`): a writer stuck for good would hold up every
    post of its process.
    """

    def __init__(self, url: str, timeout_s: float | None = None) -> None:
        self._url, self._timeout_s = url, timeout_s
        self._connection: Connection | None = None
        self._watchdog = db.Watchdog()
        self._unreachable_at = -math.inf  # when a write last found the database unreachable

    def __call__(self, rows: list[dict[str, Any]]) -> list[Stored | None]:
        """Store a batch; None for a message that could not be stored. Trying again is safe:
        the insert is idempotent. When the connection it kept failed (the server dropped it, or
        restarted), the batch gets one more try on a new connection. A database that cannot be
        reached, or did not answer in time, gets none: the callers answer 503 at once and
        SendGrid tries again later; so do the callers that were already waiting then, whose
        write would only wait as long again. When the database refused the data, each message
        gets a try on its own, so one bad row fails no other."""
        if all(row["queued_at"] < self._unreachable_at for row in rows):
            return [None] * len(rows)
        kept = self._connection is not None
        try:
            return self._store(rows)
        except NoAnswer as error:
            return self._unreachable(rows, error)
        except DATABASE_ERRORS as error:
            if isinstance(error, CONNECTION_ERRORS) and not kept:
                return self._unreachable(rows, error)
            failed_connection = isinstance(error, CONNECTION_ERRORS)
            log.warning("storing %d inbound message(s) failed; trying again", len(rows), exc_info=True)
        if failed_connection:
            try:
                return self._store(rows)
            except (NoAnswer, *DATABASE_ERRORS) as error:
                return self._unreachable(rows, error)
        results: list[Stored | None] = []
        for n, row in enumerate(rows):
            try:
                results.extend(self._store([row]))
            except (NoAnswer, *CONNECTION_ERRORS) as error:  # no try for the rest either
                return results + self._unreachable(rows[n:], error)
            except DATABASE_ERRORS:
                log.exception("could not store inbound message %s", row["dedupe_key"])
                results.append(None)
        return results

    def _unreachable(self, rows: list[dict[str, Any]], error: Exception) -> list[Stored | None]:
        self._unreachable_at = time.monotonic()
        log.error("could not store %d inbound message(s): %s", len(rows), error)
        return [None] * len(rows)

    def _store(self, rows: list[dict[str, Any]]) -> list[Stored | None]:
        if self._connection is None:
            self._connection = db.autocommit_engine_for(self._url, self._timeout_s).connect()
        watched = None
        try:
            with self._deadline(self._connection) as watched:
                return _store_rows(self._connection, rows)
        except DATABASE_ERRORS as error:
            connection, self._connection = self._connection, None
            connection.invalidate()  # the insert bypasses SQLAlchemy, which would not know
            connection.close()
            cause = getattr(error, "orig", None) or error
            if watched is not None and watched.cut:
                raise NoAnswer(f"the database did not answer within {self._timeout_s} s") from error
            if isinstance(cause, psycopg.errors.QueryCanceled):  # statement_timeout
                raise NoAnswer(f"a statement ran past {self._timeout_s} s") from error
            raise

    def _deadline(self, connection: Connection) -> AbstractContextManager[db.Watched | None]:
        if self._timeout_s is None or connection.dialect.name != "postgresql":
            return nullcontext()
        # A second past statement_timeout: a server that answers at all says so first.
        fileno = connection.connection.driver_connection.fileno()  # type: ignore[union-attr]
        return self._watchdog.watch(fileno, self._timeout_s + 1)


_writers: dict[tuple[str, int, float | None], db.GroupCommit[dict[str, Any], Stored | None]] = {}


def _writer(
    url: str, pid: int, timeout_s: float | None = Settings.database_timeout_s
) -> db.GroupCommit[dict[str, Any], Stored | None]:
    """The process's writer for a database and DATABASE_TIMEOUT. pid in the key, as for
    engines: a forked process starts with a writer of its own."""
    key = (url, pid, timeout_s)
    writer = _writers.get(key)
    if writer is None:
        # A caller waits for its turn no longer than a write may take.
        wait_s = None if timeout_s is None else timeout_s + 1
        writer = _writers.setdefault(key, db.GroupCommit(_Writer(url, timeout_s), max_items=16, wait_s=wait_s))
    return writer


def store(url: str, received: Received, timeout_s: float | None = Settings.database_timeout_s) -> Stored | None:
    """Store a received message once and commit; None when the database would not take it,
    or not within about `timeout_s` (None: no limit).

    Concurrent requests in one process share one statement and one commit (`db.GroupCommit`),
    and each returns only after its own commit.
    """
    try:
        return _writer(url, os.getpid(), timeout_s)(_row(received))
    except TimeoutError as error:  # waited behind a write that did not end in time
        log.error("could not store an inbound message: %s", error)
        return None


@cache
def _header_pattern(name: str) -> re.Pattern[bytes]:
    # The field's first line, then its folded continuation lines (which start with a blank).
    return re.compile(rb"^" + re.escape(name.encode()) + rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)


def header_value(block: bytes, name: str) -> str | None:
    """The first `name` field of a header block, unfolded, 8-bit bytes read as UTF-8 (else
    Latin-1: text a database can always store); None when absent or blank.

    A search, not a parse: the webhook wants one field, and the parser cost a fifth of the
    request's time (the worker parses the whole message).
    """
    match = _header_pattern(name).search(block)
    if match is None:
        return None
    value = decode_bytes(match.group(1), "utf-8").replace("\x00", "")
    return " ".join(value.split()) or None


# --- the views ---------------------------------------------------------------------------------


def _settings() -> Settings:
    return current_app.config["ROUNDTABLE_SETTINGS"]


def _authorized(settings: Settings) -> bool:
    if settings.inbound_username is None:
        return True
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    # Compare both halves in constant time, and both always, so timing says nothing.
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.inbound_username.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode(), (settings.inbound_password or "").encode())
    return user_ok and password_ok


def _unauthorized() -> Response:
    return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="roundtable-inbound"'})


def _accept(received: Received) -> Response:
    """Store, commit, then nudge a worker. 5xx only when the message could not be stored."""
    settings = _settings()
    stored = store(settings.database_url, received, settings.database_timeout_s)
    if stored is None:  # logged by the writer
        return Response("could not store the message, try again later\n", 503, {"Retry-After": "60"})
    if stored.pending:
        jobs.nudge_inbound_soon()
    body = json.dumps({"id": stored.id, "duplicate": not stored.created}) + "\n"
    return Response(body, 200, {"Content-Type": "application/json"})


def _body() -> bytes:
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        log.warning(
            "inbound post of %s bytes refused: over MAX_INBOUND_MB (%s bytes)",
            request.content_length,
            _settings().max_inbound_bytes,
        )
        raise


@blueprint.post("/inbound/sendgrid")
def sendgrid_inbound() -> Response:
    settings = _settings()
    if not _authorized(settings):
        return _unauthorized()
    body = _body()
    try:
        parts = form_parts(body, request.content_type or "")
    except ValueError as error:
        # Not a SendGrid post at all; keep the bytes anyway so nothing is lost.
        log.warning("inbound post was not multipart (%s); storing the body raw", error)
        return _accept(Received(body, "sendgrid-unreadable", {"error": str(error)}, None, []))
    return _accept(from_sendgrid(parts))


@blueprint.post("/inbound/raw")
def raw_inbound() -> Response:
    """A raw message/rfc822 body, from a Postfix pipe or another provider."""
    settings = _settings()
    if not _authorized(settings):
        return _unauthorized()
    body = _body()
    envelope_to = [a for a in request.args.getlist("to") if a] or [
        a.strip() for a in request.headers.get("X-Envelope-To", "").split(",") if a.strip()
    ]
    envelope_from = request.args.get("from", request.headers.get("X-Envelope-From"))
    envelope_from = None if envelope_from is None else _clean(envelope_from)
    return _accept(Received(body, "raw", {}, envelope_from, [_clean(a) for a in envelope_to]))
