"""Benchmark the SendGrid webhook under load, and one worker processing what it stored.

    python bench/webhook.py [--seconds 5] [--rounds 5] [--connections 16] [--worker-class gthread --threads 4] [--keep]

What it measures:
  webhook   requests/s and latency p50/p99 of `POST /inbound/sendgrid` on the real app
            (store the raw message, commit, nudge a drain job), under wrk;
  no-op     the same for a Flask app that only reads and splits the same multipart body and
            answers 200: the ceiling the real webhook is compared with (`webhook_ratio`);
  worker    replies fully processed per second by one worker, against mail-parser's bare
            parse rate on the same raw messages (`worker_ratio`).

How:
  - a fresh PostgreSQL database (`bench_webhook`, dropped again at the end), migrated with
    `app.db.upgrade`; Redis db 3 flushed before and after;
  - the demo group (app.demo) with a cycle and queued update requests, so every reply carries a
    valid reply token;
  - request bodies are SendGrid raw-mode multipart posts of the demo replies, as five mail clients
    write them (quoted request included, 2-6 KB); wrk's Lua script gives every request a new
    Message-ID (run nonce, wrk thread, counter), so no post is a duplicate;
  - both apps run under gunicorn with the options `roundtable serve` gives it
    (`app.cli.gunicorn_args`): 2 gevent workers, 100 connections each, timeout 60, plus an
    access log (to a file here; it also gives the server-side status count); `--worker-class
    gthread --threads N` tries a thread pool instead. Both apps up at once on free loopback
    ports, each warmed up for 1 s, then
    loaded in turn for --rounds rounds (webhook, no-op, webhook, ...): the ratio is the median
    of the rounds' ratios, so a neighbour's load on the shared machine weighs on both;
  - besides req/s, the gunicorn workers' CPU per request (from /proc): on a shared machine it
    moves less with the neighbours' load than req/s does;
  - durability after the real run: stored rows == 2xx answers the server logged == rows still
    unread, and at least one drain job queued to read them (no worker runs during the load);
  - worker: `app.jobs.run("workers.jobs.process_inbound", id)` in a loop in this process, on
    Redis settings (receipts are enqueued, not sent) -- the job's own cost, without rq's
    fetch/bookkeeping; mail-parser runs `parse_from_bytes` over the same raw bytes.

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, request

from app.inbound import form_parts
from app.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATABASE_NAME = "bench_webhook"
INBOUND_USERNAME, INBOUND_PASSWORD = "sendgrid", "bench-secret"
MESSAGE_ID_PLACEHOLDER = "BENCH-MESSAGE-ID-PLACEHOLDER"
WEBHOOK_PATH = "/inbound/sendgrid"
WRK_THREADS = 2
WORKER_SAMPLE = 1_000
GUNICORN_WORKERS = 2
WARM_UP_SECONDS = 1


# --- the no-op app: gunicorn loads it from here -------------------------------------------------


def noop_app() -> Flask:
    """A Flask app that only reads and splits the webhook's multipart body, then answers 200."""
    app = Flask("bench_noop")
    app.config.update(
        MAX_CONTENT_LENGTH=40 * 2**20, MAX_FORM_MEMORY_SIZE=40 * 2**20, MAX_FORM_PARTS=10_000
    )

    @app.post(WEBHOOK_PATH)
    def sendgrid_inbound() -> Response:
        parts = form_parts(request.get_data(cache=True), request.content_type or "")
        return Response(
            json.dumps({"parts": len(parts)}) + "\n", 200, {"Content-Type": "application/json"}
        )

    return app


# --- setting up the database, Redis and the demo group -----------------------------------------


