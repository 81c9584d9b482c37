"""`roundtable demo`: one whole cycle for a demo group, on the embedded default.

A group of 12 is asked for updates; eleven members answer from the mail clients people really
use (Gmail, Outlook, Apple Mail, an iPhone, an HTML-only webmail), posted through the real
webhook in both SendGrid modes, one is away (an out-of-office note that must not count), one
never replies; then the packet is compiled. Every step is keyed, so running it twice is safe.
"""

from __future__ import annotations

import dataclasses
import email.utils
import html
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from app import clock, db, jobs, mail, roster
from app.cycles import current_cycle, local_label, schedule_meeting
from app.models import Group, Meeting, Member, OutboundMessage, UpdateRequest
from app.settings import Settings, configure

GROUP = dict(
    slug="bay-area-ceo-forum",
    name="Bay Area CEO Forum",
    timezone="America/Los_Angeles",
    facilitator_name="Dana Whitfield",
    facilitator_email="dana@forum-facilitation.example",
    location="The Battery, 717 Battery St, San Francisco",
)

MEMBERS = [
    ("Alice Chen", "alice@northwind-robotics.example", "Northwind Robotics", "CEO"),
    ("Ben Okafor", "ben@okafor-logistics.example", "Okafor Logistics", "Founder & CEO"),
    ("Carmen Ruiz", "carmen@ruizfoods.example", "Ruiz Foods", "President"),
    ("David Park", "david@parkdental.example", "Park Dental Group", "CEO"),
    ("Elena Petrova", "elena@petrova-design.example", "Petrova Design", "Managing Director"),
    ("Frank Muller", "frank@muller-precision.example", "Müller Precision", "CEO"),
    ("Grace Liu", "grace@liuventures.example", "Liu Ventures", "Managing Partner"),
    ("Hiro Tanaka", "hiro@tanaka-solar.example", "Tanaka Solar", "CEO"),
    ("Isabel Moreau", "isabel@moreau-health.example", "Moreau Health", "CEO"),
    ("James Whitaker", "james@whitaker-build.example", "Whitaker Construction", "Owner"),
    ("Kavya Nair", "kavya@nair-analytics.example", "Nair Analytics", "Co-founder & CEO"),
    ("Luis Ortega", "luis@ortega-wines.example", "Ortega Family Wines", "CEO"),
]

# What each member writes (top of the reply). Luis never replies.
REPLIES: dict[str, str] = {
    "alice@northwind-robotics.example": """\
RATINGS
Business: 7
Personal: 6
Family: 8

WINS
Closed the pilot with Bay Logistics: 40 robots in two warehouses from January.

CHALLENGES
Our VP Engineering resigned on Friday. Two senior engineers are wobbling.

TOPIC FOR THE GROUP
Priority A. How do I keep the team steady through a leadership gap while we deliver the pilot?

ASKS
An introduction to a good interim CTO or a technical recruiter who knows robotics.

WHAT I LEARNED
Write the offboarding plan before you need it.

NEXT COMMITMENTS
- Name an interim engineering lead by Dec 15
- One-to-ones with the five senior engineers this week""",
    "ben@okafor-logistics.example": """\
1. Ratings: Business 5, Personal 4, Family 7

2. Wins: renewed our two biggest contracts for three years.

3. Challenges: cash is tight. Fuel costs are up 18% and one customer pays at 90 days.

4. Topic for the group (priority B): should I take a factoring line or raise prices in January?

5. Asks: anyone who has negotiated payment terms with a large retailer.

6. Next commitments: build a 13-week cash forecast and share it with my CFO.""",
    "carmen@ruizfoods.example": """\
**Ratings**
Business: 8 / Personal: 7 / Family: 9

**Wins**
Our salsa line is in 120 more stores. Gross margin held at 38%.

**Challenges**
Hiring line workers for the second shift.

**What I learned**
Shift bonuses beat hourly raises for the night shift.

**Next commitments**
Open the second shift by February.""",
    "david@parkdental.example": """\
Wins: signed the lease for our sixth office.
Challenges: the new practice-management software rollout is three weeks late.
Asks: does anyone know a good change-management consultant for clinical staff?
Learned: pilot with one office, not all five.""",
    "elena@petrova-design.example": "SKIP - I'm travelling in Asia for the whole month. See you in January!",
    "frank@muller-precision.example": """\
RATINGS (1-10)
Business: 6
Personal: 5
Family: 7

CHALLENGES
A key customer (30% of revenue) asked for a 12% price cut. I don't know if they are bluffing.

TOPIC FOR THE GROUP (priority A, B or C)
A - how to respond to the price demand without losing the account.

Danke und viele Grüße""",
    "grace@liuventures.example": """\
Wins
Fund II first close at $42M.

Challenges
My co-founder and I disagree on the pace of deployment.

Topic for the group
B: how do other partners structure decision rights?

Asks
A facilitator for a partners' offsite in February.""",
    "hiro@tanaka-solar.example": """\
Business 8, personal 7, family 6.

Wins: 3 MW of new commercial installs signed.
Challenges: interconnection delays at the utility.
Next commitments: meet the utility's regional director before the next meeting.""",
    "isabel@moreau-health.example": """\
RATINGS
Business: 4
Personal: 3
Family: 6

CHALLENGES
Payer reimbursement changes cut our margin in half this quarter. I am not sleeping well.

TOPIC FOR THE GROUP
Priority A: do we cut a service line or raise another round?

ASKS
Anyone who has sold a division — I'd value 30 minutes.""",
    "james@whitaker-build.example": """\
WINS
Finished the school project on time and under budget.

CHALLENGES
Estimators are retiring and I can't find replacements.

WHAT I LEARNED
Apprenticeships pay off, but only after two years.""",
    "kavya@nair-analytics.example": """\
RATINGS
Business: 9
Personal: 8
Family: 8

WINS
Signed our first enterprise customer. ARR passed $2M.

TOPIC FOR THE GROUP
C: when to hire a COO.

NEXT COMMITMENTS
Draft the COO role description.""",
}

