"""Soak the running service at twice a deadline peak while workers and Redis are killed (issue 11).

    python bench/soak.py                          # 60 s at 10 posts/s, 2 workers
    python bench/soak.py --seconds 20 --rate 10   # a short run (events at 25%, 50%, 75%)

The rate. The README counts ~45,000 replies a month (a Vistage-size month: 45,000 members in
3,500 groups) and says they come in bursts. Assumed here: meetings fall on about five days a month
(as bench/fanout.py spreads them), so one deadline (T-2d 17:00) covers ~9,000 members; each
member sends 1.5 inbound messages around it (the reply, a follow-up, an auto-reply or a bounce):
13,500 messages; a quarter of them arrive in the deadline's last hour (3,375 an hour, 0.94/s)
and the busiest minute runs at five times that hour's mean: a peak of 4.7 posts/s. Twice that
is 9.4/s: `--rate 10` by default. Timezones would spread the deadline further; not counted.

What runs, all on this machine and all of it ours:
  - a redis-server of our own on a free port (`--save "" --appendonly no`), never the shared one;
  - a PostgreSQL database of our own (`soak_<pid>`, created with `--admin-url`, dropped at the
    end unless --keep), migrated with `app.db.upgrade`;
  - `roundtable serve` (gunicorn, gevent, 2 web workers) on a free loopback port;
  - `--workers` `roundtable worker` processes (rq SimpleWorker with its scheduler);
  - `roundtable tick` every `--tick-every` seconds, as cron would run it (the tick's sweep
    re-enqueues what a lost job or a restarted Redis left behind);
  - MAIL_TRANSPORT=sendgrid against tests/conftest.py's SendGridStandIn, which records every
    call (its Message-ID header and the `outbound_id` custom arg).

The mail (built before the run; `--seed` makes it the same every time): `--groups` groups of the
twelve demo members (app.demo), each with a cycle whose meeting is ten days off and whose update
requests went out (their rows are marked sent, so the workers send only what the run causes).
Posts, as SendGrid Inbound Parse makes them, in raw or default (parsed) mode at random:
  62% member replies with their real reply token: a member's first reply is written the way the
      demo's mail clients write it (app.demo.reply_email: Gmail, Outlook, Apple Mail, iPhone,
      HTML-only), later ones are follow-ups (a thanks, a correction, an addition, a question);
   8% strangers without a token (rejected; one notice per stranger a day);
   4% a stranger writing with a member's token (held for the facilitator);
  10% out-of-office auto-replies from members (ignored);
   6% DSN hard bounces for members' addresses, raw mode (ignored; the member is marked bouncing);
  10% exact re-posts of an earlier post, as SendGrid re-posts after a timeout (stored once).
Each post gets a new Message-ID; a 5xx or a refused connection is posted again a second later,
as SendGrid retries.

Events, at 25%, 50% and 75% of the run: SIGKILL one worker (the first caught inside a database
transaction within 5 s, from pg_stat_activity: a claimed message or an email being sent; else
any) and start a replacement; stop our redis-server, wait `--redis-down` seconds and start it
again (every queued job, the nudge flag and the workers' registrations are lost with it);
SIGKILL a worker again. An event's recovery time runs from its start until every message stored
before it ended (the watermark: the highest inbound id then) is final, read every 0.2 s; after
the Redis restart it includes rq's reconnect backoff (1, 2, 4 s...). A worker that exits by
itself is counted and restarted a second later, as a supervisor would.

Afterwards the run drains: posting stops, ticks go on, until no inbound message is `received`
and no outbound email `queued` (or `--drain-seconds` pass). Then the checks, each failing the
exit status:
  - every posted Message-ID is stored exactly once (reposts included), every post answered 200;
  - every stored message is final (not `received`), and every event's backlog drained;
  - no email went out under two Message-IDs: an email is its outbound row (one per dedupe key,
    by the schema), and every stand-in call that sent it carries one Message-ID, the row's own.
    The same email sent twice with its one Message-ID (a worker killed between SendGrid's 202
    and our commit) is allowed, and counted (`emails_resent_same_id`).
Also reported, not checked: statuses against what each kind of mail should end as
(`unexpected_outcomes`), outbound statuses, worker exits, children left by a killed worker.

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This checkout's code, not whatever checkout an editable install points at.
sys.path.insert(0, str(REPO))

import argparse
import email
import email.policy
import http.client
import json
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from base64 import b64encode
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from app.settings import Settings
from bench.webhook import free_port
from tests.test_worker_kill import children_of, is_running

INBOUND_USERNAME, INBOUND_PASSWORD = "sendgrid", "soak-secret"
INBOUND_DOMAIN = "in.forum.example"  # tests.mails writes reply addresses on this domain
WEBHOOK_PATH = "/inbound/sendgrid"
FINAL = ("accepted", "ignored", "rejected", "held", "failed")
MIX = (  # kind, share of the posts, the status it should end in
    ("reply", 0.62, "accepted"),
    ("stranger", 0.08, "rejected"),
    ("forwarded", 0.04, "held"),
    ("auto_reply", 0.10, "ignored"),
    ("bounce", 0.06, "ignored"),
    ("repost", 0.10, None),
)
FOLLOW_UPS = (
    "Thanks, looks right!",
    (
        "Correction:\n\nCHALLENGES\nHiring is slower than planned, and our largest supplier "
        "wants a 9% price increase from March."
    ),
    "One more ask: an introduction to a good employment lawyer in the Bay Area.",
    "Can I bring a guest to the next meeting?",
    "Forgot to add under wins: we closed the Denver office sale on Friday.",
    (
        "WINS\nSigned two new customers.\n\nCHALLENGES\nCash is tight until March.\n\nASKS\n"
        "A banker who lends against receivables."
    ),
)
RESTART_DELAY_S = 1.0
EVENTS = ((0.25, "kill worker"), (0.50, "restart redis"), (0.75, "kill worker"))


# --- the mail -----------------------------------------------------------------------------------


@dataclass
class Member:
    id: int
    name: str
    email: str
    title: str
    company: str
    token: str
    cycle_id: int
    persona: str  # the demo member whose words this one writes (app.demo.REPLIES)
    request: SimpleNamespace  # kind, context, message_id of the update request we sent
    replied: bool = False


@dataclass
class Post:
    number: int
    kind: str
    mode: str
    message_id: str  # normalized: lower case, no angle brackets
    body: bytes
    content_type: str
    expected: str | None  # final status; None for a repost (its original's)


def bounce_email(address: str, to: str, message_id: str, when: str) -> bytes:
    """A DSN hard bounce (RFC 3464) for `address`, sent to `to`, the way Postfix writes one."""
    host = "mx." + address.rpartition("@")[2]
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@{host}>
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: {when}
Message-ID: {message_id}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-{message_id[1:9]}"

--dsn-{message_id[1:9]}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {host}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{address}>: host {host} said: 550 5.1.1 <{address}>: Recipient
    address rejected: User unknown in virtual mailbox table

--dsn-{message_id[1:9]}
Content-Type: message/delivery-status

Reporting-MTA: dns; {host}
Arrival-Date: {when}

Final-Recipient: rfc822; {address}
Original-Recipient: rfc822;{address}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected: User unknown

--dsn-{message_id[1:9]}
Content-Type: message/rfc822

From: Roundtable <roundtable@forum.example>
To: {address}
Subject: Your update for the forum

Please reply with your update.
--dsn-{message_id[1:9]}--
""".replace("\n", "\r\n").encode()


