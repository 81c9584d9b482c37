"""Split a member's reply into the sections of the update request.

Pure functions over strings: no I/O, no clock, no settings. Conservative by design: a line we
cannot place goes to "other", never away (the zulip email gateway's "when in doubt, keep the text").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from app.reading import placing


@dataclass(frozen=True, slots=True)
class Section:
    """One heading of the update request; templates and the packet loop over SECTIONS."""

    key: str
    title: str
    hint: str

    @property
    def label(self) -> str:
        """The title without its parenthesis ("Last month's commitments"): for packet headings."""
        return self.title.partition("(")[0].rstrip()

    @property
    def parenthesis(self) -> str:
        """What the title says in parentheses ("done / partial / dropped"), or ""."""
        return self.title.partition("(")[2].rpartition(")")[0]


# The single source of truth for section keys, titles and order. Text templates upper-case the
# title; the parser recognizes the title in any case, with or without its parenthesis.
SECTIONS: tuple[Section, ...] = (
    Section("ratings", "Ratings (1-10)", "Business, Personal and Family, each from 1 to 10"),
    Section("wins", "Wins", "What went well since we last met"),
    Section("challenges", "Challenges", "What is hard right now"),
    Section(
        "commitments",
        "Last month's commitments (done / partial / dropped)",
        "For each commitment: done, partial or dropped",
    ),
    Section(
        "topic",
        "Topic for the group (priority A, B or C)",
        "What you want the group's help with; A is urgent",
    ),
    Section("asks", "Asks", "Introductions, people, money, partners, clients, know-how"),
    Section("learned", "What I learned", "One thing worth passing on"),
    Section("next_commitments", "Next commitments", "What you will do before the next meeting"),
)
SECTION_KEYS: tuple[str, ...] = tuple(section.key for section in SECTIONS)
OTHER = "other"
# The request lists these under RATINGS, one per line ("Business:"); also the keys of `ratings`.
RATING_KEYS: tuple[str, ...] = ("business", "personal", "family")

# What members actually type instead of our titles. Lower case; an apostrophe is optional when
# matching ("last months commitments"). Longer phrases win, so "issue for the group" is a topic
# while "issues" is a challenge.
_HEADING_PHRASES: dict[str, tuple[str, ...]] = {
    "ratings": ("ratings", "rating", "scores", "ratings 1-10", "ratings 1 to 10"),
    "wins": ("wins", "win", "highlights", "successes", "wins since we last met"),
    "challenges": ("challenges", "challenge", "problems", "issues", "struggles", "lowlights"),
    "commitments": (
        "commitments",
        "last month's commitments",
        "last meeting's commitments",
        "commitments from last month",
        "commitments from last meeting",
        "previous commitments",
        "progress",
        "progress on commitments",
        "commitment progress",
        "commitments progress",
        "commitments update",
    ),
    "topic": (
        "topic",
        "topics",
        "topic for the group",
        "topic for the meeting",
        "issue for the group",
        "issues for the group",
        "question for the group",
        "discussion topic",
    ),
    "asks": ("ask", "asks", "requests", "request", "i need", "asks for the group"),
    "learned": (
        "learned",
        "learnt",
        "what i learned",
        "what i learnt",
        "what i've learned",
        "learnings",
        "learning",
        "lessons",
        "lessons learned",
        "lessons learnt",
        "key learnings",
    ),
    "next_commitments": (
        "next commitments",
        "next month",
        "next month's commitments",
        "commitments for next month",
        "commitments for next meeting",
        "goals for next month",
        "next month's goals",
        "next steps",
    ),
}


# The same headings in the other languages our members write in (and the words they use for
# them), by language: a data table, so a language is one entry and not a rule. Lower case.
_HEADINGS_BY_LANGUAGE: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "ratings": ("numbers", "my numbers", "score", "ratings (1-10)", "ratings 1 to 10", "rating this month"),
        "wins": ("the wins", "the good", "good", "good news", "what went well", "wins since we last met",
                 "the good stuff", "bright spots", "celebrations"),
        "challenges": ("the not so good", "not so good", "the bad", "the hard stuff", "hard stuff",
                       "the challenges", "what is hard", "what's hard", "concerns", "headaches"),
        "commitments": ("last month", "last month's", "commitments check-in", "commitments check in",
                        "commitment check-in", "commitments review", "status of commitments",
                        "last meeting", "since last meeting"),
        "topic": ("my topic", "topic for the month", "the topic", "discussion", "for discussion",
                  "what i'd like to discuss", "group topic"),
        "asks": ("need from the group", "what i need from the group", "what i need from you all",
                 "what i need", "need help with", "help needed", "where i could use help",
                 "help wanted", "the ask", "my ask", "asks of the group", "ask of the group"),
        "learned": ("lesson", "lesson learned", "what i learned this month", "takeaway", "takeaways",
                    "insight", "insights"),
        "next_commitments": ("next", "before we meet", "before next meeting", "before the next meeting",
                             "commitments for next time", "next up", "next month's plan",
                             "coming up", "new commitments", "commitments for the coming month"),
    },
    "es": {
        "ratings": ("calificaciones", "calificación", "puntuaciones", "puntuación", "valoraciones"),
        "wins": ("logros", "éxitos", "victorias", "lo bueno", "buenas noticias"),
        "challenges": ("retos", "desafíos", "problemas", "dificultades", "lo difícil"),
        "commitments": ("compromisos del mes pasado", "compromisos anteriores", "compromisos"),
        "topic": ("tema para el grupo", "tema", "tema del mes", "asunto para el grupo"),
        "asks": ("lo que necesito", "necesito", "peticiones", "pedidos", "solicitudes", "ayuda"),
        "learned": ("aprendizaje", "aprendizajes", "lo que aprendí", "qué aprendí", "lecciones"),
        "next_commitments": ("próximos compromisos", "proximos compromisos", "siguientes compromisos",
                             "próximo mes", "compromisos para el próximo mes"),
    },
    "fr": {
        "ratings": ("évaluations", "mes notes", "scores"),
        "wins": ("bons coups", "réussites", "succès", "victoires", "ce qui va bien"),
        "challenges": ("défis", "difficultés", "problèmes", "enjeux"),
        "commitments": ("engagements du mois dernier", "engagements précédents", "engagements"),
        "topic": ("sujet pour le groupe", "sujet", "thème", "question pour le groupe"),
        "asks": ("demandes", "besoins", "ce dont j'ai besoin", "j'ai besoin"),
        "learned": ("ce que j'ai appris", "apprentissages", "leçons", "leçon"),
        "next_commitments": ("prochains engagements", "engagements pour le mois prochain", "mois prochain"),
    },
    "de": {
        "ratings": ("bewertungen", "bewertung", "noten", "zahlen"),
        "wins": ("erfolge", "highlights", "was gut lief"),
        "challenges": ("herausforderungen", "probleme", "schwierigkeiten"),
        "commitments": ("zusagen vom letzten monat", "vorsätze vom letzten monat", "zusagen", "vorsätze",
                        "verpflichtungen"),
        "topic": ("thema für die gruppe", "thema"),
        "asks": ("bitten", "anliegen", "was ich brauche", "anfragen"),
        "learned": ("was ich gelernt habe", "gelernt", "erkenntnisse", "lektion"),
        "next_commitments": ("nächste zusagen", "nächste schritte", "nächster monat", "neue zusagen"),
    },
    "pt": {
        "ratings": ("classificações", "classificacoes", "notas", "avaliações", "pontuações"),
        "wins": ("vitórias", "conquistas", "sucessos", "o que correu bem"),
        "challenges": ("desafios", "problemas", "dificuldades"),
        "commitments": ("compromissos do mês passado", "compromissos anteriores", "compromissos"),
        "topic": ("tema para o grupo", "tema", "assunto para o grupo"),
        "asks": ("pedidos", "o que preciso", "preciso de", "solicitações"),
        "learned": ("o que aprendi", "aprendizagem", "aprendizado", "lições"),
        "next_commitments": ("próximos compromissos", "proximos compromissos", "próximo mês"),
    },
    "nl": {
        "ratings": ("cijfers", "scores", "beoordeling", "beoordelingen"),
        "wins": ("successen", "overwinningen", "wat goed ging"),
        "challenges": ("uitdagingen", "problemen", "knelpunten"),
        "commitments": ("toezeggingen vorige maand", "afspraken vorige maand", "toezeggingen",
                        "voornemens vorige maand"),
        "topic": ("onderwerp voor de groep", "onderwerp", "thema"),
        "asks": ("vragen aan de groep", "vragen", "verzoeken", "wat ik nodig heb"),
        "learned": ("geleerd", "wat ik geleerd heb", "lessen", "les"),
        "next_commitments": ("volgende toezeggingen", "nieuwe toezeggingen", "volgende maand"),
    },
}
for _language in _HEADINGS_BY_LANGUAGE.values():
    for _key, _phrases in _language.items():
        _HEADING_PHRASES[_key] = (*_HEADING_PHRASES[_key], *_phrases)


def _squash(text: str) -> str:
    """Letters and digits only, lower case: for comparing phrases whatever the punctuation."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


