"""Sender authentication: SendGrid's SPF/dkim fields and the topmost authentication headers.

Each example is written out byte by byte. The header layouts are modelled on those Gmail and
Microsoft 365 write, the field values on those SendGrid posts; the domains are ours.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.authentication import Authentication, sender_authentication

# As in test_malformed: Hypothesis imports its patch writer only when a property fails, and under
# `filterwarnings = error` its DeprecationWarning would hide the failure. Import it once, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

ALICE = "alice@northwind.example"
CLAIMS = f"it claims to be from {ALICE}, but"


def message(*headers: str) -> bytes:
    """A reply with the given header fields above the usual ones, CRLF line ends."""
    head = "\n".join(headers) + ("\n" if headers else "")
    text = (
        f"{head}From: Alice Chen <{ALICE}>\nTo: reply+3f9a1c2b@in.forum.example\n"
        "Subject: Re: Your May update\nMessage-ID: <a1@northwind.example>\n\nAll good here.\n"
    )
    return text.replace("\n", "\r\n").encode()


def sendgrid(spf: str | None, dkim: str | None, envelope_from: str = ALICE) -> dict[str, Any]:
    """The form fields the webhook keeps from a SendGrid post (app.inbound.from_sendgrid)."""
    fields: dict[str, Any] = {
        "envelope": json.dumps({"to": ["reply+3f9a1c2b@in.forum.example"], "from": envelope_from}),
        "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
        "from": f"Alice Chen <{ALICE}>",
        "sender_ip": "203.0.113.9",
    }
    if spf is not None:
        fields["SPF"] = spf
    if dkim is not None:
        fields["dkim"] = dkim
    return fields


GMAIL_PASS = """Authentication-Results: mx.google.com;
       dkim=pass header.i=@northwind.example header.s=google header.b=K7dBqH2s;
       spf=pass (google.com: domain of alice@northwind.example designates 209.85.220.41 as permitted sender) smtp.mailfrom=alice@northwind.example;
       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=northwind.example"""

GMAIL_DMARC_FAIL = """Authentication-Results: mx.google.com;
       arc=pass (i=1 spf=pass spfdomain=relay.example dkim=pass dkdomain=relay.example dmarc=pass fromdomain=northwind.example);
       spf=pass (google.com: domain of bounce@relay.example designates 198.51.100.7 as permitted sender) smtp.mailfrom=bounce@relay.example;
       dmarc=fail (p=REJECT sp=REJECT dis=REJECT) header.from=northwind.example"""

# Microsoft 365 writes no authserv-id, and no space after some semicolons.
M365_FORGED = """Authentication-Results: spf=fail (sender IP is 203.0.113.9)
 smtp.mailfrom=northwind.example; dkim=none (message not signed)
 header.d=none;dmarc=fail action=quarantine
 header.from=northwind.example;compauth=fail reason=000
Received-SPF: Fail (protection.outlook.com: domain of northwind.example does not
 designate 203.0.113.9 as permitted sender) receiver=protection.outlook.com;
 client-ip=203.0.113.9; helo=mail.forger.example;"""

M365_PASS = """Authentication-Results: spf=pass (sender IP is 40.107.22.53)
 smtp.mailfrom=northwind.example; dkim=pass (signature was verified)
 header.d=northwind.example;dmarc=pass action=none
 header.from=northwind.example;compauth=pass reason=100"""

# A sending side's own stamp, of the kind Microsoft 365 leaves on its users' outgoing mail: written
# before the message is signed, so it says dkim=none although the message arrives signed.
M365_SENDER_STAMP = """Authentication-Results: dkim=none (message not signed)
 header.d=none;dmarc=none action=none header.from=northwind.example;"""

OUR_MX_FAIL = """Authentication-Results: mx.roundtable.example;
 spf=fail smtp.mailfrom=northwind.example; dkim=fail header.d=northwind.example
Received-SPF: fail (mx.roundtable.example: 203.0.113.9 is not allowed) envelope-from=alice@northwind.example
Received: from mail.forger.example (mail.forger.example [203.0.113.9])
 by mx.roundtable.example with ESMTPS; Thu, 19 Nov 2026 10:15:00 +0000"""

FORGED_PASS = """Authentication-Results: mx.roundtable.example;
 spf=pass smtp.mailfrom=northwind.example; dkim=pass header.d=northwind.example;
 dmarc=pass header.from=northwind.example
