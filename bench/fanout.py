"""Benchmark a Vistage-size month: one tick queues every member's update request, rq workers
send them through the real sendgrid client to a local stand-in of SendGrid's v3 API.

    python bench/fanout.py                      # 45,000 members in 3,500 groups, all sent
    python bench/fanout.py --scale 0.1          # a quick run: 4,500 members in 350 groups
    python bench/fanout.py --sample 1200 --no-drain   # full size, only samples sent (bounded)
    python bench/fanout.py --tick-only          # setup, busy tick, enqueue, idle tick
    python bench/fanout.py --history-months 3   # with earlier months in the tables
    python bench/fanout.py --profile /tmp/prof  # py-spy (wall clock) the tick, enqueue, one job

What it measures (printed as a table, then one JSON object as the last line):
  tick      one `app.cycles.tick` at a `now` when every group's requests are due (it makes one
            UpdateRequest + OutboundMessage per member), plus its commit: `tick_s`; also the
            SQL statements it ran, by shape, with their count and seconds in cursor.execute,
            and this process's CPU seconds (`tick_cpu_s`);
  enqueue   `workers.jobs.send_outbound` rq jobs of up to SEND_BATCH (50) outbound ids each,
            through `app.jobs.enqueue_sends` exactly as `workers.jobs.tick` does (Redis db 5):
            `enqueue_s`;
  job only  `workers.jobs.send_outbound` called in this process with the last JOB_ONLY ids (never
            enqueued): the job's own cost without rq (`job_only_emails_per_s`);
  send      real rq workers, separate processes (`rq worker -w rq.worker.SimpleWorker --burst
            --max-jobs N`, environment as `roundtable worker` reads it), the real sendgrid
            client against the stand-in. All jobs are enqueued once, then the phases take their
            share off the same queue:
              1. one SimpleWorker, `--max-jobs SAMPLE/SEND_BATCH` (SAMPLE emails);
              2. one forking rq.Worker started as `roundtable worker` starts it (workers.jobs
                 imported before the first fork; `worker_process` below), FORK_SAMPLE emails, for
                 comparison only;
              3. two SimpleWorkers in parallel, SAMPLE/2 emails each (SAMPLE in all);
              4. two SimpleWorkers, `--burst`, until the queue is empty (skipped by --no-drain).
            emails/s = rows that became `sent` during the phase / wall-clock seconds from
            starting the worker processes to the last one exiting (start-up included);
            `steady` is the same from the first to the last `sent_at` of the phase;
  month     `month_minutes` = tick + enqueue + members / (2-worker rate over phases 3 and 4),
            i.e. extrapolated (`month_minutes_basis` says so); with the last phase, the actual
            wall-clock of tick + enqueue + all four phases is `month_minutes_measured_mixed`;
  idle      `tick` again at the same `now` after the sends, best of 3, rolled back: it must
            queue nothing and change no row counts (`idle_tick_s`).
  machine   load average at start and end, and the median PostgreSQL `SELECT 1` and Redis
            PING round trips: other work on the machine shows in every figure.

Checks: this month's outbound rows == members; rows sent == what the phases sent == stand-in
requests; every row sent (or, with --no-drain, the rest still queued and in the rq queue); no
Message-ID seen twice by the stand-in; one attempt per sent row; no failed or retrying rq job.

The stand-in: `http.server.ThreadingHTTPServer` in its own process (multiprocessing), answering
202 with a unique `X-Message-Id`; it parses each JSON body and records its Message-ID header.
Its capacity is measured once (2 client processes x 4 threads, new connection per request as
the sendgrid client makes them, a body the size of a real request) and printed.

Setup (not in the figures): drops and creates the `bench_fanout` database, `app.db.upgrade`,
SQLAlchemy core bulk inserts of groups, facilitators, members, and one cycle per group whose
times come from `app.cycles.group_schedule`; groups spread over six timezones and five meeting
days; `--history-months` adds earlier, finished months. Clean-up: workers and stand-in stopped,
Redis db 5 flushed, the database dropped.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATABASE_NAME = "bench_fanout"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/5"
SEND_JOB = "workers.jobs.send_outbound"
MAIL_FROM = "Roundtable <roundtable@forum.example>"
INBOUND_DOMAIN = "in.forum.example"
BASE_URL = "https://roundtable.example"
API_KEY = "SG.bench-key"
SIMPLE_WORKER = "rq.worker.SimpleWorker"
FORK_WORKER = "rq.worker.Worker"
TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Europe/London",
    "Australia/Sydney",
)
MEETING_STARTS = ("07:30", "08:00", "08:30", "12:00", "13:00")
FIRST_MEETING_DAY = date(2026, 12, 7)  # meetings Monday 7 to Friday 11 December
PHASE_TIMEOUT_S = 900  # hard stop for any one send phase
FIRST_NAMES = ("Alice", "Ben", "Carmen", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas")
LAST_NAMES = ("Chen", "Okafor", "Ruiz", "Patel", "Novak", "Haddad", "Kim", "Sato", "Silva", "Berg")


# --- the SendGrid stand-in (its own process) -----------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog; the default of 5 refuses bursts


def _standin_main(port_pipe: Any) -> None:
    lock = threading.Lock()
    state: dict[str, Any] = {
        "requests": 0,
        "message_ids": set(),
        "duplicates": 0,
        "no_message_id": 0,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path == "/__reset":
                with lock:
                    state.update(requests=0, message_ids=set(), duplicates=0, no_message_id=0)
                self._answer(200, b"{}")
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._answer(400, b'{"errors":[{"message":"bad json"}]}')
                return
            headers = dict(body.get("headers") or {})
            for personalization in body.get("personalizations") or []:
                headers.update(personalization.get("headers") or {})
            message_id = headers.get("Message-ID")
            with lock:
                state["requests"] += 1
                number = state["requests"]
                if message_id is None:
                    state["no_message_id"] += 1
                elif message_id in state["message_ids"]:
                    state["duplicates"] += 1
                else:
                    state["message_ids"].add(message_id)
            self._answer(202, b"", {"X-Message-Id": f"bench-{number}"})

        def do_GET(self) -> None:
            with lock:
                stats = {
                    "requests": state["requests"],
                    "unique_message_ids": len(state["message_ids"]),
                    "duplicates": state["duplicates"],
                    "no_message_id": state["no_message_id"],
                }
            self._answer(200, json.dumps(stats).encode())

        def _answer(
            self, status: int, payload: bytes, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    port_pipe.send(server.server_address[1])
    port_pipe.close()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)
    server.server_close()


class StandIn:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_standin_main, args=(child,), name="sendgrid-stand-in", daemon=True
        )
        self.process.start()
        if not parent.poll(15):
            raise RuntimeError("the stand-in did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/__stats", timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/__reset", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _probe_body(number: int) -> bytes:
    """A body the size and shape of a real update request (about 14 KB of JSON)."""
    html = (
        '<p style="margin:0 0 12px;font-family:Georgia,serif">'
        + "Lorem ipsum dolor sit amet. " * 12
        + "</p>"
    )
    return json.dumps(
        {
            "from": {"email": "roundtable@forum.example", "name": "Roundtable"},
            "subject": "Your December update for Group 17 is due Fri 4 Dec, 17:00 EST",
            "personalizations": [
                {"to": [{"email": f"m{number}@example.com", "name": "Alice Chen"}]}
            ],
            "content": [
                {"type": "text/plain", "value": "x" * 2500},
                {"type": "text/html", "value": html * 30},
            ],
            "headers": {"Message-ID": f"<probe.{os.getpid()}.{number}@forum.example>"},
            "custom_args": {"outbound_id": str(number)},
            "categories": ["update_request"],
        }
    ).encode()


def _probe_client(url: str, seconds: float, threads: int, out: Any) -> None:
    import http.client

    host, port = url.removeprefix("http://").split(":")
    counts = [0] * threads
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        number = index * 10_000_000
        while time.perf_counter() < deadline:
            number += 1
            started = time.perf_counter()
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request(
                "POST",
                "/v3/mail/send",
                _probe_body(number),
                {"Content-Type": "application/json", "Authorization": "Bearer x"},
            )
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 202:
                raise RuntimeError(f"stand-in answered {response.status}")
            counts[index] += 1
            latencies.append(time.perf_counter() - started)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    latencies.sort()
    out.put((sum(counts), latencies[len(latencies) // 2] if latencies else 0.0))


def measure_standin(
    stand_in: StandIn, seconds: float = 3.0, processes: int = 2, threads: int = 4
) -> dict[str, float]:
    """Requests/s the stand-in answers under a Python client load that shares the 2 cores."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    clients = [
        context.Process(target=_probe_client, args=(stand_in.url, seconds, threads, out))
        for _ in range(processes)
    ]
    started = time.perf_counter()
    for client in clients:
        client.start()
    results = [out.get(timeout=seconds + 30) for _ in clients]
    for client in clients:
        client.join(10)
    elapsed = time.perf_counter() - started
    served = stand_in.stats()["requests"]
    stand_in.reset()
    sent = sum(count for count, _ in results)
    if served != sent:
        raise RuntimeError(f"stand-in counted {served} probe requests, clients sent {sent}")
    return {
        "rps": sent / elapsed,
        "p50_ms": 1000 * max(p50 for _, p50 in results),
        "requests": sent,
    }