_PHRASE_TO_KEY: dict[str, str] = {
    _squash(phrase): key for key, phrases in _HEADING_PHRASES.items() for phrase in phrases
}
for _section in SECTIONS:
    _PHRASE_TO_KEY[_squash(_section.label)] = _section.key


def _phrase_pattern(phrase: str) -> str:
    words = [re.escape(word).replace("'", "['’‘`]?") for word in phrase.split()]
    return r"\s+".join(words)


_ALL_PHRASES = sorted(
    {s.label.lower() for s in SECTIONS}
    | {p for phrases in _HEADING_PHRASES.values() for p in phrases},
    key=len,
    reverse=True,
)
# "My wins", "Our asks", "Challenges this month" are the same headings.
_HEADING_START = re.compile(
    r"(?:(?:my|our|mis|mes|nos|meine|unsere|mijn|onze|os\s+meus|as\s+minhas|minhas|meus)\s+)?(?P<phrase>"
    + "|".join(_phrase_pattern(p) for p in _ALL_PHRASES)
    + r")(?:\s+this\s+month)?(?![^\W_]|['’])",
    re.IGNORECASE,
)
_WORD_START = re.compile(r"(?<![^\W_])[^\W_]")


def _heading_word(label: str) -> re.Match[str] | None:
    """Our heading's words starting at a word of a short label ("my topic (B)", "One ask I forgot")."""
    for start in _WORD_START.finditer(label):
        m = _HEADING_START.match(label, start.start())
        if m is not None:
            return m
    return None


# Decorations in front of a heading, in any order: quoting, markdown, numbering, bold.
_PREFIX = re.compile(r"(?:>+|#{1,6}(?!\w)|\(?\d{1,2}[.)](?!\d)|[*_]{1,3}|\s+)")
_TAIL_EMPHASIS = re.compile(r"[*_]{1,3}")
_TAIL_PAREN = re.compile(r"\s*\((?P<paren>[^()]{0,60})\)")
# A run of separators is read at once ("Wins:::" is one step, not one per colon).
_TAIL_SEPARATOR = re.compile(r"(?:\s*+:|\s*+[–—]|\s++-++(?=\s|$))++|\s*+\.$")

# Parentheses and hints that belong to our own request text, so quoting them back is no answer.
_OWN_WORDS: frozenset[str] = frozenset(
    {_squash(s.parenthesis) for s in SECTIONS if s.parenthesis}
    | {_squash(s.hint) for s in SECTIONS}
    | {_squash("1 to 10")}
)

# The HTML request shows each hint as its own paragraph under the title; an HTML reply can bring
# it back as a plain line.
_HINTS: frozenset[str] = frozenset(_squash(s.hint) for s in SECTIONS)

# Each run of spaces is possessive (`\s*+`) and read once: five optional `\s*` in a row took 22 s
# on "business", 190 spaces and a letter.
# The three ratings in the words members use, by language (lower case): a data table.
_RATING_WORDS: dict[str, tuple[str, ...]] = {
    "business": ("business", "biz", "work", "negocio", "negocios", "empresa", "trabajo", "affaires",
                 "entreprise", "travail", "geschäft", "geschäftlich", "beruf", "beruflich", "firma",
                 "negócio", "negócios", "zakelijk", "bedrijf", "werk"),
    "personal": ("personal", "pers", "personnel", "personnelle", "perso", "persönlich", "privat", "pessoal",
                 "persoonlijk", "privé"),
    "family": ("family", "fam", "familia", "famille", "familie", "família", "gezin"),
}
_LABEL_WORDS = "|".join(
    re.escape(word) for word in sorted({w for ws in _RATING_WORDS.values() for w in ws}, key=len, reverse=True)
)
_RATING_LABEL_LINE = re.compile(
    r"(?P<label>" + _LABEL_WORDS + r")(?:\s++(?:rating|score))?\s*+(?:\(1\s*+[-–]\s*+10\)\s*+)?"
    r"(?:[*_]{1,3}\s*+)?(?::\s*+)?(?:[*_]{1,3}\s*+)?",
    re.IGNORECASE,
)