def _form(message: EmailMessage, mode: str) -> tuple[bytes, str]:
    """The multipart body SendGrid Inbound Parse posts for `message` in `mode`."""
    from app.demo import sendgrid_form
    from tests.mails import multipart

    return multipart(sendgrid_form(message, mode))


def build_posts(
    members: list[Member], settings: Settings, count: int, rng: random.Random, run: str
) -> list[Post]:
    """`count` posts in the MIX, in a random order; first replies before follow-ups per member."""
    from app import clock
    from app.demo import REPLIES, reply_email
    from app.demo import out_of_office as demo_out_of_office
    from tests.mails import reply

    clients = ("gmail", "outlook", "apple", "iphone", "html_only")
    kinds = [kind for kind, _share, _status in MIX]
    weights = [share for _kind, share, _status in MIX]
    expected = {kind: status for kind, _share, status in MIX}
    strangers = [f"someone{n}@stranger{n}.example" for n in range(10)]
    when = format_datetime(clock.now())
    posts: list[Post] = []
    for number in range(count):
        kind = rng.choices(kinds, weights)[0]
        if kind == "repost" and len(posts) < 20:
            kind = "reply"
        if kind == "repost":
            original = posts[rng.randrange(len(posts) - 10)]
            posts.append(
                Post(
                    number,
                    "repost",
                    original.mode,
                    original.message_id,
                    original.body,
                    original.content_type,
                    None,
                )
            )
            continue
        mode = rng.choice(("raw", "parsed"))
        member = rng.choice(members)
        domain = member.email.rpartition("@")[2]
        message_id = f"<soak.{run}.{number}@mail.{domain}>"
        if kind == "reply" and not member.replied:
            member.replied = True
            stub = SimpleNamespace(
                id=member.id,
                name=member.name,
                email=member.persona,
                title=member.title,
                company=member.company,
            )
            message = reply_email(
                stub, member.token, member.request, rng.choice(clients), settings, member.cycle_id
            )
            message.replace_header("From", formataddr((member.name, member.email)))
            message.replace_header("Message-ID", message_id)
        elif kind == "reply":
            message = reply(
                member.token,
                rng.choice(FOLLOW_UPS),
                sender=(member.name, member.email),
                subject="Re: " + member.request.subject,
                message_id=message_id,
                headers={"In-Reply-To": member.request.message_id},
            )
        elif kind == "stranger":
            sender = rng.choice(strangers)
            message = reply(
                None,
                "Hello, is this the right address for the forum? Thanks.",
                sender=("A Stranger", sender),
                subject="Question",
                message_id=message_id,
            )
        elif kind == "forwarded":
            body = REPLIES[rng.choice(sorted(REPLIES))]
            message = reply(
                member.token,
                body,
                sender=("Assistant", f"assistant@{domain}"),
                subject="Re: " + member.request.subject,
                message_id=message_id,
            )
        elif kind == "auto_reply":
            message = demo_out_of_office(
                member.name, member.email, settings, member.token, member.cycle_id
            )
            message.replace_header("Message-ID", message_id)
        else:  # bounce: DSNs are posted raw (the default mode would drop the report part)
            mode = "raw"
            raw = bounce_email(
                member.email, f"reply+{member.token}@{INBOUND_DOMAIN}", message_id, when
            )
            message = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
        body, content_type = _form(message, mode)
        posts.append(
            Post(number, kind, mode, normalize_id(message_id), body, content_type, expected[kind])
        )
    return posts


