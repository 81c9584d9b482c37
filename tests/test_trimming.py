"""Reply trimming: the member's new words out of replies written the ways mail clients write them."""

import pytest

from app.reading.trimming import html_to_text, new_words

TOKEN_ADDRESS = "reply+0123456789abcdef0123456789abcdef@roundtable.example"

# Our update request as a client quotes it back (email_templates/update_request.txt).
QUOTED_REQUEST = f"""\
On Mon, Nov 3, 2025 at 9:00 AM Roundtable <{TOKEN_ADDRESS}>
wrote:

> Hi Anna,
>
> Your November update for the Tuesday group is due Friday 7 November.
> Just reply to this email: answer under the headings below, in any order, and skip any you like.
>
> -- Reply above this line or answer under the headings below --
>
> RATINGS (1-10)
> Business:
> Personal:
> Family:
>
> WINS
>
> CHALLENGES
>
> NEXT COMMITMENTS
>
> --
> Roundtable for the Tuesday group. What members write here stays within the group.
"""


# --- Top-posted replies: the quoted original is cut off --------------------------------------------


def test_gmail_top_post_with_a_header_wrapped_over_two_lines() -> None:
    body = f"Closed the seed round on Friday.\nHiring a CFO is next.\n\n{QUOTED_REQUEST}"

    assert new_words(body) == "Closed the seed round on Friday.\nHiring a CFO is next."


def test_outlook_header_block_right_under_the_reply_without_a_blank_line() -> None:
    body = (
        "Revenue is up 12% on last month.\n"
        f"From: Roundtable <{TOKEN_ADDRESS}>\n"
        "Sent: Monday, November 3, 2025 9:00 AM\n"
        "To: Anna Berg <anna@example.com>\n"
        "Subject: Your November update\n"
        "\n"
        "Hi Anna,\n"
        "RATINGS (1-10)\n"
    )

    assert new_words(body) == "Revenue is up 12% on last month."


def test_bold_outlook_header_block_after_a_dashed_line() -> None:
    body = (
        "Numbers attached.\n\n ------------------------------\n\n"
        f"*From:* Roundtable [mailto:{TOKEN_ADDRESS}]\n"
        "*Sent:* Monday, November 3, 2025 9:00 AM\n"
        "*To:* anna@example.com\n"
        "*Subject:* Your November update\n\n"
        "Hi Anna,\n"
    )

    assert new_words(body) == "Numbers attached."


def test_original_message_separator() -> None:
    body = (
        "Travelling this week, short update: all on plan.\n\n"
        "-----Original Message-----\n"
        f"From: Roundtable [mailto:{TOKEN_ADDRESS}]\n"
        "Sent: Monday, November 3, 2025 9:00 AM\n"
        "Subject: Your November update\n\n"
        "Hi Anna,\n"
    )

    assert new_words(body) == "Travelling this week, short update: all on plan."


def test_apple_mail_original_without_quote_marks() -> None:
    body = (
        "Pipeline doubled since October.\n\n"
        f"On 3 Nov 2025, at 09:00, Roundtable <{TOKEN_ADDRESS}> wrote:\n\n"
        "Hi Anna,\n"
        "Your November update for the Tuesday group is due Friday.\n"
        "WINS\n"
    )

    assert new_words(body) == "Pipeline doubled since October."


def test_yahoo_header_with_seconds_and_gmt_offset() -> None:
    body = (
        "Quiet month, nothing to add.\n\n\n"
        "On Monday, November 3, 2025 at 09:00:00 AM GMT+1, Roundtable "
        f"<{TOKEN_ADDRESS}> wrote:\n\n\n"
        "Hi Anna,\n"
    )

    assert new_words(body) == "Quiet month, nothing to add."


