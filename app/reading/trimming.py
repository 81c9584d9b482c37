"""Find a member's new words in a reply: drop quoted mail, signatures and mobile footers.

Pure functions over strings: no I/O. Conservative by design (zulip's email gateway: "when in
doubt, keep the text"): a lost answer costs more than a leaked line of quote, so a line goes only
when it is certainly not the member's update: a `>` quote, a quote header, the original under a
header that starts it unquoted (Outlook, Apple Mail, Yahoo), a `-- ` signature, a mobile footer,
and at the very end a closing ("Best," over a name, title, phone) or a disclaimer. "Thanks, that
covers it" inside the text, hyphen lists and a name that is no closing's stay.

`html_to_text` turns HTML-only mail into the same kind of text, so `new_words` reads both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from app.reading.sections import is_heading, is_rating_label

# --- Line patterns -------------------------------------------------------------------------------

# Our request's own marker line; a reply that keeps it unquoted keeps no answer on it.
_OUR_MARKER = re.compile(r"[>\s]*-+\s*reply above this line\b.*", re.IGNORECASE)

# `>` quoting, and Supercite's initials ("JD> ..."); "Richard>" is too long to be initials.
# ">50% recurring" and ">= 3 hires" are the member's words, not a quote.
_QUOTED = re.compile(r"\s*(?:>(?![\d=])|[A-Z]{1,3}>)")
_QUOTE_MARKS = re.compile(r"(?:\s*(?:>+|[A-Z]{1,3}>))+")

# The usenet signature delimiter "-- " (often sent without its space).
_SIG_DELIMITER = re.compile(r"--\s*")

# Outlook's separator line and mailing-list footers; 20+ so a typed "_____" blank is not one.
_UNDERSCORES = re.compile(r"\s*_{20,}\s*")

# Lines with nothing to read: trackers' invisible marks (Gmail add-ons put "ᐧ" under a reply),
# zero-width characters, and delimiters made only of punctuation.
_INVISIBLE = "\u1427\u200b\u200c\u200d\u2060\ufeff"
_DELIMITER_ONLY = re.compile(r"[\s\-_=*~#+.·•" + _INVISIBLE + r"]*")

# "-----Original Message-----", "---------- Forwarded message ---------", "Begin forwarded
# message:" and their translations: the original follows, unquoted.
_ORIGINAL_WORDS = (
    r"original message|forwarded message|message d['’]origine|message transf[ée]r[ée]"
    r"|urspr[üu]ngliche nachricht|weitergeleitete nachricht|mensaje original|mensaje reenviado"
    r"|oorspronkelijk bericht|doorgestuurd bericht|messaggio originale|messaggio inoltrato"
    r"|mensagem original|mensagem encaminhada|oprindelig meddelelse|videresendt meddelelse|oprindelig besked"
    r"|opprinnelig melding|videresendt melding|ursprungligt meddelande|vidarebefordrat meddelande"
    r"|wiadomo[śs][ćc] oryginalna|przekazana wiadomo[śs][ćc]|oryginalna wiadomo[śs][ćc]"
    r"|исходное сообщение|пересылаемое сообщение|alkuperäinen viesti|orijinal mesaj"
    r"|原始邮件|原始郵件|転送されたメッセージ|元のメッセージ"
)
# Any dash: clients and fonts turn "-" into U+2010, en and em dashes.
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015"
_SEPARATOR = re.compile(
    r"[\s*_]*(?:[" + _DASHES + r"]{2,}\s*(?:" + _ORIGINAL_WORDS + r")\s*[" + _DASHES + r"]{2,}"
    r"|(?:begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|d[ée]but du message r[ée]exp[ée]di[ée]|inicio del mensaje reenviado"
    r"|begin doorgestuurd bericht|inizio messaggio inoltrato"
    r"|in[íi]cio da mensagem reencaminhada|vidarebefordrat (?:mejl|brev))\s*:?)[\s*_]*",
    re.IGNORECASE,
)

# A forward, as opposed to the original of a reply: what the member may paste on purpose.
_FORWARD_WORDS = re.compile(
    r"forward|weitergeleitet|transf[ée]r|reenviado|doorgestuurd|inoltrato|encaminhad|videresendt"
    r"|vidarebefordrat|przekazan|пересыла|転送",
    re.IGNORECASE,
)

# Words that open an "On <date>, <name> wrote:" header, by language.
_ON_WORDS = (
    r"on|am|le|el|op|il|em|den|dnia|w dniu|på|dne|в|у|el d[íi]a|在|於|vào|pada|tanggal|na|u"
    r"|mon|tue|wed|thu|fri|sat|sun|ons|tis|fre|l[öo]r|s[öo]n|man|tir|tor|ma|ti|ke|pe|la|su"
)
# "wrote" in the languages of our members; a header ends with it plus an optional name, address
# or date ("skrev Anna <a@b.se>:", "schrieb am Fr., 28. Apr. 2017 um 11:53 Uhr:").
_WROTE = (
    r"(?<![^\W\d_])(?:wrote|schrieb|a\s+[ée]crit|escribi[óo]|schreef|geschreven|ha\s+scritto"
    r"|scrisse|escreveu|ha\s+escrit|skrev|napisa[łl]\s*\(a\)|napisa[łl]a?|pisze|написал\s*\(а\)|написала?"
    r"|написав|писав|пише|kirjoitti|yazd[ıi]|napsal\s*\(a\)|napsala?|[íi]rta|a\s+scris|έγραψε"
    # Vietnamese, Indonesian, Galician, Croatian/Serbian/Bosnian, Slovak, Slovenian, Lithuanian,
    # Latvian, Estonian, Bulgarian, Hebrew, Arabic; and "sent" (some clients' "<name> sent:").
    r"|đã\s+viết|menulis|escribiu|napisao|napisala|nap[íi]sal[a]?|je\s+napisal[a]?|ra[šs][ėe]"
    r"|rakst[īi]ja|kirjutas|написа|sent)"
    r"|כתב|כתבה|كتب"
    r"|写道|寫道|書きました|のメッセージ|작성"
)
# Possessive runs (`*+`): a run of spaces is read once, not again from each of its characters.
_WROTE_HEADER = re.compile(
    r"[\s*]*+.{0,250}?(?:" + _WROTE + r")(?P<post>.{0,80}?)(?:\s*+[:：]|\s*+-{2,})[\s*]*+",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"@[\w-]+(?:\.[\w-]+)+|mailto:", re.IGNORECASE)
_TIME = re.compile(r"(?<!\d)\d{1,2}[:.]\d{2}(?!\d)|\bGMT\b|\bUTC\b")
# Where a header wrapped over several lines may start: "On", a date, or a name and an address.
_HEADER_START = re.compile(r"[\s*]*(?:-{2,}\s*)?(?:(?:" + _ON_WORDS + r")\b|\d)", re.IGNORECASE)
# A time and an address closing with a colon, the verbless form of several Gmail locales:
# "пн, 3 нояб. 2025 г. в 09:00, Anna <a@b.ru>:".
_ADDRESS_HEADER = re.compile(
    r".{0,160}?(?<!\d)\d{1,2}[:.]\d{2}(?!\d).{0,120}<\s*\S+@\S+?\s*>+\s*[:：]\s*"
)
# Gmail's forms without a verb: "2016-10-24 15:36 GMT+02:00 Anna <a@b.com>:", "2013/7/20 Anna
# <a@b.com>", "2022年1月1日(金) 9:00 田中太郎 <t@example.com>:".
_DATE_HEADER = re.compile(
    r"\s*(?:\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日)"
    r"(?:.{0,200}<\s*\S+@\S+?\s*>+\s*[:：]?|\s+\d{1,2}:\d{2}\s+GMT[+-]\d{1,2}:?\d{2}.{0,120})\s*"
)

# Outlook's and forwarding clients' header block, localized: "From:/Sent:/To:/Subject:",
# "Von:/Gesendet:/An:/Betreff:", "Fra:/Sendt:/Til:/Emne:"...  (value: name or address, may be
# bold "*From:*").
_FIELDS = {
    "from": "from|von|de|da|van|fra|från|od|от|від|lähettäjä|kimden|feladó|mittente|remetente"
    "|expéditeur|absender|afzender|avsändare|nadawca|发件人|寄件者|寄件人|差出人",
    "date": "sent|date|message du|gesendet|datum|envoyé|enviado|enviada|fecha|inviato|data|verzonden|sendt"
    "|dato|skickat|wysłano|отправлено|дата|lähetetty|päivämäärä|gönderildi|tarih|elküldve"
    "|dátum|发送时间|日期|送信日時|日時",
    "to": "to|an|à|a|para|aan|til|till|do|кому|vastaanottaja|kime|címzett|收件人|宛先",
    "cc": "cc|kopie|copie|kopia|копия|抄送|副本",
    "subject": "subject|betreff|objet|sujet|asunto|oggetto|assunto|onderwerp|emne|ämne|temat"
    "|тема|aihe|konu|tárgy|主题|主旨|件名",
    "reply-to": "reply-to|antwort an|répondre à|responder a|risposta",
}
_FIELD = re.compile(
    r"\s*[*_]{0,2}(?P<name>"
    + "|".join(f"(?P<{key.replace('-', '_')}>{names})" for key, names in _FIELDS.items())
    + r")\s*+(?:[*_]{1,2}\s*+)?[:：]",
    re.IGNORECASE,
)

# Mobile and webmail footers, whole lines: "Sent from my iPhone", "Get Outlook for iOS",
# "Envoyé de mon iPhone", "Von meinem iPhone gesendet", "從我的 iPhone 傳送"... The device is at
# most five words and a comma ends it unless an apology follows, so "Sent from my desk, it is
# easier" and "Sent via DocuSign to the board for approval." stay.
_DEVICE = r"[^\s,]+(?:\s+[^\s,]+){0,4}?"
# A word that may open a phrase: it does not start with what the brackets before the phrase take
# ("*", "(", "<", "[", "_"), so a long run of them is not read again from each of its characters.
_FIRST_WORD = r"[^\s(<\[*_]\S*"
_FOOTER_PHRASES = (
    r"sent\s+(?:from|via|with|using)\s+(?:my\s+)?DEVICE",
    r"get\s+\[?outlook\s+for\s+DEVICE",
    r"(?:" + _FIRST_WORD + r"\s+(?:\S+\s+){0,2}?)?"
    r"\[?outlook\s+(?:for|für|pour|para|voor|per|för|dla)\s+(?:ios|android)\b.{0,30}",
    r"from\s+my\s+(?:iphone|ipad|android|mobile|phone|blackberry|galaxy|cell)\S*(?:\s+\S+)?",
    r"envoy[ée]\s+(?:de|depuis|à\s+partir\s+de)\s+(?:mon|ma)\s+DEVICE",
    r"enviado\s+(?:desde|de|do|a\s+partir\s+do)\s+(?:mi|meu|o\s+meu)\s+DEVICE",
    r"inviato\s+da(?:l)?\s+(?:(?:il\s+)?mio\s+)?DEVICE",
    r"verzonden\s+(?:vanaf|met|van|via)\s+(?:mijn\s+)?DEVICE",
    r"(?:diese\s+nachricht\s+wurde\s+)?von\s+meinem\s+DEVICE\s+gesendet",
    r"gesendet\s+(?:von|mit)\s+(?:meinem\s+)?DEVICE",
    r"sendt\s+fra\s+min\s+DEVICE",
    r"skickat\s+från\s+min\s+DEVICE",
    r"wysłane\s+z\s+(?:mojego\s+)?DEVICE",
    r"отправлено\s+с\s+(?:моего\s+)?DEVICE",
    r"從我的\s*\S+\s*傳送|从我的\s*\S+\s*发送|[发寄]自我的\s*\S+|" + _FIRST_WORD + r"\s*から送信",
    r"<<\s*sent\s+by\s+DEVICE\s*>>|\(\s*sent\s+(?:from|by)\s+DEVICE\s*\)",
)
_FOOTER = re.compile(
    r"[\s(<\[*_]*(?:" + "|".join(_FOOTER_PHRASES).replace("DEVICE", _DEVICE) + r")"
    r"(?:\s*+<[^>\s]*>)?(?:\s*+[.!])?(?:,?\s+(?:please\s+)?(?:excuse|pardon|forgive)\b.*)?"
    r"[\s)>\]*_]*+",
    re.IGNORECASE,
)

# A closing line: "Best,", "Thanks!", "Med venlig hilsen", "Danke und viele Grüße". Whole line
# only, so "Thanks, that covers item 2 too" is content. The leading run is possessive (`\W*+`):
# every closing starts with a letter, and a backtracking `\W*` before `\s*` read a line of 40k
# spaces in 18 s.
_CLOSING = re.compile(
    r"\W*+(?:(?:best|kind|warm|many)?\s*+(?:regards|wishes)|best|all\s+the\s+best|cheers|sincerely"
    r"|(?:many\s+)?thanks(?:\s+(?:again|all|everyone))?|thank\s+you(?:\s+all)?|yours"
    r"|(?:danke(?:\s+und)?\s+)?(?:liebe|viele|beste)\s+gr[üu](?:ß|ss)e|gru(?:ß|ss)|danke|lg|vg"
    r"|mit\s+freundlichen\s+gr[üu](?:ß|ss)en|cordialement|amitiés|bien\s+à\s+vous|merci"
    r"|saludos|un\s+saludo|atentamente|gracias|groeten|met\s+vriendelijke\s+groet(?:en)?"
    r"|saluti|cordiali\s+saluti|grazie|abraços|atenciosamente|obrigad[oa]|mvh|hilsen"
    r"|(?:med\s+)?venlig\s+hilsen|kh|vh|med\s+v[äa]nlig\s+h[äa]lsning|h[äa]lsningar|tack"
    r"|pozdrawiam|z\s+powa[żz]aniem|dzi[ęe]kuj[ęe]|с\s+уважением|спасибо)[\s,.!]*+",
    re.IGNORECASE,
)
# "-Anna", "/John", "—Ryan": a name signed with a dash or slash, one or two capitalized words.
_DASH_NAME = re.compile(r"\s*[-–—/~]+\s*([^\W\d_][\w.'’-]*(?:\s+[^\W\d_][\w.'’-]*)?)\s*")
# What stands under a closing or a signed name: contact details, a disclaimer, a name or a title.
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")
# The lookbehind anchors the address at a word's start: without it a long word is quadratic.
_ADDRESS_OR_LINK = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+\.\w|https?://|www\.", re.IGNORECASE)
_DISCLAIMER = re.compile(
    r"confidential|privileged|intended\s+recipient|vertraulich|confidentiel", re.IGNORECASE
)
# "This email and any attachments are confidential...", "... the intended recipient ...".
_DISCLAIMER_START = re.compile(
    r"\W*(?:(?:this|the)\s+(?:e-?mail|message|communication)|confidentiality|disclaimer"
    r"|diese\s+(?:e-?mail|nachricht))\b",
    re.IGNORECASE,
)
# The terms of one, or "attachments" and "confidential" both (in either order; two searches, as
# one pattern would read the rest of the text again from each "attachment").
_DISCLAIMER_TERMS = re.compile(r"intended\s+recipient|privileged", re.IGNORECASE)
_ATTACHMENTS = re.compile(r"\battachments?\b", re.IGNORECASE)
_CONFIDENTIAL = re.compile(r"\bconfidential", re.IGNORECASE)
_LIST_ITEM = re.compile(r"\s*(?:[-*•–—]|\d{1,2}[.)])")
_MAX_SIGNATURE_LINES = 8  # lines under a closing that can still be name, title and contact
_MAX_SIGN_OFFS = 3  # closings stacked at the end, removed one after the other

_MAX_HEADER_LINES = 4  # non-blank lines a wrapped "On ... wrote:" header may span
_MAX_HEADER_SPAN = 6  # lines it may span with the blank ones Gmail's wrapping leaves
_MAX_FIELD_GAP = 2  # wrapped lines between two fields of one header block
_HEADING_LOOKAHEAD = 200  # lines searched below a "--" for our headings
# Longer lines are the member's prose (or an HTML body on one line): no quote header, separator,
# signature delimiter, marker or closing is this long, so those patterns never read one.
_MAX_MARKER_LINE = 2000


def _is_quoted(line: str) -> bool:
    return _QUOTED.match(line) is not None


def _unquote(line: str) -> str:
    m = _QUOTE_MARKS.match(line)
    return (line[m.end() :] if m else line).strip()


def _is_blank(line: str) -> bool:
    return not line.strip(" \t" + _INVISIBLE)


def _is_filler(line: str) -> bool:
    """Blank, invisible or delimiter-only: no words of anyone's."""
    return _DELIMITER_ONLY.fullmatch(line) is not None