_NUMBERS_FOLLOW = re.compile(r"(?:(?:are|is|=|son|sont|sind|são|zijn)\s++)?\d", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HeadingMatch:
    """A line that opens a section; `rest` is an answer written on the same line ("" if none)."""

    key: str
    rest: str


def _strip_prefix(line: str) -> tuple[str, bool]:
    """Drop leading quote marks, markdown, numbering and emphasis; say whether bold opened."""
    position = 0
    is_bold = False
    while True:
        m = _PREFIX.match(line, position)
        if m is None or m.end() == position:
            return line[position:], is_bold
        if m.group().startswith(("**", "__")):
            is_bold = True
        position = m.end()


# Decorations in front of a ratings line: quoting, markdown, emphasis, a bullet. Not numbering,
# which would eat the score of a line that reads "8.".
_RATING_PREFIX = re.compile(r"(?:>+|#{1,6}(?!\w)|[*_]{1,3}|[-•–](?=\s)|\s+)*")


# A ratings line is short; longer ones are prose, and scanning them (a 700 KB one-line
# HTML-to-text body) would cost time for nothing.
_MAX_RATING_LINE = 200


def _strip_rating_prefix(line: str) -> str:
    """The line without leading decoration; "" for a line too long to be a ratings line."""
    text = line.strip()
    if len(text) > _MAX_RATING_LINE:
        return ""
    m = _RATING_PREFIX.match(text)
    text = text[m.end() :] if m else text
    # An emoji or a symbol after the scores ("8 / 7 / 9 🙌") says nothing about them.
    end = len(text)
    while end and (unicodedata.category(text[end - 1])[0] == "S" or text[end - 1] in "\ufe0f\u200d "):
        end -= 1
    return text[:end]


def match_heading(line: str) -> HeadingMatch | None:
    """Return the section a line opens, or None when it is content.

    Conservative: the heading words must be the whole line, or be followed by a separator
    ("Wins: closed the round", "Wins - ...") or be bold ("**Wins** closed ..."), so a sentence
    that merely starts with a heading word ("Wins are hard to come by") stays content.
    """
    text, is_bold = _strip_prefix(line.strip())
    m = _HEADING_START.match(text)
    if m is None:
        return None
    key = _PHRASE_TO_KEY.get(_squash(m.group("phrase")))
    if key is None:
        return None
    # Read by position: slicing the tail after each mark copied a long line once per mark.
    position = m.end()
    has_separator = False
    closed_emphasis = False
    kept_paren = ""
    while position < len(text):
        if em := _TAIL_EMPHASIS.match(text, position):
            closed_emphasis = True
            position = em.end()
        elif paren := _TAIL_PAREN.match(text, position):
            if _squash(paren.group("paren")) not in _OWN_WORDS:
                # "Topic (A): pricing" -- the member's own words, kept with the answer.
                kept_paren = paren.group().strip()
            position = paren.end()
        elif sep := _TAIL_SEPARATOR.match(text, position):
            has_separator = True
            position = sep.end()
        else:
            break
    rest = text[position:].strip()
    # "scores 5 6 8", "Ratings 6, 5, 7", "My ratings are 7, 8 and 6"
    numbers_follow = key == "ratings" and _NUMBERS_FOLLOW.match(rest) is not None
    if numbers_follow and not rest[:1].isdigit():
        rest = rest[_NUMBERS_FOLLOW.match(rest).end() - 1 :]  # type: ignore[union-attr]
    if rest and not (has_separator or (is_bold and closed_emphasis) or numbers_follow):
        return None
    if kept_paren and rest and not has_separator:
        return None
    if rest and _squash(rest) in _OWN_WORDS:
        # Our own hint quoted back after the title ("WINS - What went well...") is no answer.
        rest = ""
    if kept_paren:
        rest = f"{kept_paren} {rest}".strip()
    return HeadingMatch(key=key, rest=rest)


def is_rating_label(line: str) -> bool:
    """True for a bare "Business:" / "Personal:" / "Family:" label line of our request."""
    return _RATING_LABEL_LINE.fullmatch(_strip_rating_prefix(line)) is not None


def is_heading(line: str) -> bool:
    """True when the whole line is one of our headings (or a bare rating label), no answer on it.

    Accepts quoting (">"), numbering ("1." / "1)"), bold or italics, markdown "#", any case, a
    trailing colon, our parenthesis ("(1-10)") and synonyms ("Highlights", "Problems").
    "Wins: closed the round" is not a heading line: it carries an answer (see match_heading).
    """
    if is_rating_label(line):
        return True
    match = match_heading(line)
    return match is not None and match.rest == ""


# --- Ratings -------------------------------------------------------------------------------------

_RATING_LABELS: dict[str, str] = {
    **{word: key for key, words in _RATING_WORDS.items() for word in words},
    "b": "business",
    "p": "personal",
    "f": "family",
}
_NUMBER = r"(?P<n>\d+(?:[.,]\d+)?)(?P<of10>\s*/\s*10\b|\s+out\s+of\s+10\b)?"
# "Business: 7", "business 7/10", "B: 7", "Family - 8", "personal = 6", "Business rating is 7".
# "is" needs a space before it: the `(?<=\s)` stands for the `\s+` the possessive run took.
_RATING_PAIR = re.compile(
    r"(?<![^\W_])(?P<label>" + _LABEL_WORDS + r"|b|p|f)"
    r"(?:\s++(?:rating|score))?\s*+(?:[:=–—-]\s*+|(?<=\s)is\b\s*+)?" + _NUMBER,
    re.IGNORECASE,
)
# "Business I'd call a 5, personal a 6, family an 8": a label, a few words, its number. Read only
# when one line gives all three this way, so "family 2 kids" in prose is never a score.
_RATING_WORDY = re.compile(
    r"(?<![^\W_])(?P<label>" + _LABEL_WORDS + r")(?![^\W_])(?:[^\w]++[^\W\d_]++){0,5}?[^\w]++"
    r"(?P<n>\d{1,2})(?![\d.,]\d)(?P<of10>\s*/\s*10\b)?",
    re.IGNORECASE,
)
# A word or two and a colon before a line of pairs ("Notes : Affaires 6 / Personnel 7 / Famille 8").
_LEAD_WORDS = re.compile(r"[^\W\d_]++(?:\s++[^\W\d_]++)?\s*+[:：]\s*+")
# Cells of a table row: "| Zakelijk | Persoonlijk | Gezin |", "5 | 6 | 7", tab-separated.
_CELL_SPLIT = re.compile(r"\s*+[|\t]\s*+|\s{2,}+")
# Not part of a word or of a longer decimal; "7," ends a number, "7,5" does not.
_BARE_NUMBER = re.compile(r"(?<!\w)(?<!\d[.,])" + _NUMBER + r"(?!\w|[.,]\d)", re.IGNORECASE)
# What may sit between the pairs of one ratings line: "7, 6, 8", "B7 / P6 / F8", "... and ...".
_RATING_FILLER = re.compile(r"(?:[\s,;|/*_.]|\b(?:and|y|et|und|e|en)\b)*", re.IGNORECASE)


def _rating_value(match: re.Match[str]) -> int | None:
    """The 1-10 integer a match states, or None: "7.5", "0" and "12" are never rounded or guessed."""
    number = match.group("n")
    if not number.isdigit():
        return None
    value = int(number)
    return value if 1 <= value <= 10 else None


def _only_filler(text: str) -> bool:
    return _RATING_FILLER.fullmatch(text) is not None


def _pairs_cover_line(line: str, pairs: list[re.Match[str]]) -> bool:
    """True when the line is nothing but the rating pairs (and commas, slashes, "and")."""
    position = 0
    for pair in pairs:
        if not _only_filler(line[position : pair.start()]):
            return False
        position = pair.end()
    return _only_filler(line[position:])


def _parse_rating_line(line: str, *, strict: bool) -> tuple[dict[str, int], bool] | None:
    """Read ratings from one line: (ratings, is_whole_line) or None when it states none.

    `strict` is for lines outside the ratings section: only full labels ("Business 7, personal 6"),
    or the three letters together ("B7 P8 F6"), and only when the line is nothing else; or three
    scores written as scores ("7/8/6", "7/10, 8/10, 6/10"); so prose like "family 2 kids" is never
    read as a score.
    """
    text = _strip_rating_prefix(line)
    pairs = list(_RATING_PAIR.finditer(text))
    if pairs and pairs[0].start() and (lead := _LEAD_WORDS.fullmatch(text, 0, pairs[0].start())):
        text = text[lead.end() :]  # "Notes : Affaires 6 / ..." reads as "Affaires 6 / ..."
        pairs = list(_RATING_PAIR.finditer(text))
    if strict:
        keys = {_RATING_LABELS[p.group("label").lower()] for p in pairs}
        all_three = len(pairs) == len(RATING_KEYS) and len(keys) == len(RATING_KEYS)
        if not (all_three and _pairs_cover_line(text, pairs)):
            pairs = [p for p in pairs if len(p.group("label")) > 1]
    if pairs:
        is_whole = _pairs_cover_line(text, pairs)
        if strict and not (is_whole and (len(pairs) >= 2 or pairs[0].group("of10"))):
            return _wordy_ratings(text)
        if not is_whole and pairs[0].start() != 0:
            # A score mentioned mid-sentence is the member's prose, not a rating line.
            return _wordy_ratings(text)
        found: dict[str, int] = {}
        for pair in pairs:
            key = _RATING_LABELS[pair.group("label").lower()]
            value = _rating_value(pair)
            if value is None or key in found:
                # Out of range, not an integer, or said twice: read none of the line, keep it all.
                return {}, False
            found[key] = value
        return found, is_whole
    values = _number_list(text)
    if values is None:
        return None if not strict else _wordy_ratings(text)
    if len(values) == len(RATING_KEYS) and all(1 <= v <= 10 for v in values):
        if strict and "/" not in text:
            return None  # "6, 5, 7" alone could be anything; "7/8/6" and "7/10" are scores
        return dict(zip(RATING_KEYS, values)), True
    return None if strict else ({}, False)


def _wordy_ratings(text: str) -> tuple[dict[str, int], bool] | None:
    """All three ratings said in words on one line ("Business I'd call a 5, personal a 6, family
    an 8"): read, the line kept as the member's text. None otherwise."""
    found: dict[str, int] = {}
    for m in _RATING_WORDY.finditer(text):
        key = _RATING_LABELS[m.group("label").lower()]
        value = _rating_value(m)
        if value is None or key in found:
            return None
        found[key] = value
    return (found, False) if len(found) == len(RATING_KEYS) else None


def _table_ratings(lines: list[str], index: int) -> tuple[dict[str, int], int] | None:
    """A table of ratings at `index`: a row of labels ("| Zakelijk | Persoonlijk | Gezin |",
    "Business | Personal | Family") over a row of as many scores. (ratings, index of the score row)."""
    header = _cells(lines[index])
    if len(header) < 2 or len(header) > len(RATING_KEYS):
        return None
    keys = [_RATING_LABELS.get(cell.lower().strip("*_: ")) for cell in header]
    if None in keys or len(set(keys)) != len(keys):
        return None
    following = index + 1
    while following < len(lines) and (not lines[following].strip() or _is_table_rule(lines[following])):
        following += 1
    if following >= len(lines):
        return None
    row = _cells(lines[following])
    if len(row) != len(keys) or not all(cell.isdigit() and 1 <= int(cell) <= 10 for cell in row):
        return None
    return {str(k): int(v) for k, v in zip(keys, row)}, following


def _cells(line: str) -> list[str]:
    text = line.strip().strip("|").strip()
    if len(text) > _MAX_RATING_LINE:
        return []
    return [cell for cell in _CELL_SPLIT.split(text) if cell]


def _is_table_rule(line: str) -> bool:
    """A table's drawn line ("|---|---|", "+----+----+")."""
    return bool(line.strip()) and not line.strip().strip("|+-=:_ ")


def _number_list(text: str) -> list[int] | None:
    """The integers of a line that is only numbers ("7, 6, 8", "7/10 6/10 8/10", "7/6/8").

    The separators must all be alike, so a decimal comma ("7,5, 6") is not read as two scores.
    """
    # `(?<!\s)` starts a match only where a run of spaces starts, and the possessive `++` reads
    # each run of digits once: `\d+(?:\s*[,;|/]?\s*\d+)*` split 30 digits every possible way.
    text = re.sub(r"(?<!\s)\s*/\s*10\b", " ", text.strip().rstrip(".!"))
    text = re.sub(r"(?<!\s)\s*\b(?:and|y|et|und|e|en)\b\s*", ", ", text, flags=re.IGNORECASE).strip()
    if not re.fullmatch(r"\d++(?:\s*+[,;|/]?\s*+\d++)*+", text):
        return None
    separators = {re.sub(r"\s+", " ", sep) for sep in re.findall(r"(?<=\d)\D+(?=\d)", text)}
    if len(separators) > 1:
        return None
    return [int(number) for number in re.findall(r"\d+", text)]


def _score_runs(lines: list[str]) -> set[int]:
    """Indexes of adjacent lines that each give one labelled score ("Business: 7" / "Family: 8").

    Two or more together are unmistakable even without a ratings heading; one alone is not.
    """
    indexes: set[int] = set()
    run: list[int] = []
    keys: set[str] = set()
    for index, line in enumerate([*lines, ""]):
        text = _strip_rating_prefix(line)
        pairs = list(_RATING_PAIR.finditer(text))
        is_score = (
            len(pairs) == 1
            and len(pairs[0].group("label")) > 1
            and _pairs_cover_line(text, pairs)
            and _rating_value(pairs[0]) is not None
        )
        key = _RATING_LABELS[pairs[0].group("label").lower()] if is_score else ""
        if is_score and key not in keys:
            run.append(index)
            keys.add(key)
            continue
        if len(run) >= 2:
            indexes.update(run)
        run, keys = ([index], {key}) if is_score else ([], set())
    return indexes


def _bare_number(line: str) -> re.Match[str] | None:
    """The number when a line is nothing but one ("7", "7/10"): the value under a bare label."""
    text = _strip_rating_prefix(line)
    m = _BARE_NUMBER.match(text)
    return m if m is not None and _only_filler(text[m.end() :]) else None


def _bare_label(line: str) -> str | None:
    """The rating key of a bare "Business:" label line, else None."""
    m = _RATING_LABEL_LINE.fullmatch(_strip_rating_prefix(line))
    return None if m is None else _RATING_LABELS[m.group("label").lower()]


def _take_ratings(lines: list[str], *, strict: bool) -> tuple[dict[str, int], list[str]]:
    """Pull ratings out of a section's lines; return them and the lines left as text.

    A parsed line is dropped only when it said nothing but ratings; anything else (a comment, an
    out-of-range score) stays as the member's text.
    """
    ratings: dict[str, int] = {}
    kept: list[str] = []
    relaxed = _score_runs(lines) if strict else set()
    content = [line for line in lines if line.strip()]
    if not strict and len(content) == len(RATING_KEYS):
        # "7" / "6" / "8" on three lines under the heading: the request's order, as "7, 6, 8".
        numbers = [_bare_number(line) for line in content]
        values = [None if n is None else _rating_value(n) for n in numbers]
        if all(value is not None for value in values):
            return {k: v for k, v in zip(RATING_KEYS, values) if v is not None}, []
    index = 0
    while index < len(lines):
        line = lines[index]
        table = _table_ratings(lines, index)
        if table is not None:
            found, last = table
            ratings.update({k: v for k, v in found.items() if k not in ratings})
            index = last + 1
            continue
        key = _bare_label(line)
        if key is not None:
            # "Business:" on its own line (an inline answer under our quoted label): the value,
            # if any, is on the next non-blank line.
            following = index + 1
            while following < len(lines) and not lines[following].strip():
                following += 1
            after = lines[following] if following < len(lines) else ""
            number = _bare_number(after) if after else None
            value = None if number is None else _rating_value(number)
            if value is not None and key not in ratings:
                ratings[key] = value
                index = following + 1
                continue
            if not strict and number is None and (not after or _bare_label(after) is not None):
                # Our own label quoted back with nothing under it: not the member's words.
                index += 1
                continue
            kept.append(line)  # context for what follows ("Family:" / "12" or a comment)
            index += 1
            continue
        parsed = _parse_rating_line(line, strict=strict and index not in relaxed)
        if parsed is None:
            kept.append(line)
        else:
            found, is_whole = parsed
            new = {k: v for k, v in found.items() if k not in ratings}
            ratings.update(new)
            if not is_whole or not found or len(new) < len(found):
                kept.append(line)
        index += 1
    return ratings, kept


# --- Topic priority ------------------------------------------------------------------------------

_PRIORITY_PATTERNS: tuple[re.Pattern[str], ...] = (
    # "Priority: A", "priority a", "Priority - B", "(priority A)"
    # but not "top priority: a new CFO"
    re.compile(
        r"\b(?:priority|prioridad|priorit[ée]|prioriteit|prioridade|priorit[äa]t|prio)\s*+(?:is\s*+|es\s*+|est\s*+|é\s*+)?"
        r"(?:[:=–—-]\s*+)?\(?(?P<p>[abc])\)?(?=\s*(?:$|[-–—:,;.)\]!]))",
        re.IGNORECASE | re.MULTILINE,
    ),
    # "call it an A", "make it a B": a priority said in prose
    re.compile(r"\b(?:call|make|mark|put)\s+it\s+(?:an?\s+)?(?P<p>[ABC])\b(?![-'’]\w)"),
    # "(A)", "[B]" -- capitals only, so an "(a)" list item is not a priority
    re.compile(r"[(\[](?P<p>[ABC])[)\]]"),
    # "A - pricing", "B: hiring", or just "B", at the start of a line; not "A)", which is
    # how people number options ("A) raise or B) sell"). The lead stays on its line: from each
    # line start it would otherwise read every blank line below.
    re.compile(r"^[^\w(\[\n]*(?P<p>[ABC])\s*(?:[:–—]|-+\s|\.\s|$)", re.MULTILINE),
)


def _topic_priority(text: str) -> str | None:
    """The A/B/C priority the member gave their topic, or None when absent or contradictory."""
    found = {m.group("p").upper() for pattern in _PRIORITY_PATTERNS for m in pattern.finditer(text)}
    return found.pop() if len(found) == 1 else None


# --- Skip and correction -------------------------------------------------------------------------

_SKIP_LINE = re.compile(
    r"\W*(?:(?:please|pls|kindly)\s+)?"
    r"(?:(?:can|could|may)\s+(?:i|we)\s+)?"
    r"(?:(?:i(?:'ll|\s+will|\s+need\s+to|\s+have\s+to|\s+must|'d\s+like\s+to|\s+want\s+to"
    r"|'m\s+going\s+to|\s+am\s+going\s+to)|i'm|i\s+am|we're|we\s+are|will)\s+)?"
    r"(?:skipping|skip)\b(?:\s+(?:me|us|it|this\s+one))?"
    r"(?:\s+(?:for\s+)?(?:this|the)\s+(?:month|meeting|cycle|time|round|update|session)"
    r"(?:'s\s+(?:update|meeting))?)?(?:\s+please)?"
    r"(?P<rest>.*)",
    re.IGNORECASE,
)
_SKIP_REASON = re.compile(r"\s*[-–—:,;.!(]")
_SALUTATION = re.compile(r"\W*(?:hi|hello|hey|dear)\b[^,\n]{0,30},?\s*", re.IGNORECASE)
# Room for a reason and a sign-off ("SKIP - I'm travelling in Asia for the whole month. See you
# in January! Best, Elena"), not for an update.
_MAX_SKIP_WORDS = 40

# The bare marker ("CORRECTION", "Update:") carries no words of the member's: it becomes the flag.
_CORRECTION_MARKER = re.compile(
    r"\W*(?:corrections?|updated?)[*_]*\s*(?:[:–—-]+[*_]*\s*|$)", re.IGNORECASE
)
_CORRECTION_START = re.compile(
    r"\W*(?:corrections?\b|(?:please\s+)?correct\s+(?:my|the|our)\b|updated?\s*(?:[:–—-]|$)"
    r"|(?:please\s+|can\s+you\s+(?:please\s+)?)?(?:replace|swap|change|fix|update)\s+(?:my|the|our)\b"
    # The same in the other languages: "corrección", "remplacez mon", "bitte ersetze", "substitua".
    r"|correcci[óo]n|correction|korrektur|corre[çc][ãa]o|correctie"
    r"|(?:por\s+favor\s+)?(?:reemplaza|cambia|sustituye)\s+(?:mi|mis|el|la)\b"
    r"|(?:merci\s+de\s+)?(?:remplacez|remplace|changez|modifiez)\s+(?:mon|ma|mes|le|la)\b"
    r"|(?:bitte\s+)?(?:ersetze|ersetzen\s+sie|[äa]ndere|korrigiere)\s+(?:mein|meine|den|die|das)\b"
    r"|(?:por\s+favor\s+)?(?:substitua|troque|altere)\s+(?:o|a|os|as|meu|minha)\b"
    r"|(?:graag\s+)?(?:vervang|wijzig|verander)\s+(?:mijn|de|het)\b)",
    re.IGNORECASE,
)


def _normalize_apostrophes(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


# Asking to be excused this month, as people write it, by language: a data table. Each phrase is
# an intent in itself ("skip this month", "sit this one out", "me salto este mes"); "skip" with any
# other object ("we skipped the trade show") is not one.
_THIS_TIME = {
    "en": r"this\s+(?:month|meeting|time|one|round|cycle|update|session)(?:'s\s+(?:update|meeting))?",
    "es": r"(?:este\s+mes|esta\s+vez|esta\s+ronda|esta\s+reuni[óo]n)",
    "fr": r"(?:ce\s+mois(?:-ci)?|cette\s+fois(?:-ci)?|mon\s+tour)",
    "de": r"(?:diesen\s+monat|diesmal|dieses\s+mal|diese\s+runde)",
    "pt": r"(?:este\s+m[êe]s|desta\s+vez|esta\s+vez)",
    "nl": r"(?:deze\s+maand|deze\s+keer|dit\s+keer|deze\s+ronde)",
}
_SKIP_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        r"(?:skip(?:ping)?|pass(?:ing)?|sit(?:ting)?\s+out)\s+(?:on\s+)?(?:for\s+)?EN",
        r"sit(?:ting)?\s+EN\s+out",
        r"can(?:not|'t|\s+not)\s+(?:make\s+it|take\s+part|participate|join|do\s+(?:it|this|one)\b.{0,20}EN)",
        r"(?:won't|will\s+not)\s+be\s+able\s+to\s+(?:make\s+it|take\s+part|participate|join|send)",
        r"(?:unable|not\s+able)\s+to\s+(?:make\s+it|take\s+part|participate|join)",
        r"(?:i'll|i\s+will|i\s+have\s+to|i\s+need\s+to|i\s+must|i'm\s+going\s+to|i'd\s+like\s+to|have\s+to)\s+(?:pass|skip|sit\s+out)\b",
        r"count\s+me\s+out|i'm\s+out\s+EN|skipping\s+(?:it|this)\b|not\s+EN",
    ),
    "es": (
        r"me\s+(?:salto|excuso|ausento)", r"(?:paso|saltar(?:me)?|omitir|me\s+salto)\s+ES",
        r"no\s+(?:puedo|podr[ée]|voy\s+a\s+poder)\s+(?:participar|ES)", r"ES\s+no\s+(?:puedo|participo)",
    ),
    "fr": (
        r"je\s+(?:passe|saute)\s+FR", r"je\s+dois\s+passer", r"sauter\s+FR",
        r"je\s+ne\s+(?:peux|pourrai)\s+pas\s+(?:participer|FR)", r"pas\s+(?:de\s+mise\s+à\s+jour\s+)?FR",
    ),
    "de": (
        r"ich\s+(?:setze|muss)\s+(?:DE\s+)?aus(?:setzen)?\b", r"ich\s+muss\s+passen",
        r"DE\s+(?:aussetzen|überspringen|nicht\s+dabei)", r"kann\s+DE\s+nicht",
    ),
    "pt": (
        r"vou\s+(?:passar|pular|saltar)\s+PT", r"(?:pular|saltar|passo)\s+PT",
        r"n[ãa]o\s+(?:posso|vou\s+poder|consigo)\s+(?:participar|PT)", r"fico\s+de\s+fora",
    ),
    "nl": (
        r"ik\s+(?:sla|moet)\s+NL\s+over(?:slaan)?", r"NL\s+(?:overslaan|niet\s+mee)",
        r"ik\s+pas\s+NL", r"ik\s+kan\s+NL\s+niet",
    ),
}