@pytest.mark.parametrize(
    "header",
    [
        f"Am Mo., 3. Nov. 2025 um 09:00 Uhr schrieb Roundtable <{TOKEN_ADDRESS}>:",
        f"Roundtable <{TOKEN_ADDRESS}> schrieb am Mo., 3. Nov. 2025, 09:00:",
        f"Le lun. 3 nov. 2025 à 09:00, Roundtable <{TOKEN_ADDRESS}> a écrit :",
        f"El lun, 3 nov 2025 a las 9:00, Roundtable (<{TOKEN_ADDRESS}>) escribió:",
        f"Op ma 3 nov 2025 om 09:00 schreef Roundtable <{TOKEN_ADDRESS}>:",
        f"Il giorno lun 3 nov 2025 alle ore 09:00 Roundtable <{TOKEN_ADDRESS}> ha scritto:",
        f"Em seg., 3 de nov. de 2025 às 09:00, Roundtable <{TOKEN_ADDRESS}> escreveu:",
        f"Den mån 3 nov. 2025 kl 09:00 skrev Roundtable <{TOKEN_ADDRESS}>:",
        f"Den 3. nov. 2025 kl. 09.00 skrev Roundtable <{TOKEN_ADDRESS}>:",
        f"pon., 3 lis 2025 o 09:00 Roundtable <{TOKEN_ADDRESS}> napisał(a):",
        f"пн, 3 нояб. 2025 г. в 09:00, Roundtable <{TOKEN_ADDRESS}>:",
        f"2025年11月3日(月) 9:00 Roundtable <{TOKEN_ADDRESS}>:",
        f"Roundtable <{TOKEN_ADDRESS}> 于2025年11月3日周一 09:00写道：",
    ],
)
def test_localized_quote_headers_cut_the_original(header: str) -> None:
    body = f"Zwei neue Kunden gewonnen.\n\n{header}\n\nHi Anna,\nWINS\n"

    assert new_words(body) == "Zwei neue Kunden gewonnen."


@pytest.mark.parametrize(
    "fields",
    [
        ("Von", "Gesendet", "An", "Betreff"),
        ("De", "Envoyé", "À", "Objet"),
        ("De", "Enviado", "Para", "Asunto"),
        ("Van", "Verzonden", "Aan", "Onderwerp"),
        ("Fra", "Sendt", "Til", "Emne"),
        ("Från", "Skickat", "Till", "Ämne"),
        ("Od", "Wysłano", "Do", "Temat"),
    ],
)
def test_localized_outlook_header_blocks(fields: tuple[str, str, str, str]) -> None:
    sender, sent, to, subject = fields
    body = (
        "Svar: alt går efter planen.\n\n"
        f"{sender}: Roundtable <{TOKEN_ADDRESS}>\n"
        f"{sent}: 3. november 2025 09:00\n"
        f"{to}: Anna Berg\n"
        f"{subject}: Din opdatering\n\n"
        "Hej Anna,\n"
    )

    assert new_words(body) == "Svar: alt går efter planen."


def test_forwarded_message_with_nothing_above_keeps_the_forwarded_text() -> None:
    body = (
        "---------- Forwarded message ---------\n"
        "From: Bo Lind <bo@example.com>\n"
        "Date: Mon, Nov 3, 2025 at 9:00 AM\n"
        "Subject: Board minutes\n"
        "To: Anna Berg <anna@example.com>\n\n"
        "The board approved the budget.\n"
    )

    assert new_words(body) == "The board approved the budget."


def test_begin_forwarded_message_below_the_reply_is_cut() -> None:
    body = (
        "See below, this is our biggest risk.\n\n"
        "Begin forwarded message:\n\n"
        "From: Bo Lind <bo@example.com>\n"
        "Subject: Notice\n"
        "Date: 3 November 2025 at 09:00:00 CET\n"
        "To: Anna Berg <anna@example.com>\n\n"
        "We are terminating the contract.\n"
    )

    assert new_words(body) == "See below, this is our biggest risk."


