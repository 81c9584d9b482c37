"""Splitting member replies into sections: replies written the ways members actually write them."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reading.sections import (
    OTHER,
    RATING_KEYS,
    SECTION_KEYS,
    SECTIONS,
    Section,
    Sections,
    is_heading,
    match_heading,
    split_sections,
)

# --- the constant -------------------------------------------------------------------------------


def test_sections_constant_has_the_request_order() -> None:
    assert SECTION_KEYS == (
        "ratings",
        "wins",
        "challenges",
        "commitments",
        "topic",
        "asks",
        "learned",
        "next_commitments",
    )
    assert RATING_KEYS == ("business", "personal", "family")


def test_labels_drop_the_parenthesis() -> None:
    assert [s.label for s in SECTIONS][:4] == [
        "Ratings",
        "Wins",
        "Challenges",
        "Last month's commitments",
    ]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.key)
def test_every_title_as_we_send_it_is_a_heading(section: Section) -> None:
    assert match_heading(section.title.upper()) == match_heading(section.title)
    assert is_heading(section.title.upper())
    assert match_heading(section.title.upper()).key == section.key
    # The hint quoted back after the title is our text, not an answer.
    assert is_heading(f"{section.title.upper()} - {section.hint}")


# --- is_heading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "WINS",
        "Wins",
        "wins",
        "wins:",
        "Wins :",
        "> WINS",
        "> > wins",
        ">> Wins:",
        "1. Wins",
        "1) Wins",
        "(2) Challenges",
        "**Wins**",
        "**Wins:**",
        "**Wins**:",
        "*WINS*",
        "__Wins__",
        "## Wins",
        "### 2. **Challenges:**",
        "  CHALLENGES  ",
        "RATINGS (1-10)",
        "Ratings (1–10):",
        "LAST MONTH'S COMMITMENTS (done / partial / dropped)",
        "Last month’s commitments",
        "last months commitments",
        "TOPIC FOR THE GROUP (priority A, B or C)",
        "What I learned",
        "NEXT COMMITMENTS",
        "Business:",
        "> Personal:",
        "Family",
    ],
)
def test_is_heading_true(line: str) -> None:
    assert is_heading(line)


@pytest.mark.parametrize(
    "line",
    [
        "",
        ">",
        "##",
        "Wins are hard to come by this quarter and the team knows it",
        "Wins: closed the Series A",  # a heading with an answer on it is content-bearing
        "Winsome team this month",
        "I need to hire a CFO",
        "Next month we launch in Berlin",
        "Progress was slow",
        "The wins are small this month",
        "Business is booming",
        "Score: 39.0",
        "Family 8",
        "Gewinne",
        "勝利",
    ],
)
def test_is_heading_false(line: str) -> None:
    assert not is_heading(line)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("Highlights", "wins"),
        ("Wins this month", "wins"),
        ("My wins", "wins"),
        ("Problems", "challenges"),
        ("Issues", "challenges"),
        ("Struggles:", "challenges"),
        ("Learnings", "learned"),
        ("Lessons", "learned"),
        ("What I've learned", "learned"),
        ("Commitments", "commitments"),
        ("Last month's commitments", "commitments"),
        ("Progress", "commitments"),
        ("Next month", "next_commitments"),
        ("Next commitments", "next_commitments"),
        ("Goals for next month", "next_commitments"),
        ("Topic", "topic"),
        ("Issue for the group", "topic"),
        ("Ask", "asks"),
        ("Asks", "asks"),
        ("Requests", "asks"),
        ("I need:", "asks"),
        ("Ratings", "ratings"),
        ("Scores", "ratings"),
    ],
)
def test_synonyms(line: str, key: str) -> None:
    match = match_heading(line)
    assert match is not None
    assert (match.key, match.rest) == (key, "")


# --- split_sections: heading styles --------------------------------------------------------------

EXACT = """\
RATINGS (1-10)
Business: 7
Personal: 6
Family: 8

WINS
Closed the Series A.
Hired a VP Sales.

CHALLENGES
Churn is up in the SMB segment.

LAST MONTH'S COMMITMENTS (done / partial / dropped)
- Hire a CFO: partial, two finalists
- Board deck: done

TOPIC FOR THE GROUP (priority A, B or C)
Priority: A. Whether to sell the services arm.

ASKS
An intro to a good M&A lawyer.

