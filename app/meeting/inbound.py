"""Mail for the meeting: the Handler in `app.replies.HANDLERS`. It owns the tokens of RSVPs,
recaps, agenda drafts, recap requests, poll votes and polls, and reads iMIP REPLYs (calendar
answers) by their UID when they come without a token.

Each branch checks that the sender may speak for the token's owner, sets the row's status and
reason, flushes, and returns the Outcome (outbound ids to send after the commit).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import mail
from app.addresses import normalize
from app.authentication import sender_authentication
from app.cycles import local_label, meeting_label, month_label
from app.inbox import Outcome, is_members_address, untrusted_sender
from app.meeting import agenda as agendas
from app.meeting import recap, receipts
from app.meeting.calendar import CalendarReply, calendar_parts, read_replies
from app.meeting.meetings import MeetingError, approve_agenda, meeting_context, replace_agenda
from app.meeting.poll import confirm, option_labels, read_confirm, record_vote
from app.meeting.rsvp import read_rsvp, record
from app.models import (
    Cycle,
    Group,
    InboundMessage,
    InboundStatus,
    Meeting,
    MeetingStatus,
    Member,
    Poll,
    PollStatus,
    PollVote,
    Rsvp,
    RsvpResponse,
)
from app.reading.message import Reading
from app.settings import Settings


def handle(session: Session, settings: Settings, row: InboundMessage, reading: Reading, now: datetime) -> Outcome | None:
    """The meeting's answer to a message carrying one of its tokens (or an iMIP REPLY to one of
    its invites); None when the message is not the meeting's."""
    tokens = reading.tokens
    if tokens:
        rsvps = list(session.scalars(select(Rsvp).where(Rsvp.token.in_(tokens))))
        if rsvps:
            return _rsvp_reply(session, settings, row, reading, _own(session, rsvps, reading), now)
        recaps = list(session.scalars(select(Rsvp).where(Rsvp.recap_token.in_(tokens))))
        if recaps:
            return _recap_answer(session, settings, row, reading, _own(session, recaps, reading), now)
        meeting = session.scalar(select(Meeting).where(Meeting.agenda_token.in_(tokens)).limit(1))
        if meeting is not None:
            return _agenda_reply(session, settings, row, reading, meeting, now)
        meeting = session.scalar(select(Meeting).where(Meeting.recap_token.in_(tokens)).limit(1))
        if meeting is not None:
            return _recap_notes(session, settings, row, reading, meeting, now)
        votes = list(session.scalars(select(PollVote).where(PollVote.token.in_(tokens))))
        if votes:
            return _vote(session, settings, row, reading, _own(session, votes, reading), now)
        poll = session.scalar(select(Poll).where(Poll.token.in_(tokens)).limit(1))
        if poll is not None:
            return _poll_confirm(session, settings, row, reading, poll, now)
    answers = calendar_answers(row.raw)
    if answers:
        rsvp = _rsvp_by_uid(session, answers, reading.from_address)
        if rsvp is not None:
            return _rsvp_reply(session, settings, row, reading, rsvp, now)
    return None


def _own(session: Session, rows: list, reading: Reading):  # type: ignore[no-untyped-def]
    """With several tokens (Reply-All), the sender's own row wins."""
    for candidate in rows:
        if is_members_address(session, candidate.member, reading.from_address):
            return candidate
    return rows[0]


def calendar_answers(raw: bytes) -> list[CalendarReply]:
    return [answer for part in calendar_parts(raw) for answer in read_replies(part)]


def _rsvp_by_uid(session: Session, answers: list[CalendarReply], from_address: str) -> Rsvp | None:
    for answer in answers:
        meeting = session.scalar(select(Meeting).where(Meeting.uid == answer.uid))
        if meeting is None:
            continue
        for address in (answer.attendee, normalize(from_address)):
            rsvp = session.scalar(
                select(Rsvp).join(Member, Member.id == Rsvp.member_id)
                .where(Rsvp.meeting_id == meeting.id, Member.email == address)
            )
            if rsvp is not None:
                return rsvp
    return None


def _done(session: Session, row: InboundMessage, status: InboundStatus, kind: str, reason: str,
          outbound_ids: list[int] | None = None) -> Outcome:
    row.status = status
    row.kind = kind
    row.reason = reason[:2000]
    session.flush()
    return Outcome(outbound_ids=list(outbound_ids or []))


