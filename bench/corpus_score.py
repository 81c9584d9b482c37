"""Score reply trimming and machine-mail classification against the shared labelled corpora.

    python bench/corpus_score.py [CORPUS_DIR] [-v] [--json] [--min-both PCT]
        [--max-machine-as-reply N] [--max-reply-as-machine N] [--min-bounce-recall PCT]

Reply corpora (email_reply_trimmer, reply_parser_family), per entry:
  kept   every expected line is in our output: nothing the member wrote was lost;
  clean  no output line outside the expected text: nothing quoted leaked in.
Lines compare whitespace-normalized. Ignored on both sides, because the corpora disagree on them:
blank and delimiter-only lines, mobile footers. Quoted (">") lines of an expected text are not
required: Discourse keeps the quote of a bottom-posted or inline reply, we keep only the answers.
Sign-offs ("Best regards," over a name) are neither required nor forbidden: Discourse's expected
texts keep them, mail-parser-reply's and GitHub's assertions say they are no part of the reply.
reply_parser_family entries carry their authors' assertions instead of a text; each becomes a
required or forbidden string (see `_rpf_spec`).

Machine mail: sisimai messages classified "reply" (machine mail that would enter a packet), bounce
recall, and reply-corpus bodies wrapped as a person's message classified as machine mail (a lost
reply). Exit 1 when a threshold is missed, so CI can fail on a regression.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
DEFAULT_UPDATES = REPO.parent / "shared" / "updates-dev"
REPLY_CORPORA = (
    "email_reply_trimmer",
    "reply_parser_family",
    "crisp_email_reply_parser",
    "willdurand_email_reply_parser",
)
# Ports of GitHub's parser whose manifest holds the upstream assertions of entries without a text.
_PORTS = ("crisp_email_reply_parser", "willdurand_email_reply_parser")
MACHINE_CLASSES = ("bounce", "feedback-report", "auto-reply", "delivery-success-dsn")

# Broad on purpose: a footer line is ignored on both sides, it is never required or forbidden.
_FOOTER = re.compile(
    r"\W*(?:sent|envoy[ée]|enviado|inviato|verzonden|gesendet|sendt|skickat|wysłane|отправлено"
    r"|get\s+\W?outlook|from\s+my|von\s+meinem|diese\s+nachricht\s+wurde|從我的|从我的)\b[^,]{0,90}"
    r"(?:,\s*please\s+excuse.*)?"
    r"|.{0,40}\b(?:from|via)\s+(?:my\s+)?(?:mobile|phone|iphone|ipad|android)\b.{0,20}"
    r"|<<.{0,40}>>",
    re.IGNORECASE,
)
# Closing words that open a sign-off, and a name-only sign-off line ("-Anna", "/John", "—Ryan").
_VALEDICTION = re.compile(
    r"\W*(?:(?:best|kind|warm)?\s*regards|best|thanks|thank you|cheers|sincerely|mvh|hilsen"
    r"|med venlig hilsen|venlig hilsen|kh|vh|pozdrawiam|z powa[żz]aniem|viele gr[üu](?:ß|ss)e"
    r"|mit freundlichen gr[üu](?:ß|ss)en|cordialement|saludos|atentamente|met vriendelijke groet"
    r"|groeten|med v[äa]nlig h[äa]lsning|h[äa]lsningar|с уважением)\W*",
    re.IGNORECASE,
)
_NAME_SIGN_OFF = re.compile(r"\s*[-/—~]+\s*\w+(?:\s+\w+){0,2}\s*")


def norm(line: str) -> str:
    return " ".join(line.split())


def is_ignored(line: str) -> bool:
    """Blank, delimiter-only or a mobile footer: not scored on either side."""
    text = norm(line).lstrip("> ")
    return not any(ch.isalnum() for ch in text) or _FOOTER.fullmatch(text) is not None


def _has_words(text: str) -> bool:
    return not all(is_ignored(line) for line in text.splitlines())


def significant_lines(text: str) -> list[str]:
    return [norm(line) for line in text.splitlines() if not is_ignored(line)]


def sign_off_tail(text: str) -> set[str]:
    """The lines of a closing that ends `text` ("Best regards," / "Anna"), else an empty set."""
    lines = significant_lines(text)
    for size in range(min(4, len(lines)), 0, -1):
        if is_sign_off("\n".join(lines[-size:])):
            return set(lines[-size:])
    return set()


def is_sign_off(text: str) -> bool:
    """A closing phrase with a short name under it, or a name-only line: a sign-off."""
    lines = [norm(line) for line in text.splitlines() if norm(line)]
    if not lines or len(lines) > 3 or any(len(line.split()) > 4 for line in lines):
        return False
    return bool(_VALEDICTION.fullmatch(lines[0]) or _NAME_SIGN_OFF.fullmatch(lines[0]))


# --- What an entry expects -----------------------------------------------------------------------


@dataclass
class Spec:
    """What our output must contain (kept) and must not contain (clean)."""

    exact: list[str] = field(default_factory=list)  # whole expected texts
    required: list[str] = field(default_factory=list)  # substrings
    required_regex: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)  # substrings
    forbidden_lines: list[str] = field(default_factory=list)  # whole lines, quote marks aside
    max_seconds: float | None = None

    def is_empty(self) -> bool:
        return not (
            self.exact
            or self.required
            or self.required_regex
            or self.forbidden
            or self.forbidden_lines
            or self.max_seconds
        )


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _rpf_spec(expect: dict[str, Any], raw_input: str, spec: Spec) -> None:
    """Turn one reply_parser_family entry's upstream assertions into required/forbidden strings.

    Newest reply (alfonsrv `replies.0.body`, github/zapier `parse_reply`, `latest_reply_text`,
    visible unquoted fragments): required. Older replies and hidden fragments: forbidden. Counts of
    replies/fragments say nothing about text, except one fragment: the whole input is the reply.
    """
    for key in ("parse_reply", "latest_reply_text"):
        checks = expect.get(key, {})
        spec.exact += _as_list(checks.get("equals")) + _as_list(checks.get("equals_after_strip"))
        spec.required += _as_list(checks.get("contains"))
        spec.forbidden += _as_list(checks.get("not_contains"))
    replies = expect.get("replies", {})
    newest = replies.get("0", {})
    signatures = newest.get("signatures", {})
    sign_offs = {
        s
        for s in _as_list(signatures.get("contains")) + _as_list(signatures.get("equals"))
        if is_sign_off(s)
    }
    body = newest.get("body", {})
    spec.exact += _as_list(body.get("equals"))
    spec.required += _as_list(body.get("contains"))
    spec.required_regex += ["^" + re.escape(s) for s in _as_list(body.get("startswith"))]
    spec.forbidden += [s for s in _as_list(body.get("not_contains")) if s not in sign_offs]
    for number, reply in replies.items():
        if number == "0":
            continue
        for part, checks in reply.items():
            strings = _as_list(checks.get("equals")) + _as_list(checks.get("contains"))
            if part == "body":
                spec.forbidden_lines += [line for s in strings for line in s.splitlines()]
            else:
                spec.forbidden += strings
    flags = expect.get("fragment_flags", {})
    hidden = flags.get("hidden")
    quoted = flags.get("quoted") or [False] * len(hidden or [])
    signature = flags.get("signature") or [False] * len(hidden or [])
    for number, fragment in expect.get("fragments", {}).items():
        i = int(number)
        checks = fragment.get("content", {})
        strings = _as_list(checks.get("equals")) + _as_list(checks.get("contains"))
        if hidden is None:
            if i == 0:  # without flags only the first fragment is known to be the reply
                spec.required += [s.strip() for s in strings]
                spec.required_regex += _as_list(checks.get("matches_regex"))
        elif not hidden[i] and not quoted[i]:
            spec.required += [s.strip() for s in strings]
            spec.required_regex += _as_list(checks.get("matches_regex"))
        elif hidden[i]:
            spec.forbidden += [s for s in strings if not (signature[i] and is_sign_off(s))]
    if expect.get("fragments_count") == 1 and not flags:
        spec.exact.append(raw_input)
    if "must_finish_within_seconds" in expect:
        spec.max_seconds = float(expect["must_finish_within_seconds"])


def _normalized_text(text: str) -> str:
    return "\n".join(significant_lines(text))


def score(spec: Spec, output: str, seconds: float) -> tuple[bool, bool, list[str]]:
    """(kept, clean, reasons) for one output."""
    reasons: list[str] = []
    out_lines = significant_lines(output)
    out_set = set(out_lines)
    out_text = _normalized_text(output)
    for expected in dict.fromkeys(spec.exact):
        optional = sign_off_tail(expected)
        wanted = [
            line
            for line in significant_lines(expected)
            if not line.startswith(">") and line not in optional
        ]
        reasons += [f"lost: {line!r}" for line in wanted if line not in out_set]
        allowed = set(significant_lines(expected))
        reasons += [f"leaked: {line!r}" for line in out_lines if line not in allowed]
    for needle in dict.fromkeys(spec.required):
        if _has_words(needle) and _normalized_text(needle) not in out_text:
            reasons.append(f"lost: {needle!r}")
    for pattern in spec.required_regex:
        if re.search(pattern, output.strip()) is None:
            reasons.append(f"lost: /{pattern}/")
    for needle in dict.fromkeys(spec.forbidden):
        if _has_words(needle) and _normalized_text(needle) in out_text:
            reasons.append(f"leaked: {needle!r}")
    required_text = "\n".join(spec.required + spec.exact)
    out_unquoted = {norm(line.lstrip("> ")) for line in out_lines}
    for line in spec.forbidden_lines:
        bare = norm(line.lstrip("> "))
        if _has_words(bare) and bare not in required_text and bare in out_unquoted:
            reasons.append(f"leaked: {bare!r}")
    if spec.max_seconds is not None and seconds > spec.max_seconds:
        reasons.append(f"slow: {seconds:.2f}s > {spec.max_seconds}s (lost and leaked)")
        return False, False, reasons
    kept = not any(r.startswith("lost") for r in reasons)
    clean = not any(r.startswith("leaked") for r in reasons)
    return kept, clean, reasons


# --- Reply corpora -------------------------------------------------------------------------------


@dataclass
class ReplyEntry:
    corpus: str
    ids: list[str]
    text: str
    spec: Spec


def load_reply_entries(corpus_dir: Path, index: list[dict[str, Any]]) -> list[ReplyEntry]:
    """One entry per distinct input; same-input entries of reply_parser_family pool assertions."""
    manifest = json.loads((corpus_dir / "reply_parser_family" / "manifest.json").read_text())
    expectations = {e["id"]: e["upstream_expectations"] for e in manifest["entries"]}
    port_expectations: dict[tuple[str, str], dict[str, Any]] = {}
    for corpus in _PORTS:
        path = corpus_dir / corpus / "manifest.json"
        if path.is_file():
            for e in json.loads(path.read_text())["entries"]:
                port_expectations[(corpus, e["id"])] = e.get("upstream_expectations", {})
    by_sha: dict[str, ReplyEntry] = {}
    for item in index:
        if item["corpus"] not in REPLY_CORPORA:
            continue
        text = (corpus_dir / item["input"]).read_bytes().decode("utf-8")
        if item.get("input_format") == "eml":
            text = _eml_body(text)
        entry = by_sha.get(item["input_sha256"])
        if entry is None:
            entry = by_sha[item["input_sha256"]] = ReplyEntry(item["corpus"], [], text, Spec())
        entry.ids.append(item["id"])
        if item["expected_new_content"] is not None:
            entry.spec.exact.append(item["expected_new_content"])
        if item["corpus"] == "reply_parser_family":
            _rpf_spec(expectations[item["id"]], text, entry.spec)
        if item["corpus"] in _PORTS and item["expected_new_content"] is None:
            upstream = port_expectations.get((item["corpus"], item["id"]), {})
            entry.spec.required_regex += _as_list(upstream.get("fragments.0.matches"))
    return list(by_sha.values())


def _eml_body(text: str) -> str:
    """The body of a whole message given as text: what follows the first blank line."""
    normalized = text.replace("\r\n", "\n")
    return normalized.split("\n\n", 1)[1] if "\n\n" in normalized else normalized


def score_replies(
    entries: list[ReplyEntry], trim: Callable[[str], str], verbose: bool
) -> dict[str, dict[str, float | int]]:
    results: dict[str, dict[str, float | int]] = {}
    for corpus in REPLY_CORPORA:
        rows = [e for e in entries if e.corpus == corpus]
        scored = kept = clean = both = 0
        for entry in rows:
            if entry.spec.is_empty():
                continue  # assertions only about the other parser's structure (counts)
            started = time.perf_counter()
            output = trim(entry.text)
            is_kept, is_clean, reasons = score(entry.spec, output, time.perf_counter() - started)
            scored += 1
            kept += is_kept
            clean += is_clean
            both += is_kept and is_clean
            if verbose and reasons:
                print(f"FAIL {corpus} {' = '.join(entry.ids)}")
                for reason in reasons[:8]:
                    print(f"    {reason[:160]}")
        results[corpus] = {
            "entries": len(rows),
            "scored": scored,
            "kept_pct": _pct(kept, scored),
            "clean_pct": _pct(clean, scored),
            "both_pct": _pct(both, scored),
        }
    return results


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


UPDATE_FIGURES = ("kind_pct", "placed_pct", "leak_free_pct", "ratings_pct")


# --- Machine mail --------------------------------------------------------------------------------


def as_person_message(body: str, number: int) -> bytes:
    """A minimal member's reply around a corpus body, as it would reach our reply address."""
    headers = (
        "From: Anna Member <anna.member@example.com>\r\n"
        "To: reply+0123456789abcdef0123456789abcdef@roundtable.example\r\n"
        "Subject: Re: Your November update for the Tuesday group\r\n"
        "Date: Tue, 04 Nov 2025 09:30:00 +0100\r\n"
        f"Message-ID: <corpus-{number}@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return headers.encode() + body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def score_machine(
    corpus_dir: Path, index: list[dict[str, Any]], replies: list[ReplyEntry], verbose: bool
) -> dict[str, object] | None:
    try:
        from app.reading.machine import classify
    except ImportError:
        return None
    seen: set[str] = set()
    machine = machine_as_reply = bounces = bounces_found = not_bounce_as_bounce = 0
    for item in index:
        if item["corpus"] != "sisimai" or item["input_sha256"] in seen:
            continue
        seen.add(item["input_sha256"])
        kind = str(classify((corpus_dir / item["input"]).read_bytes()).kind)
        expected = item["expected_class"]
        if expected in MACHINE_CLASSES:
            machine += 1
            if kind == "reply":
                machine_as_reply += 1
                if verbose:
                    print(f"FAIL sisimai {item['id']}: {expected} classified as reply")
        if expected == "bounce":
            bounces += 1
            bounces_found += kind == "bounce"
            if verbose and kind not in ("bounce", "reply"):
                print(f"MISS sisimai {item['id']}: bounce classified as {kind}")
        if expected == "not-bounce" and kind == "bounce":
            not_bounce_as_bounce += 1
    reply_as_machine = 0
    for number, entry in enumerate(replies):
        kind = str(classify(as_person_message(entry.text, number)).kind)
        if kind != "reply":
            reply_as_machine += 1
            if verbose:
                print(f"FAIL {entry.corpus} {' = '.join(entry.ids)}: reply classified as {kind}")
    return {
        "machine_messages": machine,
        "machine_as_reply": machine_as_reply,
        "bounces": bounces,
        "bounce_recall_pct": _pct(bounces_found, bounces),
        "not_bounce_as_bounce": not_bounce_as_bounce,
        "replies": len(replies),
        "reply_as_machine": reply_as_machine,
    }