# Which client each member writes from, and which SendGrid mode their reply is posted in.
CLIENTS = {
    "alice@northwind-robotics.example": ("gmail", "raw"),
    "ben@okafor-logistics.example": ("outlook", "parsed"),
    "carmen@ruizfoods.example": ("apple", "raw"),
    "david@parkdental.example": ("iphone", "parsed"),
    "elena@petrova-design.example": ("iphone", "raw"),
    "frank@muller-precision.example": ("outlook", "raw"),
    "grace@liuventures.example": ("html_only", "parsed"),
    "hiro@tanaka-solar.example": ("iphone", "raw"),
    "isabel@moreau-health.example": ("gmail", "parsed"),
    "james@whitaker-build.example": ("apple", "parsed"),
    "kavya@nair-analytics.example": ("html_only", "raw"),
}
OUT_OF_OFFICE = "james@whitaker-build.example"  # also has an auto-reply on, sent first
SIGNATURES = {
    "gmail": "--\n{name}\n{title}, {company}\n+1 415 555 0142",
    "outlook": "{name}\n{title} | {company}\nM: +1 650 555 0199\n\nThis email and any attachments are confidential.",
    "apple": "Best,\n{first}",
    "iphone": "Sent from my iPhone",
    "html_only": "{name} · {company}",
}


def demo_settings(folder: Path) -> Settings:
    """The embedded default, inside `folder`: SQLite, in-process jobs, a file outbox."""
    base = Settings()
    return dataclasses.replace(
        base,
        database_url=f"sqlite:///{(folder / 'roundtable.db').resolve()}",
        redis_url=None,
        mail_transport="outbox",
        outbox_dir=folder / "outbox",
        packets_dir=folder / "packets",
        mail_from="Roundtable <roundtable@forum.example>",
        inbound_domain="in.forum.example",
        inbound_username="sendgrid",
        inbound_password="demo-secret",
    )