# --- Signatures and footers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "footer",
    [
        "Sent from my iPhone",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Get Outlook for Android",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado desde mi iPhone",
        "Verzonden vanaf mijn iPhone",
        "Sendt fra min iPad",
        "Sent from my Samsung Galaxy smartphone.",
    ],
)
def test_mobile_footers_are_removed(footer: str) -> None:
    body = f"Signed the lease for the new office.\n\n{footer}\n"

    assert new_words(body) == "Signed the lease for the new office."


def test_sentences_that_start_like_a_footer_stay() -> None:
    body = (
        "Sent from my desk, which is a first this month.\n"
        "Sent via DocuSign to the board for approval.\n"
    )

    assert new_words(body) == body.strip()


def test_dash_dash_signature_is_removed() -> None:
    body = "Hiring is the bottleneck.\n\n-- \nAnna Berg\nCEO, Berg Robotics\n+46 70 000 00 00\n"

    assert new_words(body) == "Hiring is the bottleneck."


def test_dashes_inside_a_line_are_no_signature() -> None:
    body = "Cash is fine -- 14 months of runway.\nMore next month."

    assert new_words(body) == body


def test_dash_dash_between_the_members_sections_is_no_signature() -> None:
    body = "WINS\nClosed the round.\n--\nCHALLENGES\nHiring a CTO.\n\n-- \nAnna"

    assert new_words(body) == "WINS\nClosed the round.\nCHALLENGES\nHiring a CTO."


# --- Content that must stay ----------------------------------------------------------------------


def test_thanks_inside_the_content_stays_and_the_sign_off_goes() -> None:
    body = (
        "Item 1: approve budget.\n"
        "Thanks, that covers item 2 too: yes.\n\n"
        "Thanks,\n"
        "Anna\n\n"
        f"{QUOTED_REQUEST}"
    )

    assert new_words(body) == "Item 1: approve budget.\nThanks, that covers item 2 too: yes."


@pytest.mark.parametrize(
    "sign_off",
    [
        "Best,\nAnna",
        "Thanks again!",
        "Kind regards,\n\nAnna Berg\nCEO | Berg Robotics\n+46 70 000 00 00\nwww.berg.example",
        (
            "Danke und viele Grüße\n\nFrank Müller\nCEO, Müller Precision\n\n"
            "This email and any attachments are confidential."
        ),
        "Med venlig hilsen\nAnders Andersen",
        "-Anna",
    ],
)
def test_a_closing_and_the_signature_under_it_are_removed(sign_off: str) -> None:
    body = f"NEXT COMMITMENTS\nHire a VP Sales by March.\n\n{sign_off}\n"

    assert new_words(body) == "NEXT COMMITMENTS\nHire a VP Sales by March."


@pytest.mark.parametrize(
    "signature",
    [
        "Ben Okafor\nFounder & CEO | Okafor Logistics\nM: +1 650 555 0199",
        (
            "This email and any attachments are confidential. If you are not the intended"
            "\nrecipient, please delete it."
        ),
        (
            "Ben Okafor\nFounder & CEO | Okafor Logistics\nben@okafor.example\n\n"
            "This message may contain privileged information."
        ),
    ],
)
def test_a_signature_block_without_dashes_is_removed(signature: str) -> None:
    body = f"Build a 13-week cash forecast.\n\n{signature}\n\n{QUOTED_REQUEST}"

    assert new_words(body) == "Build a 13-week cash forecast."


@pytest.mark.parametrize(
    "ending",
    [
        "Best\nBuy the building next door.",  # a closing word, then content
        "Anna Berg | Berg Robotics",  # a signature without a closing: kept, it may be content
        "Thanks to Bo for the intro.",
        "Call Bo Lind\n+46 70 123 45 67",
        "Board Deck\nhttps://example.com/deck",
        "This email is confidential: we are selling the company.",
    ],
)
def test_endings_that_are_no_sign_off_stay(ending: str) -> None:
    body = f"Hire a VP Sales by March.\n\n{ending}"

    assert new_words(body) == body


def test_hyphen_lists_stay() -> None:
    body = "Next steps:\n-call the bank\n-hire two engineers\n- close Q4 books\n\n-Anna"

    assert new_words(body) == body


