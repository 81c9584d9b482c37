"""The meeting's emails rendered against golden files (UPDATE_GOLDEN=1 rewrites them: review the diff)."""

from __future__ import annotations

from typing import Any

import pytest

from app import mail
from tests.test_mail import GOLDEN, check_golden

AGENDA = [
    {"starts": "08:30", "minutes": 25, "title": "Check-in", "owner": "Dana Whitfield"},
    {"starts": "08:55", "minutes": 60, "title": "Updates round", "owner": "everyone"},
    {"starts": "09:55", "minutes": 50, "title": "Issue (A): Should we open a second plant?", "owner": "Alice Chen"},
    {"starts": "10:45", "minutes": 35, "title": "Issue (B): Pricing <for> the new route", "owner": "Ben Okafor"},
    {"starts": "11:20", "minutes": 35, "title": "Presentation", "owner": "speaker to be confirmed"},
    {"starts": "11:55", "minutes": 25, "title": "Commitments round", "owner": "everyone"},
    {"starts": "12:20", "minutes": 10, "title": "Close", "owner": "Dana Whitfield"},
]
SHARED: dict[str, Any] = {
    "group_name": "Hudson Valley CEO Forum",
    "month_label": "March",
    "meeting_label": "Thursday 11 March 2027, 08:30–12:30 EST",
    "date_label": "Thu 11 Mar",
    "facilitator_name": "Dana Whitfield",
    "logistics": {"place": "Beacon Hotel, Main St", "address": "12 Main St, Beacon, NY 12508",
                  "dial_in": "https://meet.example/hudson-forum", "host_name": "Carmen Ruiz", "host_email": "carmen@ruizfoods.example",
                  "parking": "Free in the hotel garage; tell the desk you're with the forum", "notes": ""},
    "agenda": AGENDA,
    "agenda_lines": [f"{i['starts']}  {i['minutes']} min  {i['title']} — {i['owner']}" for i in AGENDA],
    "agenda_minutes": 240,
    "meeting_minutes": 240,
    "is_cancelled": False,
}
HEADCOUNT = {"yes": 1, "video": 1, "maybe": 1, "no": 1, "waiting": 8, "coming": 2,
             "line": "2 coming (1 by video), 1 maybe, 1 not coming, 8 no answer yet",
             "names": {"yes": ["Carmen Ruiz"], "video": ["Alice Chen"], "maybe": ["Dev Patel"], "no": ["Ben Okafor"],
                       "none": ["Eva Novak", "Frank Li"]}}