def run_demo(folder: Path) -> str:
    """Run the demo cycle in `folder` and return a summary of where everything is."""
    from app.web import create_app

    folder.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(folder)
    configure(settings)
    db.upgrade(settings.database_url)
    with db.session_scope(settings.database_url) as session:
        group = session.scalar(select(Group).where(Group.slug == GROUP["slug"]))
        if group is None:
            group = roster.create_group(
                session,
                name=GROUP["name"],
                timezone=GROUP["timezone"],
                facilitator_name=GROUP["facilitator_name"],
                facilitator_email=GROUP["facilitator_email"],
                location=GROUP["location"],
                slug=GROUP["slug"],
            )
            for name, address, company, title in MEMBERS:
                roster.add_member(session, group, name=name, email=address, company=company, title=title)
        cycle = current_cycle(session, group, clock.now())
        if cycle is None:
            local_now = clock.now().astimezone(ZoneInfo(group.timezone))
            cycle = schedule_meeting(session, group, day=(local_now + timedelta(days=10)).date(), start="08:30", now=clock.now())
        session.commit()
        cycle_id = cycle.id
    jobs.run(jobs.TICK_JOB)  # the requests are due: the meeting is 10 days away

    app = create_app(settings)
    client = app.test_client()
    auth = {"Authorization": "Basic c2VuZGdyaWQ6ZGVtby1zZWNyZXQ="}  # sendgrid:demo-secret
    posted = 0
    with db.session_scope(settings.database_url) as session:
        requests = session.scalars(select(UpdateRequest).where(UpdateRequest.cycle_id == cycle_id)).all()
        outgoing = {
            (o.member_id): o
            for o in session.scalars(
                select(OutboundMessage).where(
                    OutboundMessage.cycle_id == cycle_id, OutboundMessage.kind == "update_request"
                )
            )
        }
        mails = []
        for request in requests:
            member = request.member
            if member.email == OUT_OF_OFFICE:
                mails.append((out_of_office(member.name, member.email, settings, request.token, cycle_id), "raw"))
            if member.email not in REPLIES:
                continue
            client_name, mode = CLIENTS[member.email]
            request_email = outgoing[member.id]
            mails.append((reply_email(member, request.token, request_email, client_name, settings, cycle_id), mode))
    for message, mode in mails:
        response = client.post(
            "/inbound/sendgrid", data=sendgrid_form(message, mode), headers=auth, content_type="multipart/form-data"
        )
        if response.status_code != 200:
            raise RuntimeError(f"the webhook answered {response.status_code}: {response.get_data(as_text=True)}")
        posted += 1
    # The second email in a thread: one member answers the receipt with thanks (which changes
    # nothing and gets no receipt), another corrects one section of her update.
    with db.session_scope(settings.database_url) as session:
        follow_ups = []
        for request in session.scalars(select(UpdateRequest).where(UpdateRequest.cycle_id == cycle_id)):
            if request.member.email not in FOLLOW_UPS:
                continue
            receipt = session.scalar(
                select(OutboundMessage)
                .where(OutboundMessage.member_id == request.member_id, OutboundMessage.cycle_id == cycle_id,
                       OutboundMessage.kind == "receipt")
                .order_by(OutboundMessage.id)
                .limit(1)
            )
            if receipt is not None:
                follow_ups.append(follow_up_email(request.member, request.token, receipt, settings, cycle_id))
    for message in follow_ups:
        response = client.post(
            "/inbound/sendgrid", data=sendgrid_form(message, "raw"), headers=auth, content_type="multipart/form-data"
        )
        if response.status_code != 200:
            raise RuntimeError(f"the webhook answered {response.status_code}: {response.get_data(as_text=True)}")
        posted += 1
    asks_summary = demo_asks(client, auth, settings, cycle_id)
    jobs.run(jobs.COMPILE_JOB, cycle_id)

    def post_raw(message: EmailMessage) -> None:
        response = client.post(
            "/inbound/sendgrid", data=sendgrid_form(message, "raw"), headers=auth, content_type="multipart/form-data"
        )
        if response.status_code != 200:
            raise RuntimeError(f"the webhook answered {response.status_code}: {response.get_data(as_text=True)}")

    meeting_lines = meeting_demo(settings, post_raw, cycle_id)

    from app.status import status_report

    with db.session_scope(settings.database_url) as session:
        group = session.scalar(select(Group).where(Group.slug == GROUP["slug"]))
        status = status_report(session, group)
        cycle = current_cycle(session, group, clock.now())
        packet = cycle.packets[-1]
        meeting = local_label(cycle.meeting_starts_at, group.timezone)
    outbox = sorted(settings.outbox_dir.glob("*.eml"))
    packets = sorted(settings.packets_dir.glob(f"*-v{packet.version}.*"))
    return "\n".join(
        [
            f"Demo cycle for {GROUP['name']}, meeting {meeting}.",
            f"Posted {posted} emails to the webhook (11 replies from 5 kinds of mail client, 1 out-of-office,"
            " and 2 answers to receipts: a thanks that changes nothing and a correction of one section).",
            *meeting_lines,
            "",
            status,
            "",
            asks_summary,
            "",
            f"Outbox: {settings.outbox_dir.resolve()} ({len(outbox)} emails)",
            f"Packet version {packet.version}:",
            *[f"  {path.resolve()}" for path in packets],
            f"Database: {settings.database_url}",
            "Run it again: nothing is sent twice.",
        ]
    )