def _facilitator_problem(session: Session, row: InboundMessage, group: Group, from_address: str) -> str | None:
    """Why this message may not speak for the group's facilitators (None when it may)."""
    if not any(normalize(f.email) == normalize(from_address) for f in group.facilitators):
        return f"it came from {from_address or 'no address'}, which is not a facilitator of {group.name}"
    authentication = sender_authentication(row.raw, row.fields or {}, from_address)
    if authentication.verdict == "fail":
        return f"it failed sender authentication ({authentication.reason})"
    return None


def _pass_on(session: Session, settings: Settings, row: InboundMessage, group: Group, member: Member,
             what: str, text: str, cycle_id: int | None, month: str) -> list[int]:
    """A member's words we could not read as an answer go to the facilitators (they reply to the
    member directly)."""
    ids = []
    for facilitator in group.facilitators:
        notice = mail.queue_email(
            session,
            settings,
            kind="meeting_note",
            dedupe_key=f"meeting_note:{row.id}:{facilitator.id}",
            to_email=facilitator.email,
            to_name=facilitator.name,
            reply_to=member.email,
            group_id=group.id,
            cycle_id=cycle_id,
            member_id=member.id,
            context={
                "group_name": group.name,
                "first_name": facilitator.name.split()[0] if facilitator.name.split() else "",
                "member_name": member.name,
                "member_email": member.email,
                "what": f"{what} ({month})" if month else what,
                "text": text.strip()[:4000],
            },
        )
        if notice is not None:
            ids.append(notice.id)
    return ids


# --- members ------------------------------------------------------------------------------------


def _rsvp_reply(session: Session, settings: Settings, row: InboundMessage, reading: Reading, rsvp: Rsvp,
                now: datetime) -> Outcome:
    meeting, member = rsvp.meeting, rsvp.member
    problem = untrusted_sender(session, row, member, reading.from_address)
    if problem is not None:
        return _done(session, row, InboundStatus.REJECTED, "rsvp", f"an RSVP not applied: {problem}")
    if meeting.status == MeetingStatus.CANCELLED:
        return _done(session, row, InboundStatus.REJECTED, "rsvp", "an RSVP to a meeting that was cancelled")
    answers = [a for a in calendar_answers(row.raw) if a.uid == meeting.uid]
    if answers:
        mine = [a for a in answers if is_members_address(session, member, a.attendee)] or answers
        answer = mine[0]
        if answer.sequence < (meeting.invited_sequence or 0):
            return _done(session, row, InboundStatus.ACCEPTED, "rsvp",
                         f"a calendar answer ({answer.partstat}) to an earlier version of the invite "
                         f"(SEQUENCE {answer.sequence}, now {meeting.invited_sequence}): not counted")
        if answer.response is None:
            return _done(session, row, InboundStatus.ACCEPTED, "rsvp",
                         f"a calendar answer that says {answer.partstat or 'nothing'}: nothing changed")
        response, source, note = RsvpResponse(answer.response), "calendar", answer.comment
    else:
        read = read_rsvp(reading.text, meeting.group.language)
        if read is None:
            ids = _pass_on(session, settings, row, meeting.group, member, "about the meeting", reading.text,
                           meeting.cycle_id, month_label(meeting.cycle))
            row.note = reading.text.strip() or None
            return _done(session, row, InboundStatus.ACCEPTED, "note",
                         "a reply to the invite with no yes, no or maybe in it: passed to the facilitator", ids)
        response, source, note = read, "text", reading.text
    ids = record(session, settings, rsvp, response, source, now, cause=f"inbound:{row.id}", note=note)
    if source == "text":  # a calendar shows its own answer; words get a receipt saying what we read
        ids += receipts.rsvp_receipt(session, settings, row, rsvp, meeting_context(meeting), now)
    return _done(session, row, InboundStatus.ACCEPTED, "rsvp", f"RSVP {response} ({source}) from {member.name}", ids)


