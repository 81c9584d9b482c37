"""What reading a message costs, against mail-parser's own parse of the same message.

    python bench/reading.py [CORPUS_DIR] [UPDATES_DIR] [--count 1000] [--rounds 3]

Takes 1,000 messages (by default) from the shared folders, cycling through them in a fixed order:
the sisimai machine mail (bounces, DSNs, auto-replies in many charsets), the labelled member
updates answering our request, and the reply-corpus bodies wrapped as a member's message. Times
`mailparser.parse_from_bytes` over all of them, then `app.reading.message.read_message` (the
whole reader: classify, MIME, trimming, sections) and, for the updates, `read_message` with the
request they answer. Each pass runs `--rounds` times and the fastest counts (the machine is
shared). The last line is one JSON object; `reading_ratio` is the reader's time over
mail-parser's (the goal is 2.0 or less).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
DEFAULT_UPDATES = REPO.parent / "shared" / "updates-dev"


def messages(corpus_dir: Path, updates_dir: Path, count: int) -> list[tuple[bytes, bytes | None]]:
    """(raw message, raw request it answers or None), `count` of them, in a fixed order."""
    from bench.corpus_score import as_person_message

    found: list[tuple[bytes, bytes | None]] = []
    index = json.loads((corpus_dir / "index.json").read_text())["entries"] if (corpus_dir / "index.json").is_file() else []
    seen: set[str] = set()
    for number, item in enumerate(index):
        if item["input_sha256"] in seen:
            continue
        seen.add(item["input_sha256"])
        data = (corpus_dir / item["input"]).read_bytes()
        if item["input_format"] == "eml":
            found.append((data, None))
        else:
            found.append((as_person_message(data.decode("utf-8", "replace"), number), None))
    for path in sorted(updates_dir.glob("*.eml")):
        request = updates_dir / "requests" / path.name.replace(".eml", ".request.eml")
        found.append((path.read_bytes(), request.read_bytes() if request.is_file() else None))
    if not found:
        raise SystemExit(f"no messages in {corpus_dir} or {updates_dir}")
    return [found[i % len(found)] for i in range(count)]


def fastest(rounds: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("updates_dir", nargs="?", type=Path, default=DEFAULT_UPDATES)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 above this reading_ratio")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # run from a checkout without installing it

    import logging

    import mailparser

    logging.getLogger("mailparser").setLevel(logging.CRITICAL)  # its "not handled" notes

    from app.reading.message import read_message, sent_request

    batch = messages(args.corpus_dir.resolve(), args.updates_dir.resolve(), args.count)
    requests = {raw: sent_request(request) for raw, request in batch if request is not None}

    def parse_all() -> None:
        for raw, _ in batch:
            # mail-parser's own failures cost what they cost
            with contextlib.suppress(Exception):
                mailparser.parse_from_bytes(raw)

    def read_all() -> None:
        for raw, _ in batch:
            read_message(raw)

    def read_all_with_requests() -> None:
        for raw, _ in batch:
            read_message(raw, request=requests.get(raw))

    mailparser_s = fastest(args.rounds, parse_all)
    reading_s = fastest(args.rounds, read_all)
    with_requests_s = fastest(args.rounds, read_all_with_requests)
    ratio = reading_s / mailparser_s
    print(f"{len(batch)} messages: mail-parser {mailparser_s:.2f} s, read_message {reading_s:.2f} s "
          f"({ratio:.2f}x), with the request where known {with_requests_s:.2f} s")
    print(json.dumps({
        "messages": len(batch),
        "mailparser_s": round(mailparser_s, 3),
        "reading_s": round(reading_s, 3),
        "reading_with_requests_s": round(with_requests_s, 3),
        "reading_ratio": round(ratio, 2),
    }))
    return 1 if args.max_ratio is not None and ratio > args.max_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