WHAT I LEARNED
Price increases cost fewer customers than I feared.

NEXT COMMITMENTS
Sign the CFO offer by the 15th.
"""


def test_exact_headings() -> None:
    result = split_sections(EXACT)
    assert result.ratings == {"business": 7, "personal": 6, "family": 8}
    assert result.texts == {
        "wins": "Closed the Series A.\nHired a VP Sales.",
        "challenges": "Churn is up in the SMB segment.",
        "commitments": "- Hire a CFO: partial, two finalists\n- Board deck: done",
        "topic": "Priority: A. Whether to sell the services arm.",
        "asks": "An intro to a good M&A lawyer.",
        "learned": "Price increases cost fewer customers than I feared.",
        "next_commitments": "Sign the CFO offer by the 15th.",
    }
    assert result.topic_priority == "A"
    assert not result.is_skip
    assert not result.is_correction


def test_texts_follow_section_order_then_other() -> None:
    result = split_sections("Hello all\n\nNext commitments\nShip v2\n\nWins\nA big one")
    assert list(result.texts) == ["wins", "next_commitments", OTHER]


def test_numbered_bold_markdown_lowercase_mixed() -> None:
    reply = """\
1. **Wins**
Closed the round.

2) *CHALLENGES*
Hiring.

## what i learned
Sleep matters.