Received-SPF: pass (mx.roundtable.example: 203.0.113.9 is allowed) envelope-from=alice@northwind.example"""


DMARC_FAIL_ELSEWHERE = (
    "Authentication-Results: mx.roundtable.example; dmarc=fail header.from=other.example;"
    " spf=pass smtp.mailfrom=bounce@northwind.example"
)

# The comment and the quoted string each hold a semicolon and a pass.
PASSES_IN_COMMENT_AND_QUOTES = (
    "Authentication-Results: mx.roundtable.example; spf=none (no record; dmarc=pass"
    " header.from=northwind.example) smtp.mailfrom=northwind.example; dkim=fail"
    ' header.d=northwind.example header.b="x;dkim=pass header.d=northwind.example"'
)


EXAMPLES = [
    # -- SendGrid's fields (a SendGrid post: raw or parsed mode) --
    pytest.param(
        [],
        sendgrid("pass", "{@gmail.com : pass}", "alice.chen@gmail.com"),
        "alice.chen@gmail.com",
        Authentication("pass", "DKIM passed for gmail.com"),
        id="gmail-user-through-sendgrid",
    ),
    pytest.param(
        [],
        sendgrid("pass", "{@sendgrid.com : pass}", "bounces+5555@sendgrid.net"),
        "dx@sendgrid.com",
        Authentication("pass", "DKIM passed for sendgrid.com"),
        id="sendgrid-docs-sample-values",
    ),
    pytest.param(
        # Google Workspace without a DKIM key of its own signs for gappssmtp.com: SPF carries it.
        [],
        sendgrid("pass", "{@northwind-example.20230601.gappssmtp.com : pass}"),
        ALICE,
        Authentication("pass", "SPF passed for northwind.example"),
        id="workspace-default-signature",
    ),
    pytest.param(
        [],
        sendgrid(
            "softfail", "{@northwind.example : pass}", "alice+caf_=in=forum.example@gmail.com"
        ),
        ALICE,
        Authentication("pass", "DKIM passed for northwind.example"),
        id="forwarded-softfail-dkim-aligned",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@mailer.example : pass}", "bounce@mailer.example"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and DKIM passed only for mailer.example"),
        id="dkim-pass-unaligned-spf-fail",
    ),
    pytest.param(
        [],
        sendgrid("softfail", "none"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and it has no DKIM signature"),
        id="softfail-and-no-signature-held",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@a.example : fail, @northwind.example : pass}"),
        ALICE,
        Authentication("pass", "DKIM passed for northwind.example"),
        id="two-signatures-one-aligned-pass",
    ),
    pytest.param(
        [],
        sendgrid("softfail", "{@northwind.example : fail, @mailer.example : pass}"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and DKIM passed only for mailer.example"),
        id="aligned-signature-fails-other-passes",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@northwind.example : fail}"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and DKIM failed"),
        id="spf-fail-dkim-fail",
    ),
    pytest.param(
        [],
        sendgrid("Fail", "{@NorthWind.Example:FAIL}"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and DKIM failed"),
        id="upper-case-values",
    ),
    pytest.param(
        [],
        sendgrid("fail", " {  @northwind.example : pass } , { @sendgrid.net : fail } "),
        ALICE,
        Authentication("pass", "DKIM passed for northwind.example"),
        id="dkim-entries-in-braces-each",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@mail.northwind.example : pass}"),
        ALICE,
        Authentication("pass", "DKIM passed for mail.northwind.example"),
        id="signed-by-subdomain",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@northwind.example : pass}"),
        "alice@eu.northwind.example",
        Authentication("pass", "DKIM passed for northwind.example"),
        id="signed-by-parent",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@evilnorthwind.example : pass}"),
        ALICE,
        Authentication(
            "fail", f"{CLAIMS} SPF failed and DKIM passed only for evilnorthwind.example"
        ),
        id="lookalike-signer-is-not-aligned",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@xn--mller-kva.example : pass}"),
        "anna@müller.example",
        Authentication("pass", "DKIM passed for xn--mller-kva.example"),
        id="unicode-domain-meets-punycode",
    ),
    pytest.param(
        [],
        sendgrid("fail", "{@northwind.example : temperror}"),
        ALICE,
        Authentication(
            "unknown", "neither SPF nor DKIM confirms that it comes from northwind.example"
        ),
        id="aligned-dkim-temperror-holds-nothing",
    ),
    *(
        pytest.param(
            [],
            sendgrid(spf, "{@northwind.example : fail}"),
            ALICE,
            Authentication(
                "unknown", "neither SPF nor DKIM confirms that it comes from northwind.example"
            ),
            id=f"spf-{spf}-is-not-a-failure",
        )
        for spf in ("temperror", "permerror", "neutral", "none")
    ),
    pytest.param(
        [],
        sendgrid("fail", None),
        ALICE,
        Authentication(
            "unknown", "neither SPF nor DKIM confirms that it comes from northwind.example"
        ),
        id="spf-fail-alone-with-no-dkim-result",
    ),
    pytest.param(
        [],
        sendgrid("pass", "none", "bounce@mailer.example"),
        ALICE,
        Authentication(
            "fail",
            "it claims to be from alice@northwind.example, but SPF passed only for mailer.example"
            " and it has no DKIM signature",
        ),
        id="spf-pass-for-another-domain-with-no-dkim-is-a-forgery",
    ),
    pytest.param(
        [],
        sendgrid("fail", "none"),
        "",
        Authentication(
            "fail", "it has no From address, and SPF failed and it has no DKIM signature"
        ),
        id="no-from-address",
    ),
    pytest.param(
        [],
        {},
        ALICE,
        Authentication("unknown", "no SPF, DKIM or DMARC results came with it"),
        id="no-information",
    ),
    # -- SendGrid's fields and a header nobody vouches for --
    pytest.param(
        # Nothing adds a header above the sender's when mail goes straight to SendGrid.
        [FORGED_PASS],
        sendgrid("fail", "none"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and it has no DKIM signature"),
        id="header-pass-never-outweighs-sendgrid-fail",
    ),
    pytest.param(
        [FORGED_PASS],
        sendgrid("pass", "none", "bounce@mailer.example"),
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF passed only for mailer.example and it has no DKIM signature"),
        id="header-pass-reads-as-no-information",
    ),
    pytest.param(
        [M365_SENDER_STAMP],
        sendgrid("softfail", "{@northwind.example : pass}"),
        ALICE,
        Authentication("pass", "DKIM passed for northwind.example"),
        id="microsoft-365-sender-stamp",
    ),
    pytest.param(
        ["Authentication-Results: mx.forwarder.example; dmarc=fail header.from=northwind.example"],
        sendgrid("pass", "{@northwind.example : pass}"),
        ALICE,
        Authentication("fail", f"{CLAIMS} DMARC failed for northwind.example"),
        id="header-dmarc-fail-counts-in-a-sendgrid-post",
    ),
    # -- headers alone (/inbound/raw behind our own MTA) --
    pytest.param(
        [GMAIL_PASS],
        {},
        ALICE,
        Authentication("pass", "DMARC passed for northwind.example"),
        id="gmail-all-pass",
    ),
    pytest.param(
        [GMAIL_DMARC_FAIL],
        {},
        ALICE,
        Authentication("fail", f"{CLAIMS} DMARC failed for northwind.example"),
        id="gmail-dmarc-fail",
    ),
    pytest.param(
        [M365_FORGED],
        {},
        ALICE,
        Authentication(
            "fail",
            f"{CLAIMS} DMARC failed for northwind.example, SPF failed and it has no DKIM signature",
        ),
        id="microsoft-365-forged-from",
    ),
    pytest.param(
        [M365_PASS],
        {},
        ALICE,
        Authentication("pass", "DMARC passed for northwind.example"),
        id="microsoft-365-all-pass",
    ),
    pytest.param(
        [OUR_MX_FAIL, FORGED_PASS],
        {},
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and DKIM failed"),
        id="forged-pass-below-real-fail",
    ),
    pytest.param(
        [FORGED_PASS.replace("pass", "fail"), OUR_MX_FAIL.replace("fail", "pass")],
        {},
        ALICE,
        Authentication(
            "fail", f"{CLAIMS} DMARC failed for northwind.example, SPF failed and DKIM failed"
        ),
        id="only-the-topmost-fields-count",
    ),
    pytest.param(
        [
            "Received-SPF: SoftFail (mx.roundtable.example: transitioning) envelope-from=alice@northwind.example",
            "Authentication-Results: mx.roundtable.example; dkim=none",
        ],
        {},
        ALICE,
        Authentication("fail", f"{CLAIMS} SPF failed and it has no DKIM signature"),
        id="received-spf-softfail",
    ),
    pytest.param(
        [DMARC_FAIL_ELSEWHERE],
        {},
        ALICE,
        Authentication("pass", "SPF passed for northwind.example"),
        id="dmarc-fail-for-another-domain",
    ),
    pytest.param(
        [PASSES_IN_COMMENT_AND_QUOTES],
        {},
        ALICE,
        Authentication(
            "unknown", "neither SPF nor DKIM confirms that it comes from northwind.example"
        ),
        id="passes-inside-comments-and-quotes-do-not-count",
    ),
    pytest.param(
        [
            "Authentication-Results: MX.ROUNDTABLE.EXAMPLE 1; DKIM = PASS HEADER.D = NorthWind.Example"
        ],
        {},
        ALICE,
        Authentication("pass", "DKIM passed for northwind.example"),
        id="version-spaces-and-case",
    ),
    pytest.param(
        [
            "ARC-Authentication-Results: i=1; mx.google.com; dmarc=fail header.from=northwind.example",
            "X-Original-Authentication-Results: mx.example; dmarc=fail header.from=northwind.example",
        ],
        {},
        ALICE,
        Authentication("unknown", "no SPF, DKIM or DMARC results came with it"),
        id="other-field-names-ignored",
    ),
]


@pytest.mark.parametrize(("headers", "fields", "from_address", "expected"), EXAMPLES)
def test_examples(
    headers: list[str], fields: dict[str, Any], from_address: str, expected: Authentication
) -> None:
    assert sender_authentication(message(*headers), fields, from_address) == expected


def test_a_header_in_the_body_does_not_count() -> None:
    raw = (
        message()
        + b"\r\nAuthentication-Results: mx.example; dmarc=fail header.from=northwind.example\r\n"
    )

    assert sender_authentication(raw, {}, ALICE).verdict == "unknown"


def test_parsed_mode_headers_rebuilt_by_the_webhook_count() -> None:
    # app.inbound rebuilds a parsed-mode post as MIME: its own headers first, then `headers`.
    raw = (
        b'Content-Type: text/plain; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: base64\n'
        + message(
            "Authentication-Results: mx.forwarder.example; dmarc=fail header.from=northwind.example"
        )
    )

    verdict = sender_authentication(raw, sendgrid("pass", "{@northwind.example : pass}"), ALICE)

    assert verdict == Authentication("fail", f"{CLAIMS} DMARC failed for northwind.example")


# --- long and hostile input ------------------------------------------------------------------------

LONG = 100_000


@pytest.mark.parametrize("char", list('(); "\\=a@.{}:,\t-'))
def test_a_long_run_of_one_character_is_read_in_linear_time(char: str) -> None:
    run = char * LONG
    cases = [
        (message(f"Authentication-Results: mx.example; spf=fail {run}"), {}, ALICE),
        (message(f"Authentication-Results: {run}", f"Received-SPF: {run}"), {}, ALICE),
        (message(f"Authentication-Results: mx.example; dkim=pass header.d={run}"), {}, ALICE),
        (message(), {"SPF": run, "dkim": run, "envelope": run}, ALICE),
        (message(), {"SPF": "fail", "dkim": "{@" + run + " : pass}"}, f"alice@{run}"),
    ]
    started = time.perf_counter()

    verdicts = [
        sender_authentication(raw, fields, from_address) for raw, fields, from_address in cases
    ]

    # Generous bound: a backtracking regex on one of these would take minutes.
    assert time.perf_counter() - started < 5
    assert all(len(v.reason) < 400 and "\n" not in v.reason for v in verdicts)


def test_a_failure_after_a_long_comment_is_still_read() -> None:
    raw = message(
        f"Authentication-Results: mx.example; spf=fail ({'x' * LONG}) smtp.mailfrom=a@x.example; dkim=none"
    )

    assert sender_authentication(raw, {}, ALICE) == Authentication(
        "fail", f"{CLAIMS} SPF failed and it has no DKIM signature"
    )


def test_deeply_nested_envelope_json_is_no_envelope() -> None:
    fields = sendgrid("pass", "none") | {"envelope": "[" * LONG}

    assert sender_authentication(message(), fields, ALICE).verdict == "unknown"


# --- properties -------------------------------------------------------------------------------------

RESULTS = [
    "pass",
    "fail",
    "softfail",
    "none",
    "neutral",
    "temperror",
    "permerror",
    "policy",
    "Fail",
    "PASS",
]
DOMAINS = [
    "northwind.example",
    "mail.northwind.example",
    "mailer.example",
    "none",
    "",
    "@northwind.example",
]
METHODS = ["spf", "dkim", "dmarc", "arc", "DKIM/1", "spf "]
PROPERTIES = ["smtp.mailfrom", "header.d", "header.i", "header.from", "header.b", "envelope-from"]

resinfo = st.builds(
    lambda method, result, prop, domain, comment: f"{method}={result} {comment}{prop}={domain}",
    st.sampled_from(METHODS),
    st.sampled_from(RESULTS),
    st.sampled_from(PROPERTIES),
    st.sampled_from(DOMAINS),
    st.sampled_from(["", "(a comment) ", "(nested (one); x=y) ", '"', "(", ")", "\\"]),
)
auth_header = st.one_of(
    st.lists(resinfo, max_size=5).map(
        lambda infos: "Authentication-Results: mx.example; " + "; ".join(infos)
    ),
    st.builds(
        lambda r, d: f"Received-SPF: {r} (mx.example: x) envelope-from={d}",
        st.sampled_from(RESULTS),
        st.sampled_from(DOMAINS),
    ),
    st.text(';=()"\\ @.:,{}abdefilmnpsx-\t', max_size=80).map(
        lambda t: "Authentication-Results: " + t
    ),
)
dkim_field = st.one_of(
    st.just("none"),
    st.lists(st.tuples(st.sampled_from(DOMAINS), st.sampled_from(RESULTS)), max_size=4).map(
        lambda sigs: "{" + ", ".join(f"@{d} : {r}" for d, r in sigs) + "}"
    ),
    st.text("{}@:, .abdefilnpstx", max_size=40),
)
sendgrid_fields = st.builds(
    sendgrid,
    st.none() | st.sampled_from(RESULTS),
    st.none() | dkim_field,
    st.sampled_from(["alice@northwind.example", "bounce@mailer.example", "", "<>"]),
)
from_addresses = st.sampled_from(
    [ALICE, "alice@mail.northwind.example", "", "nobody", "x@"]
) | st.text(max_size=30)


def assert_sound(verdict: Authentication) -> None:
    assert verdict.verdict in ("pass", "fail", "unknown")
    assert verdict.reason and verdict.reason.isprintable() and len(verdict.reason) < 400


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.binary(max_size=2_000),
    fields=st.dictionaries(
        st.sampled_from(["SPF", "dkim", "envelope", "from"]) | st.text(max_size=5),
        st.none()
        | st.integers()
        | st.text(max_size=60)
        | st.lists(st.text(max_size=5), max_size=2),
        max_size=5,
    ),
    from_address=from_addresses,
)
def test_any_input_gives_a_verdict(raw: bytes, fields: dict[str, Any], from_address: str) -> None:
    assert_sound(sender_authentication(raw, fields, from_address))


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(auth_header, max_size=4), fields=sendgrid_fields, from_address=from_addresses
)
def test_headers_never_weaken_a_sendgrid_verdict(
    headers: list[str], fields: dict[str, Any], from_address: str
) -> None:
    """Whatever headers a sender writes: SendGrid's failure stays a failure, and no pass appears."""
    alone = sender_authentication(message(), fields, from_address)
    with_headers = sender_authentication(message(*headers), fields, from_address)

    assert_sound(with_headers)
    if alone.verdict == "fail":
        assert with_headers.verdict == "fail"
    if with_headers.verdict == "pass":
        assert with_headers == alone