def database_url(admin_url: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + DATABASE_NAME


def recreate_database(admin_url: str) -> None:
    """Drop and create the benchmark database (never the tests' database)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE_NAME}")


def drop_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")


def flush_redis(redis_url: str) -> None:
    from redis import Redis

    with Redis.from_url(redis_url) as connection:
        connection.flushdb()


def server_env(admin_url: str, redis_url: str, folder: Path) -> dict[str, str]:
    """The environment the real app runs with; the worker builds its Settings from it too."""
    return {
        "DATABASE_URL": database_url(admin_url),
        "REDIS_URL": redis_url,
        "INBOUND_USERNAME": INBOUND_USERNAME,
        "INBOUND_PASSWORD": INBOUND_PASSWORD,
        "INBOUND_DOMAIN": "in.forum.example",
        "MAIL_FROM": "Roundtable <roundtable@forum.example>",
        "OUTBOX_DIR": str(folder / "outbox"),
        "PACKETS_DIR": str(folder / "packets"),
    }


def create_demo_cycle(settings: Settings) -> int:
    """The demo group, a meeting in ten days and its queued update requests; return the cycle id."""
    from app import db, roster
    from app.cycles import queue_requests, schedule_meeting
    from app.demo import GROUP, MEMBERS
    from app.models import utcnow

    with db.session_scope(settings.database_url) as session:
        group = roster.create_group(session, **GROUP)
        for name, address, company, title in MEMBERS:
            roster.add_member(
                session, group, name=name, email=address, company=company, title=title
            )
        local_now = utcnow().astimezone(ZoneInfo(group.timezone))
        cycle = schedule_meeting(
            session, group, day=(local_now + timedelta(days=10)).date(), start="08:30", now=local_now
        )
        queue_requests(session, settings, cycle)
        session.commit()
        return cycle.id


# --- request bodies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    path: Path
    content_type: str
    size: int


def write_templates(settings: Settings, cycle_id: int, folder: Path) -> list[Template]:
    """One raw-mode post per (member who replies, mail client), its Message-ID a placeholder."""
    from sqlalchemy import select

    from app import db
    from app.demo import CLIENTS, REPLIES, reply_email
    from app.models import OutboundMessage, UpdateRequest
    from tests.mails import raw_mode

    clients = sorted({client for client, _mode in CLIENTS.values()})
    templates = []
    with db.session_scope(settings.database_url) as session:
        requests = session.scalars(
            select(UpdateRequest).where(UpdateRequest.cycle_id == cycle_id)
        ).all()
        for update_request in requests:
            member = update_request.member
            if member.email not in REPLIES:
                continue
            asked = session.scalar(
                select(OutboundMessage).where(
                    OutboundMessage.dedupe_key == f"request:{cycle_id}:{member.id}"
                )
            )
            for client in clients:
                message = reply_email(
                    member, update_request.token, asked, client, settings, cycle_id
                )
                del message["Message-ID"]
                message["Message-ID"] = (
                    f"<{MESSAGE_ID_PLACEHOLDER}@mail.{member.email.split('@')[1]}>"
                )
                body, content_type = raw_mode(message)
                if body.count(MESSAGE_ID_PLACEHOLDER.encode()) != 1:
                    raise RuntimeError(
                        f"the Message-ID placeholder is not in the {client} reply once"
                    )
                path = folder / f"body-{len(templates):03d}.bin"
                path.write_bytes(body)
                templates.append(Template(path, content_type, len(body)))
    return templates


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def write_wrk_script(templates: list[Template], folder: Path, authorization: str | None) -> Path:
    """A wrk script cycling through the templates, a new Message-ID per request; prints JSON."""
    entries = ",\n".join(
        f"  {{path = {_lua_string(str(t.path))}, ctype = {_lua_string(t.content_type)}}}"
        for t in templates
    )
    auth_line = f'headers["Authorization"] = {_lua_string(authorization)}' if authorization else ""
    script = f"""
local templates = {{
{entries}
}}
local placeholder = {_lua_string(MESSAGE_ID_PLACEHOLDER)}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  run = args[1]
  bodies = {{}}
  sent = 0
  for i, t in ipairs(templates) do
    local file = assert(io.open(t.path, "rb"))
    local data = file:read("*a")
    file:close()
    local first, last = string.find(data, placeholder, 1, true)
    bodies[i] = {{prefix = data:sub(1, first - 1), suffix = data:sub(last + 1), ctype = t.ctype}}
  end
end

function request()
  sent = sent + 1
  local body = bodies[(sent + thread_id) % #bodies + 1]
  local headers = {{["Content-Type"] = body.ctype}}
  {auth_line}
  local message_id = "bench." .. run .. "." .. thread_id .. "." .. sent
  return wrk.format("POST", {_lua_string(WEBHOOK_PATH)}, headers, body.prefix .. message_id .. body.suffix)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
    path = folder / "webhook.lua"
    path.write_text(script)
    return path


# --- servers and load ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_options(args: argparse.Namespace) -> list[str]:
    from app.cli import gunicorn_args

    return gunicorn_args(
        workers=GUNICORN_WORKERS,
        worker_class=args.worker_class,
        threads=args.threads,
        connections=args.worker_connections,
    )


def server_description(args: argparse.Namespace) -> str:
    kind = (
        f"gthread, {args.threads} threads each"
        if args.worker_class == "gthread"
        else f"gevent, {args.worker_connections} connections each"
    )
    return f"gunicorn {GUNICORN_WORKERS} workers ({kind}), timeout 60, access log to a file, 127.0.0.1"


def write_gunicorn_config(folder: Path, name: str, port: int) -> Path:
    """What the bench adds to `roundtable serve`'s options: a loopback port, logs to files, and
    a hook marking each worker ready once loaded."""
    config = f"""
from pathlib import Path

bind = "127.0.0.1:{port}"
accesslog = {str(folder / f"{name}-access.log")!r}
access_log_format = "%(m)s %(U)s %(s)s"
errorlog = {str(folder / f"{name}-error.log")!r}


def post_worker_init(worker):
    Path({str(folder / f"{name}-ready")!r}, str(worker.pid)).touch()
"""
    (folder / f"{name}-ready").mkdir()
    path = folder / f"{name}-gunicorn.conf.py"
    path.write_text(config)
    return path


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    access_log: Path
    ready: Path  # one file per booted worker, named by its pid

    def worker_cpu_seconds(self) -> float:
        """User + system CPU the gunicorn workers have used so far."""
        total = 0
        for pid in os.listdir(self.ready):
            fields = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


def start_server(
    app_spec: str, env: dict[str, str], folder: Path, name: str, options: list[str]
) -> Server:
    """Start gunicorn on a free loopback port; return once every worker has loaded the app."""
    port = free_port()
    config = write_gunicorn_config(folder, name, port)
    command = [
        sys.executable, "-m", "gunicorn", "--config", str(config), *options,
        "--pythonpath", str(REPO), app_spec,
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=folder)
    server = Server(process, port, folder / f"{name}-access.log", folder / f"{name}-ready")
    deadline = time.monotonic() + 60
    while len(os.listdir(server.ready)) < GUNICORN_WORKERS:
        if process.poll() is not None:
            error_log = (folder / f"{name}-error.log").read_text()[-2000:]
            raise RuntimeError(f"the {name} server exited ({process.returncode}): {error_log}")
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"the {name} server's workers did not boot within 60 s")
        time.sleep(0.2)
    return server


def stop_server(server: Server) -> None:
    """Stop the gunicorn master we started (it stops its workers); kill it if it hangs."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def run_wrk(script: Path, port: int, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk for `seconds` and return its summary (the script's JSON line)."""
    nonce = secrets.token_hex(4)  # with the script's counter: Message-IDs new in every run
    command = [
        "wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{seconds}s",
        "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}{WEBHOOK_PATH}", "--", nonce,
    ]  # fmt: skip
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    for line in finished.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    raise RuntimeError(f"wrk printed no summary:\n{finished.stdout}\n{finished.stderr}")


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_posts_2xx: int  # warm-up included
    load_average: float
    cpu_ms_per_request: float  # the gunicorn workers' own CPU, not PostgreSQL's or Redis's


def load_pair(
    env: dict[str, str], folder: Path, script: Path, args: argparse.Namespace
) -> tuple[Load, Load, list[float]]:
    """Start both apps side by side, warm both up, then load them in turn, `args.rounds` times:
    webhook, no-op, webhook, no-op... Each pair of runs is seconds apart, so a neighbour's load
    on the shared machine weighs on both; the ratio is the median of the pairs' ratios.

    An idle gunicorn costs nothing, so the app that waits does not slow the one under load.
    """
    servers = [
        start_server("app.web:create_app()", env, folder, "webhook", server_options(args)),
        start_server("bench.webhook:noop_app()", {}, folder, "noop", server_options(args)),
    ]
    runs: list[list[dict[str, float]]] = [[], []]
    try:
        for server in servers:
            run_wrk(script, server.port, WARM_UP_SECONDS, args.connections)
        for _ in range(args.rounds):
            for server, out in zip(servers, runs):
                load_average = os.getloadavg()[0]
                cpu_before = server.worker_cpu_seconds()
                summary = run_wrk(script, server.port, args.seconds, args.connections)
                summary["cpu_s"] = server.worker_cpu_seconds() - cpu_before
                summary["load_average"] = load_average
                out.append(summary)
    finally:
        for server in servers:
            stop_server(server)
    loads = [_load(server, out) for server, out in zip(servers, runs)]
    ratios = [
        (w["requests"] / w["duration_us"]) / (n["requests"] / n["duration_us"])
        for w, n in zip(*runs)
    ]
    return loads[0], loads[1], ratios


def _load(server: Server, runs: list[dict[str, float]]) -> Load:
    """The medians of the runs (rates, latencies), and the totals (requests, errors, CPU)."""
    logged = [line.split() for line in server.access_log.read_text().splitlines()]
    requests = sum(int(run["requests"]) for run in runs)
    return Load(
        rps=statistics.median(run["requests"] / (run["duration_us"] / 1e6) for run in runs),
        p50_ms=statistics.median(run["p50_us"] for run in runs) / 1000,
        p99_ms=statistics.median(run["p99_us"] for run in runs) / 1000,
        requests=requests,
        non_2xx=sum(int(run["status"]) for run in runs),  # wrk counts every status >= 400
        socket_errors=sum(
            int(run["connect"] + run["read"] + run["write"] + run["timeout"]) for run in runs
        ),
        server_posts_2xx=sum(
            1 for method, _path, status in logged if method == "POST" and status.startswith("2")
        ),
        load_average=statistics.median(run["load_average"] for run in runs),
        cpu_ms_per_request=1000 * sum(run["cpu_s"] for run in runs) / max(requests, 1),
    )


# --- durability and the worker ------------------------------------------------------------------


@dataclass(frozen=True)
class Durability:
    stored_rows: int
    unread_rows: int  # still `received`: no worker ran during the load
    drain_jobs: int  # queued drain jobs that will read them (app.jobs.nudge_inbound)


def check_durability(settings: Settings) -> Durability:
    from sqlalchemy import func, select

    from app import db, jobs
    from app.models import InboundMessage

    with db.session_scope(settings.database_url) as session:
        stored = session.scalar(select(func.count()).select_from(InboundMessage)) or 0
        unread = session.scalar(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.status == "received")
        ) or 0
    drains = sum(1 for job in jobs.queue(settings).get_jobs() if job.func_name == jobs.DRAIN_JOB)
    return Durability(stored_rows=stored, unread_rows=unread, drain_jobs=drains)