def normalize_id(message_id: str) -> str:
    return message_id.strip().strip("<>").strip().lower()


# --- set-up -------------------------------------------------------------------------------------


def create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_groups(settings: Settings, groups: int) -> list[Member]:
    """`groups` groups of the demo's twelve members (addresses made unique per group), each with
    a cycle ten days off whose update requests went out; the request rows are marked sent."""
    from sqlalchemy import select, update

    from app import clock, db, roster
    from app.cycles import queue_requests, schedule_meeting
    from app.demo import GROUP, MEMBERS, REPLIES
    from app.mail import render
    from app.models import OutboundMessage, OutboundStatus, UpdateRequest

    personas = sorted(REPLIES)  # Luis never replies in the demo: his copies write another's words
    persona_of: dict[str, str] = {}
    with db.session_scope(settings.database_url) as session:
        for index in range(groups):
            group = roster.create_group(
                session,
                name=f"{GROUP['name']} {index + 1}",
                timezone=str(GROUP["timezone"]),
                facilitator_name=str(GROUP["facilitator_name"]),
                facilitator_email=f"dana.g{index:03d}@forum-facilitation.example",
                location=str(GROUP["location"]),
                slug=f"forum-{index + 1}",
            )
            for number, (name, address, company, title) in enumerate(MEMBERS):
                local, _, domain = address.partition("@")
                unique = f"{local}.g{index:03d}@{domain}"
                persona_of[unique] = (
                    address if address in REPLIES else personas[number % len(personas)]
                )
                roster.add_member(
                    session, group, name=name, email=unique, company=company, title=title
                )
            local_now = clock.now().astimezone(ZoneInfo(group.timezone))
            cycle = schedule_meeting(
                session, group, day=(local_now + timedelta(days=10)).date(), start="08:30", now=local_now
            )
            queue_requests(session, settings, cycle)
        session.flush()
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.kind == "update_request")
            .values(status=OutboundStatus.SENT, sent_at=clock.now())
        )
        session.commit()
        asked = {
            (row.cycle_id, row.member_id): row
            for row in session.scalars(
                select(OutboundMessage).where(OutboundMessage.kind == "update_request")
            )
        }
        subjects: dict[int, str] = {}
        found: list[Member] = []
        for update_request in session.scalars(select(UpdateRequest).order_by(UpdateRequest.id)):
            member = update_request.member
            request = asked[(update_request.cycle_id, member.id)]
            if request.cycle_id not in subjects:
                subjects[request.cycle_id] = render(request.kind, request.context).subject
            found.append(
                Member(
                    id=member.id,
                    name=member.name,
                    email=member.email,
                    title=member.title,
                    company=member.company,
                    token=update_request.token,
                    cycle_id=update_request.cycle_id,
                    persona=persona_of[member.email],
                    request=SimpleNamespace(
                        kind=request.kind,
                        context=request.context,
                        message_id=request.message_id,
                        subject=subjects[request.cycle_id],
                    ),
                )
            )
    return found


