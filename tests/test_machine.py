"""Machine-mail classification: every message here is written for the test, byte by byte."""

from __future__ import annotations

import email.message
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.reading import machine
from app.reading.machine import Kind, Recipient, Verdict, classify

MEMBER = "Jane Member <jane@member.example>"
REPLY_TO = "reply+3f9a1c2b@in.forum.example"


def message(headers: str, body: str = "", *, crlf: bool = True) -> bytes:
    """A raw message from header lines and a body written as plain text."""
    text = headers.strip("\n") + "\n\n" + body
    if crlf:
        text = text.replace("\n", "\r\n")
    return text.encode("utf-8")


def reply(body: str, subject: str = "Re: Your May update", extra: str = "") -> bytes:
    return message(
        f"""From: {MEMBER}
To: {REPLY_TO}
Subject: {subject}
Message-ID: <a1@member.example>
In-Reply-To: <req-7@forum.example>
{extra}MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8""",
        body,
    )


def dsn(status: str, action: str, diagnostic: str, subject: str = "Undelivered Mail") -> bytes:
    return message(
        f"""From: Mail Delivery System <MAILER-DAEMON@mx.member.example>
To: {REPLY_TO}
Subject: {subject}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1" """,
        f"""--b1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.member.example.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.member.example
Arrival-Date: Thu, 19 Nov 2026 10:15:00 +0000

Final-Recipient: rfc822; jane@member.example
Original-Recipient: rfc822;jane@member.example
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--b1
Content-Type: message/rfc822

From: Roundtable <roundtable@forum.example>
To: jane@member.example
Subject: Your May update

Please reply with your update.
--b1--
""",
    )


# --- Standard reports (RFC 3464 DSN, RFC 5965 ARF, RFC 8098 MDN) ---


def test_dsn_hard_bounce_names_the_failed_recipient() -> None:
    verdict = classify(dsn("5.1.1", "failed", "550 5.1.1 <jane@member.example>: User unknown"))

    assert verdict.kind == "bounce"
    assert verdict.is_machine
    assert verdict.reason == "multipart/report; report-type=delivery-status"
    assert verdict.recipients == (
        Recipient(
            address="jane@member.example",
            status="5.1.1",
            action="failed",
            diagnostic="550 5.1.1 <jane@member.example>: User unknown",
            is_hard=True,
        ),
    )


def test_dsn_soft_bounce_is_not_hard() -> None:
    verdict = classify(dsn("4.2.2", "failed", "452 4.2.2 Mailbox full"))

    assert verdict.kind == "bounce"
    (recipient,) = verdict.recipients
    assert (recipient.address, recipient.status, recipient.is_hard) == (
        "jane@member.example",
        "4.2.2",
        False,
    )


def test_delayed_dsn_is_a_soft_bounce_and_delivered_a_delivery_report() -> None:
    delayed = classify(dsn("4.4.1", "delayed", "Connection timed out", "Delayed Mail"))
    delivered = classify(dsn("2.0.0", "delivered", "250 OK", "Delivery Status Notification"))

    assert delayed.kind == "bounce" and "soft bounce" in delayed.reason
    assert delayed.recipients[0].action == "delayed"
    assert not delayed.recipients[0].is_hard
    assert delivered.kind == "delivery_report"
    assert delivered.recipients[0].status == "2.0.0"


def test_dsn_recipients_run_together_without_blank_line_are_both_read() -> None:
    raw = dsn("5.1.1", "failed", "550 5.1.1 User unknown").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n",
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        b"Final-Recipient: rfc822; bob@member.example\r\nAction: failed\r\nStatus: 5.2.2\r\n",
    )

    verdict = classify(raw)

    assert [(r.address, r.status) for r in verdict.recipients] == [
        ("jane@member.example", "5.1.1"),
        ("bob@member.example", "5.2.2"),
    ]