def _recap_answer(session: Session, settings: Settings, row: InboundMessage, reading: Reading, rsvp: Rsvp,
                  now: datetime) -> Outcome:
    meeting, member = rsvp.meeting, rsvp.member
    problem = untrusted_sender(session, row, member, reading.from_address)
    if problem is not None:
        return _done(session, row, InboundStatus.REJECTED, "commitments", f"commitments not applied: {problem}")
    stated = recap.stated_commitments(session, meeting).get(member.id, [])
    items = recap.read_commitments(reading.text, stated)
    if items is None:
        ids = _pass_on(session, settings, row, meeting.group, member, "about the recap", reading.text,
                       meeting.cycle_id, month_label(meeting.cycle))
        row.note = reading.text.strip() or None
        return _done(session, row, InboundStatus.ACCEPTED, "note",
                     "a reply to the recap with no commitments in it: passed to the facilitator", ids)
    recap.confirm_commitments(session, rsvp, items, now)
    same = items == stated
    ids = receipts.commitments_receipt(session, settings, row, rsvp, items, same, meeting_context(meeting), now)
    return _done(session, row, InboundStatus.ACCEPTED, "commitments",
                 f"{len(items)} commitments {'confirmed' if same else 'set'} by {member.name}", ids)


def _vote(session: Session, settings: Settings, row: InboundMessage, reading: Reading, vote: PollVote,
          now: datetime) -> Outcome:
    member = vote.member
    problem = untrusted_sender(session, row, member, reading.from_address)
    if problem is not None:
        return _done(session, row, InboundStatus.REJECTED, "poll_vote", f"a poll answer not applied: {problem}")
    choices, ids = record_vote(session, settings, vote, reading.text, now, cause=f"inbound:{row.id}")
    if choices is None:
        ids = _pass_on(session, settings, row, vote.poll.group, member, "about the date poll", reading.text, None,
                       "")
        row.note = reading.text.strip() or None
        return _done(session, row, InboundStatus.ACCEPTED, "note",
                     "a reply to the date poll naming no option: passed to the facilitator", ids)
    shown = ", ".join(str(c) for c in choices) or "none"
    return _done(session, row, InboundStatus.ACCEPTED, "poll_vote", f"poll answer from {member.name}: options {shown}", ids)


# --- facilitators -------------------------------------------------------------------------------


