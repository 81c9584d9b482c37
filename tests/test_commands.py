"""Commands say what really happened: one line naming the problem and what to do, never a
traceback (unless --debug); exit codes that a script can trust; the roster commands a
facilitator needs; CSV files as spreadsheets save them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from app import db, roster
from app.cli import main
from app.models import Group, Member, OutboundMessage
from app.settings import configure
from tests.test_cli import run  # noqa: F401 - a fixture


def invoke(*args: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    configure(None)
    try:
        return CliRunner().invoke(main, list(args), env={"REDIS_URL": "", "MAIL_TRANSPORT": "outbox", **env})
    finally:
        configure(None)


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", "nothing answers at 127.0.0.1:1: is PostgreSQL running there"),
        ("postgresql://postgres@no-such-host.invalid:5432/test", "its host no-such-host.invalid is unknown"),
        ("mysql://someone@db.example/roundtable", "expected a sqlite:/// or postgresql:// URL"),
    ],
)
def test_a_database_we_cannot_reach_is_one_line(url: str, said: str) -> None:
    line = one_line_error(invoke("status", env={"DATABASE_URL": url}))
    assert said in line


def test_debug_shows_the_traceback() -> None:
    result = invoke("--debug", "status", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"})
    assert result.exit_code == 1 and result.exception is not None
    assert "Connection refused" in str(result.exception) or "connection" in str(result.exception).lower()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ('connection failed: FATAL:  database "forum" does not exist', "has no database forum: create it (createdb forum)"),
        ('connection failed: FATAL:  role "dana" does not exist', "has no role dana"),
        ('FATAL:  password authentication failed for user "dana"', "refused the password for dana"),
        ("could not translate host name \"db\" to address", "its host db.example is unknown"),
        ("connection timeout expired", "did not answer in time"),
        ("something new", "something new"),
    ],
)
def test_connection_problems_name_the_part_of_the_url(error: str, said: str) -> None:
    line = db.connection_problem("postgresql://dana:secret@db.example:6543/forum", RuntimeError(error))
    assert said in line and "secret" not in line and line.startswith("cannot use the database postgresql://dana:***@db.example:6543/forum")


def test_a_missing_database_and_role_on_a_live_server(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (CI runs this on it)")
    base = database_url.rsplit("/", 1)[0]
    assert "has no database no_such_db_rt" in one_line_error(invoke("status", env={"DATABASE_URL": f"{base}/no_such_db_rt"}))
    other_role = base.replace("postgres@", "no_such_role_rt@", 1) + "/test"
    assert "has no role no_such_role_rt" in one_line_error(invoke("status", env={"DATABASE_URL": other_role}))


def test_a_database_newer_than_the_code_is_named(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("db", "upgrade").exit_code == 0
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with db.engine_for(url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    line = one_line_error(run("status"))
    assert "is at migration 0099, newer than this code knows" in line


def test_fixed_offset_timezones_are_refused_with_the_iana_name(run) -> None:  # type: ignore[no-untyped-def]
    run("db", "upgrade")
    for name, suggestion in (("EST", "America/New_York"), ("CET", "Europe/Paris"), ("PST8PDT", "America/Los_Angeles")):
        line = one_line_error(run("group", "create", "Forum", "--timezone", name, "--facilitator", "Dana <dana@f.example>"))
        assert f"'{name}' keeps one offset all year" in line and suggestion in line
    assert "fixed offset" in one_line_error(run("group", "create", "F", "--timezone", "Etc/GMT+5", "--facilitator", "d@f.example"))
    assert "not an IANA timezone" in one_line_error(run("group", "create", "F", "--timezone", "Mars/Olympus", "--facilitator", "d@f.example"))
    assert run("group", "create", "Forum", "--timezone", "UTC", "--facilitator", "d@f.example").exit_code == 0
    assert "keeps one offset" in one_line_error(run("group", "edit", "forum", "--timezone", "EST"))


def test_group_edit_changes_and_says_what(run) -> None:  # type: ignore[no-untyped-def]
    run("db", "upgrade")
    run("group", "create", "Forum", "--timezone", "America/Toronto", "--facilitator", "Dana <dana@f.example>")
    result = run("group", "edit", "forum", "--country", "ca", "--language", "fr", "--location", "Club, 1 Rue X")
    assert result.exit_code == 0
    assert result.output.strip() == "forum: default location: (none) -> Club, 1 Rue X; country: (none) -> CA; language: en -> fr"
    assert run("group", "edit", "forum", "--country", "CA").output.strip() == "forum: nothing changed"
    assert "two-letter country code" in one_line_error(run("group", "edit", "forum", "--country", "Canada"))
    assert "not a language Roundtable reads" in one_line_error(run("group", "edit", "forum", "--language", "xx"))


def test_inbound_release_of_no_such_message(run) -> None:  # type: ignore[no-untyped-def]
    run("db", "upgrade")
    assert "there is no message 999" in one_line_error(run("inbound", "release", "999"))


def test_tick_reports_and_fails_when_redis_is_unreachable(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}", "OUTBOX_DIR": str(tmp_path / "outbox")}
    assert invoke("db", "upgrade", env=env).exit_code == 0
    idle = invoke("tick", env=env)
    assert idle.exit_code == 0 and idle.output.strip() == "nothing was due"
    down = invoke("tick", env=env | {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.exit_code == 1 and "could not reach Redis at redis://127.0.0.1:1/0" in down.output
    assert "Traceback" not in down.output


# --- CSV as spreadsheets save it -----------------------------------------------------------------


def _members(session, group: Group) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(m.name, m.email, m.company) for m in session.scalars(select(Member).where(Member.group_id == group.id).order_by(Member.id))]


@pytest.mark.parametrize(
    "data",
    [
        # Excel in Germany or France: semicolons, Windows-1252, "E-Mail-Adresse"-style headers.
        "Full name;Email Address;Company\r\nJörg Weiß;joerg@weiss.example;Weiß GmbH\r\n".encode("cp1252"),
        # Excel's "Unicode text": UTF-16 with a BOM, tab-separated.
        "\ufeffName\tE-mail\tOrganization\r\nJörg Weiß\tjoerg@weiss.example\tWeiß GmbH\r\n".encode("utf-16-le"),
        # Google Sheets: UTF-8, commas, first and last name apart.
        "First Name,Last Name,Email,Company Name\nJörg,Weiß,joerg@weiss.example,Weiß GmbH\n".encode(),
        # UTF-8 with a BOM and semicolons.
        "\ufeffname;email;company\nJörg Weiß;joerg@weiss.example;Weiß GmbH\n".encode("utf-8"),
    ],
)
def test_csv_import_reads_what_spreadsheets_save(session, data: bytes) -> None:  # type: ignore[no-untyped-def]
    group = roster.create_group(session, name="Forum", timezone="Europe/Berlin", facilitator_name="D", facilitator_email="d@f.example")
    members = roster.import_members_csv(session, group, roster.decode_csv(data))
    assert len(members) == 1
    assert _members(session, group) == [("Jörg Weiß", "joerg@weiss.example", "Weiß GmbH")]


def test_csv_import_from_the_command_line_with_semicolons(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("db", "upgrade")
    run("group", "create", "Forum", "--timezone", "Europe/Paris", "--facilitator", "Dana <dana@f.example>")
    csv_file = tmp_path / "members.csv"
    csv_file.write_bytes("Nom;Courriel;Société\nÉlodie Marchand;elodie@marchand.example;Marchand SA\n".encode("utf-16"))
    result = run("member", "import", "forum", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "imported 1 members into Forum" in result.output
    listed = run("member", "list", "forum").output
    assert "Élodie Marchand" in listed and "elodie@marchand.example" in listed


def test_status_tells_queued_from_sent_from_delivered(session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from app.cycles import queue_requests
    from app.status import status_report

    ids = queue_requests(session, settings, cycle)
    rows = session.scalars(select(OutboundMessage).where(OutboundMessage.id.in_(ids)).order_by(OutboundMessage.id)).all()
    names = [row.to_name.split()[0] for row in rows]
    rows[1].status = "sent"
    rows[2].status = "delivered"
    session.flush()

    lines = {line.split()[0]: line for line in status_report(session, cycle.group).splitlines()[4:-1]}
    assert "request email not sent yet" in lines[names[0]]
    assert "asked (sent), no reply yet" in lines[names[1]]
    assert "asked (delivered), no reply yet" in lines[names[2]]
    assert status_report(session, cycle.group).splitlines()[-1].endswith("request emails: 1 delivered, 1 queued, 1 sent")