# --- processes ----------------------------------------------------------------------------------


def roundtable_command() -> list[str]:
    """The `roundtable` console script of this Python (app.cli:main)."""
    script = Path(sys.executable).parent / "roundtable"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = False  # by us, or its exit handled
    exited_at: float | None = None  # when the supervisor saw it exit by itself


class Cluster:
    """Our redis-server, `roundtable serve`, the workers and the ticks; everything it starts it
    stops again, by pid."""

    def __init__(self, folder: Path, env: dict[str, str], redis_port: int) -> None:
        self.folder, self.env, self.redis_port = folder, env, redis_port
        self.redis: subprocess.Popen[bytes] | None = None
        self.web: Proc | None = None
        self.web_port = 0
        self.workers: list[Proc] = []
        self.started = 0
        self.unexpected_exits: list[dict[str, Any]] = []
        self.orphans: list[int] = []
        self.stopping = False
        self.lock = threading.Lock()

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*roundtable_command(), *args],
                cwd=REPO,
                env={**os.environ, **self.env, **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return Proc(name, process, log)

    # redis
    def start_redis(self) -> None:
        with (self.folder / "redis.log").open("ab") as out:
            self.redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        deadline = time.monotonic() + 10
        while not self._redis_answers():
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"our redis-server did not start: see {self.folder}/redis.log")
            time.sleep(0.05)

    def _redis_answers(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            with Redis(port=self.redis_port, socket_connect_timeout=0.5) as connection:
                return bool(connection.ping())
        except RedisError:
            return False

    def stop_redis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait(timeout=10)

    # web
    def start_web(self) -> None:
        self.web_port = free_port()
        self.web = self._spawn("serve", ["serve", "--port", str(self.web_port), "--workers", "2"])
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=5)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.web.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"roundtable serve did not come up:\n{tail(self.web.log)}")
            time.sleep(0.2)

    # workers
    def start_worker(self) -> Proc | None:
        with self.lock:
            if self.stopping:
                return None
            self.started += 1
            name = f"worker-{self.started}"
            worker = self._spawn(name, ["worker"], {"PGAPPNAME": f"soak-{name}"})
            self.workers.append(worker)
            return worker

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.process.poll() is None]

    def kill_worker(self, database_url: str, redis_url: str, wait_s: float = 5.0) -> dict[str, Any]:
        """SIGKILL one live worker, in the middle of a database transaction (a claimed message,
        an email being sent) if one gets there within `wait_s`, else any; start a replacement."""
        deadline = time.monotonic() + 30
        while not (live := self.live_workers()) and time.monotonic() < deadline:
            time.sleep(0.1)  # every worker exited (Redis went away): wait for the supervisor
        if not live:
            raise RuntimeError("no live worker to kill for 30 s: see the worker logs")
        by_session = {f"soak-{worker.name}": worker for worker in live}
        victim, caught = live[0], None
        with psycopg.connect(database_url, autocommit=True) as connection:
            until = time.monotonic() + wait_s
            while caught is None and time.monotonic() < until:
                row = connection.execute(
                    "SELECT application_name, state, left(regexp_replace(query, '\\s+', ' ', 'g'), 70)"
                    " FROM pg_stat_activity WHERE application_name = ANY(%s) AND xact_start IS NOT NULL"
                    " LIMIT 1",
                    (list(by_session),),
                ).fetchone()
                if row is not None:
                    victim, caught = by_session[row[0]], f"{row[1]}: {row[2]}"
                else:
                    time.sleep(0.005)
        children = children_of(victim.process.pid)
        victim.killed = True
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        replacement = self.start_worker()
        threading.Thread(target=self._check_orphans, args=(children,), daemon=True).start()
        return {
            "worker": victim.name,
            "job": current_job(redis_url, victim.process.pid),
            "in_transaction": caught,
            "replacement": replacement.name if replacement else None,
        }

    def _check_orphans(self, children: list[int]) -> None:
        time.sleep(5)
        for pid in children:
            if is_running(pid):
                self.orphans.append(pid)

    def supervise(self, halt: threading.Event) -> None:
        """Restart a worker that exited by itself a second later, as a supervisor would
        (systemd's Restart=always, RestartSec=1), and note the exit. Runs until `halt`."""
        while not halt.wait(0.2):
            restart = 0
            with self.lock:
                for worker in self.workers:
                    if worker.killed or worker.process.poll() is None:
                        continue
                    if worker.exited_at is None:
                        worker.exited_at = time.monotonic()
                        lines = tail(worker.log).strip().splitlines() or [""]
                        self.unexpected_exits.append(
                            {
                                "worker": worker.name,
                                "code": worker.process.returncode,
                                "at": worker.exited_at,
                                "error": lines[-1][:200],
                            }
                        )
                    elif time.monotonic() - worker.exited_at >= RESTART_DELAY_S:
                        worker.killed = True  # handled: replaced below
                        restart += 1
            for _ in range(restart):
                self.start_worker()

    def tick(self) -> int:
        """One `roundtable tick`, to the end; its exit code."""
        proc = self._spawn(f"tick-{time.monotonic_ns()}", ["tick"])
        try:
            return proc.process.wait(timeout=300)
        finally:
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for worker in self.workers:
                worker.killed = True  # ours to stop: not an exit to note
        for proc in [*self.workers, *([self.web] if self.web else [])]:
            if proc.process.poll() is None:
                proc.process.terminate()
        for proc in [*self.workers, *([self.web] if self.web else [])]:
            try:
                proc.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait(timeout=10)
        self.stop_redis()