def _skip_phrases() -> str:
    phrases = []
    for forms in _SKIP_PHRASES.values():
        for form in forms:
            for code, words in _THIS_TIME.items():
                form = form.replace(code.upper(), words)
            phrases.append(form)
    return "|".join(phrases)


_SKIP_INTENT = re.compile(r"(?<![^\W_])(?:" + _skip_phrases() + r")(?![^\W_])", re.IGNORECASE)
_SHORT_SKIP = re.compile(r"\W*(?:skip(?:ping)?|pass)(?:\s++[^\W\d_][\w'’-]*+){0,3}\W*", re.IGNORECASE)
# Where a sentence ends: the intent must be in the reply's first two.
_SENTENCE_END = re.compile(r"[.!?;\n—–]+")


def is_skip_reply(text: str) -> bool:
    """True when the whole reply asks to skip this month ("SKIP", "Skip - travelling", "Please
    skip me this month", "pass this month", "I have to sit this one out", "me salto este mes"),
    allowing a greeting, a short reason and a sign-off.

    "skip" inside a sentence is not a skip, nor is a reply that goes on to answer under headings.
    """
    lines = [line for line in _normalize_apostrophes(text).splitlines() if line.strip()]
    greeting = _SALUTATION.match(lines[0]) if lines else None
    if greeting is not None and greeting.end() == len(lines[0]):
        lines = lines[1:]  # "Hi Sam," on its own line
    elif greeting is not None and lines[0][greeting.end() - 1 : greeting.end()].isspace():
        lines = [lines[0][greeting.end() :], *lines[1:]]  # "Hi Sam, skip this month"
    if not lines:
        return False
    if not _is_skip_line(lines):
        words = sum(len(line.split()) for line in lines)
        if words > _MAX_SKIP_WORDS:
            return False
        opening = " ".join(lines)[: _MAX_RATING_LINE * 2]
        sentences = [part for part in _SENTENCE_END.split(opening) if part.strip()][:2]
        # "SKIP travelling": the word and a reason of a few words opens the reply.
        short_skip = bool(sentences) and _SHORT_SKIP.fullmatch(sentences[0].strip()) is not None
        if not short_skip and not any(_SKIP_INTENT.search(sentence) for sentence in sentences):
            return False
    return not any(match_heading(line) or is_rating_label(line) for line in lines[1:])