# --- database, Redis --------------------------------------------------------------------------


def database_url() -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE_NAME


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE_NAME}")


def drop_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")


def flush_redis() -> None:
    from redis import Redis

    with Redis.from_url(REDIS_URL) as connection:
        connection.flushdb()


def redis_is_empty() -> bool:
    from redis import Redis

    with Redis.from_url(REDIS_URL) as connection:
        return connection.dbsize() == 0


def history_rows(
    groups: int,
    members_of: dict[int, list[int]],
    members: dict[int, dict[str, Any]],
    transients: dict[int, Any],
    months: int,
    created: datetime,
) -> dict[str, list[dict[str, Any]]]:
    """Earlier months, as production has them: per group a done cycle a month apart; per member an
    update request and its sent email, two sent reminders for the 30% who did not reply, a digest;
    for the latest month the replies (an inbound message and an update with next commitments),
    so that `open_commitments` has work to do. Returns rows by table name."""
    import secrets

    from app.cycles import group_schedule, local_at
    from app.models import CycleStatus
    from app.reading.sections import SECTIONS

    sections = [{"key": s.key, "title": s.title, "hint": s.hint} for s in SECTIONS]
    rows: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    ids = collections.Counter()

    def next_id(table: str) -> int:
        ids[table] += 1
        return ids[table]

    for month in range(1, months + 1):
        for g in range(1, groups + 1):
            group = transients[g]
            day = FIRST_MEETING_DAY + timedelta(days=g % 5) - timedelta(weeks=4 * month)
            starts_at = local_at(day, MEETING_STARTS[g % len(MEETING_STARTS)], group.timezone)
            schedule = group_schedule(group, starts_at)
            cycle_id = month * groups + g  # after the current month's cycles 1..groups
            rows["cycles"].append(
                {
                    "id": cycle_id,
                    "group_id": g,
                    "meeting_starts_at": starts_at,
                    "meeting_ends_at": starts_at + timedelta(hours=4),
                    "location": group.default_location,
                    "request_at": schedule.request_at,
                    "deadline_at": schedule.deadline_at,
                    "status": CycleStatus.DONE.value,
                    "requests_sent_at": schedule.request_at,
                    "reminder_index_sent": len(schedule.reminder_ats) - 1,
                    "digest_sent_at": schedule.reminder_ats[-1],
                    "created_at": created,
                }
            )
            sent_at = schedule.request_at + timedelta(seconds=30)

            def outbound(
                kind: str,
                key: str,
                member_id: int | None,
                to: dict[str, Any],
                context: dict[str, Any],
                reply_to: str | None = None,
                at: datetime = sent_at,
                group_id: int = g,
                cycle_id: int = cycle_id,
                created_at: datetime = schedule.request_at,
            ) -> None:
                rows["outbound_messages"].append(
                    {
                        "id": next_id("outbound_messages"),
                        "kind": kind,
                        "dedupe_key": key,
                        "message_id": f"<{kind}.{secrets.token_hex(12)}@forum.example>",
                        "group_id": group_id,
                        "cycle_id": cycle_id,
                        "member_id": member_id,
                        "to_email": to["email"],
                        "to_name": to["name"],
                        "reply_to": reply_to,
                        "in_reply_to": None,
                        "context": context,
                        "status": "sent",
                        "attempts": 1,
                        "provider_message_id": f"history-{ids['outbound_messages']}",
                        "last_error": None,
                        "created_at": created_at,
                        "sent_at": at,
                    }
                )

            missing = []
            for m in members_of[g]:
                member = members[m]
                token = secrets.token_hex(16)
                replied = (m + month) % 10 < 7
                request_id = next_id("update_requests")
                rows["update_requests"].append(
                    {
                        "id": request_id,
                        "cycle_id": cycle_id,
                        "member_id": m,
                        "token": token,
                        "replied_at": schedule.request_at + timedelta(days=3) if replied else None,
                        "excused_at": None,
                        "created_at": schedule.request_at,
                    }
                )
                context = {
                    "group_name": group.name,
                    "first_name": member["name"].split()[0],
                    "month_label": f"{day:%B}",
                    "due_label": f"{schedule.deadline_at:%a %-d %b, %H:%M} UTC",
                    "due_short": f"{schedule.deadline_at:%a %-d %b}",
                    "meeting_label": f"{starts_at:%A %-d %B %Y, %H:%M} UTC",
                    "location": group.default_location,
                    "facilitator_name": f"Chair {g}",
                    "commitments": [],
                    "sections": sections,
                    "unsubscribe_url": f"{BASE_URL}/unsubscribe/{secrets.token_urlsafe(48)}",
                }
                reply_to = f"reply+{token}@{INBOUND_DOMAIN}"
                outbound("update_request", f"request:{cycle_id}:{m}", m, member, context, reply_to)
                if not replied:
                    missing.append(
                        {
                            "name": member["name"],
                            "email": member["email"],
                            "streak": 0,
                            "missed_before": 1,
                        }
                    )
                    for index, at in enumerate(schedule.reminder_ats):
                        outbound(
                            "reminder",
                            f"reminder:{cycle_id}:{m}:{index}",
                            m,
                            member,
                            context,
                            reply_to,
                            at,
                        )
                elif month == 1:
                    inbound_id = next_id("inbound_messages")
                    message_id = (
                        f"<reply.{request_id}.{secrets.token_hex(6)}@mail.company{m}.example>"
                    )
                    text = (
                        f"Wins: closed the quarter {m % 7 + 2}% ahead.\nChallenges: hiring.\n"
                        "Next commitments:\n- Close the Series B\n- Hire a CFO\n- Two days off in August\n"
                    )
                    rows["inbound_messages"].append(
                        {
                            "id": inbound_id,
                            "dedupe_key": message_id,
                            "message_id": message_id,
                            "source": "sendgrid-raw",
                            "raw": (
                                f"Message-ID: {message_id}\r\nFrom: {member['email']}\r\nSubject: Re: update\r\n\r\n{text}"
                                * 8
                            ).encode(),
                            "fields": {},
                            "envelope_from": member["email"],
                            "envelope_to": reply_to,
                            "from_address": member["email"],
                            "subject": f"Re: Your {day:%B} update",
                            "status": "accepted",
                            "kind": "reply",
                            "reason": None,
                            "update_request_id": request_id,
                            "received_at": schedule.request_at + timedelta(days=3),
                            "processed_at": schedule.request_at + timedelta(days=3),
                        }
                    )
                    rows["updates"].append(
                        {
                            "id": next_id("updates"),
                            "update_request_id": request_id,
                            "inbound_message_id": inbound_id,
                            "version": 1,
                            "text": text,
                            "sections": {
                                "texts": {
                                    "wins": text.splitlines()[0],
                                    "next_commitments": "- Close the Series B\n- Hire a CFO\n- Two days off in August",
                                }
                            },
                            "attachments": {},
                            "is_skip": False,
                            "created_at": schedule.request_at + timedelta(days=3),
                        }
                    )
            outbound(
                "digest",
                f"digest:{cycle_id}:{g}",
                None,
                {"email": f"chair{g}@facilitation.example", "name": f"Chair {g}"},
                {
                    "group_name": group.name,
                    "facilitator_name": f"Chair {g}",
                    "month_label": f"{day:%B}",
                    "due_label": "",
                    "missing": missing,
                    "replied": [],
                    "excused": [],
                },
                at=schedule.reminder_ats[-1],
            )
    return rows