def _is_footer(line: str) -> bool:
    return len(line) <= 160 and _FOOTER.fullmatch(line) is not None


def _is_our_marker(line: str) -> bool:
    return len(line) <= _MAX_MARKER_LINE and _OUR_MARKER.fullmatch(line) is not None


def _is_delimiter(line: str) -> bool:
    """A `-- ` signature delimiter or Outlook's line of underscores."""
    if len(line) > _MAX_MARKER_LINE:
        return False
    return bool(_SIG_DELIMITER.fullmatch(line) or _UNDERSCORES.fullmatch(line))


def _next_content(lines: list[str], start: int) -> int | None:
    for index in range(start, len(lines)):
        if not _is_filler(lines[index]):
            return index
    return None


# --- Quote headers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    """A line (or lines) saying that another message follows; `is_strong` when it names a time or
    an address, so it can cut an unquoted original off without a `>` to confirm it."""

    span: int
    is_strong: bool


_WROTE_LAST = re.compile(r"(?:" + _WROTE + r")\s*+$", re.IGNORECASE)
_MAX_COLONLESS = 300


def _header_strength(text: str) -> bool | None:
    """None when `text` is no "On ... wrote:" style header, else whether it is a strong one."""
    if _DATE_HEADER.fullmatch(text):
        return True
    if not text.rstrip(" *").endswith((":", "：", "-")):
        # Every other form ends with its colon (or Zoho's "----"); a few clients drop the colon
        # ("On Wed, 14 Nov 2018 08:14:43 -0200 John Doe <john@doe.com> wrote"): then only with
        # an address and a time, the verb last.
        if len(text) <= _MAX_COLONLESS and _EMAIL.search(text) and _TIME.search(text):
            return True if _HEADER_START.match(text) and _WROTE_LAST.search(text) else None
        return None
    if _ADDRESS_HEADER.fullmatch(text):
        return True
    m = _WROTE_HEADER.fullmatch(text)
    if m is None:
        return None
    # After the verb only a name, an address or a date may follow: "wrote the following:" is prose.
    post = m.group("post").strip(" ,")
    if post and not (_EMAIL.search(post) or re.search(r"\d", post) or _is_name_after_verb(text, post)):
        return None
    return bool(_EMAIL.search(text) or _TIME.search(text) or _is_dated(text))


# A date with its year ("Nov 26, 2013", "19/03/2014", "25.06.2015") dates a header as surely as
# a time does; a year alone ("in 2025 we wrote:") does not.
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_NUMERIC_DATE = re.compile(r"(?<!\d)\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?!\d)")
_MONTH = re.compile(
    r"(?<![^\W\d_])(?:jan|feb|f[ée]v|mar|m[äa]r|apr|avr|abr|may|mai|mei|jun|juin|jul|juil|aug|ao[ûu]|ago"
    r"|sep|set|okt|oct|out|nov|dec|d[ée]c|dez|dic)",
    re.IGNORECASE,
)


def _is_dated(text: str) -> bool:
    return _YEAR.search(text) is not None and (
        _NUMERIC_DATE.search(text) is not None or _MONTH.search(text) is not None
    )


def _is_name_after_verb(text: str, post: str) -> bool:
    """"Am 25.06.2015 um 10:55 schrieb Test user:": languages that put the verb before the name.
    Only after a header's opening word and a date, and only a few capitalized words."""
    words = post.split()
    return (
        _HEADER_START.match(text) is not None
        and (_TIME.search(text) is not None or _is_dated(text))
        and 1 <= len(words) <= 4
        and (words[0][:1].isupper() or not words[0][:1].isalpha())
    )


