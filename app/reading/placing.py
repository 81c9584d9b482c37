"""Placing prose: which section a sentence written without a heading belongs to. Pure.

A member who writes prose ("Good month, we finally landed the contract. Could use an intro to a
lender.") still answers our sections; cue phrases say which, in the six languages our members
write in (a data table, one entry per section and language). "other" stays the last resort: a
sentence with no cue, or with cues of two sections, is not moved.
"""

from __future__ import annotations

import re

# Cue phrases by section, then by language: regex fragments, lower case, matched at word bounds.
# The order of sections is the order of precedence when a sentence has cues of several.
_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "asks": {
        "en": (r"could\s+use\s+(?:an?\s+|some\s+)?(?:intro|rec|help|advice|referral|recommendation)",
               r"anyone\s+(?:know|have|has|who|with|ever|here)", r"(?:does|has|is\s+there)\s+anyone",
               r"if\s+anyone", r"(?:appreciate|love|like)\s+(?:an?\s+)?intro", r"intro(?:duction)?s?\s+to",
               r"looking\s+for\s+(?:an?\s+)?(?:intro|referral|recommendation|contact)",
               r"rec(?:ommendation)?\s+for", r"who\s+(?:knows|has\s+(?:used|worked))", r"i\s+need\s+(?:an?\s+)?(?:intro|referral)"),
        "es": (r"alguien\s+(?:conoce|tiene|que)", r"busco\s+(?:un|una|contacto)", r"necesito\s+(?:un|una)\s+contacto"),
        "fr": (r"quelqu['’]un\s+(?:conna[iî]t|a)", r"je\s+cherche\s+(?:un|une)", r"un\s+contact\s+chez"),
        "de": (r"kennt\s+jemand", r"hat\s+jemand", r"ich\s+suche\s+(?:einen|eine)"),
        "pt": (r"algu[ée]m\s+(?:conhece|tem)", r"procuro\s+(?:um|uma)"),
        "nl": (r"wie\s+kent", r"heeft\s+iemand", r"kent\s+iemand", r"ik\s+zoek\s+(?:een)"),
    },
    "topic": {
        "en": (r"bring\s+to\s+the\s+group", r"(?:spend|use)\s+(?:some\s+)?time\s+at\s+the\s+meeting",
               r"group['’]s\s+(?:help|advice|input)", r"(?:discuss|talk\s+through)\s+(?:with|at)\s+the\s+group",
               r"priority\s+[abc]\b", r"most\s+urgent", r"call\s+it\s+an?\s+[abc]\b", r"my\s+topic",
               r"(?:swap|replace)\s+my\s+topic", r"whether\s+to\s+sell", r"i['’]d\s+like\s+(?:the\s+group|to\s+discuss)"),
        "es": (r"tema\s+para\s+el\s+grupo", r"prioridad\s+[abc]\b"),
        "fr": (r"sujet\s+pour\s+le\s+groupe", r"priorit[ée]\s+[abc]\b"),
        "de": (r"thema\s+f[üu]r\s+die\s+gruppe", r"priorit[äa]t\s+[abc]\b"),
        "pt": (r"tema\s+para\s+o\s+grupo", r"prioridade\s+[abc]\b"),
        "nl": (r"onderwerp\s+voor\s+de\s+groep", r"prioriteit\s+[abc]\b"),
    },
    "commitments": {
        "en": (r"(?:is|are|was|were|that['’]s|it['’]s|got)\s+(?:all\s+)?(?:done|finished|completed?)",
               r"[–—:-]\s*(?:done|partial|dropped)", r"partial(?:ly)?(?:\s+done)?", r"dropped",
               r"not\s+(?:yet\s+)?done", r"(?:didn['’]t|did\s+not|never)\s+get\s+(?:to|around)",
               r"on\s+last\s+month", r"last\s+month['’]?s?\s+commitments?", r"still\s+(?:not|isn['’]t)\s+done"),
        "es": (r"cumplido", r"parcial", r"abandonado", r"no\s+lo\s+hice"),
        "fr": (r"fait\b", r"partiel", r"abandonn[ée]"),
        "de": (r"erledigt", r"teilweise", r"gestrichen"),
        "pt": (r"feito", r"parcial", r"abandonado"),
        "nl": (r"gedaan", r"gedeeltelijk", r"geschrapt"),
    },
    "learned": {
        "en": (r"(?:i\s+)?learn(?:ed|t)", r"lesson", r"takeaway", r"i\s+reali[sz]ed"),
        "es": (r"aprend[ií]",), "fr": (r"j['’]ai\s+appris",), "de": (r"gelernt",), "pt": (r"aprendi",),
        "nl": (r"geleerd",),
    },
    "challenges": {
        "en": (r"struggl\w*", r"challeng\w*", r"hard(?:est)?\s+(?:part|thing)", r"the\s+hard\s+thing", r"tough", r"worried",
               r"difficult\w*", r"headache", r"bottleneck", r"frustrat\w*", r"concerned",
               r"worry", r"problem", r"rough\s+(?:stretch|month|patch)", r"lost\s+\d", r"losing",
               r"behind\s+(?:on|schedule)", r"can['’]t\s+(?:find|hire|keep)"),
        "es": (r"problema", r"dif[ií]cil", r"reto"), "fr": (r"probl[èe]me", r"difficile", r"d[ée]fi"),
        "de": (r"problem", r"schwierig"), "pt": (r"problema", r"dif[ií]cil", r"desafio"),
        "nl": (r"probleem", r"moeilijk", r"lastig"),
    },
    "wins": {
        "en": (r"landed", r"signed", r"closed\s+(?:the|a|our)", r"won\b", r"record\s+(?:month|quarter|year)",
               r"best\s+(?:month|quarter|year)", r"good\s+(?:month|news)", r"(?:big|great)\s+news",
               r"launched", r"agreed\s+to\s+carry", r"bright\s+spot", r"finally\s+\w+ed"),
        "es": (r"firmamos", r"cerramos", r"ganamos", r"logramos"), "fr": (r"sign[ée]", r"gagn[ée]"),
        "de": (r"gewonnen", r"unterschrieben"), "pt": (r"fech[áa]mos", r"ganh[áa]mos"),
        "nl": (r"binnengehaald", r"gewonnen", r"getekend"),
    },
    "next_commitments": {
        "en": (r"before\s+(?:we|the\s+next)\s+meet\w*", r"by\s+(?:the\s+)?next\s+meeting", r"next\s+month\s+i",
               r"i['’]ll\s+have", r"i\s+will\s+have", r"i\s+want\s+to\s+start", r"i\s+plan\s+to", r"i['’]m\s+going\s+to"),
        "es": (r"antes\s+de\s+la\s+pr[óo]xima",), "fr": (r"d['’]ici\s+la\s+prochaine",),
        "de": (r"bis\s+zum\s+n[äa]chsten",), "pt": (r"at[ée]\s+(?:à|a)\s+pr[óo]xima",),
        "nl": (r"voor\s+de\s+volgende",),
    },
}
CUE_ORDER: tuple[str, ...] = tuple(_CUES)
_CUE_PATTERNS: dict[str, re.Pattern[str]] = {
    key: re.compile(
        r"(?<![^\W_])(?:" + "|".join(f for forms in languages.values() for f in forms) + r")(?![^\W_])",
        re.IGNORECASE,
    )
    for key, languages in _CUES.items()
}
# Sentences end at ". ", "! ", "? " (a decimal point or "Co." inside a name is rare enough).
_SENTENCE = re.compile(r"[^.!?]*+(?:[.!?]++|$)")
_MAX_PROSE_LINE = 4000  # longer lines are read as they are, not sentence by sentence


