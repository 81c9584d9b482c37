"""One bad roster row must not stall a send batch (issue 11, item 3).

Names and addresses are checked on the way in (add, import, edit, alias, facilitator), by the
parser build_mime uses; a row that got in before (old data) fails alone at send time, with its
reason on the ledger and in `roundtable status`, while the rest of its batch goes out.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rq.timeouts import JobTimeoutException
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import db, mail, roster
from app.cycles import queue_requests
from app.mail import Rendered, TransientSendError
from app.models import Cycle, Group, Member, OutboundMessage
from app.settings import Settings
from app.status import request_email_problem, status_report
from tests.conftest import SendGridStandIn, make_cycle, make_group
from workers.jobs import send_outbound

# What a roster check of old let through, and build_mime then refused (the cases).
UNSENDABLE = ["a(b@x.example", "a..b@x.example", "a:b@x.example"]


# --- checks on the way in (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    UNSENDABLE + ["a)b@x.example", ".a@x.example", "a.@x.example", "a\\b@x.example", "é@x.example"],
)
def test_addresses_the_parser_refuses_are_refused(address: str) -> None:
    with pytest.raises(roster.RosterError, match="is not an email address we can send to"):
        roster.check_email(address)


def test_the_refusal_says_what_is_wrong() -> None:
    assert roster.email_problem("a..b@x.example") == (
        "is not an email address we can send to: a dot at the start or end of the part before"
        " the @, or two in a row"
    )
    assert roster.email_problem("a(b@x.example") == (
        "is not an email address we can send to: the character ( before the @"
    )
    assert roster.email_problem("a" * 250 + "@x.example") == "is longer than 254 characters"
    assert roster.email_problem("not-an-email") == "is not an email address"


@pytest.mark.parametrize(
    "address",
    [
        "o'brien@x.example",
        "a+tag@x.example",
        "first.last@sub.x.example",
        "a%b@x.example",
        "A@X.Example",
    ],
)
def test_ordinary_addresses_still_pass(address: str) -> None:
    assert roster.check_email(address) == address.lower()


@pytest.mark.parametrize(
    ("cell", "name"),
    [
        ("Alice\nChen", "Alice Chen"),
        ("Alice\r\nChen", "Alice Chen"),
        ("  Alice \r\n\r\n Chen  ", "Alice Chen"),
        ("Alice\tChen", "Alice Chen"),
        ("Alice\u2028Chen\x85", "Alice Chen"),
        ("Zoë O’Brien-Núñez", "Zoë O’Brien-Núñez"),
        ("山田\u3000太郎", "山田\u3000太郎"),  # an ideographic space is the name's own
    ],
)
def test_a_name_over_several_lines_is_joined_with_a_space(cell: str, name: str) -> None:
    assert roster.one_line(cell) == name


@pytest.mark.parametrize(
    "cell", ["Alice\x00Chen", "Alice\x1b[31mChen", "Alice\x7f", "Alice\x9bChen"]
)
def test_a_name_with_other_control_characters_is_refused(cell: str) -> None:
    with pytest.raises(roster.RosterError, match="name contains the control character U\\+00"):
        roster.one_line(cell)


def test_names_are_checked_for_length_and_emptiness() -> None:
    with pytest.raises(roster.RosterError, match="name is empty"):
        roster.one_line(" \r\n ")
    with pytest.raises(roster.RosterError, match="longer than 200"):
        roster.one_line("x" * 201)
    assert roster.one_line("\n", "company", required=False) == ""


@pytest.mark.parametrize("size", [100_000])
def test_the_checks_take_linear_time_on_long_runs(size: int) -> None:
    started = time.monotonic()
    for c in " \t\n.@a-(\u3000\xa0":
        roster.email_problem(c * size)
        roster.email_problem("a@" + c * size)
        roster.email_problem(c * size + "@x.example")
        try:
            roster.one_line(c * size)
        except roster.RosterError:
            pass
    assert time.monotonic() - started < 5


def _sendable(name: str, address: str) -> None:
    """What build_mime does with a recipient, and the bytes the outbox would write."""
    row = OutboundMessage(
        kind="notice", to_email=address, to_name=name, message_id="<m@forum.example>", context={}
    )
    settings = Settings(database_url="sqlite://", mail_from="Roundtable <roundtable@forum.example>")
    message = mail.build_mime(settings, row, Rendered("s", "t\n", "<p>t</p>"), mail.clock.now())
    bytes(message)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    name=st.text(max_size=40),
    local=st.text(st.characters(codec="ascii"), min_size=1, max_size=20),
    domain=st.sampled_from(["x.example", "mail.x-y.example"]),
)
def test_whatever_the_roster_accepts_build_mime_can_send(
    name: str, local: str, domain: str
) -> None:
    try:
        clean_name = roster.one_line(name)
        address = roster.check_email(f"{local}@{domain}")
    except roster.RosterError:
        return
    _sendable(clean_name, address)


# --- the roster functions and the CSV import -------------------------------------------------------


def test_csv_with_a_multi_line_name_cell_imports_it_joined(session: Session, group: Group) -> None:
    text = 'name,email,company\n"David\nPark",david@park.example,"Park\r\nDental"\nElena P,elena@petrova.example,\n'
    members = roster.import_members_csv(session, group, text)
    assert [(m.name, m.email, m.company) for m in members] == [
        ("David Park", "david@park.example", "Park Dental"),
        ("Elena P", "elena@petrova.example", ""),
    ]


def test_csv_bad_addresses_and_names_are_reported_by_the_line_their_row_starts_on(
    session: Session, group: Group
) -> None:
    text = (
        "name,email\n"
        "David Park,a..b@x.example\n"
        '"Elena\nPetrova",a(b@x.example\n'  # lines 3 and 4
        "Frank\x00Moe,frank@moe.example\n"
        "Gina,a:b@x.example\n"
        "Hal,hal@ok.example\n"
    )
    with pytest.raises(roster.RosterError) as error:
        roster.import_members_csv(session, group, text)
    assert str(error.value).splitlines() == [
        "nothing was imported:",
        (
            "line 2: 'a..b@x.example' is not an email address we can send to: a dot at the start"
            " or end of the part before the @, or two in a row"
        ),
        "line 3: 'a(b@x.example' is not an email address we can send to: the character ( before the @",
        "line 5: name contains the control character U+0000 (is the file UTF-8?)",
        "line 6: 'a:b@x.example' is not an email address we can send to: the character : before the @",
    ]
    assert session.scalar(select(Member.id).where(Member.email == "hal@ok.example")) is None


@pytest.mark.parametrize("address", UNSENDABLE)
def test_every_way_in_refuses_an_unsendable_address(
    session: Session, group: Group, address: str
) -> None:
    alice = group.members[0]
    with pytest.raises(roster.RosterError, match="we can send to"):
        roster.add_member(session, group, name="Pat", email=address)
    with pytest.raises(roster.RosterError, match="we can send to"):
        roster.edit_member(session, alice, email=address)
    with pytest.raises(roster.RosterError, match="we can send to"):
        roster.add_alternate_address(session, alice, address)
    with pytest.raises(roster.RosterError, match="we can send to"):
        roster.add_facilitator(session, group, name="Pat", email=address)
    with pytest.raises(roster.RosterError, match="we can send to"):
        roster.create_group(
            session, name="Other", timezone="UTC", facilitator_name="P", facilitator_email=address
        )


def test_every_way_in_joins_a_multi_line_name_and_refuses_a_nul(
    session: Session, group: Group
) -> None:
    pat = roster.add_member(
        session, group, name="Pat\r\nLee", email="pat@lee.example", title="CEO\n"
    )
    assert (pat.name, pat.title) == ("Pat Lee", "CEO")
    assert roster.edit_member(session, pat, name="Pat\nLee-Smith") == [
        "name Pat Lee -> Pat Lee-Smith"
    ]
    assert roster.edit_member(session, pat, name="Pat Lee-Smith\n") == []  # no change
    assert (
        roster.add_facilitator(session, group, name="Sam\nKo", email="sam@ko.example").name
        == "Sam Ko"
    )
    with pytest.raises(roster.RosterError, match="U\\+0000"):
        roster.add_member(session, group, name="Kim\x00", email="kim@x.example")
    with pytest.raises(roster.RosterError, match="U\\+001B"):
        roster.edit_member(session, pat, name="Pat\x1b")
    with pytest.raises(roster.RosterError, match="U\\+0007"):
        roster.add_facilitator(session, group, name="Sam\x07", email="sam2@ko.example")


# --- old rows at send time --------------------------------------------------------------------------

GOOD = [
    ("Alice Chen", "alice@northwind.example"),
    ("Ben Okafor", "ben@okafor.example"),
    ("Carmen Ruiz", "carmen@ruizfoods.example"),
    ("David Park", "david@park.example"),
]
# As an older roster check let them in: inserted directly, not through roster.add_member.
OLD_BAD = [
    ("Erin\r\nWalsh", "erin@walsh.example"),
    ("Frank Moe", "a..b@x.example"),
    ("Gus\x1bHay", "gus@hay.example"),
]


@pytest.fixture()
def mixed_cycle(session: Session) -> Cycle:
    """A group whose roster interleaves good members and old bad rows, with its requests queued."""
    group = make_group(session, members=[])
    for (good_name, good_email), (bad_name, bad_email) in zip(GOOD, OLD_BAD + [("", "")]):
        roster.add_member(session, group, name=good_name, email=good_email)
        if bad_email:
            session.add(Member(group=group, name=bad_name, email=bad_email))
    session.flush()
    cycle = make_cycle(session, group)
    session.commit()
    return cycle


def queued_ids(session: Session, settings: Settings, cycle: Cycle) -> list[int]:
    ids = queue_requests(session, settings, cycle)
    session.commit()
    assert len(ids) == len(GOOD) + len(OLD_BAD)
    return ids


def ledger(settings: Settings) -> dict[str, tuple[str, int, str | None]]:
    """to_email -> (status, attempts, last_error), as committed."""
    with db.session_scope(settings.database_url) as session:
        return {
            row.to_email: (row.status, row.attempts, row.last_error)
            for row in session.scalars(select(OutboundMessage).order_by(OutboundMessage.id))
        }


def test_a_bad_row_fails_alone_and_the_rest_of_the_batch_is_sent(
    session: Session, settings: Settings, mixed_cycle: Cycle
) -> None:
    ids = queued_ids(session, settings, mixed_cycle)

    send_outbound(*ids)  # one send job with the whole batch, as app.jobs.enqueue_sends makes it

    rows = ledger(settings)
    for _, email in GOOD:
        assert rows[email] == ("sent", 1, None)
    erin, frank, gus = (rows[email] for _, email in OLD_BAD)
    assert erin[:2] == frank[:2] == gus[:2] == ("failed", 1)
    assert (
        erin[2]
        == "could not build this email: ValueError: the recipient's name 'Erin\\r\\nWalsh' has control characters"
    )
    assert frank[2] is not None and frank[2].startswith(
        "could not build this email: InvalidHeaderDefect: local-part"
    )
    assert (
        gus[2]
        == "could not build this email: ValueError: the recipient's name 'Gus\\x1bHay' has control characters"
    )
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == len(GOOD)

    send_outbound(*ids)  # run it twice: nothing sent again, nothing changed
    assert ledger(settings) == rows
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == len(GOOD)


def test_status_shows_the_failed_request_with_its_reason(
    session: Session, settings: Settings, mixed_cycle: Cycle
) -> None:
    ids = queued_ids(session, settings, mixed_cycle)
    assert "request email not sent yet" in status_report(session, mixed_cycle.group)
    send_outbound(*ids)
    session.expire_all()

    lines = {
        line.split()[0]: line
        for line in status_report(session, mixed_cycle.group).splitlines()[4:-1]
    }
    for name, _ in GOOD:
        assert "no reply yet" in lines[name.split()[0]]
    erin = lines["Erin"]
    assert "request email failed" in erin and "asked" not in erin
    assert erin.startswith("  Erin Walsh ")  # the old name on one line: the table holds
    assert " streak 0  (could not build" in erin
    assert erin.endswith(
        "(could not build this email: ValueError: the recipient's name 'Erin\\r\\nWalsh' has control characters)"
    )
    assert "request email failed" in lines["Frank"] and "InvalidHeaderDefect" in lines["Frank"]


def test_request_email_problem() -> None:
    assert request_email_problem([]) is None
    assert request_email_problem([("sent", None)]) is None
    assert (
        request_email_problem([("failed", "x"), ("delivered", None)]) is None
    )  # a reminder reached them
    assert request_email_problem([("queued", None)]) == ("request email not sent yet", None)
    assert request_email_problem([("queued", "SendGrid 503")]) == (
        "request email not sent yet",
        "SendGrid 503",
    )
    assert request_email_problem([("bounced", "bounce: 550")]) == (
        "request email bounced",
        "bounce: 550",
    )
    assert request_email_problem([("failed", "old address"), ("queued", None)]) == (
        "request email not sent yet",
        None,
    )
    assert request_email_problem([("cancelled", "replied")]) is None


def test_a_transient_error_still_ends_the_job_for_rqs_retry(
    session: Session, sendgrid_settings: Settings, sendgrid_api: SendGridStandIn, mixed_cycle: Cycle
) -> None:
    ids = queued_ids(session, sendgrid_settings, mixed_cycle)  # Alice, Erin (bad), Ben, ...
    sendgrid_api.statuses = [202, 503]  # Alice goes out; Ben's call meets a 503

    with pytest.raises(TransientSendError, match="SendGrid 503"):
        send_outbound(*ids)
    rows = ledger(sendgrid_settings)
    assert rows["alice@northwind.example"][0] == "sent"
    assert rows["erin@walsh.example"][:2] == ("failed", 1)  # before the 503: failed, not sent
    assert rows["ben@okafor.example"] == ("queued", 1, rows["ben@okafor.example"][2])
    assert "503" in (rows["ben@okafor.example"][2] or "")
    assert rows["carmen@ruizfoods.example"] == ("queued", 0, None)  # left for the retry

    send_outbound(*ids)  # rq's retry: the rest go, the failed row is left alone
    rows = ledger(sendgrid_settings)
    assert sorted(status for status, _, _ in rows.values()) == ["failed"] * 3 + ["sent"] * 4
    assert len(sendgrid_api.calls) == 2 + 3  # Alice, Ben's 503, then Ben, Carmen, David


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        JobTimeoutException("timed out"),
        MemoryError(),
    ],
)
def test_our_own_errors_still_end_the_job(
    session: Session,
    settings: Settings,
    cycle: Cycle,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    ids = queue_requests(session, settings, cycle)
    session.commit()

    def fail(*args: object) -> Rendered:
        raise error

    monkeypatch.setattr(mail, "render", fail)
    with pytest.raises(type(error)):
        send_outbound(*ids)
    assert {status for status, _, _ in ledger(settings).values()} == {"queued"}  # for the retry


def test_a_template_error_fails_that_email_with_its_reason(
    session: Session, settings: Settings, cycle: Cycle
) -> None:
    [first, *rest] = queue_requests(session, settings, cycle)
    broken = session.get_one(OutboundMessage, first)
    broken.context = {k: v for k, v in broken.context.items() if k != "first_name"}
    session.commit()

    send_outbound(first, *rest)

    with db.session_scope(settings.database_url) as fresh:
        rows = {row.id: row for row in fresh.scalars(select(OutboundMessage))}
        assert rows[first].status == "failed"
        assert (
            rows[first].last_error
            == "could not build this email: UndefinedError: 'first_name' is undefined"
        )
        assert [rows[i].status for i in rest] == ["sent"] * len(rest)


def test_a_real_worker_finishes_the_batch_with_a_bad_row_in_it(
    session: Session, redis_settings: Settings, mixed_cycle: Cycle
) -> None:
    from rq import SimpleWorker

    from app import jobs

    ids = queued_ids(session, redis_settings, mixed_cycle)
    assert jobs.enqueue_sends(ids)
    queue = jobs.queue(redis_settings)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert queue.failed_job_registry.get_job_ids() == []
    assert queue.scheduled_job_registry.get_job_ids() == []  # no retry pending: the job finished
    statuses = sorted(status for status, _, _ in ledger(redis_settings).values())
    assert statuses == ["failed"] * len(OLD_BAD) + ["sent"] * len(GOOD)