# --- Member updates answering our own request ------------------------------------------------------

# The manifest's section names where ours differ.
_UPDATE_KEYS = {"commitments_progress": "commitments"}
_SPACE_RUN = re.compile(r"[\s\u00a0\u202f]+")


def _flat(text: str) -> str:
    return _SPACE_RUN.sub(" ", text).strip()


def _expected_kind(sections: dict[str, Any]) -> str:
    if sections.get("is_skip"):
        return "skip"
    return "correction" if sections.get("is_correction") else "reply"


def score_updates(
    updates_dir: Path, verbose: bool, *, with_request: bool
) -> dict[str, float | int] | None:
    """Read each labelled update (with the request it answers when `with_request`) and score it
    as the set's README says: kind; phrases found in their own section; no must-not-contain
    string anywhere in what was read; ratings and topic priority exactly right."""
    manifest_path = updates_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    from app.reading import message as reading_message

    files = json.loads(manifest_path.read_text())
    kinds_right = placed_files = placed_total = phrases = phrases_placed = 0
    leak_free = rated_files = ratings_right = 0
    for item in files:
        raw = (updates_dir / item["file"]).read_bytes()
        request_path = updates_dir / "requests" / item["file"].replace(".eml", ".request.eml")
        if with_request and request_path.is_file():
            request = reading_message.sent_request(request_path.read_bytes())
            reading = reading_message.read_message(raw, request=request)
        else:
            reading = reading_message.read_message(raw)
        sections = reading.sections or {}
        texts = {key: _flat(value) for key, value in sections.get("texts", {}).items()}
        everything = _flat(reading.text) + " " + " ".join(texts.values())
        reasons: list[str] = []
        kind = _expected_kind(sections) if str(reading.kind) == "reply" else str(reading.kind)
        kinds_right += kind == item["kind"]
        if kind != item["kind"]:
            reasons.append(f"kind {kind}, expected {item['kind']}")
        expected = item["expected_sections"]
        file_phrases = file_placed = 0
        for key, value in expected.items():
            if key == "ratings":
                continue
            wanted = value["text"] if key == "topic" else value
            ours = texts.get(_UPDATE_KEYS.get(key, key), "")
            for phrase in wanted:
                file_phrases += 1
                if _flat(phrase) in ours:
                    file_placed += 1
                else:
                    where = [k for k, t in texts.items() if _flat(phrase) in t]
                    reasons.append(f"{key}: {phrase!r} " + (f"in {where}" if where else "lost"))
            if key == "topic" and value.get("priority") != sections.get("topic_priority"):
                file_phrases += 1
                reasons.append(f"priority {sections.get('topic_priority')}, expected {value.get('priority')}")
        phrases += file_phrases
        phrases_placed += file_placed
        if file_phrases:
            placed_total += 1
            placed_files += file_placed == file_phrases
        leaks = [s for s in item["must_not_contain"] if _flat(s) in everything]
        leak_free += not leaks
        reasons += [f"leaked: {s!r}" for s in leaks]
        if "ratings" in expected:
            rated_files += 1
            got = sections.get("ratings", {})
            ratings_right += got == expected["ratings"]
            if got != expected["ratings"]:
                reasons.append(f"ratings {got}, expected {expected['ratings']}")
        if verbose and reasons:
            print(f"FAIL updates{'+request' if with_request else ''} {item['file']} ({item['client']})")
            for reason in reasons[:10]:
                print(f"    {reason[:160]}")
    return {
        "files": len(files),
        "kind_pct": _pct(kinds_right, len(files)),
        "placed_pct": _pct(phrases_placed, phrases),
        "files_placed_pct": _pct(placed_files, placed_total),
        "leak_free_pct": _pct(leak_free, len(files)),
        "ratings_pct": _pct(ratings_right, rated_files),
    }