def _is_skip_line(lines: list[str]) -> bool:
    """The first line is a request to skip ("SKIP", "Skip - travelling", "I'll skip this month")."""
    m = _SKIP_LINE.fullmatch(lines[0].strip())
    if m is None:
        return False
    rest = m.group("rest")
    has_words = re.search(r"[^\W_]", rest) is not None
    # A reason may follow a separator ("Skip - travelling"); "Skip the small talk: ..." is a
    # sentence, not a request to be excused.
    if has_words and _SKIP_REASON.match(rest) is None:
        return False
    return len(rest.split()) + sum(len(line.split()) for line in lines[1:]) <= _MAX_SKIP_WORDS


def _correction_start(lines: list[str]) -> int | None:
    """Index of the first non-blank line when it marks a correction, else None."""
    for index, line in enumerate(lines):
        if line.strip():
            return index if _CORRECTION_START.match(_normalize_apostrophes(line)) else None
    return None


# --- Splitting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sections:
    """What a reply said, by section. `texts` holds the member's words (only non-empty sections,
    in SECTIONS order, then "other"); `ratings` only values the member stated unmistakably."""

    texts: dict[str, str]
    ratings: dict[str, int]
    topic_priority: str | None = None
    is_skip: bool = False
    is_correction: bool = False

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict for storage; from_json reads it back."""
        return {
            "texts": dict(self.texts),
            "ratings": dict(self.ratings),
            "topic_priority": self.topic_priority,
            "is_skip": self.is_skip,
            "is_correction": self.is_correction,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Sections:
        """Rebuild from to_json's output; raises ValueError on a malformed value."""
        texts = data.get("texts", {})
        ratings = data.get("ratings", {})
        priority = data.get("topic_priority")
        if not isinstance(texts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in texts.items()
        ):
            raise ValueError("sections texts must map str to str")
        if not isinstance(ratings, dict) or not all(
            k in RATING_KEYS and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10
            for k, v in ratings.items()
        ):
            raise ValueError("sections ratings must map business/personal/family to 1-10")
        if priority not in (None, "A", "B", "C"):
            raise ValueError("sections topic_priority must be A, B, C or null")
        is_skip = data.get("is_skip", False)
        is_correction = data.get("is_correction", False)
        if type(is_skip) is not bool or type(is_correction) is not bool:
            raise ValueError("sections is_skip and is_correction must be booleans")
        # A jsonb column does not keep key order; the packet reads texts in SECTIONS order.
        order = {key: index for index, key in enumerate((*SECTION_KEYS, OTHER))}
        return cls(
            texts=dict(sorted(texts.items(), key=lambda item: order.get(item[0], len(order)))),
            ratings={key: ratings[key] for key in RATING_KEYS if key in ratings},
            topic_priority=priority,
            is_skip=is_skip,
            is_correction=is_correction,
        )