def sample_inbound(settings: Settings, limit: int) -> list[tuple[int, bytes]]:
    from sqlalchemy import select

    from app import db
    from app.models import InboundMessage

    with db.session_scope(settings.database_url) as session:
        rows = session.execute(
            select(InboundMessage.id, InboundMessage.raw).order_by(InboundMessage.id).limit(limit)
        )
        return [(row.id, row.raw) for row in rows]


def time_worker(ids: list[int]) -> float:
    """Process each stored reply fully with the real job, one after another; return replies/s."""
    from app import jobs

    started = time.perf_counter()
    for inbound_id in ids:
        jobs.run("workers.jobs.process_inbound", inbound_id)
    return len(ids) / (time.perf_counter() - started)


def time_mailparser(raws: list[bytes]) -> float:
    import mailparser

    started = time.perf_counter()
    for raw in raws:
        mailparser.parse_from_bytes(raw)
    return len(raws) / (time.perf_counter() - started)


def count_statuses(settings: Settings, ids: list[int]) -> dict[str, int]:
    from sqlalchemy import func, select

    from app import db
    from app.models import InboundMessage

    with db.session_scope(settings.database_url) as session:
        rows = session.execute(
            select(InboundMessage.status, func.count())
            .where(InboundMessage.id.in_(ids))
            .group_by(InboundMessage.status)
        )
        return {status: count for status, count in rows}


