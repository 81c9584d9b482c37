"""Calendar answers as Google Calendar, Outlook (Exchange) and Apple Calendar send them, written
by hand after real ones: an iMIP REPLY (RFC 6047) to the ORGANIZER address of our invite.

Each client shapes the MIME differently, and the tests take all three through the webhook:
- Google: multipart/mixed [multipart/alternative [text/plain, text/html, text/calendar
  method=REPLY], application/ics invite.ics (base64)]; times in UTC; a Sender header.
- Outlook: multipart/alternative [text/plain (often empty, or the comment), text/html,
  text/calendar method=REPLY (base64)]; a Windows time zone name ("Eastern Standard Time") with
  its own VTIMEZONE; a COMMENT with the member's note; Thread-Index and X-MS headers.
- Apple: multipart/mixed [text/plain, text/calendar method=REPLY as an attachment named
  iCal-<date>.ics (quoted-printable)]; quoted CN and an EMAIL parameter on ATTENDEE.
"""

from __future__ import annotations

import base64
import quopri
import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

FORUM = "in.forum.example"
PARTSTAT_WORDS = {"ACCEPTED": "Accepted", "DECLINED": "Declined", "TENTATIVE": "Tentative"}


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y%m%dT%H%M%S")


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _b64(data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def google_reply(*, token: str, uid: str, sequence: int, partstat: str, name: str, address: str,
                 starts_at: datetime, ends_at: datetime, summary: str, organizer: str = "Dana Whitfield") -> bytes:
    stamp = _utc(datetime(2027, 1, 4, 15, 2, 11, tzinfo=UTC))
    ics = f"""BEGIN:VCALENDAR
PRODID:-//Google Inc//Google Calendar 70.9054//EN
VERSION:2.0
CALSCALE:GREGORIAN
METHOD:REPLY
BEGIN:VEVENT
DTSTART:{_utc(starts_at)}
DTEND:{_utc(ends_at)}
DTSTAMP:{stamp}
ORGANIZER;CN={organizer}:mailto:reply+{token}@{FORUM}
UID:{uid}
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={partstat};CN={name};
 X-NUM-GUESTS=0:mailto:{address}
CREATED:20270104T150000Z
LAST-MODIFIED:{stamp}
LOCATION:Beacon Hotel\\, Main St
SEQUENCE:{sequence}
STATUS:CONFIRMED
SUMMARY:{summary}
TRANSP:OPAQUE
END:VEVENT
END:VCALENDAR
"""
    word = PARTSTAT_WORDS[partstat]
    when = starts_at.astimezone(ZoneInfo("America/New_York")).strftime("%a %b %-d, %Y %-I:%M%p").replace("AM", "am").replace("PM", "pm")
    outer, inner = "000000000000" + secrets.token_hex(6), "000000000000" + secrets.token_hex(6)
    verb = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentatively accepted"}[partstat]
    return _crlf(f"""MIME-Version: 1.0
Date: Mon, 4 Jan 2027 10:02:11 -0500
Message-ID: <{secrets.token_hex(16)}@google.com>
Subject: {word}: {summary} @ {when} (EST) ({address})
From: {name} <{address}>
To: reply+{token}@{FORUM}
Sender: Google Calendar <calendar-notification@google.com>
Reply-To: {name} <{address}>
Content-Type: multipart/mixed; boundary="{outer}"

--{outer}
Content-Type: multipart/alternative; boundary="{inner}"

--{inner}
Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes

{name} has {verb} this invitation.

{summary}
{when} - (EST)
Joining: Beacon Hotel, Main St

Invitation from Google Calendar: https://calendar.google.com/calendar/

You are receiving this email because you are an attendee on the event.

--{inner}
Content-Type: text/html; charset="UTF-8"

<p><span>{name}</span> has {verb} this invitation.</p><h3>{summary}</h3><p>{when} (EST)</p>
<p>Invitation from <a href="https://calendar.google.com/calendar/">Google Calendar</a></p>
--{inner}
Content-Type: text/calendar; charset="UTF-8"; method=REPLY
Content-Transfer-Encoding: 7bit

{ics}
--{inner}--
--{outer}
Content-Type: application/ics; name="invite.ics"
Content-Disposition: attachment; filename="invite.ics"
Content-Transfer-Encoding: base64

{_b64(_crlf(ics))}
--{outer}--
""")


OUTLOOK_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Eastern Standard Time
BEGIN:STANDARD
DTSTART:16010101T020000
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=1SU;BYMONTH=11
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=2SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE"""


def outlook_reply(*, token: str, uid: str, sequence: int, partstat: str, name: str, address: str,
                  starts_at: datetime, ends_at: datetime, summary: str, comment: str = "",
                  organizer: str = "Dana Whitfield") -> bytes:
    word = PARTSTAT_WORDS[partstat]
    stamp = _utc(datetime(2027, 1, 5, 14, 20, 37, tzinfo=UTC))
    comment_line = f"COMMENT;LANGUAGE=en-US:{comment}\\n\n" if comment else ""
    ics = f"""BEGIN:VCALENDAR
METHOD:REPLY
PRODID:Microsoft Exchange Server 2010
VERSION:2.0
{OUTLOOK_VTIMEZONE}
BEGIN:VEVENT
ATTENDEE;PARTSTAT={partstat};CN={name}:mailto:{address}
{comment_line}SUMMARY;LANGUAGE=en-US:{word}: {summary}
DTSTART;TZID=Eastern Standard Time:{_local(starts_at, "America/New_York")}
DTEND;TZID=Eastern Standard Time:{_local(ends_at, "America/New_York")}
UID:{uid}
CLASS:PUBLIC
PRIORITY:5
DTSTAMP:{stamp}
TRANSP:OPAQUE
STATUS:CONFIRMED
SEQUENCE:{sequence}
LOCATION;LANGUAGE=en-US:Beacon Hotel, Main St
X-MICROSOFT-CDO-APPT-SEQUENCE:{sequence}
X-MICROSOFT-CDO-OWNERAPPTID:-1186587624
X-MICROSOFT-CDO-REPLYTIME:{stamp}
X-MICROSOFT-CDO-BUSYSTATUS:BUSY
X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY
X-MICROSOFT-CDO-ALLDAYEVENT:FALSE
X-MICROSOFT-CDO-IMPORTANCE:1
X-MICROSOFT-CDO-INSTTYPE:0
X-MICROSOFT-DONOTFORWARDMEETING:FALSE
X-MICROSOFT-DISALLOW-COUNTER:FALSE
END:VEVENT
END:VCALENDAR
"""
    boundary = "_000_BY5PR11MB4001" + secrets.token_hex(6).upper() + "namp_"
    local_id = secrets.token_hex(8).upper()
    return _crlf(f"""From: {name} <{address}>
To: Dana Whitfield <reply+{token}@{FORUM}>
Subject: {word}: {summary}
Thread-Topic: {summary}
Thread-Index: AQHZ{secrets.token_hex(10)}
Date: Tue, 5 Jan 2027 14:20:37 +0000
Message-ID: <BY5PR11MB4001{local_id}@BY5PR11MB4001.namprd11.prod.outlook.com>
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
Content-Type: multipart/alternative; boundary="{boundary}"
MIME-Version: 1.0

--{boundary}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

{comment}

--{boundary}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html><head><meta http-equiv=3D"Content-Type" content=3D"text/html; charset=3Dus-ascii"></head>
<body><div>{comment}</div></body></html>

--{boundary}
Content-Type: text/calendar; charset="utf-8"; method=REPLY
Content-Transfer-Encoding: base64

{_b64(_crlf(ics))}

--{boundary}--
""")


def apple_reply(*, token: str, uid: str, sequence: int, partstat: str, name: str, address: str,
                starts_at: datetime, ends_at: datetime, summary: str, organizer: str = "Dana Whitfield") -> bytes:
    stamp = _utc(datetime(2027, 1, 6, 8, 15, 0, tzinfo=UTC))
    tz = "America/New_York"
    ics = f"""BEGIN:VCALENDAR
CALSCALE:GREGORIAN
VERSION:2.0
PRODID:-//Apple Inc.//macOS 14.3//EN
METHOD:REPLY
BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:DAYLIGHT
TZOFFSETFROM:-0500
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
DTSTART:20070311T020000
TZNAME:EDT
TZOFFSETTO:-0400
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:-0400
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
DTSTART:20071104T020000
TZNAME:EST
TZOFFSETTO:-0500
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
ATTENDEE;CN="{name}";CUTYPE=INDIVIDUAL;EMAIL="{address}";PARTSTAT={partstat}:mailto:{address}
DTEND;TZID={tz}:{_local(ends_at, tz)}
TRANSP:OPAQUE
ORGANIZER;CN="{organizer}":mailto:reply+{token}@{FORUM}
UID:{uid}
DTSTAMP:{stamp}
SEQUENCE:{sequence}
SUMMARY:{summary}
DTSTART;TZID={tz}:{_local(starts_at, tz)}
CREATED:20270106T081400Z
REQUEST-STATUS:2.0;Success
END:VEVENT
END:VCALENDAR
"""
    verb = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentatively accepted"}[partstat]
    boundary = "Apple-Mail=_" + secrets.token_hex(16).upper()
    filename = "iCal-20270106-081500.ics"
    return _crlf(f"""From: {name} <{address}>
Content-Type: multipart/mixed; boundary="{boundary}"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))
Subject: Invitation: {summary} ({verb})
Date: Wed, 6 Jan 2027 03:15:00 -0500
Message-Id: <{secrets.token_hex(8).upper()}-{secrets.token_hex(4).upper()}@ruizfoods.example>
To: Dana Whitfield <reply+{token}@{FORUM}>

--{boundary}
Content-Transfer-Encoding: 7bit
Content-Type: text/plain; charset=us-ascii

{name} has {verb} your event invitation.

--{boundary}
Content-Disposition: attachment; filename={filename}
Content-Type: text/calendar; charset=utf-8; method=REPLY; name={filename}
Content-Transfer-Encoding: quoted-printable

{quopri.encodestring(_crlf(ics)).decode()}
--{boundary}--
""")


CLIENTS = {"google": google_reply, "outlook": outlook_reply, "apple": apple_reply}