def _wrote_header(lines: list[str], index: int) -> _Header | None:
    """An "On <date>, <name> wrote:" header at `index`, wrapped over up to four lines by clients."""
    first = lines[index].strip()
    if not first or len(first) > 300 or _is_quoted(lines[index]):
        return None
    strength = _header_strength(first)
    if strength is not None and first.endswith((":", "：", "-")):
        return _Header(span=1, is_strong=strength)
    # "On <date>", a date, or "Name <address>" may wrap; a sentence ending on its line is content.
    may_wrap = "<" in first or (
        _HEADER_START.match(first) is not None and not first.endswith((".", "!", "?"))
    )
    joined = _join_header(lines, index) if may_wrap else None
    if joined is not None:
        return joined
    return None if strength is None else _Header(span=1, is_strong=strength)


def _join_header(lines: list[str], index: int) -> _Header | None:
    """The shortest header that starts at `index` and ends with its colon a few lines down."""
    parts = [lines[index].strip()]
    for end in range(index + 1, min(index + _MAX_HEADER_SPAN, len(lines))):
        if _is_blank(lines[end]):
            continue
        part = lines[end].strip()  # may look quoted: Gmail wraps "<" / "address" / "> wrote:"
        if len(part) > 120 or len(parts) == _MAX_HEADER_LINES:
            return None
        parts.append(part)
        # Only a strong header may swallow lines above its last one: a weak "... wrote:" under a
        # line of content ("3 customers left.\nOne wrote:") must not take that line with it.
        if _header_strength(_joined(parts)) and parts[-1].endswith((":", "：", "-")):
            # "3 new hires" over "On Mon, 3 Nov 2025 ... wrote:": the header starts below.
            if _HEADER_START.match(parts[1]) and _header_strength(_joined(parts[1:])) is not None:
                return None
            return _Header(span=end - index + 1, is_strong=True)
    return None