def populate(url: str, members: int, groups: int, history_months: int = 0) -> datetime:
    """Groups, facilitators, members and one cycle per group; return a `now` when every group's
    update requests are due and nothing else is (no reminder, deadline or meeting yet). With
    `history_months`, earlier months too (see `history_rows`)."""
    from sqlalchemy import insert, text

    from app import db
    from app.cycles import group_schedule, local_at
    from app.models import Base, Cycle, CycleStatus, Facilitator, Group, Member

    created = datetime.now(UTC)
    group_rows, facilitator_rows, cycle_rows = [], [], []
    request_ats, first_reminders, deadlines = [], [], []
    transients = {}
    for g in range(1, groups + 1):
        tz = TIMEZONES[g % len(TIMEZONES)]
        values = {
            "id": g,
            "slug": f"group-{g}",
            "name": f"CEO Group {g}",
            "timezone": tz,
            "default_location": f"Conference room {g % 40 + 1}, Main St",
            "request_days_before": 14,
            "reminder_days_before": {"days": [7, 3]},
            "send_local_time": "09:00",
            "deadline_days_before": 2,
            "deadline_local_time": "17:00",
            "packet_to_members": False,
            "created_at": created,
        }
        group_rows.append(values)
        facilitator_rows.append(
            {
                "id": g,
                "group_id": g,
                "name": f"Chair {g}",
                "email": f"chair{g}@facilitation.example",
            }
        )
        starts_at = local_at(
            FIRST_MEETING_DAY + timedelta(days=g % 5), MEETING_STARTS[g % len(MEETING_STARTS)], tz
        )
        transient = transients[g] = Group(
            **{k: v for k, v in values.items() if k not in ("id", "created_at")}
        )
        schedule = group_schedule(transient, starts_at)
        request_ats.append(schedule.request_at)
        first_reminders.append(schedule.reminder_ats[0])
        deadlines.append(schedule.deadline_at)
        cycle_rows.append(
            {
                "id": g,
                "group_id": g,
                "meeting_starts_at": starts_at,
                "meeting_ends_at": starts_at + timedelta(hours=4),
                "location": values["default_location"],
                "request_at": schedule.request_at,
                "deadline_at": schedule.deadline_at,
                "status": CycleStatus.SCHEDULED.value,
                "created_at": created,
            }
        )
    member_rows = []
    for m in range(1, members + 1):
        g = (m - 1) % groups + 1
        member_rows.append(
            {
                "id": m,
                "group_id": g,
                "name": f"{FIRST_NAMES[m % 10]} {LAST_NAMES[(m // 10) % 10]} {m}",
                "email": f"member{m}@company{m}.example",
                "company": f"Company {m} Ltd",
                "title": "CEO",
                "is_active": True,
                "created_at": created,
            }
        )
    tables = [
        (Group.__table__, group_rows),
        (Facilitator.__table__, facilitator_rows),
        (Member.__table__, member_rows),
        (Cycle.__table__, cycle_rows),
    ]
    if history_months:
        members_of: dict[int, list[int]] = collections.defaultdict(list)
        for row in member_rows:
            members_of[row["group_id"]].append(row["id"])
        history = history_rows(
            groups,
            members_of,
            {row["id"]: row for row in member_rows},
            transients,
            history_months,
            created,
        )
        for table in (
            "cycles",
            "update_requests",
            "inbound_messages",
            "updates",
            "outbound_messages",
        ):
            tables.append((Base.metadata.tables[table], history[table]))
    engine = db.engine_for(url)
    with engine.begin() as connection:
        for table, rows in tables:
            for start in range(0, len(rows), 5_000):
                connection.execute(insert(table), rows[start : start + 5_000])
        for table in {table.name for table, _ in tables}:
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    now = max(request_ats) + timedelta(minutes=1)
    if not now < min(first_reminders) or not now < min(deadlines):
        raise RuntimeError("the meeting spread leaves no moment when only the requests are due")
    return now