def demo_asks(client, auth: dict[str, str], settings: Settings, cycle_id: int) -> str:  # type: ignore[no-untyped-def]
    """The asks in the replies went to the other members (app.asks); the first member to get one
    answers it with Reply-All, and the offer goes to the asker alone. Safe twice (the offer's
    Message-ID is fixed, so the webhook stores it once)."""
    from app.models import Ask, AskCirculation, Member

    with db.session_scope(settings.database_url) as session:
        first = session.scalar(
            select(AskCirculation).where(AskCirculation.outbound_message_id.is_not(None)).order_by(AskCirculation.id).limit(1)
        )
        if first is None:
            return "Asks: none in the replies."
        helper, asker, token = first.member, first.ask.member, first.token
        message = EmailMessage()
        message["From"] = email.utils.formataddr((helper.name, helper.email))
        message["To"] = f"Roundtable <{mail.reply_address(settings, token)}>"
        message["Cc"] = f"{GROUP['slug']}@{settings.inbound_domain}"  # Reply-All: still private
        message["Subject"] = "Re: " + mail.render("ask_circulated", first.outbound.context).subject
        message["Date"] = email.utils.format_datetime(clock.now())
        message["Message-ID"] = f"<demo.offer.{cycle_id}@mail.{helper.email.split('@')[1]}>"
        message["In-Reply-To"] = first.outbound.message_id
        message.set_content(f"Happy to help, {asker.first_name}: I know two people who fit. Call me this week?\n\n{helper.first_name}")
    response = client.post("/inbound/sendgrid", data=sendgrid_form(message, "raw"), headers=auth,
                           content_type="multipart/form-data")
    if response.status_code != 200:
        raise RuntimeError(f"the webhook answered {response.status_code}: {response.get_data(as_text=True)}")
    with db.session_scope(settings.database_url) as session:
        asks = session.scalars(select(Ask).join(Member).where(Member.group_id == first.ask.group_id)).all()
        emails = session.scalars(select(OutboundMessage.id).where(OutboundMessage.kind == "ask_circulated")).all()
        waiting = session.scalars(select(AskCirculation.id).where(AskCirculation.sent_at.is_(None))).all()
    return (
        f"Asks: {len(asks)} from the replies' asks sections went to the other members in {len(emails)} emails"
        f" ({len(waiting)} more wait for tomorrow's digest: one ask email a day per member);"
        f" {helper.name} answered {asker.name}'s with Reply-All, and the offer went to {asker.name} alone"
        " (ask_offer), with a copy to the helper (ask_offer_copy)."
    )


# --- writing replies the way mail clients do ---------------------------------------------------