# --- Command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("updates_dir", nargs="?", type=Path, default=DEFAULT_UPDATES,
                        help="labelled member updates with their requests (skipped when absent)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list failing entries")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument("--min-both", type=float, metavar="PCT")
    parser.add_argument("--max-machine-as-reply", type=int, metavar="N")
    parser.add_argument("--max-reply-as-machine", type=int, metavar="N")
    parser.add_argument("--min-bounce-recall", type=float, metavar="PCT")
    parser.add_argument("--min-both-for", action="append", default=[], metavar="CORPUS=PCT",
                        help="a reply corpus's own floor instead of --min-both (repeatable)")
    for name in UPDATE_FIGURES:
        parser.add_argument(f"--min-updates-{name.replace('_pct', '').replace('_', '-')}",
                            type=float, metavar="PCT", dest=f"min_updates_{name}")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))  # run from a checkout without installing it
    from app.reading.trimming import new_words

    corpus_dir = args.corpus_dir.resolve()
    if not (corpus_dir / "index.json").is_file():
        parser.error(f"{corpus_dir} has no index.json: pass the shared corpus folder")
    index = json.loads((corpus_dir / "index.json").read_text())["entries"]
    entries = load_reply_entries(corpus_dir, index)
    replies = score_replies(entries, new_words, args.verbose)
    machine = score_machine(corpus_dir, index, entries, args.verbose)
    updates_dir = args.updates_dir.resolve()
    updates = {
        "without_request": score_updates(updates_dir, args.verbose, with_request=False),
        "with_request": score_updates(updates_dir, args.verbose, with_request=True),
    }

    print(f"{'corpus':<30}{'entries':>8}{'scored':>8}{'kept %':>8}{'clean %':>9}{'both %':>8}")
    for corpus, row in replies.items():
        print(
            f"{corpus:<30}{row['entries']:>8}{row['scored']:>8}{row['kept_pct']:>8.1f}"
            f"{row['clean_pct']:>9.1f}{row['both_pct']:>8.1f}"
        )
    if machine is None:
        print("machine: not available (app.reading.machine cannot be imported)")
    else:
        print(
            f"machine: sisimai {machine['machine_messages']} machine messages, "
            f"{machine['machine_as_reply']} taken for a reply; bounce recall "
            f"{machine['bounce_recall_pct']:.1f}% of {machine['bounces']}; "
            f"{machine['not_bounce_as_bounce']} ordinary messages taken for a bounce"
        )
        print(
            f"machine: {machine['reply_as_machine']} of {machine['replies']} "
            "reply-corpus bodies taken for machine mail"
        )

    for mode, row in updates.items():
        if row is None:
            print(f"updates ({mode.replace('_', ' ')}): {updates_dir} not found")
            continue
        print(
            f"updates ({mode.replace('_', ' ')}), {row['files']} files: kind {row['kind_pct']:.1f}%, "
            f"phrases placed {row['placed_pct']:.1f}% (files {row['files_placed_pct']:.1f}%), "
            f"leak-free {row['leak_free_pct']:.1f}%, ratings {row['ratings_pct']:.1f}%"
        )

    failures: list[str] = []
    floors = dict(item.split("=", 1) for item in args.min_both_for)
    for corpus, row in replies.items():
        floor = float(floors[corpus]) if corpus in floors else args.min_both
        if floor is not None and row["both_pct"] < floor:
            failures.append(f"{corpus}: both {row['both_pct']:.1f}% < {floor}%")
    scored_updates = updates["with_request"]
    for name in UPDATE_FIGURES:
        floor = getattr(args, f"min_updates_{name}")
        if floor is None:
            continue
        if scored_updates is None:
            failures.append(f"updates: {updates_dir} not found")
        elif scored_updates[name] < floor:
            failures.append(f"updates {name} {scored_updates[name]:.1f}% < {floor}%")
    machine_limits = (
        ("machine_as_reply", args.max_machine_as_reply, "machine mail taken for a reply", ""),
        ("reply_as_machine", args.max_reply_as_machine, "replies taken for machine mail", ""),
        ("bounce_recall_pct", args.min_bounce_recall, "bounce recall", "%"),
    )
    for key, limit, label, unit in machine_limits:
        if limit is None:
            continue
        if machine is None:
            failures.append(f"{label}: not available, app.reading.machine cannot be imported")
            continue
        value = machine[key]
        assert isinstance(value, int | float)
        if unit == "%" and value < limit:
            failures.append(f"{label} {value:.1f}% < {limit}%")
        elif unit != "%" and value > limit:
            failures.append(f"{label}: {value} > {limit}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if args.json:
        sys.stderr.flush()
        print(json.dumps({"replies": replies, "machine": machine, "updates": updates, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