def _joined(parts: list[str]) -> str:
    """One header line out of wrapped parts, the address closed up again ("< a@b.c >")."""
    # `(?<!\s)`: a run of spaces is tried once, from its start, not again from each space.
    return re.sub(r"<\s+", "<", re.sub(r"(?<!\s)\s+>", ">", " ".join(parts)))


def _field_kind(line: str) -> str | None:
    m = _FIELD.match(line)
    if m is None:
        return None
    return next(key for key in _FIELDS if m.group(key.replace("-", "_")))


def _header_block(lines: list[str], index: int) -> _Header | None:
    """An Outlook-style "From:/Sent:/To:/Subject:" block at `index` (three fields or more)."""
    first = _field_kind(lines[index])
    if first is None or first == "cc":
        return None
    kinds = {first}
    last = index
    end = index + 1
    while end < len(lines) and not _is_blank(lines[end]) and end - last <= _MAX_FIELD_GAP:
        kind = _field_kind(lines[end])
        if kind is not None:
            kinds.add(kind)
            last = end
        end += 1
    if len(kinds) < 3 or "from" not in kinds:  # "Message du :" / "De :" / "A :" / "Sujet :"
        return None
    return _Header(span=last - index + 1, is_strong=True)


def _quote_header(lines: list[str], index: int) -> _Header | None:
    """Any line that announces a quoted or forwarded original at `index`."""
    line = lines[index]
    if _is_quoted(line) or len(line) > _MAX_MARKER_LINE:
        return None
    if _SEPARATOR.fullmatch(line):
        return _Header(span=1, is_strong=True)
    return _header_block(lines, index) or _wrote_header(lines, index)


# --- new_words -----------------------------------------------------------------------------------