def current_job(redis_url: str, pid: int) -> str | None:
    """The job rq says the (dead) worker `pid` was running: its hash outlives it."""
    from redis import Redis
    from redis.exceptions import RedisError
    from rq import Worker
    from rq.job import Job

    try:
        with Redis.from_url(redis_url, socket_timeout=2) as connection:
            for worker in Worker.all(connection=connection):
                if worker.pid == pid and (job_id := worker.get_current_job_id()):
                    job = Job.fetch(job_id, connection=connection)
                    return f"{job.func_name}{tuple(job.args)}"[:120]
    except (RedisError, ValueError, LookupError):
        pass
    return None


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- watching the database ----------------------------------------------------------------------


@dataclass
class Event:
    name: str
    started: float  # monotonic
    detail: dict[str, Any] = field(default_factory=dict)
    watermark: int | None = None  # highest inbound id when the event ended
    ended: float | None = None
    recovered: float | None = None


class Monitor(threading.Thread):
    """Reads the backlog every 0.2 s; marks an event recovered once every message stored before
    it ended is final."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url = database_url
        self.events: list[Event] = []
        self.samples: list[tuple[float, int]] = []  # (monotonic, messages still `received`)
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def max_id(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(
                "SELECT coalesce(max(id), 0) FROM inbound_messages"
            ).fetchone()[0]

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            while not self.halt.wait(0.2):
                now = time.monotonic()
                received = connection.execute(
                    "SELECT count(*) FROM inbound_messages WHERE status = 'received'"
                ).fetchone()[0]
                self.samples.append((now, received))
                with self.lock:
                    waiting = [
                        e for e in self.events if e.watermark is not None and e.recovered is None
                    ]
                for event in waiting:
                    left = connection.execute(
                        "SELECT count(*) FROM inbound_messages WHERE status = 'received' AND id <= %s",
                        (event.watermark,),
                    ).fetchone()[0]
                    if left == 0:
                        event.recovered = now


def counts(url: str, sql: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as connection:
        return {str(key): value for key, value in connection.execute(sql).fetchall()}


# --- posting ------------------------------------------------------------------------------------


@dataclass
class Answer:
    number: int
    status: int  # the last answer's status; 0 when it never got one
    tries: int
    latency_s: float  # of the last try
    finished: float  # monotonic
    inbound_id: int | None = None
    duplicate: bool | None = None


class Poster:
    """Posts at a fixed rate from `threads` connections (open loop: a slow server makes the
    posts pile up, not slow down); retries a 5xx or a refused connection every second."""

    def __init__(
        self, port: int, posts: list[Post], rate: float, threads: int, max_tries: int
    ) -> None:
        self.port, self.posts, self.rate, self.threads = port, posts, rate, threads
        self.max_tries = max_tries
        self.answers: list[Answer] = []
        self.next = 0
        self.lock = threading.Lock()
        self.started = 0.0
        self.authorization = (
            "Basic " + b64encode(f"{INBOUND_USERNAME}:{INBOUND_PASSWORD}".encode()).decode()
        )

    def run(self) -> None:
        self.started = time.monotonic()
        pool = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    def _loop(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while True:
            with self.lock:
                if self.next >= len(self.posts):
                    break
                post = self.posts[self.next]
                self.next += 1
            delay = self.started + post.number / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tries, status, payload, latency = 0, 0, b"", 0.0
            while tries < self.max_tries:
                tries += 1
                began = time.monotonic()
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                    connection.request(
                        "POST",
                        WEBHOOK_PATH,
                        body=post.body,
                        headers={
                            "Content-Type": post.content_type,
                            "Authorization": self.authorization,
                        },
                    )
                    response = connection.getresponse()
                    status, payload = response.status, response.read()
                except (OSError, http.client.HTTPException):
                    status = 0
                    if connection is not None:
                        connection.close()
                    connection = None
                latency = time.monotonic() - began
                if 200 <= status < 300:
                    break
                time.sleep(1.0)
            answer = Answer(post.number, status, tries, latency, time.monotonic())
            if 200 <= status < 300:
                data = json.loads(payload)
                answer.inbound_id, answer.duplicate = data.get("id"), data.get("duplicate")
            with self.lock:
                self.answers.append(answer)
        if connection is not None:
            connection.close()


# --- the run ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="posting time (default 60)")
    parser.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="posts a second (default 10: twice a Vistage-size deadline peak)",
    )
    parser.add_argument("--workers", type=int, default=2, help="roundtable worker processes")
    parser.add_argument(
        "--groups",
        type=int,
        default=0,
        help="groups of 12 members (default: enough for ~70%% first replies)",
    )
    parser.add_argument("--connections", type=int, default=8, help="posting connections")
    parser.add_argument("--tick-every", type=float, default=15.0, help="seconds between ticks")
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=480.0,
        help="longest wait for the backlog after posting (default 480: a send job "
        "of a killed worker is handed back after rq's 6 minutes)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL URL allowed to create databases",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the folder")
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 3600 and 0.1 <= args.rate <= 1000 and 1 <= args.workers <= 16):
        parser.error("--seconds must be 1-3600, --rate 0.1-1000 and --workers 1-16")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from app import db
    from app.settings import configure
    from tests.conftest import SendGridStandIn

    rng = random.Random(args.seed)
    run = secrets.token_hex(3)
    database_name = f"soak_{os.getpid()}"
    folder = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    stand_in = SendGridStandIn()
    database_url = create_database(args.admin_url, database_name)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INBOUND_USERNAME": INBOUND_USERNAME,
        "INBOUND_PASSWORD": INBOUND_PASSWORD,
        "INBOUND_DOMAIN": INBOUND_DOMAIN,
        "MAIL_FROM": "Roundtable <roundtable@forum.example>",
        "MAIL_TRANSPORT": "sendgrid",
        "SENDGRID_API_KEY": "SG.soak-key",
        "SENDGRID_API_HOST": stand_in.url,
        "OUTBOX_DIR": str(folder / "outbox"),
        "PACKETS_DIR": str(folder / "packets"),
        "BASE_URL": "https://roundtable.example",
        "PYTHONPATH": str(REPO),  # this checkout in every child, whatever is installed
    }
    settings = Settings.from_env(env)
    configure(settings)
    cluster = Cluster(folder, env, redis_port)
    monitor = Monitor(database_url)
    halt_ticks = threading.Event()
    ticks: list[tuple[float, int]] = []
    total = max(1, round(args.seconds * args.rate))
    groups = args.groups or max(2, math.ceil(total * 0.62 * 0.7 / 12))
    try:
        db.upgrade(database_url)
        members = create_groups(settings, groups)
        posts = build_posts(members, settings, total, rng, run)
        db.engine_for(database_url).dispose()
        print(
            f"set-up: {groups} groups, {len(members)} members, {len(posts)} posts built; "
            f"folder {folder}",
            flush=True,
        )

        cluster.start_redis()
        cluster.start_web()
        for _ in range(args.workers):
            cluster.start_worker()
        monitor.start()
        threading.Thread(target=cluster.supervise, args=(halt_ticks,), daemon=True).start()

        def tick_loop() -> None:
            while not halt_ticks.wait(args.tick_every):
                began = time.monotonic()
                code = cluster.tick()
                ticks.append((time.monotonic() - began, code))

        ticker = threading.Thread(target=tick_loop, daemon=True)
        ticker.start()

        poster = Poster(cluster.web_port, posts, args.rate, args.connections, max_tries=120)
        posting = threading.Thread(target=poster.run, daemon=True)
        posting.start()
        time.sleep(0.05)
        began = poster.started
        for fraction, name in EVENTS:
            while time.monotonic() < began + fraction * args.seconds:
                time.sleep(0.05)
            event = Event(name, time.monotonic())
            if name == "kill worker":
                event.detail = cluster.kill_worker(database_url, redis_url)
            else:
                cluster.stop_redis()
                time.sleep(args.redis_down)
                cluster.start_redis()
            event.ended = time.monotonic()
            event.watermark = monitor.max_id()
            with monitor.lock:
                monitor.events.append(event)
            print(f"  {event.started - began:6.1f} s  {name} {event.detail or ''}", flush=True)
        posting.join()
        posted_at = time.monotonic()
        print(f"posting done in {posted_at - began:.1f} s; draining", flush=True)

        drained = None
        last_report = posted_at
        while time.monotonic() < posted_at + args.drain_seconds:
            pending = counts(
                database_url,
                "SELECT 'inbound', count(*) FROM inbound_messages WHERE status = 'received' "
                "UNION ALL SELECT 'outbound', count(*) FROM outbound_messages WHERE status = 'queued'",
            )
            if pending["inbound"] == 0 and pending["outbound"] == 0:
                drained = time.monotonic() - posted_at
                break
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                print(f"  {last_report - posted_at:5.0f} s after posting: {pending}", flush=True)
            time.sleep(0.5)
        # Events whose backlog is still waiting get their figure now, or none.
        time.sleep(0.5)
        halt_ticks.set()
        ticker.join(timeout=300)
        monitor.halt.set()
        monitor.join(timeout=10)
        result = check(
            args,
            database_url,
            posts,
            poster,
            stand_in,
            cluster,
            monitor,
            ticks,
            began,
            posted_at,
            drained,
        )
    finally:
        halt_ticks.set()
        monitor.halt.set()
        cluster.stop()
        stand_in.close()
        db.engine_for(database_url).dispose()
        if not args.keep:
            drop_database(args.admin_url, database_name)
            shutil.rmtree(folder, ignore_errors=True)
    print_table(result)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def check(
    args: argparse.Namespace,
    url: str,
    posts: list[Post],
    poster: Poster,
    stand_in: Any,
    cluster: Cluster,
    monitor: Monitor,
    ticks: list[tuple[float, int]],
    began: float,
    posted_at: float,
    drained: float | None,
) -> dict[str, Any]:
    answers = {a.number: a for a in poster.answers}
    unanswered = [
        p.number
        for p in posts
        if not (p.number in answers and 200 <= answers[p.number].status < 300)
    ]
    posted = {p.message_id: p for p in posts if p.kind != "repost"}
    with psycopg.connect(url, autocommit=True) as connection:
        stored_rows = connection.execute(
            "SELECT id, lower(trim(both '<> ' from message_id)), status, kind, reason FROM inbound_messages"
        ).fetchall()
        outbound = {
            row[0]: row[1:]
            for row in connection.execute(
                "SELECT id, dedupe_key, message_id, status, kind FROM outbound_messages"
            )
        }
    stored = Counter(mid for _id, mid, *_ in stored_rows)
    missing = [mid for mid in posted if stored[mid] == 0]
    duplicates = [mid for mid in posted if stored[mid] > 1]
    strangers = [mid for mid in stored if mid not in posted]
    final = Counter(status for _id, _mid, status, *_ in stored_rows)
    not_final = final.get("received", 0)
    unexpected: Counter[str] = Counter()
    examples: list[str] = []
    for _id, mid, status, kind, reason in stored_rows:
        post = posted.get(mid)
        if post is not None and status != post.expected:
            unexpected[f"{post.kind}->{status}"] += 1
            if len(examples) < 5:
                examples.append(f"{post.kind} ({post.mode}) -> {status}: {reason}")

    # The emails: an email is its outbound row (one per dedupe key, by the schema). Every call
    # that sent it must carry one Message-ID, the row's own.
    by_row: dict[int, set[str]] = defaultdict(set)
    calls = list(stand_in.calls)
    for call in calls:
        message_id = (call.body.get("headers") or {}).get("Message-ID", "")
        by_row[int((call.body.get("custom_args") or {}).get("outbound_id", 0))].add(message_id)
    conflicting = sum(
        row_id not in outbound or ids != {outbound[row_id][1]} for row_id, ids in by_row.items()
    )
    distinct = len({mid for ids in by_row.values() for mid in ids})
    outbound_status = Counter(status for _key, _mid, status, _kind in outbound.values())
    sent_kinds = Counter(outbound[row_id][3] for row_id in by_row if row_id in outbound)

    answered = [a for a in poster.answers if 200 <= a.status < 300]
    window = max(a.finished for a in poster.answers) - poster.started if poster.answers else 0.0
    latencies = sorted(a.latency_s for a in answered)
    recoveries = [
        {
            "event": e.name,
            "at_s": round(e.started - began, 1),
            "took_s": round((e.ended or e.started) - e.started, 2),
            "recovery_s": round(e.recovered - e.started, 2) if e.recovered else None,
            **{k: e.detail[k] for k in ("worker", "job", "in_transaction") if k in e.detail},
        }
        for e in monitor.events
    ]
    result: dict[str, Any] = {
        "posted": len(posted),
        "posts": len(posts),
        "reposts": len(posts) - len(posted),
        "answered_duplicate": sum(bool(a.duplicate) for a in answered),
        "stored": len(stored_rows),
        "final": {status: final[status] for status in (*FINAL, "received") if final[status]},
        "duplicates": len(duplicates),
        "missing": len(missing),
        "not_final": not_final,
        "unanswered_posts": len(unanswered),
        "stored_not_posted": len(strangers),
        "emails_sent": len(calls),
        "emails_distinct": distinct,
        "emails_resent_same_id": len(calls) - distinct,
        "emails_conflicting_message_ids": conflicting,
        "emails_by_kind": dict(sorted(sent_kinds.items())),
        "outbound": dict(sorted(outbound_status.items())),
        "rate_target": args.rate,
        "rate_achieved": round(len(answered) / window, 2) if window else 0.0,
        "post_retries": sum(a.tries - 1 for a in poster.answers),
        "post_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "post_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies
        else None,
        "recovery": recoveries,
        "max_backlog": max((n for _t, n in monitor.samples), default=0),
        "drain_s": round(drained, 1) if drained is not None else None,
        "unexpected_outcomes": dict(unexpected),
        "unexpected_examples": examples,
        "worker_exits": [
            {**{k: v for k, v in e.items() if k != "at"}, "at_s": round(e["at"] - began, 1)}
            for e in cluster.unexpected_exits
        ],
        "orphans_after_kill": len(cluster.orphans),
        "ticks": len(ticks),
        "ticks_failed": sum(code != 0 for _s, code in ticks),
        "seconds": args.seconds,
        "workers": args.workers,
        "seed": args.seed,
    }
    result["ok"] = (
        not missing
        and not duplicates
        and not_final == 0
        and not unanswered
        and conflicting == 0
        and all(r["recovery_s"] is not None for r in recoveries)
    )
    return result


def print_table(result: dict[str, Any]) -> None:
    print()
    print(
        f"posted      {result['posted']} messages ({result['reposts']} re-posted as well, "
        f"{result['answered_duplicate']} answered as duplicates) at "
        f"{result['rate_achieved']}/s (target {result['rate_target']}), {result['post_retries']} "
        f"retries, p50 {result['post_p50_ms']} ms, p99 {result['post_p99_ms']} ms"
    )
    print(
        f"stored      {result['stored']} rows: missing {result['missing']}, stored twice "
        f"{result['duplicates']}, not final {result['not_final']}, final {result['final']}"
    )
    print(f"outcomes    unexpected {result['unexpected_outcomes'] or 'none'}")
    for example in result["unexpected_examples"]:
        print(f"              {example}")
    print(
        f"emails      {result['emails_sent']} sent, {result['emails_distinct']} Message-IDs, "
        f"{result['emails_resent_same_id']} resent with the same id, "
        f"{result['emails_conflicting_message_ids']} with conflicting ids; by kind "
        f"{result['emails_by_kind']}; outbound rows {result['outbound']}"
    )
    for event in result["recovery"]:
        print(
            f"event       {event['event']:14} at {event['at_s']:5.1f} s: backlog drained after "
            f"{event['recovery_s']} s"
        )
        if "worker" in event:
            print(
                f"              killed {event['worker']}: job {event['job']}; "
                f"in a transaction: {event['in_transaction']}"
            )
    print(
        f"drain       {result['drain_s']} s after posting; max backlog {result['max_backlog']}; "
        f"{result['ticks']} ticks ({result['ticks_failed']} failed)"
    )
    print(
        f"workers     {len(result['worker_exits'])} exited by themselves; "
        f"{result['orphans_after_kill']} children outlived a killed worker"
    )
    for exit_ in result["worker_exits"]:
        print(
            f"              {exit_['worker']} exited {exit_['code']} at {exit_['at_s']} s: {exit_['error']}"
        )
    print(f"verdict     {'OK' if result['ok'] else 'FAILED'}")
    print()


if __name__ == "__main__":
    sys.exit(main())