def _join(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines).strip("\n").strip()


# An inline answer's marker, "[JW]": the initials a member types before each answer in the original.
# Only where an answer starts (a line's start, after a bullet or a label's colon): "[PDF]" inside
# a sentence is the member's.
_MARKER = re.compile(r"^(?P<lead>[\s>*•-]*+(?:[^\W\d_][\w ]{0,30}:\s*+)?)\[[A-Z]{2,3}\]\s?")
_MAX_LABEL_WORDS = 8
_MAX_LABEL_AT = 2000
_MAX_LABELS_IN_LINE = 8
# "---------- Forwarded message ---------" and the like: a message the member pasted in.
_SEPARATOR_LINE = re.compile(r"\s*[-‐–—]{2,}\s*\w[\w ]{0,40}?[-‐–—]{2,}\s*$")


def _instruction_key(line: str) -> str | None:
    """The section a correction's instruction names ("replace my challenges with this")."""
    m = _heading_word(line[:_MAX_RATING_LINE])
    return None if m is None else _PHRASE_TO_KEY.get(_squash(m.group("phrase")))
_LABEL_PAREN = re.compile(r"\((?P<paren>[^()]{1,30})\)")


def _inline_label(line: str) -> tuple[str, str, str] | None:
    """A section named inside a line before a colon ("I'd also like it as my topic (B): how do
    I...", "P.S. One ask I forgot: ..."): (text before the label's sentence, key, answer)."""
    colon = min((i for i in (line.find(":"), line.find("：")) if i > 0), default=-1)
    if colon < 0 or colon > _MAX_LABEL_AT:
        return None
    pre = line[:colon]
    cut = max(pre.rfind(". "), pre.rfind("! "), pre.rfind("? "))
    label = pre[cut + 2 :] if cut >= 0 else pre
    if len(label.split()) > _MAX_LABEL_WORDS or not label.strip():
        return None
    found = _heading_word(label)
    if found is None:
        return None
    key = _PHRASE_TO_KEY.get(_squash(found.group("phrase")))
    if key is None or key == "ratings":
        return None
    rest = line[colon + 1 :].strip()
    tail = label[found.end() :].strip(" ,;")
    if tail and _topic_priority(tail) is not None:
        rest = f"{tail}: {rest}"  # "Topic for the group, priority A: ..." keeps its priority
    paren = _LABEL_PAREN.search(label)
    if paren is not None and _squash(paren.group("paren")) not in _OWN_WORDS:
        rest = f"{paren.group()} {rest}".strip()
    return (pre[: cut + 1] if cut >= 0 else ""), key, rest