def new_words(text: str, sender_name: str = "") -> str:
    """The member's new words from a plain-text body: quotes, quote headers, the quoted or
    forwarded original, `-- ` signatures, mobile footers and a closing or signature block at the
    end removed. "" when nothing is left (an empty reply, only a quote, only a footer).

    `sender_name` (the From display name) lets a bare signature go too: a last short paragraph
    that starts with the sender's own name ("Grace Liu · Liu Ventures").

    Inline replies keep every answer line; a quoted heading of our request stays (unquoted) right
    above the answers under it, so the section splitter can place them.
    """
    lines = _rejoin_wrapped_quotes(_split_trailing_headers(
        [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    ))
    # Below a header with nothing written above, our own unquoted marker means our request.
    last_marker = max(
        (i for i, line in enumerate(lines) if _is_our_marker(line) and not _is_quoted(line)),
        default=-1,
    )
    kept: list[str] = []
    has_content = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if _is_footer(line) and has_content and _quote_follows_footer(lines, index + 1):
            break  # a phone's footer sits between the reply and the original it did not mark
        if _is_footer(line) or _is_our_marker(line):
            index += 1
            continue
        if _is_delimiter(line):
            if _headings_follow(lines, index + 1):
                index += 1  # the member's own separator between sections: no signature has those
                continue
            if _SIG_DELIMITER.fullmatch(line) or has_content:
                kept += _postscript(lines, index + 1)  # "P.S." under the signature is theirs
                break  # a signature, Outlook's separator or a mailing-list footer follows
            index += 1
            continue
        header = _quote_header(lines, index)
        if header is not None:
            after = _next_content(lines, index + header.span)
            if after is not None and _is_quoted(lines[after]):
                # The quote below is dropped line by line, so answers between its lines stay;
                # what closes the text above it (a signature) is no answer.
                kept = _without_sign_off(kept, sender_name) if has_content else kept
                index += header.span
                continue
            if has_content and _is_kept_forward(lines, index, header):
                # A message the member pasted into the update on purpose, their own headings
                # below it: kept, under its "Forwarded message" line.
                block = _header_block(lines, index + 1) if index + 1 < len(lines) else None
                span = 1 + (block.span if block is not None else 0)
                kept += lines[index : index + span]
                index += span
                continue
            if header.is_strong and (has_content or last_marker >= index + header.span):
                # The original follows unquoted (Outlook, Apple Mail, Yahoo); with nothing written
                # above, it is still our own request when our marker is in it: an empty reply.
                break
            if header.is_strong:
                # Nothing written above it (a forward, a bottom post): the text below is all there is.
                index += header.span
                continue
        kept.append(line)
        if not _is_quoted(line) and not _is_filler(line):
            has_content = True
        index += 1
    # The sign-off goes first: under the last quote it would keep our last heading as an answer.
    return _tidy(_without_cover_note(_answers_with_headings(_without_sign_off(kept, sender_name))))


_MAX_COVER_NOTE_LINES = 12
# An assistant's words about sending the update for the member, in our members' languages.
_ON_BEHALF = re.compile(
    r"\b(?:send(?:ing)?|sent|forward(?:ing|ed)?|submit(?:ting|ted)?|writing)\b[^.\n]{0,60}?\bon behalf of\b"
    r"|^\s*on behalf of\b|\basked me to (?:send|forward|submit|pass on)\b"
    r"|\b(?:au nom de|de la part de|en nombre de|de parte de|im (?:auftrag|namen) von|em nome de|namens)\b",
    re.IGNORECASE,
)


def _without_cover_note(lines: list[str]) -> list[str]:
    """Drop a note signed off above the update itself: an assistant's "Richard asked me to send
    his update... Thank you, / Lauren" over the member's headings. What is signed and closed
    before the first heading is a cover letter, not an answer."""
    first_heading = next(
        (i for i, line in enumerate(lines[: _HEADING_LOOKAHEAD]) if is_heading(line) and not is_rating_label(line)),
        None,
    )
    if first_heading is None:
        return lines
    above = [i for i in range(first_heading) if not _is_blank(lines[i])]
    if not above or len(above) > _MAX_COVER_NOTE_LINES:
        return lines
    # Someone sending it for the member says so: "Sending on behalf of Richard", "He asked me to
    # forward his update", "En nombre de Ana:".
    if any(_ON_BEHALF.search(lines[i]) for i in above):
        return lines[first_heading:]
    # The last lines above the heading: a closing, then one or two short name lines.
    for size in (1, 2):
        if len(above) <= size:
            break
        closing = above[-size - 1]
        names = [lines[i].strip() for i in above[-size:]]
        if _CLOSING.fullmatch(lines[closing]) and all(_is_short_name(name) for name in names):
            return lines[first_heading:]
    return lines


def _is_short_name(line: str) -> bool:
    words = line.split()
    return 1 <= len(words) <= 3 and all(word[0].isupper() and word.isalpha() for word in words)


_MAX_FORWARD_LINES = 200  # lines of a pasted message searched for the member's headings below it
_POSTSCRIPT = re.compile(r"\s*p\.?\s?s\.?(?:\s|:|-)", re.IGNORECASE)


def _quote_follows_footer(lines: list[str], start: int) -> bool:
    """Below a mobile footer: text that is not the member's (a greeting to them, the original),
    i.e. anything before our own headings; a heading of ours below keeps the text."""
    after = _next_content(lines, start)
    return after is not None and not _POSTSCRIPT.match(lines[after]) and not _headings_follow(lines, after)


def _is_kept_forward(lines: list[str], index: int, header: _Header) -> bool:
    """A "Forwarded message" line with the member's own headings below the forwarded text."""
    if header.span != 1 or not _FORWARD_WORDS.search(lines[index]):
        return False
    start = index + 1
    block = _header_block(lines, start) if start < len(lines) else None
    start += block.span if block is not None else 0
    for line in lines[start : start + _MAX_FORWARD_LINES]:
        if _is_quoted(line) or _SEPARATOR.fullmatch(line) or _is_our_marker(line):
            return False  # a quote, another message, or our own request forwarded back to us
        if _is_delimiter(line) and _SIG_DELIMITER.fullmatch(line):
            return False
        if is_heading(line) and not is_rating_label(line):
            return True
    return False


def _postscript(lines: list[str], start: int) -> list[str]:
    """A "P.S." paragraph below the signature, before any quote: the member's words."""
    for index in range(start, min(start + _MAX_SIGNATURE_LINES + 4, len(lines))):
        line = lines[index]
        if _is_quoted(line) or _quote_header(lines, index) is not None:
            return []
        if _POSTSCRIPT.match(line):
            end = index
            while end < len(lines) and not _is_blank(lines[end]) and not _is_quoted(lines[end]):
                end += 1
            return ["", *lines[index:end]]
    return []


# "... all good. On Mon, Mar 1, 2027 at 8:00 AM, Anna <a@b.example> wrote:": a header that a
# client put at the end of the member's own line. Where it may start: a word that opens one.
_HEADER_OPENING = re.compile(r"(?<=[.!?)\]]\s)(?:" + _ON_WORDS + r")\b", re.IGNORECASE)
_MAX_TRAILING_HEADER = 300
_PROSE_WORD = re.compile(r"(?<![^\W\d_])[^\W\d_]{3,}+")
_MIN_PROSE_WORDS = 3


_WRAP_AT = 60  # a quoted line this long, cut mid-sentence, was wrapped by the client


def _rejoin_wrapped_quotes(lines: list[str]) -> list[str]:
    """A client that wraps the quote after adding "> " leaves the tail of a long quoted line
    unquoted ("> ... pharetra d" / "ignissim odio?"): such a tail (right under it, starting in
    lower case, short) is quoted again."""
    result = list(lines)
    for index in range(1, len(lines)):
        line, above = lines[index], lines[index - 1]
        if not line or _is_quoted(line) or not _is_quoted(above) or len(above) < _WRAP_AT:
            continue
        if above.rstrip().endswith((".", "!", "?", ":", ";")) or not line[:1].islower():
            continue
        if len(line.split()) <= _MAX_TAIL_WORDS:
            result[index] = "> " + line
    return result


_MAX_TAIL_WORDS = 6


def _prose_before(text: str) -> bool:
    """Words of the member's, not a date's ("пн, 3 нояб. 2025 г."): three words, or fewer with no
    digit among them ("Yes, count me in.", "Thanks!"), the shortest answers people write."""
    words = len(_PROSE_WORD.findall(text))
    return words >= _MIN_PROSE_WORDS or (words >= 1 and not any(ch.isdigit() for ch in text))


def _split_trailing_headers(lines: list[str]) -> list[str]:
    """Put a quote header that ends a line of text on a line of its own."""
    result: list[str] = []
    for line in lines:
        tail_start = max(0, len(line) - _MAX_TRAILING_HEADER)
        if len(line) > _MAX_MARKER_LINE or not line.rstrip().endswith((":", "：")) or _is_quoted(line):
            result.append(line)
            continue
        for m in _HEADER_OPENING.finditer(line, tail_start):
            tail = line[m.start() :]
            # Words of the member's before it ("All good here."), not a date's ("пн, 3 нояб. 2025 г.").
            if _prose_before(line[: m.start()]) and _header_strength(tail):
                result += [line[: m.start()].rstrip(), "", tail]
                break
        else:
            result.append(line)
    return result


def widest_cut(text: str) -> str:
    """What a person would still call the member's words when `new_words` left nothing: every
    line that is not quoted, a quote header, a separator, a footer or our marker, and nothing below
    a strong quote header that follows such a line (the original, unquoted). "" if none."""
    lines = _split_trailing_headers(
        [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    )
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        header = _quote_header(lines, index)
        if header is not None:
            if header.is_strong and any(ch.isalnum() for kept_line in kept for ch in kept_line):
                break  # below words of the member's, the original follows unquoted
            index += header.span
            continue
        if not (_is_quoted(line) or _is_footer(line) or _is_our_marker(line) or _is_delimiter(line)):
            kept.append(line)
        index += 1
    result = _tidy(kept)
    return result if any(ch.isalnum() for ch in result) else ""


def _is_signature_line(line: str) -> bool:
    """A name, title or contact line, as under "Best,": "Anna Berg", "CEO | Berg Robotics"."""
    words = line.split()
    if _PHONE.search(line) or _ADDRESS_OR_LINK.search(line) or _DISCLAIMER.search(line):
        return True
    if line.endswith((".", "!", "?", ":", ";")) or _LIST_ITEM.match(line):
        return False
    if len(words) <= 6 and re.search(r"[|·•,]", line):
        return True
    return len(words) <= 4 and all(word[0].isupper() or not word[0].isalpha() for word in words)


def _is_closing(lines: list[str], index: int) -> bool:
    line = lines[index]
    if len(line) > _MAX_MARKER_LINE:
        return False
    if _CLOSING.fullmatch(line):
        return True
    name = _DASH_NAME.fullmatch(line)
    if name is None or not all(word[0].isupper() for word in name.group(1).split()):
        return False
    # "-Anna" under a blank line; the last item of a "-item" list is no signature.
    above = [text for text in lines[:index] if text.strip()]
    return bool(above) and not lines[index - 1].strip() and not _LIST_ITEM.match(above[-1])


# Lower-case particles inside names ("Pieter van Dijk", "Maria da Silva", "Ludwig von Trapp").
_NAME_PARTICLES = frozenset(
    {"van", "de", "der", "den", "von", "da", "di", "du", "la", "le", "dos", "das", "del", "y", "e", "bin", "al", "ten", "ter"}
)


def _is_name(line: str) -> bool:
    """Two to five capitalized words of letters, initials and particles allowed: how a signature
    block starts ("Ben Okafor", "William J. Hartley", "Pieter van Dijk")."""
    words = line.split()
    if not 2 <= len(words) <= 5 or not words[0][0].isupper() or not words[-1][0].isupper():
        return False
    return all(
        word in _NAME_PARTICLES
        or (word[0].isupper() and word.replace("-", "").replace("'", "").replace("’", "").rstrip(".").isalpha())
        for word in words
    )


# Words of legal notices, banners and disclaimers in our members' languages: a closing paragraph
# dense with them is boilerplate under a signature, not an update.
_LEGAL_WORDS = re.compile(
    r"\b(?:confidential\w*|privileged|intended|recipients?|addressee|prohibited|disclos\w+|liab\w+"
    r"|notify|notice|delete|erroneous\w*|unauthori[sz]ed|regulations?|authori[sz]ation|fraud|wire"
    r"|disclaimer|originated|outside|caution|attachments?|fdic|lender|nmls|hipaa|export|itar|wiring"
    r"|responsible|instructions|verif\w+"
    r"|confidentialit[ée]|destinataire|vertrouwelijk\w*|geadresseerde\w*|ontvangen|verwijderen"
    r"|vertraulich\w*|empf[äa]nger|confidencial\w*|destinatario|confidenciais|destinat[áa]rio"
    r"|courriel|erreur|rechten|ontleend)\b",
    re.IGNORECASE,
)
_MIN_LEGAL_WORDS = 3
_WEB_ADDRESS = re.compile(r"(?:www\.)?[\w-]+(?:\.[\w-]+)+/?")


def _is_boilerplate(paragraph: list[str]) -> bool:
    """A disclaimer, a legal notice or a mail gateway's banner: a paragraph whose first words
    announce one ("CONFIDENTIALITY NOTICE:", "This email...") or that is dense with legal words."""
    text = " ".join(paragraph)
    if _DISCLAIMER_START.match(text) and (
        _DISCLAIMER_TERMS.search(text) or (_ATTACHMENTS.search(text) and _CONFIDENTIAL.search(text))
    ):
        return True
    words = len(text.split())
    found = len(_LEGAL_WORDS.findall(text, 0, 4000))
    return words >= 6 and found >= _MIN_LEGAL_WORDS and found * 20 >= min(words, 300)


def _is_name_line(line: str) -> bool:
    """A signature's first line: a name, maybe with letters or a title after it
    ("Raymond Osei, MBA | Chief Executive Officer", "Douglas Pruitt | President")."""
    head = re.split(r"[,|·•–—]", line, maxsplit=1)[0]
    return _is_name(head.strip())


def _is_contact_line(line: str) -> bool:
    return bool(_PHONE.search(line) or _EMAIL.search(line) or _ADDRESS_OR_LINK.search(line)
                or _WEB_ADDRESS.fullmatch(line.strip()))


def _is_title_line(line: str) -> bool:
    """A short line of a signature block: a title, a company, a licence ("Algemeen directeur",
    "Van Dijk Kassenbouw B.V.", "NMLS #2231987")."""
    words = line.split()
    if not words or len(words) > 8 or _LIST_ITEM.match(line):
        return False
    if line.endswith(".") and len(words[-1].replace(".", "")) > 4:
        return False  # a sentence; "Inc.", "B.V.", "inc." end names of companies
    return not line.endswith(("!", "?", ":", ";"))


def _is_signature_block(paragraph: list[str]) -> bool:
    """A last paragraph that is a disclaimer, or a name over a title and a phone or an address:
    a signature without "-- " (Outlook's, typed once in the settings)."""
    if _is_boilerplate(paragraph):
        return True
    # Name, title and a phone or an address at least: "Call Bo Lind" over a number is an answer.
    return (
        3 <= len(paragraph) <= _MAX_SIGNATURE_LINES
        and _is_name_line(paragraph[0])
        and all(_is_signature_line(line) or _is_contact_line(line) or _is_title_line(line)
                for line in paragraph[1:])
        and any(_is_contact_line(line) for line in paragraph[1:])
    )


def _without_sign_off(lines: list[str], sender_name: str = "") -> list[str]:
    """Drop what closes the member's text (above a quote at the end, if any): a closing line and
    the name, title and contact lines under it ("Best," / "Anna"; "Danke und viele Grüße" / name
    / "CEO | Acme" / phone), a disclaimer, a name over a title and a phone number. It is no part
    of the update, and left in it would be read as the answer of the last section."""
    for _ in range(_MAX_SIGN_OFFS):  # "Thanks!" over "Best regards," over "//Jef"
        shorter = _without_last_sign_off(lines, sender_name)
        if len(shorter) == len(lines):
            break
        lines = shorter
    return lines


def _without_last_sign_off(lines: list[str], sender_name: str = "") -> list[str]:
    end = len(lines)
    while end and (_is_blank(lines[end - 1]) or _is_quoted(lines[end - 1])):
        end -= 1
    start = end
    while start and not _is_blank(lines[start - 1]) and not _is_quoted(lines[start - 1]):
        start -= 1
    paragraph = [line.strip() for line in lines[start:end]]
    if start < end and (_is_signature_block(paragraph) or _is_own_signature(paragraph, sender_name)):
        if any(not _is_blank(line) and not _is_quoted(line) for line in lines[:start]):
            return lines[:start] + lines[end:]
    below = 0
    for index in range(end - 1, -1, -1):
        line = lines[index]
        if _is_blank(line):
            continue
        if _is_quoted(line) or below > _MAX_SIGNATURE_LINES:
            break
        if _is_closing(lines, index):
            return lines[:index] + lines[end:]
        if not _is_signature_line(line.strip()):
            break
        below += 1
    return lines


def _is_own_signature(paragraph: list[str], sender_name: str) -> bool:
    """A short last paragraph opening with the sender's own name: "Grace Liu · Liu Ventures",
    or just "Carmen". Nobody starts an answer with their own full name."""
    name = " ".join(sender_name.split()).casefold()
    if not name or not paragraph or len(paragraph) > _MAX_SIGNATURE_LINES:
        return False
    first = paragraph[0].casefold()
    first_name = name.split()[0]
    rest = first[len(name):].strip()
    if len(name.split()) >= 2 and first.startswith(name) and (not rest or rest[0] in "·|,-–—/("):
        return all(_is_signature_line(line) for line in paragraph[1:])
    return len(paragraph) == 1 and first.strip(" .,!-–—") == first_name


def _headings_follow(lines: list[str], start: int) -> bool:
    """True when one of our section headings stands unquoted below `start`, before any quote."""
    for index in range(start, min(start + _HEADING_LOOKAHEAD, len(lines))):
        line = lines[index]
        if _is_quoted(line) or _quote_header(lines, index) is not None:
            return False
        if is_heading(line) and not is_rating_label(line):
            return True
    return False


def _answers_with_headings(lines: list[str]) -> list[str]:
    """Drop quoted lines, except our quoted headings that have the member's answers under them.

    Read bottom-up: a section heading keeps if an answer (or a kept rating label) follows before
    the next quoted section heading; a rating label ("Business:") only if its value is next.
    """
    is_quoted = [_is_quoted(line) for line in lines]
    result: list[str | None] = [None if quoted else line for line, quoted in zip(lines, is_quoted)]
    answer_below = False
    answer_next = False
    for index in range(len(lines) - 1, -1, -1):
        if not is_quoted[index]:
            if not _is_filler(lines[index]):
                answer_below = answer_next = True
            continue
        body = _unquote(lines[index])
        if not body:
            continue
        if is_rating_label(body):
            if answer_next:
                result[index] = body
        elif is_heading(body):
            if answer_below:
                result[index] = body
            answer_below = False
        answer_next = False
    return [line for line in result if line is not None]


def _tidy(lines: list[str]) -> str:
    """Join lines: one blank line at most in a row, no delimiter lines or blanks at either end."""
    result: list[str] = []
    for line in lines:
        if _is_blank(line):
            if result and result[-1]:
                result.append("")
        else:
            result.append(line)
    while result and _is_filler(result[-1]):
        result.pop()
    while result and _is_blank(result[0]):
        result.pop(0)
    return "\n".join(result)


# --- html_to_text --------------------------------------------------------------------------------

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
_SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript"})
_LINE_BLOCKS = frozenset(
    {"address", "article", "aside", "caption", "center", "dd", "div", "dl", "dt", "fieldset"}
    | {"figcaption", "figure", "footer", "form", "header", "li", "main", "nav", "section", "tr"}
)
_PARAGRAPHS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "blockquote", "hr"}
)
# Tags whose start closes an open one of their kind ("<li>a<li>b") unless a scope tag is nearer.
_IMPLIED_END_SCOPES = {
    "p": frozenset({"div", "blockquote", "td", "th", "li", "body", "section", "article"}),
    "li": frozenset({"ul", "ol"}),
    "dt": frozenset({"dl"}),
    "dd": frozenset({"dl"}),
    "tr": frozenset({"table", "tbody", "thead", "tfoot"}),
    "td": frozenset({"tr", "table"}),
    "th": frozenset({"tr", "table"}),
    "option": frozenset({"select"}),
}