# --- the run ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per app and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of each app")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--worker-class", choices=["gevent", "gthread"], default="gevent",
                        help="gunicorn's worker class (default gevent, as roundtable serve)")  # fmt: skip
    parser.add_argument("--worker-connections", type=int, default=100,
                        help="requests at once per gevent worker (default 100, as roundtable serve)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per gthread worker (default 4, as roundtable serve)")  # fmt: skip
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL URL allowed to create databases")  # fmt: skip
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/3", help="flushed before and after"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the temp folder")
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 600 and 1 <= args.connections <= 1000 and 1 <= args.rounds <= 50):
        parser.error("--seconds must be 1-600, --connections 1-1000 and --rounds 1-50")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))  # tests.mails builds the multipart bodies
    from app import db
    from app.settings import configure

    folder = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    env = server_env(args.admin_url, args.redis_url, folder)
    settings = Settings.from_env(env)
    configure(settings)
    recreate_database(args.admin_url)
    flush_redis(args.redis_url)
    try:
        db.upgrade(settings.database_url)
        cycle_id = create_demo_cycle(settings)
        templates = write_templates(settings, cycle_id, folder)
        authorization = (
            "Basic " + b64encode(f"{INBOUND_USERNAME}:{INBOUND_PASSWORD}".encode()).decode()
        )
        script = write_wrk_script(templates, folder, authorization)

        webhook, noop, ratios = load_pair(env, folder, script, args)
        durability = check_durability(settings)

        sample = sample_inbound(settings, WORKER_SAMPLE)
        parses_per_s = time_mailparser([raw for _id, raw in sample])
        replies_per_s = time_worker([inbound_id for inbound_id, _raw in sample])
        outcomes = count_statuses(settings, [inbound_id for inbound_id, _raw in sample])
    finally:
        db.engine_for(settings.database_url).dispose()
        flush_redis(args.redis_url)
        if not args.keep:
            drop_database(args.admin_url)
            shutil.rmtree(folder, ignore_errors=True)

    sizes = [t.size for t in templates]
    result = {
        "webhook_rps": round(webhook.rps, 1),
        "noop_rps": round(noop.rps, 1),
        "webhook_ratio": round(statistics.median(ratios), 3),
        "webhook_ratio_rounds": [round(ratio, 3) for ratio in ratios],
        "p50_ms": round(webhook.p50_ms, 2),
        "p99_ms": round(webhook.p99_ms, 2),
        "noop_p50_ms": round(noop.p50_ms, 2),
        "noop_p99_ms": round(noop.p99_ms, 2),
        "non_2xx": webhook.non_2xx + noop.non_2xx,
        "socket_errors": webhook.socket_errors + noop.socket_errors,
        "webhook_cpu_ms": round(webhook.cpu_ms_per_request, 2),
        "noop_cpu_ms": round(noop.cpu_ms_per_request, 2),
        "webhook_requests": webhook.requests,
        "server_posts_2xx": webhook.server_posts_2xx,
        "stored_rows": durability.stored_rows,
        "drain_jobs": durability.drain_jobs,
        "durable": durability.stored_rows == webhook.server_posts_2xx == durability.unread_rows
        and durability.drain_jobs >= 1,
        "worker_sample": len(sample),
        "worker_outcomes": outcomes,
        "worker_replies_per_s": round(replies_per_s, 1),
        "mailparser_parses_per_s": round(parses_per_s, 1),
        "worker_ratio": round(replies_per_s / parses_per_s, 3),
        "body_bytes": [min(sizes), int(statistics.median(sizes)), max(sizes)],
        "load_average_1m": [round(webhook.load_average, 2), round(noop.load_average, 2)],
        "server": server_description(args),
        "load": f"wrk {min(WRK_THREADS, args.connections)} threads, {args.connections} connections, "
        f"{WARM_UP_SECONDS} s warm-up",
        "worker": "app.jobs.run('workers.jobs.process_inbound', id) in a loop, one process",
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    print_table(result, webhook, noop)
    print(json.dumps(result))
    return 0 if result["durable"] and result["non_2xx"] == 0 and result["socket_errors"] == 0 else 1


def print_table(result: dict[str, Any], webhook: Load, noop: Load) -> None:
    smallest, median, largest = result["body_bytes"]
    print(f"Server: {result['server']}")
    print(f"Load:   {result['load']}, {result['seconds']} s per app and round, {result['rounds']} rounds")
    print(
        f"Bodies: raw-mode reply posts, {smallest}-{largest} bytes (median {median}), new Message-IDs"
    )
    print()
    columns = (
        "req/s",
        "p50 ms",
        "p99 ms",
        "requests",
        "non-2xx",
        "sock err",
        "cpu ms/req",
        "load 1m",
    )
    print(f"{'':20}" + "".join(f"{column:>11}" for column in columns))
    for name, load in (("webhook (durable)", webhook), ("no-op (parse only)", noop)):
        values = (
            f"{load.rps:.1f}",
            f"{load.p50_ms:.2f}",
            f"{load.p99_ms:.2f}",
            load.requests,
            load.non_2xx,
            load.socket_errors,
            f"{load.cpu_ms_per_request:.2f}",
            f"{load.load_average:.2f}",
        )
        print(f"{name:20}" + "".join(f"{value:>11}" for value in values))
    rounds = ", ".join(f"{ratio:.3f}" for ratio in result["webhook_ratio_rounds"])
    print(f"{'ratio':20}{result['webhook_ratio']:>11.3f}   (median of the rounds: {rounds})")
    print()
    verdict = "OK" if result["durable"] else "MISMATCH"
    print(
        f"Durability: {result['stored_rows']} rows stored, {result['server_posts_2xx']} POSTs answered"
    )
    print(
        f"  2xx by the server (warm-up and in flight at wrk's stop included), all unread, and "
        f"{result['drain_jobs']} drain job(s) queued to read them: {verdict}"
    )
    print()
    print(f"Worker: {result['worker']}, {result['worker_sample']} stored replies")
    print(
        f"  {result['worker_replies_per_s']:>8.1f} replies/s fully processed, {result['worker_outcomes']}"
    )
    print(
        f"  {result['mailparser_parses_per_s']:>8.1f} mailparser.parse_from_bytes/s on the same bytes"
    )
    print(f"  ratio {result['worker_ratio']:.3f}")
    print()


if __name__ == "__main__":
    sys.exit(main())