def _agenda_reply(session: Session, settings: Settings, row: InboundMessage, reading: Reading, meeting: Meeting,
                  now: datetime) -> Outcome:
    problem = _facilitator_problem(session, row, meeting.group, reading.from_address)
    if problem is not None:
        return _done(session, row, InboundStatus.REJECTED, "agenda", f"an agenda reply not applied: {problem}")
    items = agendas.read_agenda(reading.text)
    try:
        changed = bool(items) and agendas.items_from_json(meeting.agenda) != items
        # The draft's own lines, unchanged, without APPROVE: a quote a client left in, not an answer.
        if items and (changed or agendas.is_approval(reading.text)):
            replace_agenda(meeting, items)
            ids = approve_agenda(session, settings, meeting, now, changed=changed)
            minutes = agendas.total(items)
            length = int((meeting.cycle.meeting_ends_at - meeting.cycle.meeting_starts_at).total_seconds() // 60)
            fit = "" if minutes == length else f" ({minutes} minutes for a {length}-minute meeting)"
            return _done(session, row, InboundStatus.ACCEPTED, "agenda",
                         f"edited agenda of {len(items)} items approved{fit}; {len(ids)} invites queued", ids)
        if agendas.is_approval(reading.text):
            ids = approve_agenda(session, settings, meeting, now)
            return _done(session, row, InboundStatus.ACCEPTED, "agenda",
                         f"agenda approved; {len(ids)} invites queued", ids)
    except MeetingError as error:
        ids = _agenda_problem(session, settings, row, reading, meeting, str(error), now)
        return _done(session, row, InboundStatus.REJECTED, "agenda", f"agenda reply not applied: {error}", ids)
    row.note = reading.text.strip() or None
    ids = _agenda_problem(session, settings, row, reading, meeting,
                          "we found neither APPROVE nor agenda lines we could read in it", now)
    return _done(session, row, InboundStatus.REJECTED, "agenda",
                 "an agenda reply with neither APPROVE nor agenda lines (like '20 min Check-in — Dana')", ids)


def _agenda_problem(session: Session, settings: Settings, row: InboundMessage, reading: Reading, meeting: Meeting,
                    why: str, now: datetime) -> list[int]:
    if meeting.status == MeetingStatus.CANCELLED:
        instead = "The meeting is cancelled, so there is no agenda to send. Nothing more is needed."
        lines: list[str] = []
    else:
        instead = ("Reply APPROVE to send the agenda as it stands, or reply with the agenda itself, one line per "
                   "item with its minutes, title and owner after a dash, like the lines below (edit them freely):")
        lines = list(meeting_context(meeting)["agenda_lines"])  # type: ignore[call-overload]
    return receipts.problem_note(session, settings, row, meeting.group, reading.from_address,
                                 reply_token=meeting.agenda_token, cycle_id=meeting.cycle_id,
                                 what=f"the {month_label(meeting.cycle)} agenda", why=why, instead=instead,
                                 text=reading.text, options=lines, now=now)


def _recap_notes(session: Session, settings: Settings, row: InboundMessage, reading: Reading, meeting: Meeting,
                 now: datetime) -> Outcome:
    problem = _facilitator_problem(session, row, meeting.group, reading.from_address)
    if problem is not None:
        return _done(session, row, InboundStatus.REJECTED, "recap", f"recap notes not applied: {problem}")
    if meeting.recap_sent_at is not None:
        row.note = reading.text.strip() or None
        sent = local_label(meeting.recap_sent_at, meeting.group.timezone, "%a %-d %b, %H:%M %Z")
        ids = receipts.problem_note(
            session, settings, row, meeting.group, reading.from_address, reply_token=meeting.recap_token,
            cycle_id=meeting.cycle_id, what=f"the {month_label(meeting.cycle)} recap",
            why=f"the recap had already gone out to the members ({sent})",
            instead="Your notes are kept with the meeting but were not sent. To tell the members, write to them "
                    "directly.", text=reading.text, now=now)
        return _done(session, row, InboundStatus.REJECTED, "recap", "the recap had gone out already: notes kept here only", ids)
    ids = recap.send_recaps(session, settings, meeting, now, reading.text)
    return _done(session, row, InboundStatus.ACCEPTED, "recap", f"recap notes received; {len(ids)} recaps queued", ids)


def _poll_confirm(
    session: Session, settings: Settings, row: InboundMessage, reading: Reading, poll: Poll, now: datetime
) -> Outcome:
    problem = _facilitator_problem(session, row, poll.group, reading.from_address)
    if problem is not None:
        return _done(session, row, InboundStatus.REJECTED, "poll", f"a poll reply not applied: {problem}")
    number = read_confirm(reading.text)
    if number is None:
        row.note = reading.text.strip() or None
        ids = _poll_problem(session, settings, row, reading, poll, "we found no CONFIRM and an option number in it", now)
        return _done(session, row, InboundStatus.REJECTED, "poll", "a poll reply without CONFIRM and an option number",
                     ids)
    try:
        cycle, ids = confirm(session, settings, poll, number, now)
    except MeetingError as error:
        ids = _poll_problem(session, settings, row, reading, poll, str(error), now)
        return _done(session, row, InboundStatus.REJECTED, "poll", f"poll not confirmed: {error}", ids)
    return _done(session, row, InboundStatus.ACCEPTED, "poll",
                 f"option {number} confirmed: meeting scheduled {cycle.meeting_starts_at.isoformat()}", ids)


def _poll_problem(session: Session, settings: Settings, row: InboundMessage, reading: Reading, poll: Poll, why: str,
                  now: datetime) -> list[int]:
    if poll.status == PollStatus.CONFIRMED and poll.cycle_id is not None:
        cycle = session.get_one(Cycle, poll.cycle_id)
        instead = (f"The date is set: {meeting_label(cycle)}. To move that meeting, run "
                   f"`roundtable meeting move {poll.group.slug} --date YYYY-MM-DD --time HH:MM`, or start a new "
                   f"poll.")
        lines: list[str] = []
    else:
        instead = "Reply CONFIRM and the number of one of these options, for example CONFIRM 1:"
        lines = [f"{n}. {label}" for n, label in enumerate(option_labels(poll), 1)]
    return receipts.problem_note(session, settings, row, poll.group, reading.from_address, reply_token=poll.token,
                                 cycle_id=None, what="the date poll", why=why, instead=instead, text=reading.text,
                                 options=lines, now=now)