def test_arf_feedback_report() -> None:
    raw = message(
        """From: Abuse Desk <fbl@isp.example>
To: abuse@forum.example
Subject: FW: Your May update
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="f" """,
        """--f
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--f
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces@forum.example>
Original-Rcpt-To: <jane@member.example>

--f
Content-Type: text/rfc822-headers

From: Roundtable <roundtable@forum.example>
To: jane@member.example
Subject: Your May update
--f--
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "feedback"
    assert verdict.reason == "multipart/report; report-type=feedback-report"
    assert verdict.recipients == (Recipient("jane@member.example", action="abuse"),)


def test_mdn_read_receipt_is_a_delivery_report() -> None:
    raw = message(
        f"""From: {MEMBER}
To: {REPLY_TO}
Subject: Read: Your May update
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="m" """,
        """--m
Content-Type: text/plain

Your message was read on Thursday.

--m
Content-Type: message/disposition-notification

Reporting-UA: member.example; Outlook
Final-Recipient: rfc822;jane@member.example
Original-Message-ID: <req-7@forum.example>
Disposition: manual-action/MDN-sent-manually; displayed

--m--
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "delivery_report"
    assert verdict.recipients == (Recipient("jane@member.example", action="displayed"),)


# --- Plain-text bounces ---


def test_postfix_plain_text_bounce() -> None:
    raw = message(
        """From: MAILER-DAEMON@mx.member.example (Mail Delivery System)
To: roundtable@forum.example
Subject: Undelivered Mail Returned to Sender
Content-Type: text/plain; charset=us-ascii""",
        """This is the mail system at host mx.member.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<jane@member.example>: host mail.member.example[192.0.2.7] said: 550 5.1.1
    <jane@member.example>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)

--- Returned message ---
From: Roundtable <roundtable@forum.example>
To: bob@other.example
Subject: Your May update
""",
    )

    verdict = classify(raw, envelope_from="")

    assert verdict.kind == "bounce"
    (recipient,) = verdict.recipients
    assert recipient.address == "jane@member.example"
    assert recipient.status == "5.1.1"
    assert recipient.is_hard
    assert "User unknown" in recipient.diagnostic


def test_qmail_bounce() -> None:
    raw = message(
        """From: MAILER-DAEMON@mail.member.example
To: roundtable@forum.example
Subject: failure notice""",
        """Hi. This is the qmail-send program at mail.member.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<jane@member.example>:
192.0.2.7 does not like recipient.
Remote host said: 550 sorry, no mailbox here by that name. (#5.1.1)
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

Return-Path: <roundtable@forum.example>
To: jane@member.example
Subject: Your May update
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "bounce"
    assert verdict.reason == 'sender mailer-daemon@mail.member.example; subject "failure notice"'
    assert [(r.address, r.status, r.is_hard) for r in verdict.recipients] == [
        ("jane@member.example", "5.1.1", True)
    ]


def test_exim_bounce_names_recipients_in_x_failed_recipients() -> None:
    raw = message(
        """From: Mail Delivery System <Mailer-Daemon@mx.member.example>
To: roundtable@forum.example
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: jane@member.example
Auto-Submitted: auto-replied""",
        """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  jane@member.example
    SMTP error from remote mail server after RCPT TO:<jane@member.example>:
    550 5.1.1 User unknown
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "bounce"  # not an auto-reply, although Auto-Submitted says so
    assert [(r.address, r.status) for r in verdict.recipients] == [("jane@member.example", "5.1.1")]


def test_localized_exchange_ndr_subject_with_encoded_words() -> None:
    raw = message(
        """From: postmaster@member.example
To: roundtable@forum.example
Subject: =?iso-8859-1?Q?Non_remis_:_Your_May_update?=
Content-Type: text/plain; charset=iso-8859-1""",
        """Votre message n'a pas pu etre remis.

jane@member.example
    Le destinataire est introuvable. #550 5.1.1 RESOLVER.ADR.RecipNotFound
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "bounce"
    assert verdict.recipients[0].address == "jane@member.example"
    assert verdict.recipients[0].status == "5.1.1"


def test_delay_warning_in_plain_text_is_a_soft_bounce() -> None:
    raw = message(
        """From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: roundtable@forum.example
Subject: Delivery Status Notification (Delay)""",
        """This is an automatically generated Delivery Status Notification

THIS IS A WARNING MESSAGE ONLY.

YOU DO NOT NEED TO RESEND YOUR MESSAGE.

Delivery to the following recipient has been delayed:

     jane@member.example
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "bounce" and "soft bounce" in verdict.reason
    assert verdict.recipients[0].address == "jane@member.example"
    assert not verdict.recipients[0].is_hard


def test_cr_only_line_ends_are_read() -> None:
    raw = dsn("5.1.1", "failed", "550 5.1.1 User unknown").replace(b"\r\n", b"\r")

    verdict = classify(raw)

    assert verdict.kind == "bounce"
    assert verdict.recipients[0].address == "jane@member.example"


# --- Auto-replies ---


def test_exchange_out_of_office_with_null_return_path() -> None:
    raw = message(
        f"""From: {MEMBER}
To: {REPLY_TO}
Subject: Automatic reply: Your May update
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: jane@member.example
Thread-Topic: Your May update
Content-Type: text/plain; charset=utf-8""",
        "I am out of the office until June 2 with limited access to email.\n",
    )

    verdict = classify(raw, envelope_from="")

    assert verdict == Verdict(Kind.AUTO_REPLY, "Auto-Submitted: auto-replied")


def test_gmail_vacation_responder_is_an_auto_reply_not_list_mail() -> None:
    raw = message(
        f"""From: {MEMBER}
To: {REPLY_TO}
Subject: Re: Your May update
Auto-Submitted: auto-replied
Precedence: bulk
X-Autoreply: yes
Content-Type: text/plain; charset=UTF-8""",
        "Thanks for your note. I'm travelling until Monday.\n",
    )

    verdict = classify(raw)

    assert verdict.kind == "auto_reply"
    assert verdict.recipients == ()


@pytest.mark.parametrize(
    "subject",
    [
        "Abwesenheitsnotiz: Your May update",  # German (Lotus Notes, Outlook)
        "Automatische Antwort: Your May update",  # German (Outlook)
        "Réponse automatique : Your May update",  # French
        "=?utf-8?q?R=C3=A9ponse_automatique_:_Your_May_update?=",  # French, encoded
        "Respuesta automática: Your May update",  # Spanish
        "Automatisch antwoord: Your May update",  # Dutch
        "Automatiskt svar: Your May update",  # Swedish
        "Frånvaro: Your May update",  # Swedish
        "Out of Office: Your May update",
        "Your May update [Auto-Reply]",
    ],
)
def test_localized_out_of_office_subjects(subject: str) -> None:
    raw = message(
        f"""From: {MEMBER}
To: {REPLY_TO}
Subject: {subject}
Content-Type: text/plain; charset=utf-8""",
        "Ich bin bis zum 2. Juni nicht im Büro.\n",
    )

    verdict = classify(raw)

    assert verdict.kind == "auto_reply"
    assert verdict.reason.startswith("out-of-office subject")


def test_auto_submitted_no_and_unknown_envelope_are_a_reply() -> None:
    verdict = classify(reply("Revenue up 12%.", extra="Auto-Submitted: no\n"), envelope_from=None)

    assert verdict == Verdict(Kind.REPLY, "no machine signal")
    assert not verdict.is_machine


def test_null_return_path_alone_is_machine_mail() -> None:
    verdict = classify(reply("I am away."), envelope_from="<>")

    assert verdict == Verdict(Kind.AUTO_REPLY, "null return path <>")


# --- Human replies that must stay replies ---


def test_x_auto_response_suppress_alone_is_a_reply() -> None:
    # Outlook sets this on ordinary mail: it asks *others* not to auto-reply.
    raw = reply("Hiring two engineers this month.", extra="X-Auto-Response-Suppress: All\n")

    assert classify(raw, envelope_from="jane@member.example").kind == "reply"


def test_human_reply_quoting_machine_wording_is_a_reply() -> None:
    body = """Sorry for the delay: I was Out of Office all week and my first answer
bounced with "Mail delivery failed: returning message to sender", 550 5.1.1 user unknown.

My update: we closed the Series B.

On Mon, May 4, 2026 at 9:00 AM Roundtable <roundtable@forum.example> wrote:
> Out of Office? Please send your update anyway.
> Undeliverable: please confirm your message
"""
    for subject in ("Re: Your May update", "AW: Your May update", "Your May update"):
        verdict = classify(reply(body, subject=subject), envelope_from="jane@member.example")
        assert verdict.kind == "reply", (subject, verdict)


def test_member_writing_about_failed_deliveries_is_a_reply() -> None:
    body = """Rough month. Our carrier was unable to deliver 40 orders, the undelivered goods
were returned to sender, and the delivery failure rate hit 4%. Permanent error in our
routing software, now fixed.
"""
    for subject in ("Delivery problems at our Ohio plant", "Undeliverable orders: my May update"):
        verdict = classify(reply(body, subject=subject), envelope_from="jane@member.example")
        assert verdict.kind == "reply", (subject, verdict)


# --- Challenges and list mail ---


def test_challenge_response_by_subject() -> None:
    raw = message(
        """From: Jane Member via Boxbe <notification@boxbe.example>
To: roundtable@forum.example
Subject: Request to join Jane Member's Guest List (Re: Your May update)""",
        "Jane uses a guest list to protect against spam.\n",
    )

    assert classify(raw).kind == "challenge"


def test_challenge_response_by_body_with_confirmation_link() -> None:
    raw = message(
        f"""From: {MEMBER}
To: {REPLY_TO}
Subject: Re: Your May update""",
        """I am protecting myself from receiving junk mail. Please verify that you are a human
so that your message can be delivered:

https://verify.spam-shield.example/confirm?id=8d1f
""",
    )

    verdict = classify(raw)

    assert verdict.kind == "challenge"
    assert "confirmation link" in verdict.reason


def test_challenge_saying_not_delivered_is_not_taken_for_a_bounce() -> None:
    raw = message(
        f"""From: Jane Member <noreply@spam-shield.example>
To: {REPLY_TO}
Subject: Re: Your May update""",
        """Your message to jane@member.example has not been delivered yet.
I use Spam Arrest to keep junk out; to have your message delivered, please click
https://spam-shield.example/verify?m=51c2 once.
""",
    )

    verdict = classify(raw, envelope_from="")

    assert verdict.kind == "challenge"
    assert verdict.recipients == ()  # nothing to mark as bounced


def test_list_mail() -> None:
    raw = message(
        """From: CEO Digest <digest@news.example>
To: roundtable@forum.example
Subject: This week in leadership
List-Id: CEO Digest <digest.news.example>
List-Unsubscribe: <mailto:leave@news.example>""",
        "Top stories...\n",
    )

    assert classify(raw) == Verdict(Kind.LIST, "list-id header")


def test_precedence_bulk_alone_is_list_mail() -> None:
    raw = reply("Our newsletter", subject="May newsletter", extra="Precedence: bulk\n")

    assert classify(raw) == Verdict(Kind.LIST, "Precedence: bulk")


# --- Malformed mail never crashes ---


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x00",
        b"Content-Type: multipart/mixed; boundary=x\n\n--y\nno such boundary\n",
        b"Content-Type: text/plain; charset=no-such-charset\n\n\xff\xfe caf\xe9\n",
        b"Content-Type: text/plain; charset*=utf-8''%E2%82\n\n\x00\xff\xfe\n",
        b"Content-Transfer-Encoding: base64\nContent-Type: text/plain\n\nSGVsbG8gd29y",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        b"--b\nContent-Type: message/delivery-status\n\n\xff\xfe:\x00\n--b",
        b"Subject: =?utf-8?B?not base64!?= =?x-bogus?Q?=E9?=\nFrom: <<>>\n\nhi",
        b"From: \xe9\xff <\xff@\xfe>\nSubject: \x00\n\n\x00",
    ],
)
def test_malformed_mime_is_classified_without_raising(raw: bytes) -> None:
    assert isinstance(classify(raw), Verdict)


@pytest.mark.parametrize(("depth", "lines"), [(3000, 0), (99, 200_000)])
def test_deep_nesting_falls_back_to_the_header_block(depth: int, lines: int) -> None:
    nested = b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i - 1, i)
        for i in range(1, depth)
    )
    raw = b"Auto-Submitted: auto-replied\nContent-Type: multipart/mixed; boundary=b0\n\n"
    started = time.perf_counter()

    verdict = classify(raw + nested + b"x\n" * lines)

    assert verdict == Verdict(Kind.AUTO_REPLY, "Auto-Submitted: auto-replied; MIME nested too deep")
    assert time.perf_counter() - started < 2  # the stdlib parser would take 15 s on the second