def cue_of(sentence: str) -> str | None:
    """The section a sentence's cue phrases point to, by precedence; None without a cue."""
    if len(sentence) > _MAX_PROSE_LINE:
        return None
    for key in CUE_ORDER:
        if _CUE_PATTERNS[key].search(sentence):
            return key
    return None


def sentences(line: str) -> list[str]:
    """A line of prose in sentences, spaces kept with them so they join back into the line."""
    if len(line) > _MAX_PROSE_LINE:
        return [line]
    return [m.group() for m in _SENTENCE.finditer(line) if m.group()]


# Where a run-on sentence may be cut into clauses: after a comma, or before "and I" / "but we".
_CLAUSE = re.compile(r",\s++|(?<!\s)\s++(?=(?:and|but|so)\s++(?:i|we|i['’]ll|we['’]ll)\b)", re.IGNORECASE)


def _cues(text: str) -> set[str]:
    return {key for key in CUE_ORDER if _CUE_PATTERNS[key].search(text)}


def _pieces(sentence: str) -> list[tuple[str | None, str]]:
    """A sentence with its section, or, when it names several ("Hiring plan still not done,
    will have it before we meet"), its clauses each with theirs (a clause without a cue goes
    with the one before it). The text is the member's, cut only where a clause ends."""
    if len(sentence) > _MAX_PROSE_LINE or len(_cues(sentence)) < 2:
        return [(cue_of(sentence), sentence)]
    spans: list[tuple[str | None, int, int]] = []  # key, start, end in the sentence
    start = 0
    for m in [*_CLAUSE.finditer(sentence), None]:
        end = m.start() if m is not None else len(sentence)
        if sentence[start:end].strip():
            key = cue_of(sentence[start:end])
            if key is None and spans:
                spans[-1] = (spans[-1][0], spans[-1][1], end)
            elif spans and spans[-1][0] == key:
                spans[-1] = (key, spans[-1][1], end)
            else:
                spans.append((key, start, end))
        if m is not None:
            start = m.end()
    return [(key, sentence[a:b].strip()) for key, a, b in spans]


def place_prose(lines: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Spread unplaced lines over sections by their sentences' cues. Returns the lines per
    section and the lines left unplaced (with sentences that had no cue)."""
    placed: dict[str, list[str]] = {}
    left: list[str] = []
    for line in lines:
        if not line.strip():
            left.append(line)
            for bucket in placed.values():
                if bucket and bucket[-1].strip():
                    bucket.append("")
            continue
        kept: list[str] = []
        for sentence in sentences(line):
            for key, piece in _pieces(sentence):
                if key is None:
                    kept.append(piece)
                    continue
                bucket = placed.setdefault(key, [])
                if bucket and bucket[-1].strip():
                    bucket[-1] = f"{bucket[-1].rstrip()} {piece.strip()}"
                else:
                    bucket.append(piece.strip())
        rest = "".join(kept).strip()
        if rest:
            left.append(rest)
        for key, bucket in placed.items():
            if bucket and bucket[-1].strip():
                bucket.append("")  # a line of its own per line of the reply
    return placed, left