def test_a_line_starting_with_greater_than_and_a_number_is_content() -> None:
    body = ">50% of revenue is recurring now.\n>= 3 hires planned."

    assert new_words(body) == body


def test_our_marker_line_is_removed_even_unquoted() -> None:
    body = "All good.\n-- Reply above this line or answer under the headings below --\n"

    assert new_words(body) == "All good."


def test_windows_line_endings_and_surrounding_blank_lines() -> None:
    assert new_words("\r\n\r\nLine one\r\nLine two\r\n\r\n") == "Line one\nLine two"


# --- Inline replies ------------------------------------------------------------------------------


def test_inline_reply_keeps_answers_and_our_headings_above_them() -> None:
    body = f"""\
Answers inline.

On Mon, Nov 3, 2025 at 9:00 AM Roundtable <{TOKEN_ADDRESS}> wrote:

> Hi Anna,
>
> Your November update for the Tuesday group is due Friday 7 November.
>
> -- Reply above this line or answer under the headings below --
>
> RATINGS (1-10)
> Business:
7
> Personal:
6
> Family:
>
> WINS
Closed the seed round.
- two new enterprise customers
>
> CHALLENGES
>
> ASKS
An intro to a good CFO.
>
> NEXT COMMITMENTS
>
> --
> Roundtable for the Tuesday group.

Best,
Anna
"""

    assert new_words(body) == (
        "Answers inline.\n\n"
        "RATINGS (1-10)\nBusiness:\n7\nPersonal:\n6\n"
        "WINS\nClosed the seed round.\n- two new enterprise customers\n"
        "ASKS\nAn intro to a good CFO."
    )


def test_bottom_posted_answer_under_a_quote_stays_and_the_quote_goes() -> None:
    body = (
        "On Mon, Nov 3, 2025 at 9:00 AM Roundtable <reply@roundtable.example> wrote:\n"
        "> Your November update is due Friday.\n\n"
        "Skip me this month, travelling.\n"
    )

    assert new_words(body) == "Skip me this month, travelling."


def test_only_quoted_text_leaves_nothing() -> None:
    assert new_words(QUOTED_REQUEST) == ""


def test_only_a_footer_leaves_nothing() -> None:
    assert new_words("\n\nSent from my iPhone\n") == ""


def test_outlook_reply_with_nothing_written_leaves_nothing_of_our_request() -> None:
    # "See attached" without the words: Outlook sends our request back, unquoted.
    body = (
        "\n\n"
        f"From: Roundtable <{TOKEN_ADDRESS}>\n"
        "Sent: Monday, November 3, 2025 9:00 AM\n"
        "To: Anna Berg <anna@example.com>\n"
        "Subject: Your November update\n\n"
        "Hi Anna,\n\n"
        "Your November update for the Tuesday group is due Friday 7 November.\n\n"
        "-- Reply above this line or answer under the headings below --\n\n"
        "RATINGS (1-10)\nBusiness:\nPersonal:\nFamily:\n\nWINS\n"
    )

    assert new_words(body) == ""


# --- HTML ----------------------------------------------------------------------------------------

GMAIL_TOP_POST = f"""\
<div dir="ltr"><div>Closed the <b>seed</b> round &amp; hired a CFO.</div><div><br></div>
<div>Thanks,</div><div>Anna</div></div><br>
<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Nov 3, 2025 at 9:00 AM
Roundtable &lt;<a href="mailto:{TOKEN_ADDRESS}">{TOKEN_ADDRESS}</a>&gt; wrote:<br></div>
<blockquote class="gmail_quote" style="margin:0 0 0 .8ex;border-left:1px #ccc solid">
<h2>Wins</h2><p>What went well since we last met</p></blockquote></div>"""