received_spf = st.builds(
    lambda r, d: f"Received-SPF: {r} (mx.roundtable.example: x) envelope-from={d}",
    st.sampled_from(RESULTS),
    st.sampled_from(DOMAINS),
)


@settings(max_examples=200, deadline=None)
@given(
    top=st.tuples(auth_header.filter(lambda h: h.startswith("Auth")), received_spf),
    forged=st.lists(auth_header, min_size=1, max_size=3),
)
def test_fields_below_the_topmost_never_count(top: tuple[str, str], forged: list[str]) -> None:
    ours = [*top, "Received: from a by mx.roundtable.example; Thu, 19 Nov 2026 10:15:00 +0000"]

    assert sender_authentication(message(*ours, *forged), {}, ALICE) == sender_authentication(
        message(*ours), {}, ALICE
    )


# --- end to end: a forged From through the real webhook is held, never applied --------------------


def _forged(token: str, **headers: str):  # type: ignore[no-untyped-def]
    from tests.mails import reply

    return reply(token, "WINS\nWe are selling the company. Tell no one.", headers=headers or None)


@pytest.mark.parametrize("mode", ["raw", "parsed"])
def test_a_forged_from_with_the_members_token_is_held_for_the_facilitator(mode, client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from app.models import InboundMessage, OutboundMessage, Update
    from tests.mails import parsed_mode, raw_mode
    from tests.test_replies import requests_by_email
    from tests.test_webhook import post

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    failing = {"SPF": "fail", "dkim": "none"}
    body = raw_mode(_forged(alice.token), auth=failing) if mode == "raw" else parsed_mode(_forged(alice.token), auth=failing)
    assert post(client, body).status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.status == "held" and "failed sender authentication" in row.reason and "SPF" in row.reason
    assert session.scalar(select(func.count(Update.id))) == 0
    session.expire_all()
    assert alice.replied_at is None
    [notice] = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "held_notice")).all()
    assert notice.to_email == "dana@facilitation.example"
    assert notice.context["reason"] == row.reason
    assert session.scalar(select(func.count(OutboundMessage.id)).where(OutboundMessage.kind == "receipt")) == 0