__asks:__
Intro to Stripe.
"""
    result = split_sections(reply)
    assert result.texts == {
        "wins": "Closed the round.",
        "challenges": "Hiring.",
        "learned": "Sleep matters.",
        "asks": "Intro to Stripe.",
    }


def test_heading_with_answer_on_same_line() -> None:
    reply = (
        "Wins: closed the Series A\n"
        "Challenges - churn\n"
        "**Asks:** an intro to a CFO\n"
        "and a recruiter\n"
        "Learned — patience"
    )
    result = split_sections(reply)
    assert result.texts == {
        "wins": "closed the Series A",
        "challenges": "churn",
        "asks": "an intro to a CFO\nand a recruiter",
        "learned": "patience",
    }


def test_answer_without_letters_is_kept() -> None:
    assert split_sections("Wins: 🎉🎉").texts == {"wins": "🎉🎉"}


def test_headings_out_of_order() -> None:
    reply = "ASKS\nA banker.\n\nWINS\nBig deal.\n\nRATINGS\nBusiness: 9\n\nCHALLENGES\nNone."
    result = split_sections(reply)
    assert result.texts == {"wins": "Big deal.", "challenges": "None.", "asks": "A banker."}
    assert result.ratings == {"business": 9}


def test_repeated_heading_keeps_both_parts() -> None:
    result = split_sections("Wins\nFirst.\n\nChallenges\nHard.\n\nWins\nSecond.")
    assert result.texts["wins"] == "First.\n\nSecond."


def test_quoted_headings_from_inline_reply() -> None:
    # The trimmer hands over our quoted headings as heading lines, answers interleaved.
    reply = "> WINS\nShipped v2.\n> CHALLENGES\n> ASKS\nNeed a designer."
    result = split_sections(reply)
    assert result.texts == {"wins": "Shipped v2.", "asks": "Need a designer."}


def test_our_hint_lines_from_an_html_reply_are_not_text() -> None:
    wins, asks = SECTIONS[1], SECTIONS[5]
    reply = f"{wins.title}\n{wins.hint}\nShipped v2.\n{asks.title}\n{asks.hint}\n"
    assert split_sections(reply).texts == {"wins": "Shipped v2."}


def test_sentence_starting_with_heading_word_stays_content() -> None:
    reply = (
        "WINS\n"
        "Closed Acme.\n"
        "CHALLENGES\n"
        "Wins are hard to come by this quarter and the team feels it.\n"
        "Asks for budget keep coming from marketing.\n"
    )
    result = split_sections(reply)
    assert result.texts == {
        "wins": "Closed Acme.",
        "challenges": (
            "Wins are hard to come by this quarter and the team feels it.\n"
            "Asks for budget keep coming from marketing."
        ),
    }


def test_free_prose_is_placed_by_cues_and_the_rest_stays_other() -> None:
    reply = (
        "Hi everyone, a quick note this month.\n"
        "We closed Acme, which was a relief, but hiring is still slow.\n"
        "I could use an intro to a good recruiter.\n"
    )
    result = split_sections(reply)
    assert result.texts == {
        "asks": "I could use an intro to a good recruiter.",
        OTHER: "Hi everyone, a quick note this month.\nWe closed Acme, which was a relief, but hiring is still slow.",
    }
    assert result.ratings == {}
    assert result.topic_priority is None


def test_text_before_first_heading_is_other() -> None:
    result = split_sections("Sorry this is late!\n\nWINS\nA deal.")
    assert result.texts == {OTHER: "Sorry this is late!", "wins": "A deal."}


def test_non_english_text_is_placed_by_its_cues_or_stays_other() -> None:
    reply = "Bonjour à tous,\nCe mois-ci nous avons signé deux clients.\n今月は大変でした。"
    result = split_sections(reply)
    assert result.texts == {"wins": "Ce mois-ci nous avons signé deux clients.", OTHER: "Bonjour à tous,\n今月は大変でした。"}


def test_non_english_under_an_english_heading_stays_there() -> None:
    result = split_sections("WINS\nDeux nouveaux clients signés.")
    assert result.texts == {"wins": "Deux nouveaux clients signés."}


def test_empty_reply() -> None:
    result = split_sections("  \n\n")
    assert result == Sections(texts={}, ratings={})


def test_crlf_line_endings() -> None:
    result = split_sections("WINS\r\nA deal.\r\nASKS\r\nA lawyer.\r\n")
    assert result.texts == {"wins": "A deal.", "asks": "A lawyer."}


# --- ratings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        "RATINGS\nBusiness: 7\nPersonal: 6\nFamily: 8",
        "Ratings\nbusiness 7/10\npersonal 6/10\nfamily 8/10",
        "Ratings:\nB: 7\nP: 6\nF: 8",
        "Ratings: 7, 6, 8",
        "Ratings: 7/10, 6/10, 8/10",
        "Ratings: 7,6,8",
        "Ratings: 7/6/8",
        "RATINGS (1-10)\n7\n6\n8",
        "Scores\nBusiness - 7, Personal - 6, Family - 8",
        "Ratings\nB7 P6 F8",
        "RATINGS (1-10)\nBusiness:\n7/10\nPersonal:\n6\nFamily:\n8",
        "Ratings: Business 7, personal 6 and family 8",
    ],
)
def test_ratings_forms(block: str) -> None:
    result = split_sections(block)
    assert result.ratings == {"business": 7, "personal": 6, "family": 8}
    assert "ratings" not in result.texts


def test_labelled_score_lines_together_in_free_prose() -> None:
    result = split_sections("Business: 7\nPersonal: 6\nFamily: 8\nA quiet month otherwise.")
    assert result.ratings == {"business": 7, "personal": 6, "family": 8}
    assert result.texts == {OTHER: "A quiet month otherwise."}


def test_unmistakable_ratings_line_in_free_prose() -> None:
    result = split_sections("Business 7, personal 6, family 8\nA quiet month otherwise.")
    assert result.ratings == {"business": 7, "personal": 6, "family": 8}
    assert result.texts == {OTHER: "A quiet month otherwise."}


@pytest.mark.parametrize(
    "prose",
    [
        "Family 2 kids started school and business is 7 days a week.",
        "We had 7, 6 and 8 new clients in the three regions.",
        "B: 7",  # abbreviations only count under a ratings heading
        "Business 7",  # one bare score in prose could be anything
        "Business: 7\nBusiness: 6",  # the same label twice is not the ratings block
    ],
)
def test_ratings_are_not_guessed_from_prose(prose: str) -> None:
    result = split_sections(prose)
    assert result.ratings == {}
    assert result.texts == {OTHER: prose}


@pytest.mark.parametrize(
    ("block", "ratings", "text"),
    [
        ("Ratings\nBusiness: 12\nPersonal: 6\nFamily: 8", {"personal": 6, "family": 8}, "12"),
        ("Ratings\nBusiness: 0\nPersonal: 6", {"personal": 6}, "Business: 0"),
        ("Ratings\nBusiness: 7.5\nFamily: 8", {"family": 8}, "Business: 7.5"),
        ("Ratings: 7, 11, 8", {}, "7, 11, 8"),
        ("Ratings\nBusiness:\n15\nFamily: 8", {"family": 8}, "Business:\n15"),
        ("Ratings\nBusiness: good\nFamily: 8", {"family": 8}, "Business: good"),
        ("Ratings: 7, 6", {}, "7, 6"),
        ("Ratings: 7,5, 6", {}, "7,5, 6"),  # a decimal comma, not two scores
        ("Ratings: 8", {}, "8"),
    ],
)
def test_out_of_range_or_unparseable_ratings_stay_as_text(
    block: str, ratings: dict[str, int], text: str
) -> None:
    result = split_sections(block)
    assert result.ratings == ratings
    assert text in result.texts["ratings"]


def test_bulleted_ratings() -> None:
    result = split_sections("RATINGS\n- Business: 7\n- Personal: 6\n* Family: 8.")
    assert result.ratings == {"business": 7, "personal": 6, "family": 8}
    assert result.texts == {}


def test_rating_with_comment_keeps_the_comment() -> None:
    result = split_sections("RATINGS\nBusiness: 4 - lost our biggest client\nFamily: 9")
    assert result.ratings == {"business": 4, "family": 9}
    assert result.texts["ratings"] == "Business: 4 - lost our biggest client"


def test_rating_given_twice_keeps_the_first_and_the_second_as_text() -> None:
    result = split_sections("RATINGS\nBusiness: 4\nBusiness: 6")
    assert result.ratings == {"business": 4}
    assert result.texts["ratings"] == "Business: 6"


def test_unanswered_quoted_rating_labels_are_not_text() -> None:
    result = split_sections("RATINGS (1-10)\nBusiness:\n7\nPersonal:\nFamily:\nWINS\nA deal.")
    assert result.ratings == {"business": 7}
    assert result.texts == {"wins": "A deal."}


def test_rating_label_as_a_subheading_elsewhere_is_kept() -> None:
    result = split_sections("CHALLENGES\nFamily:\nMy father is in hospital.")
    assert result.ratings == {}
    assert result.texts == {"challenges": "Family:\nMy father is in hospital."}


# --- topic priority -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "priority"),
    [
        ("TOPIC\nPriority: A\nWhether to sell.", "A"),
        ("Topic: priority b - hiring a COO", "B"),
        ("Topic (A): pricing", "A"),
        ("TOPIC FOR THE GROUP (priority A, B or C)\n(C) succession planning", "C"),
        ("Topic\nA - whether to raise again", "A"),
        ("Topic: B: the board", "B"),
        ("TOPIC FOR THE GROUP (priority A, B or C): B", "B"),
        ("Topic for the group (priority A)\nSelling the company", "A"),
        ("Topic\n[C] office move", "C"),
        ("Topic\nWhether to raise again", None),
        ("Topic\nTop priority: a new CFO", None),
        ("Topic\nA) raise or B) sell", None),  # contradictory: never guessed
        ("Topic\n(a) pricing and (b) hiring", None),
        ("WINS\nPriority: A", None),  # only the topic section is read
    ],
)
def test_topic_priority(reply: str, priority: str | None) -> None:
    assert split_sections(reply).topic_priority == priority


def test_topic_priority_text_is_kept() -> None:
    result = split_sections("Topic (A): pricing")
    assert "pricing" in result.texts["topic"]
    assert "(A)" in result.texts["topic"]


# --- skip -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "skip",
        "SKIP",
        "Skip.",
        "skip this month",
        "Skip - travelling",
        "SKIP: on holiday until the 20th",
        "please skip me this month",
        "Please skip me this month, I'm in hospital.",
        "I'll skip this month",
        "Skipping this one 🙏",
        "  skip  \n\nThanks,\nJane",
        "Hi Sam,\nSKIP\nBest,\nJane Doe",
        "Hi Sam, skip this month please",
        "skip\nTravelling all month",
        "SKIP - I'm travelling in Asia for the whole month. See you in January!",
        "SKIP\nI'm travelling in Asia for the whole month. See you in January!\n\nBest,\nElena",
        "Can we skip this month?",
    ],
)
def test_skip(reply: str) -> None:
    result = split_sections(reply)
    assert result.is_skip
    assert result.texts  # the text is kept


@pytest.mark.parametrize(
    "reply",
    [
        "I had to skip the board meeting but here is my update.",
        "Hi Sam, I had to skip the board meeting.",
        "Skip the small talk: we closed Acme.",
        "We decided to skip the Series B and stay profitable.",
        "WINS\nWe skip standups on Fridays now.",
        "skip\nWINS\nClosed Acme.\nCHALLENGES\nHiring.\nASKS\nA lawyer.",
        "Skip: " + "we closed Acme and then hired a CFO, " * 8,
        "skipper",
        "Can I skip the CFO topic and discuss hiring instead?",
    ],
)
def test_not_skip(reply: str) -> None:
    assert not split_sections(reply).is_skip


# --- corrections ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "Correction: business should be 5",
        "CORRECTION\nWINS\nClosed Acme, not Apex.",
        "Correct my ratings please: business 5",
        "Update: we also closed Beta",
        "corrections below\nWins: Acme",
    ],
)
def test_correction(reply: str) -> None:
    assert split_sections(reply).is_correction


@pytest.mark.parametrize(
    "reply",
    [
        "WINS\nCorrection: closed Acme",  # not at the start
        "Update on the Acme deal: we lost it",
        "Correctly priced, finally.",
        "Wins: Acme",
    ],
)
def test_not_correction(reply: str) -> None:
    assert not split_sections(reply).is_correction


def test_correction_marker_then_section_on_same_line() -> None:
    result = split_sections("Correction: Wins: closed Acme, not Apex")
    assert result.is_correction
    assert result.texts == {"wins": "closed Acme, not Apex"}


def test_bold_correction_marker() -> None:
    result = split_sections("**Correction:** Wins: Acme")
    assert result.is_correction
    assert result.texts == {"wins": "Acme"}


def test_correction_of_ratings() -> None:
    result = split_sections("CORRECTION\nRatings: 5, 6, 7")
    assert result.is_correction
    assert result.ratings == {"business": 5, "personal": 6, "family": 7}
    assert result.texts == {}


# --- storage --------------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    result = split_sections(EXACT + "\nthanks\n")
    stored = result.to_json()
    assert Sections.from_json(stored) == result
    assert stored["texts"] is not result.texts  # a copy, not a view of the frozen value


def test_from_json_restores_section_order() -> None:
    # jsonb stores object keys in its own order.
    stored = {"texts": {OTHER: "hi", "asks": "a banker", "wins": "Acme"}, "ratings": {}}
    assert list(Sections.from_json(stored).texts) == ["wins", "asks", OTHER]


def test_json_round_trip_flags() -> None:
    result = Sections(
        texts={OTHER: "skip"}, ratings={}, topic_priority=None, is_skip=True, is_correction=True
    )
    assert Sections.from_json(result.to_json()) == result


@pytest.mark.parametrize(
    "data",
    [
        {"texts": {"wins": 3}, "ratings": {}},
        {"texts": {}, "ratings": {"business": 11}},
        {"texts": {}, "ratings": {"mood": 5}},
        {"texts": {}, "ratings": {"business": True}},
        {"texts": {}, "ratings": {}, "topic_priority": "D"},
        {"texts": {}, "ratings": {}, "is_skip": "false"},
    ],
)
def test_from_json_rejects_malformed(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Sections.from_json(data)


# --- nothing is dropped ---------------------------------------------------------------------------

# Ratings lines are made of these once parsed ("B7", "out of 10"); a correction marker becomes
# the flag.
_PARSED_WORD = re.compile(r"(?:business|personal|family|biz|b|p|f)?\d*|and|out|of")
_MARKER_WORDS = {"correction", "corrections", "update", "updated"}

_heading_lines = st.sampled_from(
    [s.title.upper() for s in SECTIONS]
    + ["1. Wins", "**Challenges**", "## asks", "Highlights:", "Business:", "> Family:"]
)
_answer_lines = st.sampled_from(
    [
        "Wins: closed Acme",
        "Topic (A): pricing",
        "Business: 7",
        "Business 7, personal 6, family 8",
        "Ratings: 7, 6, 8",
        "7",
        "12",
        "Family: 11 tough",
        "Correction: wins too",
        "Wins are rare",
        "I need: a banker",
        "- Hire CFO: done",
        "skip",
    ]
)
_free_lines = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Zl", "Zp", "Cc"]), max_size=40
)
_replies = st.lists(st.one_of(_heading_lines, _answer_lines, _free_lines), max_size=12).map(
    "\n".join
)


def _words(text: str) -> set[str]:
    return {w.casefold() for w in re.findall(r"[^\W_]+", text)}


@given(st.one_of(_replies, st.text()))
def test_every_non_heading_word_is_kept(text: str) -> None:
    result = split_sections(text)
    kept = set().union(*(_words(t) for t in result.texts.values()))
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip() or is_heading(line):
            continue
        match = match_heading(line)
        words = _words(match.rest if match else line)
        missing = words - kept
        if result.ratings:
            missing = {word for word in missing if not _PARSED_WORD.fullmatch(word)}
        if result.is_correction:
            missing -= _MARKER_WORDS
        assert not missing, (line, result)


@given(st.one_of(_replies, st.text()))
def test_result_is_well_formed(text: str) -> None:
    result = split_sections(text)
    assert set(result.texts) <= {*SECTION_KEYS, OTHER}
    assert all(value.strip() == value and value for value in result.texts.values())
    assert set(result.ratings) <= set(RATING_KEYS)
    assert all(1 <= value <= 10 for value in result.ratings.values())
    assert result.topic_priority in (None, "A", "B", "C")
    assert Sections.from_json(result.to_json()) == result


# --- SKIP as people write it (issue 13, point 6) -------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "SKIP travelling",
        "Sorry, I have to skip this month",
        "pass this month — traveling (trade fair in Bologna). Back for April.",
        "Hi Tom,\n\nCan't do it this time, closing season.",
        "Can't make it, skipping this one. Closing season is crushing us.",
        "Tom,\n\nI have to sit this one out. Dad's surgery is on the 9th.",
        "Me salto este mes, estoy de viaje.",
        "No puedo participar este mes, lo siento.",
        "Je passe mon tour ce mois-ci, désolée.",
        "Ich setze diesen Monat aus, wir sind im Urlaub.",
        "Vou passar este mês, estou a viajar.",
        "Ik sla deze maand over, sorry.",
    ],
)
def test_skip_as_people_write_it(reply: str) -> None:
    assert split_sections(reply).is_skip


@pytest.mark.parametrize(
    "reply",
    [
        "We had to skip the trade show this year, budget.\n\nWINS\nClosed Acme.",
        "Pass the word: we are hiring two engineers and a controller in the spring, anyone who knows good people please send them my way.",
        "Skipped lunch all month to close the round. Worth it: signed the term sheet on Friday.",
        "Can't make it to the dinner, but here is my update.\n\nWINS\nClosed Acme.",
        "Nos saltamos la feria este año.",
    ],
)
def test_a_reply_that_mentions_skipping_is_not_a_skip(reply: str) -> None:
    assert not split_sections(reply).is_skip


# --- Headings, ratings and prose in the languages and notations members use ----------------------


@pytest.mark.parametrize(
    ("reply", "key", "text"),
    [
        ("LOGROS\nFirmamos con Bebidas Huasteca.", "wins", "Firmamos con Bebidas Huasteca."),
        ("Défis :\n- La pénurie de verre.", "challenges", "- La pénurie de verre."),
        ("Herausforderungen\nZwei Meister gehen in Rente.", "challenges", "Zwei Meister gehen in Rente."),
        ("Pedidos: contactos de distribuidores.", "asks", "contactos de distribuidores."),
        ("Vragen aan de groep\nWie kent een uitzendbureau?", "asks", "Wie kent een uitzendbureau?"),
        ("1) the good\nClosed the book purchase.", "wins", "Closed the book purchase."),
        ("*Need help with:* a co-packer", "asks", "a co-packer"),
        ("Next: sign the NDA", "next_commitments", "sign the NDA"),
    ],
)
def test_headings_in_six_languages_and_members_words(reply: str, key: str, text: str) -> None:
    assert split_sections(reply).texts[key] == text


@pytest.mark.parametrize(
    ("reply", "ratings"),
    [
        ("Hi all\n\nB7 P8 F6\n\nWINS\nA deal.", {"business": 7, "personal": 8, "family": 6}),
        ("7/8/6\n\nWins – a deal.", {"business": 7, "personal": 8, "family": 6}),
        ("Ratings: 8 / 7 / 9 🙌", {"business": 8, "personal": 7, "family": 9}),
        ("scores 5 6 8\nwins\nA deal.", {"business": 5, "personal": 6, "family": 8}),
        ("biz: 6 personal: 7 family: 9\nGood month.", {"business": 6, "personal": 7, "family": 9}),
        ("Notes : Affaires 6 / Personnel 7 / Famille 8", {"business": 6, "personal": 7, "family": 8}),
        ("CALIFICACIONES\nNegocio: 8\nPersonal: 7\nFamilia: 9", {"business": 8, "personal": 7, "family": 9}),
        ("Cijfers:\n| Zakelijk | Persoonlijk | Gezin |\n|    7     |      6      |   8   |", {"business": 7, "personal": 6, "family": 8}),
        ("Business | Personal | Family\n5 | 6 | 7", {"business": 5, "personal": 6, "family": 7}),
        ("Honestly a rough stretch. Business I'd call a 5, personal a 6, family an 8.", {"business": 5, "personal": 6, "family": 8}),
        ("7/10, 8/10, 6/10", {"business": 7, "personal": 8, "family": 6}),
    ],
)
def test_ratings_in_common_notations(reply: str, ratings: dict[str, int]) -> None:
    assert split_sections(reply).ratings == ratings


@pytest.mark.parametrize(
    "reply",
    ["We hired 7/8/6 people", "family 2 kids and a dog", "Meeting on 7/8/26 at noon", "6, 5, 7 were the lot numbers"],
)
def test_numbers_in_prose_are_no_ratings(reply: str) -> None:
    assert split_sections(reply).ratings == {}


def test_prose_is_placed_by_cue_phrases() -> None:
    reply = (
        "Tom, no headings from me this month. Good month, we finally landed the park district contract. "
        "Struggling with crew turnover again. Could use a rec for an HR consultant. "
        "I'd love to spend time at the meeting on how to fund the inventory, call it an A."
    )
    result = split_sections(reply)
    assert "landed the park district contract" in result.texts["wins"]
    assert "crew turnover" in result.texts["challenges"]
    assert "HR consultant" in result.texts["asks"]
    assert "fund the inventory" in result.texts["topic"]
    assert result.topic_priority == "A"
    assert "no headings from me" in result.texts[OTHER]


def test_labels_inside_a_line_and_a_paragraph_after_an_inline_heading() -> None:
    reply = (
        "the wins: two new clients.\n\n"
        "ERP shortlist – done. Exit interviews – done.\n\n"
        "3) what I need from you all\nHas anyone hired a grown kid? I'd also like it as my topic (B): how do I keep "
        "family out of the office?"
    )
    result = split_sections(reply)
    assert result.texts["wins"] == "two new clients."
    assert "ERP shortlist – done." in result.texts["commitments"]
    assert result.texts["asks"] == "Has anyone hired a grown kid?"
    assert "how do I keep family out of the office?" in result.texts["topic"]
    assert result.topic_priority == "B"


def test_a_correction_places_its_words_under_the_section_it_names() -> None:
    result = split_sections("Please replace my challenges with this:\n\nOur foreman retires in June.")
    assert result.is_correction
    assert result.texts["challenges"] == "Our foreman retires in June."


def test_inline_answer_markers_go_only_where_an_answer_starts() -> None:
    result = split_sections("RATINGS\nBusiness: [JW] 6\n\nWINS\n[JW] Closed it. See deck [PDF] attached.")
    assert result.ratings == {"business": 6}
    assert result.texts["wins"] == "Closed it. See deck [PDF] attached."


@pytest.mark.parametrize(
    ("reply", "ratings"),
    [
        ("My ratings are 7, 8 and 6", {"business": 7, "personal": 8, "family": 6}),
        ("Mis calificaciones son 8, 7 y 9", {"business": 8, "personal": 7, "family": 9}),
        ("Biz 7 / Pers 8 / Fam 6\nWINS\nA deal.", {"business": 7, "personal": 8, "family": 6}),
    ],
)
def test_ratings_said_in_a_sentence_under_their_own_words(reply: str, ratings: dict[str, int]) -> None:
    assert split_sections(reply).ratings == ratings


def test_what_weighs_on_a_member_reads_as_a_challenge() -> None:
    reply = (
        "We closed our Series A this month. The hardest part has been hiring a VP of Sales. "
        "Cash flow is a headache. I'm concerned about churn in the mid-market."
    )
    result = split_sections(reply)
    assert "Series A" in result.texts["wins"]
    for words in ("hiring a VP of Sales", "Cash flow is a headache", "churn in the mid-market"):
        assert words in result.texts["challenges"], words
    assert OTHER not in result.texts
