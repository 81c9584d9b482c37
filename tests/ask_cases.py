"""The ask emails' cases for the golden files (tests/test_mail.GOLDEN_CASES includes them)."""

from __future__ import annotations

from typing import Any

from app.asks import kinds
from tests.mails import FORUM

ALICE = ("Alice Chen", "alice@northwind.example")
BEN = ("Ben Okafor", "ben@okafor.example")

ASK = {
    "group_name": "Hudson Valley CEO Forum",
    "ask_id": 7,
    "asker_name": "Alice Chen",
    "asker_first_name": "Alice",
    "asker_company": "Northwind Robotics",
    "asker_email": ALICE[1],
    "ask_text": "Intro to someone at Thermo Fisher? We want to pilot our lab robots <there> & learn how they buy.",
    "kind": "introduction",
    "kind_label": "Introduction",
    "kinds": list(kinds.KIND_LABELS.values()),
    "ask_address": f"reply+{'a' * 32}@{FORUM}",
}
SECOND = {**ASK, "ask_id": 8, "asker_name": "Ben Okafor", "asker_first_name": "Ben", "asker_company": "Okafor Logistics",
          "ask_text": "Has anyone used a fractional CFO? Looking for six months of help.", "kind": "hire",
          "kind_label": "Hire or person"}
OFFER = {**ASK, "helper_name": "Ben Okafor", "helper_first_name": "Ben", "helper_company": "Okafor Logistics",
         "helper_email": BEN[1], "offer_text": "I know their VP of procurement. Happy to intro.", "was_closed": False}
HELD = {"group_name": ASK["group_name"], "group_slug": "hudson", "group_address": f"hudson@{FORUM}",
        "facilitator_name": "Dana Whitfield", "from_facilitator": False, "sender": "promo@leads.example",
        "sender_name": "Growth <Team>", "subject": "Grow your pipeline 10x", "excerpt": "Hi there, we help CEOs like"
        " you fill the pipeline with verified leads. Book a call: [link] Reply STOP to…",
        "reason": "mail to hudson's address from promo@leads.example, which is not a member of the group or one of"
                  " their registered addresses: not circulated",
        "inbound_id": 41, "member_name": "", "member_email": "", "is_members_address": False}
ASK_GOLDEN: dict[str, tuple[str, dict[str, Any]]] = {
    "ask_circulated": ("ask_circulated", {"group_name": ASK["group_name"], "first_name": "Carmen", "is_digest": False,
                                          "asks": [{**ASK, "reply_address": f"reply+{'b' * 32}@{FORUM}"}]}),
    "ask_circulated_digest": ("ask_circulated", {
        "group_name": ASK["group_name"], "first_name": "Carmen", "is_digest": True,
        "asks": [{**ASK, "reply_address": f"reply+{'b' * 32}@{FORUM}"},
                 {**SECOND, "reply_address": f"reply+{'c' * 32}@{FORUM}"}]}),
    "ask_status": ("ask_status", {**ASK, "first_name": "Alice", "status": "open", "event": "open", "note": "",
                                  "peers": 11, "is_daily": True}),
    "ask_status_held": ("ask_status", {**ASK, "first_name": "Alice", "status": "held", "event": "held",
                                       "note": "Let's talk it over on Thursday first.", "peers": 11, "is_daily": True}),
    "ask_notice_approval": ("ask_notice", {**ASK, "facilitator_name": "Dana Whitfield", "status": "awaiting_approval",
                                           "note": "", "waits": True, "group_slug": "hudson"}),
    "ask_offer": ("ask_offer", {**OFFER, "first_name": "Alice"}),
    "ask_offer_copy": ("ask_offer_copy", {**OFFER, "first_name": "Ben", "asker_reachable": True}),
    "ask_followup": ("ask_followup", {**ASK, "first_name": "Alice", "days_open": 14, "helpers": ["Ben Okafor"]}),
    "ask_thanks": ("ask_thanks", {**ASK, "first_name": "Ben", "words": "Sorted, thanks Ben!"}),
    "ask_which": ("ask_which", {"group_name": ASK["group_name"], "first_name": "Carmen",
                                "asks": [{**ASK, "reply_address": f"reply+{'b' * 32}@{FORUM}"},
                                         {**SECOND, "reply_address": f"reply+{'c' * 32}@{FORUM}"}]}),
    "ask_status_withdrawn": ("ask_status", {**ASK, "first_name": "Alice", "status": "closed", "event": "withdrawn",
                                            "note": "Withdrawn by the asker.", "peers": 11, "is_daily": True}),
    "ask_held_notice": ("ask_held_notice", {**HELD}),
    "ask_held_notice_likely_member": ("ask_held_notice", {
        **HELD, "sender": "alice.chen@gmail.example", "sender_name": "Alice Chen",
        "subject": "Intro to Thermo Fisher?", "excerpt": "Does anyone know someone at Thermo Fisher? We want to pilot…",
        "reason": "mail to hudson's address from alice.chen@gmail.example, which is not a member of the group or one"
                  " of their registered addresses: not circulated",
        "member_name": "Alice Chen", "member_email": ALICE[1]}),
    "ask_held_notice_authentication": ("ask_held_notice", {
        **HELD, "sender": ALICE[1], "sender_name": "Alice Chen", "subject": "Intro to Thermo Fisher?",
        "excerpt": "Does anyone know someone at Thermo Fisher?",
        "reason": "it failed sender authentication (SPF fail, DKIM fail): not circulated",
        "member_name": "Alice Chen", "member_email": ALICE[1], "is_members_address": True}),
    "ask_held_notice_facilitator": ("ask_held_notice", {
        **HELD, "from_facilitator": True, "sender": "dana@facilitation.example", "sender_name": "Dana Whitfield",
        "subject": "Reminder: bring a guest", "excerpt": "Hi all, a reminder that you may bring one guest on Thursday.",
        "reason": "mail to hudson's address from its facilitator Dana Whitfield: the group's address carries members'"
                  " asks, so it was not circulated by itself"}),
}