def test_a_dmarc_failure_in_the_headers_holds_it_on_the_raw_endpoint(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.models import InboundMessage
    from tests.conftest import AUTH
    from tests.test_replies import requests_by_email

    alice = requests_by_email(session, settings, cycle)["alice@northwind.example"]
    message = _forged(
        alice.token,
        **{"Authentication-Results": "mx.in.forum.example; spf=softfail smtp.mailfrom=northwind.example; "
                                     "dkim=none; dmarc=fail (p=reject) header.from=northwind.example"},
    )
    response = client.post(
        f"/inbound/raw?to=reply%2B{alice.token}%40in.forum.example",
        data=bytes(message),
        headers={**AUTH, "Content-Type": "message/rfc822"},
    )
    assert response.status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.status == "held" and "DMARC" in row.reason


def test_mail_that_passes_or_carries_no_results_is_accepted(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.models import InboundMessage
    from tests.mails import raw_mode, reply
    from tests.test_replies import requests_by_email
    from tests.test_webhook import post

    requests = requests_by_email(session, settings, cycle)
    alice, ben = requests["alice@northwind.example"], requests["ben@okafor.example"]
    post(client, raw_mode(reply(alice.token, "WINS\nSigned."), auth={"SPF": "pass", "dkim": "{@northwind.example : pass}"}))
    post(client, raw_mode(reply(ben.token, "WINS\nShipped.", sender=("Ben Okafor", "ben@okafor.example")), auth={"SPF": ""}))
    assert [r.status for r in session.scalars(select(InboundMessage).order_by(InboundMessage.id))] == ["accepted", "accepted"]