OUTLOOK_WEB = f"""\
<html><head><style>p {{ margin: 0 }}</style></head><body>
<div style="font-family:Calibri">Revenue is up 12%.</div>
<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri"><b>From:</b> Roundtable
&lt;{TOKEN_ADDRESS}&gt;<br><b>Sent:</b> Monday, November 3, 2025 9:00 AM<br>
<b>Subject:</b> Your November update</font><div>&nbsp;</div></div>
<div><h2>Wins</h2><p>What went well since we last met</p></div></body></html>"""

APPLE_MAIL = f"""\
<html><body dir="auto"><div>Two pilots signed.</div><div><br>
<blockquote type="cite">On 3 Nov 2025, at 09:00, Roundtable &lt;{TOKEN_ADDRESS}&gt; wrote:<br><br>
</blockquote></div><blockquote type="cite"><div><h2>Wins</h2><p>What went well</p></div>
</blockquote></body></html>"""

THUNDERBIRD = """\
<html><body><p>Burn rate down 20%.</p>
<div class="moz-cite-prefix">On 03/11/2025 09:00, Roundtable wrote:<br></div>
<blockquote type="cite" cite="mid:abc@roundtable.example"><h2>Wins</h2></blockquote>
<pre class="moz-signature" cols="72">-- 
Anna</pre></body></html>"""

YAHOO = """\
<html><body><div class="ydp1"><div>Lost a key account.</div></div>
<div id="yahoo_quoted_123" class="yahoo_quoted"><div>On Monday, November 3, 2025, 09:00:00 AM
GMT+1, Roundtable wrote:</div><div><div><h2>Wins</h2></div></div></div></body></html>"""


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (GMAIL_TOP_POST, "Closed the seed round & hired a CFO."),
        (OUTLOOK_WEB, "Revenue is up 12%."),
        (APPLE_MAIL, "Two pilots signed."),
        (THUNDERBIRD, "Burn rate down 20%."),
        (YAHOO, "Lost a key account."),
    ],
    ids=["gmail", "outlook", "apple", "thunderbird", "yahoo"],
)
def test_html_only_replies_lose_the_quoted_original(html: str, expected: str) -> None:
    assert new_words(html_to_text(html)) == expected


def test_html_drops_the_quote_by_markup_alone() -> None:
    text = html_to_text(GMAIL_TOP_POST)

    assert "wrote" not in text
    assert "What went well" not in text
    assert "<" not in text.replace("&lt;", "")


def test_html_inline_reply_keeps_quotes_as_quoted_lines_and_answers() -> None:
    html = f"""\
<div dir="ltr">Answers below.</div><div class="gmail_quote"><div class="gmail_attr">On Mon,
Nov 3, 2025 at 9:00 AM Roundtable &lt;{TOKEN_ADDRESS}&gt; wrote:<br></div>
<blockquote class="gmail_quote"><p>Hi Anna,</p>
<p class="hint">-- Reply above this line or answer under the headings below --</p>
<h2>Wins</h2><p class="hint">What went well since we last met</p></blockquote>
<div>Closed the seed round.</div>
<blockquote class="gmail_quote"><h2>Challenges</h2><p class="hint">What is hard right now</p>
<h2>Asks</h2><p class="hint">Introductions, people, money</p></blockquote>
<div>An intro to a CFO.</div>
<blockquote class="gmail_quote"><h2>What I learned</h2></blockquote></div>"""

    text = html_to_text(html)

    assert "> What went well since we last met" in text.splitlines()
    assert new_words(text) == (
        "Answers below.\n\nWins\n\nClosed the seed round.\n\nAsks\n\nAn intro to a CFO."
    )


def test_html_signature_after_the_quote_is_no_inline_answer() -> None:
    html = """\
<div>Done.</div><div class="gmail_extra"><div class="gmail_quote">On Mon, Nov 3, 2025 at 9:00 AM
Bo &lt;bo@example.com&gt; wrote:<blockquote class="gmail_quote">Old text</blockquote></div>
-- <br><div class="gmail_signature">Anna Berg, CEO</div></div>"""

    assert html_to_text(html) == "Done."