POLL = {"group_name": "Hudson Valley CEO Forum", "hours": "08:30-12:30", "facilitator_name": "Dana Whitfield",
        "options": [{"number": 1, "label": "Tuesday 9 March"}, {"number": 2, "label": "Thursday 11 March"},
                    {"number": 3, "label": "Tuesday 16 March"}]}

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "meeting_invite": ("meeting_invite", {**SHARED, "first_name": "Alice", "is_update": False, "note": "", "ics": "x", "ics_method": "REQUEST"}),
    "meeting_invite_update": ("meeting_invite", {**SHARED, "first_name": "Alice", "is_update": True,
                                                 "note": "The meeting has moved.", "ics": "x", "ics_method": "REQUEST"}),
    "meeting_cancel": ("meeting_cancel", {**SHARED, "first_name": "Alice", "reason": "The hotel flooded; we'll find a new date.",
                                          "ics": "x", "ics_method": "CANCEL"}),
    "meeting_agenda_draft": ("meeting_agenda_draft", {**SHARED, "first_name": "Dana", "note": "", "topic_count": 2}),
    "meeting_headcount": ("meeting_headcount", {**SHARED, "first_name": "Dana", "headcount": HEADCOUNT,
                                                "answers": [{"member_name": "Ben Okafor", "answer": "no", "source": "text",
                                                             "note": "Travelling that week, sorry. <b>Next time</b>.",
                                                             "at_label": "Mon 1 Mar, 09:12"}],
                                                "send_after": ""}),
    "meeting_headcount_batch": ("meeting_headcount", {**SHARED, "first_name": "Dana", "headcount": HEADCOUNT,
                                                      "answers": [{"member_name": "Ben Okafor", "answer": "no", "source": "text",
                                                                   "note": "Travelling that week, sorry.", "at_label": "Mon 1 Mar, 09:40"},
                                                                  {"member_name": "Dev Patel", "answer": "maybe", "source": "calendar",
                                                                   "note": "", "at_label": "Mon 1 Mar, 09:55"},
                                                                  {"member_name": "Alice Chen", "answer": "video", "source": "text",
                                                                   "note": "Yes, by video <from Berlin>.", "at_label": "Mon 1 Mar, 10:05"}],
                                                      "send_after": "2027-03-01T15:12:00+00:00"}),
    "meeting_rsvp_reminder": ("meeting_rsvp_reminder", {**SHARED, "first_name": "Eva", "rsvp_id": 7}),
    "meeting_recap_request": ("meeting_recap_request", {**SHARED, "first_name": "Dana", "wait_label": "Sat 13 Mar",
                                                        "members": [{"name": "Alice Chen", "commitments": ["Hire a plant manager", "Board deck by the 20th"]},
                                                                    {"name": "Ben Okafor", "commitments": []}]}),
    "meeting_recap": ("meeting_recap", {**SHARED, "first_name": "Alice", "notes": "Great energy today.\nNext month: Carmen presents.",
                                        "commitments": ["Hire a plant manager", "Board deck by the 20th"]}),
    "meeting_recap_none": ("meeting_recap", {**SHARED, "first_name": "Ben", "notes": "", "commitments": []}),
    "meeting_poll": ("meeting_poll", {**POLL, "first_name": "Alice"}),
    "meeting_poll_tally": ("meeting_poll_tally", {**POLL, "first_name": "Dana", "answered": 2, "asked": 12, "best": 2,
                                                  "member_name": "Ben Okafor", "status": "open",
                                                  "tally": [{"number": 1, "label": "Tuesday 9 March", "count": 1, "names": ["Alice Chen"]},
                                                            {"number": 2, "label": "Thursday 11 March", "count": 2, "names": ["Alice Chen", "Ben Okafor"]},
                                                            {"number": 3, "label": "Tuesday 16 March", "count": 0, "names": []}]}),
    "meeting_date": ("meeting_date", {"group_name": "Hudson Valley CEO Forum", "first_name": "Alice",
                                      "meeting_label": "Thursday 11 March 2027, 08:30–12:30 EST",
                                      "date_label": "Thursday 11 March", "place": "Beacon Hotel, Main St"}),
    "meeting_receipt_rsvp": ("meeting_receipt", {**SHARED, "first_name": "Alice", "what": "rsvp", "answer": "video",
                                                 "answer_words": "joining by video", "commitments": [],
                                                 "subject": "Re: Hudson Valley CEO Forum March meeting"}),
    "meeting_receipt_commitments": ("meeting_receipt", {**SHARED, "first_name": "Ben", "what": "commitments",
                                                        "answer": "corrected", "answer_words": "",
                                                        "commitments": ["Renegotiate the fuel contract", "Hire <two> drivers"],
                                                        "subject": "Re: Your March recap"}),
    "meeting_problem_poll": ("meeting_problem", {"group_name": "Hudson Valley CEO Forum", "first_name": "Dana",
                                                 "what": "the date poll", "why": "there is no option 5 (1 to 3)",
                                                 "instead": "Reply CONFIRM and the number of one of these options, for example CONFIRM 1:",
                                                 "options": ["1. Tuesday 9 March", "2. Thursday 11 March", "3. Tuesday 16 March"],
                                                 "text": "CONFIRM 5 <please>", "subject": "Re: Date poll"}),
    "meeting_moved": ("meeting_moved", {"group_name": "Hudson Valley CEO Forum", "first_name": "Alice", "month_label": "March",
                                        "meeting_label": "Thursday 18 March 2027, 09:00–13:00 EDT", "date_label": "Thu 18 Mar",
                                        "old_label": "Thursday 11 March 2027, 08:30–12:30 EST", "location": "Beacon Hotel, Main St",
                                        "due_label": "Tue 16 Mar, 17:00 EDT", "update_waiting": True}),
    "meeting_note": ("meeting_note", {"group_name": "Hudson Valley CEO Forum", "first_name": "Dana", "member_name": "Alice Chen",
                                      "member_email": "alice@northwind.example", "what": "about the meeting (March)",
                                      "text": "Can I bring our new COO as a guest?"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_meeting_emails_match_golden_files(name: str) -> None:
    kind, context = CASES[name]
    rendered = mail.render(kind, context)
    check_golden(GOLDEN / f"{name}.txt", f"Subject: {rendered.subject}\n\n{rendered.text}")
    check_golden(GOLDEN / f"{name}.html", rendered.html)
    assert "<for>" not in rendered.html  # member text is escaped