def table_counts(url: str) -> dict[str, int]:
    from sqlalchemy import text

    from app import db

    with db.engine_for(url).connect() as connection:
        return {
            table: connection.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("update_requests", "outbound_messages")
        }


def sent_window(
    url: str, since: datetime, first_id: int
) -> tuple[int, datetime | None, datetime | None]:
    from sqlalchemy import text

    from app import db

    with db.engine_for(url).connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*), min(sent_at), max(sent_at) FROM outbound_messages"
                " WHERE status = 'sent' AND sent_at >= :since AND id >= :first_id"
            ),
            {"since": since, "first_id": first_id},
        ).one()
    return row[0], row[1], row[2]


def sent_total(url: str) -> int:
    from sqlalchemy import text

    from app import db

    with db.engine_for(url).connect() as connection:
        return connection.scalar(
            text("SELECT count(*) FROM outbound_messages WHERE status = 'sent'")
        )


def calibrate(url: str, rounds: int = 300) -> dict[str, float]:
    """Median round trip of `SELECT 1` and of a Redis PING: how busy the machine is right now."""
    from sqlalchemy import text

    from app import db
    from app.jobs import redis_connection

    def median_ms(call: Any) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return 1000 * sorted(times)[len(times) // 2]

    with db.engine_for(url).connect() as connection:
        pg = median_ms(lambda: connection.execute(text("SELECT 1")).scalar())
    return {
        "pg_roundtrip_ms": round(pg, 3),
        "redis_roundtrip_ms": round(median_ms(redis_connection(REDIS_URL).ping), 3),
    }


# --- statement counting and py-spy ----------------------------------------------------------------


class StatementCounter:
    """Counts SQL statements, and the seconds spent in them (cursor.execute, i.e. round trip and
    server time), by shape (bind names collapsed) while active."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.counts: collections.Counter[str] = collections.Counter()
        self.seconds: collections.Counter[str] = collections.Counter()
        self._event = event
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self.counts[statement] += 1
        self._started = time.perf_counter()

    def _after(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self.seconds[statement] += time.perf_counter() - self._started

    def close(self) -> None:
        self._event.remove(self.engine, "before_cursor_execute", self._before)
        self._event.remove(self.engine, "after_cursor_execute", self._after)

    def summary(self, top: int = 12) -> list[tuple[int, float, str]]:
        """(count, seconds, shape), the slowest shapes first."""
        counts: collections.Counter[str] = collections.Counter()
        seconds: collections.Counter[str] = collections.Counter()
        for statement, count in self.counts.items():
            shape = re.sub(r"\s+", " ", statement)
            shape = re.sub(r"%\(\w+\)s", "?", shape)
            shape = re.sub(r"\(\?(, \?)*\)", "(?…)", shape)
            shape = re.sub(r"p\d+::", "p::", shape)
            counts[shape[:150]] += count
            seconds[shape[:150]] += self.seconds[statement]
        return [(counts[shape], sec, shape) for shape, sec in seconds.most_common(top)]

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class PySpy:
    """`py-spy record --idle` of a running process into a collapsed-stack file (raw format): idle
    samples are kept, so shares are of wall-clock time, waits on PostgreSQL/Redis/HTTP included."""

    def __init__(self, pid: int, output: Path, subprocesses: bool = False) -> None:
        command = [
            shutil.which("py-spy") or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--idle",
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
        ]
        if subprocesses:
            command.append("--subprocesses")
        self.output = output
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def profile_summary(path: Path, top: int = 25) -> list[tuple[float, str]]:
    """Inclusive share of samples per project or library function in a collapsed-stack file."""
    if not path.exists():
        return []
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        seen = set()
        for frame in stack.split(";"):
            match = re.match(r"(.+?) \((.+?)(?::\d+)?\)$", frame)
            name, filename = (match.group(1), match.group(2)) if match else (frame, "")
            short = re.sub(r".*/(site-packages|lib/python3\.\d+|main)/", "", filename)
            key = f"{name} ({short})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += int(count)
    return (
        [(100 * count / total, key) for key, count in inclusive.most_common(top)] if total else []
    )


# --- workers ------------------------------------------------------------------------------------


def worker_env(url: str, standin_url: str, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS_URL,
            "MAIL_TRANSPORT": "sendgrid",
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_API_HOST": standin_url,
            "MAIL_FROM": MAIL_FROM,
            "INBOUND_DOMAIN": INBOUND_DOMAIN,
            "BASE_URL": BASE_URL,
            "OUTBOX_DIR": str(folder / "outbox"),
            "PACKETS_DIR": str(folder / "packets"),
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    return env


def run_phase(
    name: str,
    url: str,
    env: dict[str, str],
    folder: Path,
    *,
    workers: int,
    worker_class: str,
    max_jobs: int | None,
    first_id: int,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Start `workers` rq worker processes in burst mode; wait for all; return the figures."""
    from app.jobs import QUEUE_NAME

    since = datetime.now(UTC)
    before = sent_total(url)
    processes = []
    started = time.perf_counter()
    for index in range(workers):
        worker_name = f"bench-{name}-{index}-{os.getpid()}"
        if worker_class == FORK_WORKER:
            # As `roundtable worker` starts it (jobs imported before the first fork), plus a cap.
            command = [
                sys.executable,
                __file__,
                "--worker-process",
                worker_class,
                "--worker-name",
                worker_name,
            ]
            if max_jobs is not None:
                command += ["--worker-max-jobs", str(max_jobs)]
        else:
            command = [shutil.which("rq") or "rq", "worker", "--burst", "--url", REDIS_URL]
            command += ["-w", worker_class, "--name", worker_name]
            if max_jobs is not None:
                command += ["--max-jobs", str(max_jobs)]
            command.append(QUEUE_NAME)
        if profile_to is not None and index == 0:
            command = (
                [
                    shutil.which("py-spy") or "py-spy",
                    "record",
                    "--rate",
                    "200",
                    "--idle",
                    "--format",
                    "raw",
                    "--output",
                    str(profile_to),
                    "--nonblocking",
                ]
                + (["--subprocesses"] if worker_class == FORK_WORKER else [])
                + ["--"]
                + command
            )
        log = open(folder / f"worker-{name}-{index}.log", "wb")  # noqa: SIM115
        processes.append(
            (
                subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT),
                log,
            )
        )
    try:
        for process, _ in processes:
            remaining = PHASE_TIMEOUT_S - (time.perf_counter() - started)
            process.wait(max(remaining, 1))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"phase {name} did not finish in {PHASE_TIMEOUT_S} s") from None
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            log.close()
    elapsed = time.perf_counter() - started
    codes = [process.returncode for process, _ in processes]
    sent = sent_total(url) - before
    count, first, last = sent_window(url, since, first_id)
    steady = (
        (count - 1) / (last - first).total_seconds()
        if count > 1 and first and last and last > first
        else None
    )
    startup = (first - since).total_seconds() if first else None
    return {
        "phase": name,
        "workers": workers,
        "worker_class": worker_class,
        "max_jobs": max_jobs,
        "sent": sent,
        "wall_s": elapsed,
        "emails_per_s": sent / elapsed if elapsed else 0.0,
        "steady_emails_per_s": steady,
        "startup_s": startup,
        "exit_codes": codes,
    }