def split_sections(text: str, *, place_prose: bool = True) -> Sections:
    """Split a member's trimmed reply into sections; lines before any heading go to "other".

    `place_prose`: sentences in "other" go where their cue phrases say (app.reading.placing);
    off for a follow-up, whose prose adds to the update and must not stand for a section."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    correction_at = _correction_start(lines)
    if correction_at is not None:
        # "Correction: Wins: ..." -- the marker is recorded as is_correction; what follows it on
        # the line is read like any other line.
        first = lines[correction_at]
        marker = _CORRECTION_MARKER.match(_normalize_apostrophes(first))
        if marker is not None:
            lines = [*lines[:correction_at], first[marker.end() :], *lines[correction_at + 1 :]]

    buckets: dict[str, list[str]] = {OTHER: []}
    current = OTHER
    # After a heading with its answer on its line ("the wins: ..."), a paragraph below a blank
    # line with no heading of its own is placed by its cues ("ERP shortlist – done"), else stays.
    is_inline = False
    detached: list[str] | None = None

    def flush() -> None:
        nonlocal detached
        if detached:
            placed, left = placing.place_prose(detached)
            for key, placed_lines in [*placed.items(), (current, left)]:
                if not any(line.strip() for line in placed_lines):
                    continue
                bucket = buckets.setdefault(key, [])
                if bucket and bucket[-1].strip():
                    bucket.append("")
                bucket.extend(placed_lines)
        detached = None

    # "Please replace my challenges with this:" -- the words below it answer that section.
    instruction_key = _instruction_key(lines[correction_at]) if correction_at is not None else None
    instruction: list[str] = []
    for number, line in enumerate(_MARKER.sub(r"\g<lead>", line) for line in lines):
        if _squash(line) in _HINTS:
            continue  # our own words, not the member's
        if _SEPARATOR_LINE.match(line):
            flush()
            is_inline = False  # a message pasted in: read as it is, not placed by its cues
        heading = match_heading(line)
        label = _inline_label(line) if heading is None else None
        if instruction_key is not None and number == correction_at and heading is None:
            # The member's instruction ("I flipped my ratings.") is no answer to place; what
            # follows it on the line ("Should be Business 6, ...") answers the section it names.
            first, *others = placing.sentences(line) or [line]
            instruction.append(first.strip())
            current = instruction_key
            if "".join(others).strip():
                buckets.setdefault(current, []).append("".join(others).strip())
            continue
        if heading is None and label is None:
            if not line.strip():
                flush()
                if is_inline:
                    detached = []
                buckets.setdefault(current, []).append(line)
            elif detached is not None:
                detached.append(line)
            else:
                buckets.setdefault(current, []).append(line)
            continue
        flush()
        if label is not None:
            before, key, rest = label
            if before.strip():
                buckets.setdefault(current, []).append(before.rstrip())
            # "Win: signed Pinnacle. Ask: anyone know a CFO?" -- one label after another.
            for _ in range(_MAX_LABELS_IN_LINE):
                following = _inline_label(rest)
                if following is None or not following[0].strip():
                    break
                buckets.setdefault(key, []).append(following[0].rstrip())
                key, rest = following[1], following[2]
            # A label inside prose reaches to the end of its sentence; the sentences after it go
            # where their cues say, else stay with it.
            first, *others = placing.sentences(rest) or [rest]
            rest = first.strip()
            for sentence in others:
                cue = placing.cue_of(sentence)
                if cue is not None and cue != key:
                    buckets.setdefault(cue, []).append(sentence.strip())
                else:
                    rest = f"{rest} {sentence.strip()}".strip()
            heading = HeadingMatch(key=key, rest=rest)
        current = heading.key
        is_inline = bool(_LABEL_PAREN.sub("", heading.rest).strip())
        bucket = buckets.setdefault(current, [])
        if any(existing.strip() for existing in bucket) and bucket[-1].strip():
            bucket.append("")  # the same heading twice: keep the parts apart
        if heading.rest:
            bucket.append(heading.rest)
    flush()

    ratings, buckets["ratings"] = _take_ratings(buckets.get("ratings", []), strict=False)
    # Without a ratings heading only unmistakable lines count ("Business 7, personal 6, family 8").
    extra, buckets[OTHER] = _take_ratings(buckets[OTHER], strict=True)
    ratings.update({k: v for k, v in extra.items() if k not in ratings})
    # Prose nobody put under a heading: placed sentence by sentence by its cues.
    placed, buckets[OTHER] = placing.place_prose(buckets[OTHER]) if place_prose else ({}, buckets[OTHER])
    buckets[OTHER] = [*instruction, *buckets[OTHER]]
    for key, placed_lines in placed.items():
        bucket = buckets.setdefault(key, [])
        buckets[key] = [*placed_lines, "", *bucket] if bucket else placed_lines

    texts = {
        key: joined for key in (*SECTION_KEYS, OTHER) if (joined := _join(buckets.get(key, [])))
    }
    return Sections(
        texts=texts,
        ratings={key: ratings[key] for key in RATING_KEYS if key in ratings},
        topic_priority=_topic_priority(texts.get("topic", "")),
        is_skip=is_skip_reply(text),
        is_correction=correction_at is not None,
    )