def test_an_error_while_reading_falls_back_to_the_header_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read = machine._read

    def read_choking_on_the_body(
        msg: email.message.Message, envelope_from: str | None
    ) -> machine._Mail:
        if msg.is_multipart():
            raise LookupError("unknown encoding: x-hostile")
        return read(msg, envelope_from)

    monkeypatch.setattr(machine, "_read", read_choking_on_the_body)
    raw = message(
        """From: jane@member.example
X-Autoreply: yes
Content-Type: multipart/mixed; boundary=b""",
        "--b\nContent-Type: text/plain\n\nAway\n--b--\n",
    )

    verdict = classify(raw)

    assert verdict == Verdict(Kind.AUTO_REPLY, "x-autoreply: yes; unparseable MIME (LookupError)")


def test_hostile_long_lines_are_classified_quickly() -> None:
    head = b"From: MAILER-DAEMON@mx.example\nSubject: failure notice\nContent-Type: text/html\n\n"
    bodies = [b" " * 200_000 + b"x", b"-" * 200_000, b"<" * 200_000, b"http://" * 30_000]
    for body in bodies:
        started = time.perf_counter()
        classify(head + body)
        # Generous bound: a backtracking regex here would take minutes, not seconds.
        assert time.perf_counter() - started < 5


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=2_000), envelope_from=st.none() | st.text(max_size=20))
def test_any_bytes_give_a_verdict(raw: bytes, envelope_from: str | None) -> None:
    verdict = classify(raw, envelope_from)

    assert isinstance(verdict, Verdict)
    assert verdict.kind in set(Kind)
    assert verdict.reason