_MAX_DEPTH = 150  # element nesting kept; rendering recurses once per level

# Where client markup marks the quoted original.
# By client: Gmail, Yahoo, Thunderbird, Proton Mail, Zoho, Apple Mail's original, Outlook's header.
_QUOTE_CLASSES = re.compile(
    r"\b(?:gmail_quote\w*|gmail_extra|yahoo_quoted\w*|moz-cite-prefix|protonmail_quote|zmail_extra"
    r"|AppleOriginalContents|OutlookMessageHeader)\b"
)
# Where the original starts, everything after it quoted: Outlook (desktop, web, mobile), Zimbra.
_CUT_IDS = re.compile(
    r"^(?:x_)?divRplyFwdMsg$|^mail-editor-reference-message-container$|^(?:x_)?appendonsend$|^zwchr$"
)
_SIGNATURE = re.compile(r"signature", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\n\r\f]+")
_ATTRIBUTION = re.compile(r"\b(?:gmail_attr|moz-cite-prefix)\b")
# Word (desktop Outlook) draws list bullets as a "·" glyph and no-break spaces.
_GLYPH_BULLET = re.compile(r"^( *)[·•▪] +", re.MULTILINE)


@dataclass
class _Node:
    tag: str
    attrs: dict[str, str]
    children: list[_Node | str] = field(default_factory=list)

    def has_class(self, pattern: re.Pattern[str]) -> bool:
        return pattern.search(self.attrs.get("class", "")) is not None


