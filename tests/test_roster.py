"""Groups and members, and the all-or-nothing CSV import."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app import roster
from app.models import Member


def test_create_group_rejects_a_bad_timezone(session) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(roster.RosterError, match="IANA"):
        roster.create_group(session, name="X", timezone="Mars/Olympus", facilitator_name="D", facilitator_email="d@x.example")


def test_duplicate_member_is_refused(session, group) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(roster.RosterError, match="already a member"):
        roster.add_member(session, group, name="Alice Again", email="ALICE@northwind.example")


def test_csv_import_adds_every_row(session, group) -> None:  # type: ignore[no-untyped-def]
    text = "\ufeffname,email,company,title\nDavid Park,david@park.example,Park Dental,CEO\nElena P,Elena@Petrova.example,,\n"
    members = roster.import_members_csv(session, group, text)
    session.commit()
    assert [(m.name, m.email, m.company, m.title) for m in members] == [
        ("David Park", "david@park.example", "Park Dental", "CEO"),
        ("Elena P", "elena@petrova.example", "", ""),
    ]


def test_csv_import_reports_bad_rows_by_line_and_imports_nothing(session, group) -> None:  # type: ignore[no-untyped-def]
    before = session.scalar(select(func.count(Member.id)))
    text = (
        "name,email,company,title\n"
        "David Park,david@park.example,Park Dental,CEO\n"
        ",nobody@x.example,,\n"
        "Frank,not-an-email,,\n"
        "Alice Dup,alice@northwind.example,,\n"
        "David Twice,DAVID@park.example,,\n"
    )
    with pytest.raises(roster.RosterError) as error:
        roster.import_members_csv(session, group, text)
    message = str(error.value)
    assert "line 3: name is empty" in message
    assert "line 4: 'not-an-email' is not an email address" in message
    assert "line 5: alice@northwind.example is already a member" in message
    assert "line 6: david@park.example appears twice (also on line 2)" in message
    session.rollback()
    assert session.scalar(select(func.count(Member.id))) == before


def test_csv_without_the_needed_columns(session, group) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(roster.RosterError, match="line 1: the header needs columns email"):
        roster.import_members_csv(session, group, "name,phone\nA,555 0100\n")


def test_csv_import_refuses_another_members_alternate_address(session, group) -> None:  # type: ignore[no-untyped-def]
    alice = session.scalars(select(Member).where(Member.email == "alice@northwind.example")).one()
    roster.add_alternate_address(session, alice, "assistant@northwind.example")
    with pytest.raises(roster.RosterError, match="line 2: assistant@northwind.example is an alternate address of Alice Chen"):
        roster.import_members_csv(session, group, "name,email\nPat,Assistant@Northwind.example\n")


def test_member_state_says_removed_inactive_or_bouncing(session, group) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import NOW

    alice, ben, carmen = group.members
    roster.set_active(session, ben, False)
    carmen.bounced_at, carmen.bounce_reason = NOW, "5.1.1 no such user"
    assert [roster.member_state(m, "UTC") for m in (alice, ben, carmen)] == [
        "active",
        "inactive",
        "active, bouncing: 5.1.1 no such user",
    ]
    roster.remove_member(session, ben, NOW)
    assert roster.member_state(ben, "UTC") == f"removed {NOW:%Y-%m-%d}"
