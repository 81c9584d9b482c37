"""Backscatter: a stranger's mail we cannot place gets a polite notice only when SPF or DKIM
confirms the From address, so a forged sender never receives our mail. Through the real webhook,
with SendGrid's authentication fields (raw and parsed mode) or, on /inbound/raw, our own MTA's
Authentication-Results; the row records why it was rejected either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import InboundMessage, OutboundMessage
from app.settings import Settings
from tests.conftest import AUTH
from tests.mails import parsed_mode, raw_mode, reply
from tests.test_webhook import post

SAM = ("Sam Stranger", "sam@elsewhere.example")


def stranger(body: str = "Hello, is this the forum?", **headers: str):  # type: ignore[no-untyped-def]
    return reply(None, body, sender=SAM, headers=headers)


def notices(session: Session) -> list[OutboundMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "notice")))


def mailed_to(settings: Settings, address: str) -> list[Path]:
    """Outbox files (what the outbox transport sent) addressed to `address`."""
    folder = settings.outbox_dir
    files = sorted(folder.rglob("*")) if folder is not None and folder.exists() else []
    return [f for f in files if f.is_file() and address.encode() in f.read_bytes()]


def the_row(session: Session) -> InboundMessage:
    session.expire_all()
    return session.scalars(select(InboundMessage)).one()


@pytest.mark.parametrize("mode", [raw_mode, parsed_mode], ids=["raw", "parsed"])
def test_a_stranger_with_an_aligned_spf_pass_gets_one_notice(client, session, settings, mode) -> None:  # type: ignore[no-untyped-def]
    # The default post: SPF pass, the envelope sender being the From address.
    assert post(client, mode(stranger())).status_code == 200
    row = the_row(session)
    assert row.status == "rejected" and "no reply token" in row.reason
    assert "no notice" not in row.reason
    [notice] = notices(session)
    assert notice.to_email == SAM[1] and notice.status == "sent"
    assert mailed_to(settings, SAM[1])


def test_a_stranger_with_an_aligned_dkim_pass_gets_a_notice_though_spf_failed(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    # Forwarded mail: SPF fails at our MX, the sender's signature still holds.
    post(client, raw_mode(stranger(), auth={"SPF": "fail", "dkim": "{@elsewhere.example : pass}"}))
    assert [n.to_email for n in notices(session)] == [SAM[1]]


@pytest.mark.parametrize(
    ("auth", "said"),
    [
        pytest.param({"SPF": "fail"}, "neither SPF nor DKIM confirms", id="spf_fail"),
        pytest.param({"SPF": "softfail", "dkim": "none"}, "SPF failed", id="spf_softfail_no_dkim"),
        pytest.param(
            {"envelope": json.dumps({"to": ["hello@in.forum.example"], "from": "bounces@forger.example"}),
             "dkim": "{@forger.example : pass}"},
            "SPF passed only for forger.example and DKIM passed only for forger.example",
            id="spf_and_dkim_pass_for_another_domain",
        ),
        pytest.param(
            {"envelope": json.dumps({"to": ["hello@in.forum.example"], "from": "bounces@forger.example"})},
            "neither SPF nor DKIM confirms",
            id="spf_pass_for_another_domain",
        ),
        pytest.param(
            {"SPF": "none", "dkim": "{@forger.example : pass}"},
            "neither SPF nor DKIM confirms",
            id="dkim_pass_for_another_domain",
        ),
        pytest.param({"SPF": ""}, "no SPF, DKIM or DMARC results", id="no_results"),
        pytest.param({"SPF": "neutral"}, "neither SPF nor DKIM confirms", id="spf_neutral"),
    ],
)
def test_a_stranger_not_confirmed_by_spf_or_dkim_gets_no_mail(client, session, settings, auth, said) -> None:  # type: ignore[no-untyped-def]
    assert post(client, raw_mode(stranger(), auth=auth)).status_code == 200
    row = the_row(session)
    assert row.status == "rejected"
    assert row.reason.startswith("no reply token or thread of ours"), row.reason
    assert "no notice sent" in row.reason and said in row.reason, row.reason
    assert notices(session) == []
    assert mailed_to(settings, SAM[1]) == []


def test_a_forged_stranger_in_parsed_mode_gets_no_mail(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    post(client, parsed_mode(stranger(), auth={"SPF": "fail", "dkim": "none"}))
    row = the_row(session)
    assert row.status == "rejected" and "no notice sent" in row.reason
    assert notices(session) == [] and mailed_to(settings, SAM[1]) == []


def test_a_forged_pass_in_the_headers_does_not_outweigh_sendgrids_fail(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    message = stranger(**{"Authentication-Results": "mx.elsewhere.example; spf=pass smtp.mailfrom=elsewhere.example; "
                                                    "dkim=pass header.d=elsewhere.example; dmarc=pass header.from=elsewhere.example"})
    post(client, raw_mode(message, auth={"SPF": "fail", "dkim": "none"}))
    assert "no notice sent" in the_row(session).reason
    assert notices(session) == []


def raw_endpoint(client, message) -> int:  # type: ignore[no-untyped-def]
    response = client.post(
        "/inbound/raw",
        query_string={"to": "hello@in.forum.example"},
        data=bytes(message),
        headers={**AUTH, "Content-Type": "message/rfc822"},
    )
    return response.status_code


def test_raw_endpoint_notices_only_what_our_mta_confirmed(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    # Behind our own MTA its topmost Authentication-Results is ours, and counts both ways.
    confirmed = stranger(**{"Authentication-Results": "mx.in.forum.example; spf=pass smtp.mailfrom=sam@elsewhere.example"})
    assert raw_endpoint(client, confirmed) == 200
    assert [n.to_email for n in notices(session)] == [SAM[1]]


def test_raw_endpoint_with_no_results_sends_nothing(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    assert raw_endpoint(client, stranger()) == 200
    row = the_row(session)
    assert row.status == "rejected" and "no notice sent" in row.reason
    assert notices(session) == [] and mailed_to(settings, SAM[1]) == []


def test_posting_a_forged_message_twice_still_sends_nothing(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    body = raw_mode(stranger(), auth={"SPF": "fail"})
    assert post(client, body).status_code == 200
    assert post(client, body).status_code == 200
    session.expire_all()
    assert len(session.scalars(select(InboundMessage)).all()) == 1
    assert notices(session) == []