def reply_email(member, token: str, request_email: OutboundMessage, client: str, settings: Settings, cycle_id: int) -> EmailMessage:  # type: ignore[no-untyped-def]
    """A member's reply to their request, written the way `client` writes replies."""
    from app.mail import render

    rendered = render(request_email.kind, request_email.context)
    sent = datetime(2026, 11, 10, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    first = member.name.split()[0]
    body = REPLIES[member.email]
    signature = SIGNATURES[client].format(name=member.name, first=first, title=member.title, company=member.company)
    sender = settings.mail_from
    quoted_lines = rendered.text.rstrip("\n").splitlines()
    message = EmailMessage()
    message["From"] = email.utils.formataddr((member.name, member.email))
    message["To"] = f"Roundtable <{mail.reply_address(settings, token)}>"
    message["Subject"] = "Re: " + rendered.subject
    message["Date"] = email.utils.format_datetime(sent + timedelta(days=1, hours=3))
    message["Message-ID"] = f"<demo.{cycle_id}.{member.id}.{client}@mail.{member.email.split('@')[1]}>"
    message["In-Reply-To"] = request_email.message_id
    message["References"] = request_email.message_id
    if client == "gmail":
        header = f"On Tue, Nov 10, 2026 at 9:00\u202fAM {sender}\nwrote:"
        text = f"{body}\n\n{signature}\n\n{header}\n\n" + "\n".join(f"> {line}".rstrip() for line in quoted_lines)
        message.set_content(text)
        message.add_alternative(
            f'<div dir="ltr">{_paragraphs(body)}<br clear="all"><div><div dir="ltr" class="gmail_signature">'
            f"{_paragraphs(signature)}</div></div></div><br>"
            f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Tue, Nov 10, 2026 at 9:00 AM '
            f"{html.escape(sender)} wrote:<br></div>"
            f'<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">'
            f"{_paragraphs(rendered.text)}</blockquote></div>",
            subtype="html",
        )
    elif client == "outlook":
        header = (
            "________________________________\n"
            f"From: {sender}\nSent: Tuesday, November 10, 2026 9:00 AM\n"
            f"To: {member.name} <{member.email}>\nSubject: {rendered.subject}\n"
        )
        message.set_content(f"{body}\n\n{signature}\n\n{header}\n{rendered.text}")
    elif client in ("apple", "iphone"):
        when = "Nov 10, 2026, at 09:00"
        quoted = "\n".join(f"> {line}".rstrip() for line in quoted_lines)
        message.set_content(f"{body}\n\n{signature}\n\n> On {when}, {sender} wrote:\n> \n{quoted}\n")
    else:  # html_only: a webmail that sends no text part at all
        message.set_content(
            f"<html><body><div>{_paragraphs(body)}</div><div>{_paragraphs(signature)}</div>"
            f'<div class="yahoo_quoted"><div>On Tuesday, November 10, 2026, 9:00 AM, {html.escape(sender)} wrote:</div>'
            f'<blockquote type="cite">{_paragraphs(rendered.text)}</blockquote></div></body></html>',
            subtype="html",
        )
    return message


# Answers to the receipt. Carmen's replaces only her challenges; Alice's thanks changes nothing.
FOLLOW_UPS: dict[str, str] = {
    "alice@northwind-robotics.example": "Thanks, looks right!",
    "carmen@ruizfoods.example": (
        "Correction:\n\nCHALLENGES\nHiring line workers for the second shift, and our co-packer"
        " wants a 9% price increase from March."
    ),
}


def follow_up_email(member, token: str, receipt: OutboundMessage, settings: Settings, cycle_id: int) -> EmailMessage:  # type: ignore[no-untyped-def]
    """A member's answer to their receipt, Apple Mail style: their words over the quoted receipt."""
    from app.mail import render

    rendered = render(receipt.kind, receipt.context)
    quoted = "\n".join(f"> {line}".rstrip() for line in rendered.text.rstrip("\n").splitlines())
    message = EmailMessage()
    message["From"] = email.utils.formataddr((member.name, member.email))
    message["To"] = f"Roundtable <{mail.reply_address(settings, token)}>"
    message["Subject"] = "Re: " + rendered.subject
    message["Date"] = email.utils.format_datetime(clock.now())
    message["Message-ID"] = f"<demo.{cycle_id}.{member.id}.followup@mail.{member.email.split('@')[1]}>"
    message["In-Reply-To"] = receipt.message_id
    message["References"] = receipt.message_id
    body = FOLLOW_UPS[member.email]
    message.set_content(f"{body}\n\n> On {local_label(clock.now(), 'UTC', '%b %-d, %Y, at %H:%M')}, {settings.mail_from} wrote:\n> \n{quoted}\n")
    return message


def out_of_office(name: str, address: str, settings: Settings, token: str, cycle_id: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = email.utils.formataddr((name, address))
    message["To"] = mail.reply_address(settings, token)
    message["Subject"] = "Automatic reply: Your update"
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message["Date"] = email.utils.format_datetime(clock.now())
    message["Message-ID"] = f"<demo.oof.{cycle_id}@mail.{address.split('@')[1]}>"
    message.set_content(f"I am out of the office until Monday with limited access to email.\n\n{name}")
    return message


def _paragraphs(text: str) -> str:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return "".join("<p>" + "<br>".join(html.escape(line) for line in b.splitlines()) + "</p>" for b in blocks)


def sendgrid_form(message: EmailMessage, mode: str) -> dict[str, object]:
    """The form SendGrid Inbound Parse posts for `message`, in raw or parsed mode."""
    import json

    to = str(message["To"])
    envelope = json.dumps({"to": [email.utils.parseaddr(to)[1]], "from": email.utils.parseaddr(str(message["From"]))[1]})
    common = {
        "to": to,
        "from": str(message["From"]),
        "subject": str(message["Subject"]),
        "envelope": envelope,
        "SPF": "pass",
        "dkim": "{@" + email.utils.parseaddr(str(message["From"]))[1].split("@")[1] + " : pass}",
        "sender_ip": "203.0.113.9",
    }
    if mode == "raw":
        charsets = {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
        return {**common, "email": bytes(message).decode("utf-8"), "charsets": json.dumps(charsets)}
    headers = "".join(f"{k}: {v}\n" for k, v in message.items())
    form: dict[str, object] = {**common, "headers": headers, "attachments": "0"}
    charsets = {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_attachment():
            key = part.get_content_subtype() == "html" and "html" or "text"
            form[key] = part.get_content()
            charsets[key] = "UTF-8"
    form["charsets"] = json.dumps(charsets)
    return form



# --- the meeting: a date poll, the agenda with its invite, two RSVPs and a recap -----------------


def meeting_demo(settings: Settings, post: Callable[[EmailMessage], None], cycle_id: int) -> list[str]:
    """The meeting around the demo cycle, by email: the facilitator approves the drafted agenda by
    reply (members get it with a calendar invite), one member answers by text and one from
    Outlook's calendar (an iMIP REPLY), a date poll for the month after goes out and gets an
    answer, and, fast-forwarded to the day after the meeting, the facilitator's notes bring each
    member the recap with their own commitments, which one confirms. Keyed like the rest: twice is safe."""
    from app.meeting import recap
    from app.meeting.calendar import Invite
    from app.meeting.meetings import draft_agenda, meeting_for, set_logistics
    from app.meeting.poll import create_poll
    from app.models import Cycle, Poll, Rsvp

    facilitator = (GROUP["facilitator_name"], GROUP["facilitator_email"])
    with db.session_scope(settings.database_url) as session:
        cycle = session.get_one(Cycle, cycle_id)
        group = cycle.group
        meeting = meeting_for(session, settings, cycle)
        if meeting.agenda_drafted_at is None:
            set_logistics(meeting, address="717 Battery St, San Francisco, CA 94111", host_name="Priya Raman",
                          dial_in="https://meet.example/bay-area-forum", parking="Garage on Battery St; validated at the desk")
        ids = draft_agenda(session, settings, meeting, clock.now())  # the tick does this at the deadline
        session.commit()
        agenda_token, uid = meeting.agenda_token, meeting.uid
        meeting_id = meeting.id
    jobs.enqueue_sends(ids)
    post(_demo_mail(facilitator, mail.reply_address(settings, agenda_token), "Re: Agenda to approve",
                    "APPROVE\n\nLooks right, thanks.", f"<demo.{cycle_id}.agenda-approve@forum-facilitation.example>"))

    with db.session_scope(settings.database_url) as session:
        rsvps = {r.member.email: (r.member.name, r.token) for r in session.scalars(select(Rsvp).where(Rsvp.meeting_id == meeting_id))}
        cycle = session.get_one(Cycle, cycle_id)
        invite = Invite(uid=uid, sequence=0, summary="", description="", location="", starts_at=cycle.meeting_starts_at,
                        ends_at=cycle.meeting_ends_at, timezone=cycle.group.timezone, organizer_name=facilitator[0],
                        organizer_address="", attendees=())
    text_member, calendar_member = MEMBERS[0][1], MEMBERS[1][1]
    name, token = rsvps[text_member]
    post(_demo_mail((name, text_member), mail.reply_address(settings, token), "Re: agenda and invite",
                    "Yes, I'll be there. Looking forward to it!", f"<demo.{cycle_id}.rsvp-text@mail.example>"))
    name, token = rsvps[calendar_member]
    post(_outlook_accept((name, calendar_member), mail.reply_address(settings, token), invite, cycle_id))

    # The date poll for the month after (once).
    with db.session_scope(settings.database_url) as session:
        group = session.scalars(select(Group).where(Group.slug == GROUP["slug"])).one()
        poll = session.scalar(select(Poll).where(Poll.group_id == group.id))
        ids = []
        if poll is None:
            base = session.get_one(Cycle, cycle_id).meeting_starts_at.astimezone(ZoneInfo(group.timezone)).date()
            poll, ids = create_poll(session, settings, group, [base + timedelta(days=28), base + timedelta(days=30),
                                                                base + timedelta(days=35)], "08:30-12:30", clock.now())
        session.commit()
        vote = next(v for v in poll.votes if v.member.email == MEMBERS[2][1])
        voter, vote_token = (vote.member.name, vote.member.email), vote.token
    jobs.enqueue_sends(ids)
    post(_demo_mail(voter, mail.reply_address(settings, vote_token), "Re: which date works for you?",
                    "1 or 3 work for me, not the second one.", f"<demo.{cycle_id}.poll-vote@mail.example>"))

    # The day after the meeting: the recap request, the facilitator's notes, a member confirms.
    with db.session_scope(settings.database_url) as session:
        meeting = session.get_one(Meeting, meeting_id)
        ids = recap.queue_recap_request(session, settings, meeting, meeting.cycle.meeting_ends_at + timedelta(hours=20))
        session.commit()
        recap_token = meeting.recap_token
    jobs.enqueue_sends(ids)
    post(_demo_mail(facilitator, mail.reply_address(settings, recap_token), "Re: Recap: your notes?",
                    "A strong session. Maya's hiring question took the most time; next month Priya presents "
                    "the pricing model.", f"<demo.{cycle_id}.recap-notes@forum-facilitation.example>"))
    with db.session_scope(settings.database_url) as session:
        rsvp = session.scalars(select(Rsvp).join(Rsvp.member).where(Rsvp.meeting_id == meeting_id,
                                                                    Member.email == MEMBERS[0][1])).one()
        confirmer, recap_reply = (rsvp.member.name, rsvp.member.email), rsvp.recap_token
    post(_demo_mail(confirmer, mail.reply_address(settings, recap_reply), "Re: recap", "Confirmed, thanks!",
                    f"<demo.{cycle_id}.recap-confirm@mail.example>"))
    with db.session_scope(settings.database_url) as session:
        from app.meeting.rsvp import meeting_headcount

        meeting = session.get_one(Meeting, meeting_id)
        return [
            (f"Meeting: agenda approved by reply, invites with a calendar file sent; {meeting_headcount(meeting).line()}"
             " (one answered by text, one from Outlook's calendar)."),
            ("Date poll for the month after mailed to 12 members, one answer in; recap sent with each member's own"
             " commitments (one confirmed by reply)."),
        ]


def _demo_mail(sender: tuple[str, str], to: str, subject: str, body: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = email.utils.formataddr(sender)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(clock.now())
    message["Message-ID"] = message_id
    message.set_content(body)
    return message


def _outlook_accept(sender: tuple[str, str], organizer: str, invite: object, cycle_id: int) -> EmailMessage:
    """An Outlook calendar's answer to our invite: an iMIP REPLY with PARTSTAT=ACCEPTED."""
    import icalendar

    calendar = icalendar.Calendar()
    calendar.add("method", "REPLY")
    calendar.add("prodid", "Microsoft Exchange Server 2010")
    calendar.add("version", "2.0")
    event = icalendar.Event()
    attendee = icalendar.vCalAddress(f"mailto:{sender[1]}")
    attendee.params["PARTSTAT"] = icalendar.vText("ACCEPTED")
    attendee.params["CN"] = icalendar.vText(sender[0])
    event.add("attendee", attendee, encode=False)
    event.add("organizer", icalendar.vCalAddress(f"mailto:{organizer}"), encode=False)
    event.add("uid", invite.uid)  # type: ignore[attr-defined]
    event.add("sequence", 0)
    event.add("dtstart", invite.starts_at)  # type: ignore[attr-defined]
    event.add("dtend", invite.ends_at)  # type: ignore[attr-defined]
    event.add("dtstamp", clock.now())
    calendar.add_component(event)
    message = _demo_mail(sender, organizer, "Accepted: Bay Area CEO Forum meeting", "",
                         f"<demo.{cycle_id}.rsvp-calendar@outlook.example>")
    message["Thread-Topic"] = "Bay Area CEO Forum meeting"
    message.set_content(" ")
    message.add_alternative("<html><body></body></html>", subtype="html")
    message.add_alternative(calendar.to_ical().decode(), subtype="calendar", params={"method": "REPLY"})
    return message