def test_html_lists_links_and_entities() -> None:
    html = """\
<p>Asks&nbsp;for&nbsp;the group:</p>
<ul><li>An intro to <a href="https://example.com/acme">Acme's CFO</a></li>
<li>Feedback on <a href="https://example.com/deck">https://example.com/deck</a>
  <ul><li>pricing slide</li></ul></li></ul>
<ol><li>first</li><li>second</li></ol>
<p>Write to <a href="mailto:anna@example.com">anna@example.com</a> &lt;any time&gt; &eacute;</p>"""

    assert html_to_text(html) == (
        "Asks for the group:\n\n"
        "- An intro to Acme's CFO (https://example.com/acme)\n"
        "- Feedback on https://example.com/deck\n"
        "  - pricing slide\n\n"
        "1. first\n"
        "2. second\n\n"
        "Write to anna@example.com <any time> é"
    )


def test_html_paragraphs_line_breaks_and_no_markup() -> None:
    html = """\
<!doctype html><html><head><title>Re: update</title><style>.x { color: red }</style>
<script>alert("x")</script></head><body><p>First   paragraph
wraps here.</p><p>Second<br>line two</p><div>A div</div><div><br></div><div>After a gap</div>
<table><tr><td>Revenue</td><td>1.2M</td></tr><tr><td>Burn</td><td>80k</td></tr></table>
<pre>  indented
    code</pre></body></html>"""

    assert html_to_text(html) == (
        "First paragraph wraps here.\n\n"
        "Second\nline two\n\n"
        "A div\n\n"
        "After a gap\n\n"
        "Revenue | 1.2M\nBurn | 80k\n\n"  # a data row reads as one line of cells

        "  indented\n    code"
    )


def test_html_word_paragraphs_are_single_lines_and_header_is_cut_as_text() -> None:
    html = """\
<html><head><!--[if gte mso 9]><xml><o:OfficeDocumentSettings/></xml><![endif]--></head>
<body><div class=WordSection1><p class=MsoNormal>Line one<o:p></o:p></p>
<p class=MsoNormal>Line two &#8211; done<o:p></o:p></p>
<p class=MsoListParagraph><![if !supportLists]><span style='mso-list:Ignore'>·<span>&nbsp;&nbsp;
</span></span><![endif]>Hire a CFO<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p>
<div style='border:none;border-top:solid #E1E1E1 1.0pt'><p class=MsoNormal><b>From:</b>
Roundtable &lt;reply@roundtable.example&gt;<br><b>Sent:</b> Monday, November 3, 2025 9:00 AM<br>
<b>To:</b> Anna<br><b>Subject:</b> Your update</p></div><p class=MsoNormal>Hi Anna</p>
</div></body></html>"""

    assert new_words(html_to_text(html)) == "Line one\nLine two – done\n- Hire a CFO"


# --- Hostile input -------------------------------------------------------------------------------


def test_deeply_nested_html_neither_crashes_nor_loses_the_text() -> None:
    html = "<div>" * 5000 + "Still here." + "</div>" * 5000

    assert html_to_text(html) == "Still here."


def test_thousands_of_closings_are_no_crash_and_the_text_above_stays() -> None:
    body = "Revenue up.\n\n" + "Thanks,\n" * 5000

    assert new_words(body).startswith("Revenue up.\n\nThanks,")


def test_a_bare_signature_with_the_senders_name_goes_but_a_sentence_about_them_stays() -> None:
    assert new_words("WINS\nFund II closed.\n\nGrace Liu · Liu Ventures", "Grace Liu") == "WINS\nFund II closed."
    assert new_words("WINS\nFund II closed.\n\nCarmen", "Carmen Ruiz") == "WINS\nFund II closed."
    kept = "WINS\nFund II closed.\n\nGrace Liu will join our board as chair."
    assert new_words(kept, "Grace Liu") == kept
    assert new_words("Carmen", "Carmen Ruiz") == "Carmen"  # nothing else written: keep it
