"""What an ask is for, from its words, and the marks a member puts on it. Pure."""

from __future__ import annotations

import re

# key -> (label, words that suggest it). Order matters: the first kind with the most hits wins.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "introduction": ("Introduction", (
        "intro", "introduction", "introduce", "connect me", "connection", "know someone", "knows someone",
        "anyone know", "anybody know", "contact at", "someone at", "warm intro", "put me in touch", "network",
    )),
    "hire": ("Hire or person", (
        "hire", "hiring", "recruit", "recruiter", "candidate", "cfo", "cto", "coo", "vp of", "head of",
        "fractional", "interim", "executive search", "talent", "coach", "consultant", "facilitator", "advisor",
        "board member", "assistant",
    )),
    "capital": ("Capital", (
        "capital", "investor", "investors", "funding", "fundraise", "fundraising", "raise", "loan", "lender",
        "bank", "credit line", "line of credit", "debt", "equity", "venture", "angel", "sba", "financing",
    )),
    "supplier": ("Supplier or partner", (
        "supplier", "vendor", "partner", "partnership", "manufacturer", "co-packer", "contractor", "agency",
        "provider", "software for", "tool for", "litigator", "lawyer", "attorney", "accountant", "cpa",
        "firm", "distributor", "logistics",
    )),
    "customer": ("Customer", (
        "customer", "customers", "client", "clients", "buyer", "buyers", "sell to", "selling to", "leads",
        "prospect", "pilot", "retailer", "procurement", "purchasing",
    )),
    "advice": ("Advice or know-how", (
        "advice", "experience", "has anyone", "have you", "anyone who has", "how do", "how did", "lessons",
        "best practice", "know-how", "learn", "thoughts on", "30 minutes", "tips", "negotiat", "sold a",
        "used a", "template",
    )),
    "other": ("Other", ()),
}

KIND_LABELS = {key: label for key, (label, _) in KINDS.items()}


def _hits(words: tuple[str, ...], text: str) -> int:
    return sum(1 for w in words if re.search(rf"(?<![a-z]){re.escape(w)}", text))


def classify(text: str) -> str:
    """The kind of an ask from its words (KINDS keys); "other" when nothing fits."""
    lowered = text.lower()
    best, best_hits = "other", 0
    for key, (_, words) in KINDS.items():
        hits = _hits(words, lowered)
        if hits > best_hits:
            best, best_hits = key, hits
    return best


# "KIND: capital", "Category - supplier", "type: hire or person", "this is an introduction".
# Horizontal space only, and a bounded name: linear on any run (tests/test_regex_safety.py).
_CORRECTION = re.compile(r"^[ \t]*(?:kind|category|type)[ \t]*[:=\-–][ \t]*([^\n]{1,60})$", re.IGNORECASE | re.MULTILINE)
_THIS_IS = re.compile(r"^[ \t]*(?:it'?s|this is|it is)[ \t]+([a-z][a-z\- ]{0,40})[.!]?[ \t]*$",
                      re.IGNORECASE | re.MULTILINE)


def kind_named(words: str) -> str | None:
    """The kind a member names ("capital", "Supplier or partner", "intro"), or None."""
    lowered = re.sub(r"^an? ", "", words.strip().lower().rstrip(".!"))
    lowered = lowered.removesuffix(" ask").removesuffix(" request").strip()
    if not lowered:
        return None
    for key, (label, _) in KINDS.items():
        if lowered in (key, label.lower()) or label.lower().startswith(lowered) or key.startswith(lowered):
            return key
    for key, alias in (("hire", "person"), ("hire", "people"), ("supplier", "partner"), ("advice", "know-how"),
                       ("introduction", "intro"), ("capital", "money"), ("customer", "client")):
        if lowered.startswith(alias):
            return key
    return None


def correction(text: str) -> str | None:
    """The kind a reply asks for ("KIND: capital", "this is an introduction"), else None."""
    for pattern in (_CORRECTION, _THIS_IS):
        for match in pattern.finditer(text[:500]):
            kind = kind_named(match.group(1))
            if kind is not None:
                return kind
    return None


_FACILITATOR_ONLY = re.compile(r"\[\s*facilitator[\s-]*only\s*\]", re.IGNORECASE)


def is_facilitator_only(text: str) -> bool:
    return _FACILITATOR_ONLY.search(text) is not None


def without_marks(text: str) -> str:
    """The ask as peers (or the facilitator) read it: the `[facilitator only]` mark taken out."""
    return re.sub(r"[ \t]{2,}", " ", _FACILITATOR_ONLY.sub("", text)).strip()