class _TreeBuilder(HTMLParser):
    """A forgiving tree of mail HTML: unknown end tags are ignored, open ones closed at the end."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("root", {})
        self._stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if len(self._stack) > _MAX_DEPTH:
            return  # hostile nesting: deeper tags are ignored, their text joins the parent
        scopes = _IMPLIED_END_SCOPES.get(tag, frozenset())
        for position in range(len(self._stack) - 1, 0, -1) if scopes else ():
            open_tag = self._stack[position].tag
            if open_tag == tag:
                del self._stack[position:]
                break
            if open_tag in scopes:
                break
        node = _Node(tag, {name: value or "" for name, value in attrs})
        self._stack[-1].children.append(node)
        if tag not in _VOID:
            self._stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self._stack[-1].tag == tag:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for position in range(len(self._stack) - 1, 0, -1):
            if self._stack[position].tag == tag:
                del self._stack[position:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].children.append(data)


def _is_quote(node: _Node) -> bool:
    return (node.tag == "blockquote" and node.attrs.get("type", "").lower() == "cite") or (
        node.has_class(_QUOTE_CLASSES)
    )


def _is_cut(node: _Node) -> bool:
    return _CUT_IDS.match(node.attrs.get("id", "")) is not None


def _text_of(node: _Node) -> str:
    return "".join(
        child if isinstance(child, str) else _text_of(child)
        for child in node.children
        if isinstance(child, str) or child.tag not in _SKIPPED
    )


def _has_answers_after_quote(root: _Node) -> bool:
    """True when the member wrote between or after blockquotes: an inline reply to keep whole."""
    seen_quote = False

    def walk(node: _Node) -> bool | None:
        # None: keep walking; True: an answer after a quote; False: stop (the cut is reached).
        nonlocal seen_quote
        for child in node.children:
            if isinstance(child, str):
                words = child.strip(" \t\n\r\f\xa0" + _INVISIBLE)
                if seen_quote and words and not _SIG_DELIMITER.fullmatch(words):
                    return True
                continue
            if child.tag in _SKIPPED:
                continue
            if _is_cut(child):
                return False
            if child.tag == "blockquote":
                seen_quote = True
                continue
            if child.has_class(_SIGNATURE) or child.attrs.get("id", "").lower() == "signature":
                continue
            if child.has_class(_ATTRIBUTION):
                continue
            found = walk(child)
            if found is not None:
                return found
        return None

    return walk(root) is True


class _Writer:
    """Text out of HTML blocks: asks for line breaks lazily so nested blocks do not stack them."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._pending = 0  # newlines the next text needs before it
        self._prefixes: list[str] = []  # "> " per open blockquote, "  " per open list item
        self._marker = ""  # "- " or "1. " waiting for the list item's first line
        self._at_line_start = True

    def _trailing_newlines(self) -> int:
        count = 0
        for chunk in reversed(self.out):
            stripped = chunk.rstrip("\n")
            count += len(chunk) - len(stripped)
            if stripped:
                break
        return count

    def block(self, newlines: int) -> None:
        self._pending = max(self._pending, newlines)

    def newline(self) -> None:
        self._flush()
        self.out.append("\n")
        self._at_line_start = True

    def _flush(self) -> None:
        if self._pending and self.out:
            needed = self._pending - self._trailing_newlines()
            if needed > 0:
                self.out.append("\n" * needed)
                self._at_line_start = True
        self._pending = 0

    def write(self, text: str) -> None:
        for number, piece in enumerate(text.split("\n")):
            if number:
                self.out.append("\n")
                self._at_line_start = True
            if not piece.strip(" "):
                # Whitespace between tags: one space inside a line, nothing at its start.
                is_inside_line = piece and not self._at_line_start and not self._pending
                if is_inside_line and self.out and not self.out[-1].endswith(" "):
                    self.out.append(" ")
                continue
            self._flush()
            if self._at_line_start:
                piece = piece.lstrip(" ")
                if not piece:
                    continue
                self.out.append(self._line_prefix())
                self._at_line_start = False
            elif self.out and self.out[-1].endswith(" ") and piece.startswith(" "):
                piece = piece.lstrip(" ")
            self.out.append(piece)

    def _line_prefix(self) -> str:
        prefix = "".join(self._prefixes)
        if self._marker:
            prefix = prefix[:-2] + self._marker if prefix.endswith("  ") else prefix + self._marker
            self._marker = ""
        return prefix

    def push(self, prefix: str, marker: str = "") -> None:
        self._prefixes.append(prefix)
        self._marker = marker

    def pop(self) -> None:
        self._prefixes.pop()
        self._marker = ""

    def text(self) -> str:
        lines = "".join(self.out).replace("\xa0", " ").split("\n")
        return "\n".join(line.rstrip() for line in lines)