def worker_process(worker_class: str, name: str, max_jobs: int | None) -> None:
    """One burst worker as `roundtable worker` runs it: settings from the environment, checked
    migrations, `workers.jobs` imported in the parent so that forked work horses start warm;
    plus `max_jobs` (the CLI has no cap) and no scheduler (nothing is scheduled here)."""
    from importlib import import_module

    from rq.utils import import_attribute

    from app import db, jobs
    from app.settings import configure, current_settings

    settings = current_settings()
    db.check_migrated(settings.database_url)
    configure(settings)
    import_module("workers.jobs")
    queue = jobs.queue(settings)
    worker = import_attribute(worker_class)([queue], connection=queue.connection, name=name)
    worker.work(burst=True, max_jobs=max_jobs, with_scheduler=False)


def failed_jobs() -> int:
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry

    from app.jobs import queue
    from app.settings import current_settings

    q = queue(current_settings())
    return len(FailedJobRegistry(queue=q)) + len(ScheduledJobRegistry(queue=q))


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    from app import db, jobs
    from app.cycles import tick
    from app.models import OutboundMessage
    from app.settings import Settings, configure

    members = max(round(args.members * args.scale), 1)
    groups = max(round(args.groups * args.scale), 1)
    sample = args.sample if args.sample is not None else max(round(6_000 * args.scale), 2)
    fork_sample = args.fork_sample if args.fork_sample is not None else round(1_000 * args.scale)
    sample -= sample % 2
    job_only = args.job_only if args.job_only is not None else max(round(300 * args.scale), 30)
    if 2 * sample + fork_sample + job_only > members:
        raise SystemExit(
            f"--sample {sample} twice, --fork-sample {fork_sample} and --job-only {job_only} exceed {members}"
        )
    url = database_url()
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    out: dict[str, Any] = {"members": members, "groups": groups}
    print(
        f"fanout: {members:,} members in {groups:,} groups; load average {load_start[0]:.2f} on {os.cpu_count()} cores",
        flush=True,
    )

    if not redis_is_empty():
        print("Redis db 5 was not empty: flushing it (db 5 belongs to this benchmark)", flush=True)
    flush_redis()
    stand_in = StandIn()
    folder = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        capacity = measure_standin(stand_in)
        print(
            f"stand-in capacity: {capacity['rps']:,.0f} requests/s (p50 {capacity['p50_ms']:.1f} ms, "
            f"{capacity['requests']:,} probe requests, clients on the same cores)",
            flush=True,
        )
        out["standin_capacity_rps"] = round(capacity["rps"], 1)

        started = time.perf_counter()
        recreate_database()
        db.upgrade(url)
        now = populate(url, members, groups, args.history_months)
        out["setup_s"] = round(time.perf_counter() - started, 2)
        print(
            f"setup: {out['setup_s']:.1f} s (database, migrations, bulk inserts, VACUUM ANALYZE); now = {now:%Y-%m-%d %H:%M} UTC",
            flush=True,
        )

        out.update(calibrate(url))
        print(
            f"calibration: PostgreSQL SELECT 1 round trip {out['pg_roundtrip_ms']:.2f} ms, Redis PING "
            f"{out['redis_roundtrip_ms']:.2f} ms (medians; an idle machine does both in about 0.05-0.1 ms)",
            flush=True,
        )

        settings = Settings(
            database_url=url,
            redis_url=REDIS_URL,
            mail_transport="sendgrid",
            sendgrid_api_key=API_KEY,
            sendgrid_api_host=stand_in.url,
            mail_from=MAIL_FROM,
            inbound_domain=INBOUND_DOMAIN,
            base_url=BASE_URL,
            outbox_dir=folder / "outbox",
            packets_dir=folder / "packets",
        )
        configure(settings)
        engine = db.engine_for(url)

        # --- busy tick
        history_counts = table_counts(url)
        with engine.connect() as connection:
            first_new_id = (
                connection.scalar(select(func.coalesce(func.max(OutboundMessage.id), 0))) + 1
            )
        counter = StatementCounter(engine)
        spy = PySpy(os.getpid(), profile_dir / "tick.txt") if profile_dir else None
        with db.session_scope(url) as session:
            cpu_started = time.process_time()
            started = time.perf_counter()
            result = tick(session, settings, now)
            ticked = time.perf_counter()
            session.commit()
            committed = time.perf_counter()
            cpu_used = time.process_time() - cpu_started
        if spy:
            spy.stop()
        counter.close()
        outbound_ids = list(result.outbound_ids)
        out["tick_s"] = round(committed - started, 3)
        out["tick_commit_s"] = round(committed - ticked, 3)
        out["tick_statements"] = counter.total
        out["tick_statements_per_member"] = round(counter.total / members, 2)
        out["tick_sql_s"] = round(counter.total_seconds, 3)
        out["tick_cpu_s"] = round(cpu_used, 3)
        counts = {
            table: count - history_counts[table] for table, count in table_counts(url).items()
        }
        print(
            f"busy tick: {out['tick_s']:.2f} s ({members / out['tick_s']:,.0f} members/s, commit {out['tick_commit_s']:.2f} s), "
            f"{len(outbound_ids):,} outbound ids; {counter.total:,} SQL statements "
            f"({out['tick_statements_per_member']} per member) taking {out['tick_sql_s']:.2f} s in cursor.execute; "
            f"this process's CPU {out['tick_cpu_s']:.2f} s",
            flush=True,
        )
        for count, seconds, shape in counter.summary(10):
            print(f"    {count:>7,} {seconds:8.2f} s  {shape}")
        if (
            len(outbound_ids) != members
            or counts["outbound_messages"] != members
            or counts["update_requests"] != members
        ):
            raise RuntimeError(
                f"tick made {counts} for {members} members ({len(outbound_ids)} ids)"
            )

        # --- enqueue, as workers.jobs.tick does (the last `job_only` ids are kept for the job-only
        # measurement below, which runs them in this process)
        job_only_ids = outbound_ids[-job_only:] if job_only and not args.tick_only else []
        to_enqueue = outbound_ids[: len(outbound_ids) - len(job_only_ids)]
        spy = PySpy(os.getpid(), profile_dir / "enqueue.txt") if profile_dir else None
        started = time.perf_counter()
        if not jobs.enqueue_sends(to_enqueue):
            raise RuntimeError("enqueue failed: Redis unreachable")
        out["enqueue_s"] = round(time.perf_counter() - started, 3)
        if spy:
            spy.stop()
        queued = len(jobs.queue(settings))
        out["send_batch"] = jobs.SEND_BATCH
        print(
            f"enqueue: {out['enqueue_s']:.2f} s for {len(to_enqueue):,} emails in {queued:,} jobs of up to "
            f"{jobs.SEND_BATCH} (app.jobs.enqueue_sends, as the tick job does)",
            flush=True,
        )

        phases: list[dict[str, Any]] = []
        out["checks_ok"] = True
        if not args.tick_only:
            # --- the job's own cost, in this process, without rq (these jobs are taken off the queue)
            # (the first call, which imports workers.jobs and compiles the templates, is not timed)
            if job_only_ids:
                started = time.perf_counter()
                jobs.run(SEND_JOB, job_only_ids[0])
                first = time.perf_counter() - started
                spy = PySpy(os.getpid(), profile_dir / "job-only.txt") if profile_dir else None
                started = time.perf_counter()
                jobs.run(SEND_JOB, *job_only_ids[1:])  # one job, as a worker runs a batch
                elapsed = time.perf_counter() - started
                if spy:
                    spy.stop()
                out["job_only_emails"] = len(job_only_ids) - 1
                out["job_only_emails_per_s"] = round(out["job_only_emails"] / elapsed, 1)
                out["job_first_call_s"] = round(first, 2)
                print(
                    f"job only: workers.jobs.send_outbound with {out['job_only_emails']:,} ids called in this process (no rq): "
                    f"{out['job_only_emails_per_s']:,.1f} emails/s; the first call (imports, templates) took "
                    f"{first:.2f} s",
                    flush=True,
                )

            # --- send phases
            env = worker_env(url, stand_in.url, folder)

            def phase(
                name: str,
                workers: int,
                worker_class: str,
                max_jobs: int | None,
                profile: bool = False,
            ) -> dict[str, Any]:
                figures = run_phase(
                    name,
                    url,
                    env,
                    folder,
                    workers=workers,
                    worker_class=worker_class,
                    max_jobs=max_jobs,
                    first_id=first_new_id,
                    profile_to=profile_dir / f"worker-{name}.txt"
                    if profile and profile_dir
                    else None,
                )
                phases.append(figures)
                steady = (
                    f"{figures['steady_emails_per_s']:,.1f}"
                    if figures["steady_emails_per_s"]
                    else "-"
                )
                print(
                    f"send {name}: {figures['sent']:,} sent by {workers} x {worker_class.rsplit('.', 1)[1]} in "
                    f"{figures['wall_s']:.1f} s = {figures['emails_per_s']:,.1f} emails/s (steady {steady}/s, "
                    f"first send {figures['startup_s'] or 0:.1f} s after start), exit codes {figures['exit_codes']}",
                    flush=True,
                )
                return figures

            batch = jobs.SEND_BATCH  # --max-jobs counts jobs; the samples count emails
            one = phase("1-simple", 1, SIMPLE_WORKER, max(sample // batch, 1), profile=True)
            fork = (
                phase("1-fork-warm", 1, FORK_WORKER, max(fork_sample // batch, 1), profile=True)
                if fork_sample
                else None
            )
            two = phase("2-simple", 2, SIMPLE_WORKER, max(sample // 2 // batch, 1))
            rest = phase("2-simple-rest", 2, SIMPLE_WORKER, None) if args.drain else None
            out["worker_class"] = SIMPLE_WORKER
            out["sample_jobs"] = sample
            out["emails_per_s_1_worker"] = round(one["emails_per_s"], 1)
            out["emails_per_s_2_workers"] = round(two["emails_per_s"], 1)
            out["ratio_2_vs_1"] = round(two["emails_per_s"] / one["emails_per_s"], 2)
            out["steady_emails_per_s_1_worker"] = round(one["steady_emails_per_s"] or 0, 1)
            out["steady_emails_per_s_2_workers"] = round(two["steady_emails_per_s"] or 0, 1)
            if fork:
                out["fork_sample_jobs"] = fork_sample
                out["emails_per_s_1_worker_fork"] = round(fork["emails_per_s"], 2)
            two_phases = [two] + ([rest] if rest else [])
            two_sent = sum(p["sent"] for p in two_phases)
            two_rate = two_sent / sum(p["wall_s"] for p in two_phases)
            if rest:
                out["emails_per_s_2_workers_rest"] = round(rest["emails_per_s"], 1)
            out["month_minutes"] = round(
                (out["tick_s"] + out["enqueue_s"] + members / two_rate) / 60, 2
            )
            out["month_minutes_basis"] = (
                f"extrapolated: tick + enqueue + {members} / {two_rate:.1f} emails/s, the 2-SimpleWorker rate "
                f"measured over {two_sent} of {members} emails ({' and '.join(p['phase'] for p in two_phases)})"
            )
            if rest:
                out["month_minutes_measured_mixed"] = round(
                    (out["tick_s"] + out["enqueue_s"] + sum(p["wall_s"] for p in phases)) / 60, 2
                )

            # --- checks
            stats = stand_in.stats()
            with db.session_scope(url) as session:
                this_month = OutboundMessage.id >= first_new_id  # not the --history-months rows
                statuses = dict(
                    session.execute(
                        select(OutboundMessage.status, func.count())
                        .where(this_month)
                        .group_by(OutboundMessage.status)
                    ).all()
                )
                provider_ids = session.scalar(
                    select(func.count(func.distinct(OutboundMessage.provider_message_id))).where(
                        this_month, OutboundMessage.status == "sent"
                    )
                )
                attempts = session.scalar(
                    select(func.coalesce(func.sum(OutboundMessage.attempts), 0)).where(this_month)
                )
            sent, queued_rows = statuses.get("sent", 0), statuses.get("queued", 0)
            failed = failed_jobs()
            left = len(jobs.held_by_send_jobs(settings))
            checks = {
                "outbound_rows_eq_members": sum(statuses.values()) == members,
                "sent_eq_phases": sent == len(job_only_ids) + sum(p["sent"] for p in phases),
                "all_sent" if args.drain else "rest_still_queued": sent == members
                if args.drain
                else sent + queued_rows == members,
                "standin_requests_eq_sent": stats["requests"] == sent,
                "no_duplicate_message_ids": stats["duplicates"] == 0
                and stats["no_message_id"] == 0
                and stats["unique_message_ids"] == stats["requests"],
                "provider_ids_distinct": provider_ids == sent,
                "one_attempt_each": attempts == sent,
                "no_failed_jobs": failed == 0,
                "no_send_job_left" if args.drain else "send_jobs_hold_the_queued_rows": left == queued_rows,
            }
            out["emails_sent"] = sent
            out["checks_ok"] = all(checks.values())
            print(
                f"checks: statuses {statuses}; stand-in {stats}; failed/scheduled jobs {failed}; ids held by send jobs {left}"
            )
            for name, ok in checks.items():
                print(f"    {'ok  ' if ok else 'FAIL'} {name}")

        # --- idle tick
        before = table_counts(url)
        idle_times, idle_statements, idle_ids = [], 0, 0
        for _ in range(3):
            counter = StatementCounter(engine)
            with db.session_scope(url) as session:
                started = time.perf_counter()
                result = tick(session, settings, now)
                idle_times.append(time.perf_counter() - started)
                session.rollback()
            counter.close()
            idle_statements = counter.total
            idle_ids += len(result.outbound_ids) + len(result.compile_cycle_ids)
        after = table_counts(url)
        out["idle_tick_s"] = round(min(idle_times), 3)
        out["idle_tick_statements"] = idle_statements
        idle_ok = idle_ids == 0 and before == after
        out["checks_ok"] = out["checks_ok"] and idle_ok
        print(
            f"idle tick: best {out['idle_tick_s']:.3f} s of {', '.join(f'{t:.3f}' for t in idle_times)}; "
            f"{idle_statements} statements; queued {idle_ids} ({'ok' if idle_ok else 'FAIL'}: rows {before} -> {after})",
            flush=True,
        )

        out["load_average_start"] = round(load_start[0], 2)
        out["load_average_end"] = round(os.getloadavg()[0], 2)
        print_table(out, phases, capacity)
        if profile_dir:
            for path in sorted(profile_dir.glob("*.txt")):
                print(f"\nprofile {path.name} (inclusive share of samples):")
                for share, key in profile_summary(path):
                    print(f"    {share:5.1f}%  {key}")
        return out
    finally:
        stand_in.stop()
        from app import db as _db

        _db.engine_for(url).dispose()
        flush_redis()
        drop_database()
        shutil.rmtree(folder, ignore_errors=True)


def print_table(
    out: dict[str, Any], phases: list[dict[str, Any]], capacity: dict[str, float]
) -> None:
    rows = [
        ("members / groups", f"{out['members']:,} / {out['groups']:,}"),
        ("stand-in capacity", f"{capacity['rps']:,.0f} req/s"),
        ("busy tick (incl. commit)", f"{out['tick_s']:.2f} s"),
        ("enqueue (app.jobs.enqueue_sends)", f"{out['enqueue_s']:.2f} s"),
    ]
    if "job_only_emails_per_s" in out:
        rows.append(
            (
                f"job only, no rq ({out['job_only_emails']:,} emails)",
                f"{out['job_only_emails_per_s']:.1f} emails/s",
            )
        )
    for p in phases:
        steady = f", steady {p['steady_emails_per_s']:.1f}/s" if p["steady_emails_per_s"] else ""
        rows.append(
            (f"send {p['phase']} ({p['sent']:,} emails)", f"{p['emails_per_s']:.1f} emails/s{steady}")
        )
    if phases:
        rows += [
            ("2 vs 1 SimpleWorker", f"{out['ratio_2_vs_1']:.2f}x"),
            ("month, 2 workers (extrapolated)", f"{out['month_minutes']:.2f} min  (target < 10)"),
        ]
        if "month_minutes_measured_mixed" in out:
            rows.append(
                ("month as run (mixed phases)", f"{out['month_minutes_measured_mixed']:.2f} min")
            )
    rows += [
        ("idle tick (best of 3)", f"{out['idle_tick_s']:.3f} s  (target < 5)"),
        ("checks", "ok" if out["checks_ok"] else "FAILED"),
        (
            "load average start / end",
            f"{out['load_average_start']} / {out['load_average_end']} ({os.cpu_count()} cores)",
        ),
        (
            "round trips PostgreSQL / Redis",
            f"{out['pg_roundtrip_ms']:.2f} / {out['redis_roundtrip_ms']:.2f} ms (median)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=45_000)
    parser.add_argument("--groups", type=int, default=3_500)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply members and groups (e.g. 0.1)"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help="jobs sent in the 1-worker phase and again in the 2-worker phase (default 6000 x scale)",
    )
    parser.add_argument(
        "--fork-sample",
        type=int,
        default=None,
        help="jobs sent by one forking rq.Worker, started as `roundtable worker` starts it, for "
        "comparison (default 1000 x scale; 0 skips)",
    )
    parser.add_argument(
        "--job-only",
        type=int,
        default=None,
        help="jobs run in this process without rq first, the job's own cost (default 300 x scale, min 30)",
    )
    parser.add_argument(
        "--no-drain",
        dest="drain",
        action="store_false",
        help="skip the last phase: the jobs after the samples stay queued (month_minutes is extrapolated)",
    )
    parser.add_argument(
        "--history-months",
        type=int,
        default=0,
        help="also earlier months per group (done cycles, their sent emails, the latest month's "
        "replies), as a database in production has them; default 0: a fresh database",
    )
    parser.add_argument(
        "--tick-only",
        action="store_true",
        help="setup, busy tick, enqueue and idle tick only: no workers, no sends",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy (wall clock) the busy tick, the enqueue, the job-only calls and the 1-worker "
        "phase into DIR",
    )
    parser.add_argument("--worker-process", help=argparse.SUPPRESS)  # internal: see worker_process
    parser.add_argument("--worker-name", help=argparse.SUPPRESS)
    parser.add_argument("--worker-max-jobs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_process:
        worker_process(args.worker_process, args.worker_name, args.worker_max_jobs)
        return
    out = run(args)
    print(json.dumps(out))
    sys.exit(0 if out["checks_ok"] else 1)


if __name__ == "__main__":
    main()