def _link_text(node: _Node) -> str:
    text = " ".join(_text_of(node).split())
    href = node.attrs.get("href", "").strip()
    if not text:
        return ""
    if href.lower().startswith("mailto:"):
        href = href[len("mailto:") :].split("?", 1)[0]
    elif not href.lower().startswith(("http://", "https://")):
        return text
    bare = re.sub(r"^https?://", "", href, flags=re.IGNORECASE).rstrip("/")
    if text.rstrip("/") in (href.rstrip("/"), bare):
        return text
    return f"{text} ({href})"


def _render(node: _Node, writer: _Writer, *, drop_quotes: bool, is_pre: bool = False) -> bool:
    """Write `node`'s children; False once the cut (Outlook's reply header) is reached."""
    list_number = 0
    for child in node.children:
        if isinstance(child, str):
            # Outside <pre> whitespace collapses; inside, no-break spaces survive line stripping.
            writer.write(child.replace(" ", "\xa0") if is_pre else _SPACES.sub(" ", child))
            continue
        tag = child.tag
        if tag in _SKIPPED or tag == "img":
            continue
        if _is_cut(child):
            return False
        if drop_quotes and _is_quote(child):
            continue
        if tag == "br":
            writer.newline()
            continue
        if tag == "a":
            writer.write(_link_text(child))
            continue
        if tag == "tr" and (cells := _short_cells(child)) is not None:
            # A small data row (ratings in a table) reads as one line, "5 | 6 | 7"; a layout
            # table's cells hold paragraphs and keep them.
            writer.block(1)
            writer.write(" | ".join(cells))
            writer.block(1)
            continue
        if tag == "p" and "Mso" in child.attrs.get("class", ""):
            gap = 1  # Word's paragraphs have no margins: a new line, not a blank one
        elif tag in ("ul", "ol") and node.tag == "li":
            gap = 1  # a nested list continues its item
        else:
            gap = 2 if tag in _PARAGRAPHS else 1 if tag in _LINE_BLOCKS else 0
        if tag in ("td", "th"):
            writer.write(" ")
        writer.block(gap)
        if tag == "li":
            list_number += 1
            marker = f"{list_number}. " if node.tag == "ol" else "- "
            writer.push("  ", marker)
        elif tag == "blockquote":
            writer.push("> ")
        is_open = _render(child, writer, drop_quotes=drop_quotes, is_pre=is_pre or tag == "pre")
        if tag in ("li", "blockquote"):
            writer.block(gap)
            writer.pop()
        writer.block(gap)
        if not is_open:
            return False
    return True


_MAX_CELL = 40  # characters in a cell of a data row; longer ones are layout


def _short_cells(row: _Node) -> list[str] | None:
    """The texts of a table row's cells when there are two or more and all are short words with
    no table inside, else None."""
    cells = [c for c in row.children if isinstance(c, _Node) and c.tag in ("td", "th")]
    if len(cells) < 2 or any(isinstance(c, str) and c.strip() for c in row.children):
        return None
    texts = []
    for cell in cells:
        text = " ".join(_text_of(cell).replace("\xa0", " ").split())
        if len(text) > _MAX_CELL or _has_tag(cell, "table", 0):
            return None
        texts.append(text)
    return texts if any(texts) else None


def _has_tag(node: _Node, tag: str, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    return any(isinstance(c, _Node) and (c.tag == tag or _has_tag(c, tag, depth + 1)) for c in node.children)


def html_to_text(html: str) -> str:
    """Plain text of an HTML body: paragraphs and line breaks kept, lists as "- item", links as
    "text (url)", no markup. The quoted original is dropped where the client's markup marks it
    (Gmail, Apple Mail, Outlook, Yahoo, Thunderbird), unless the member answered between the
    quotes: then the quotes stay as "> " lines for `new_words` to treat as an inline reply.
    """
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    writer = _Writer()
    _render(builder.root, writer, drop_quotes=not _has_answers_after_quote(builder.root))
    text = _GLYPH_BULLET.sub(r"\1- ", re.sub(r"\n{3,}", "\n\n", writer.text()))
    return text.strip("\n")
