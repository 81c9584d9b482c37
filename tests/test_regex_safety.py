"""Every regular expression in app/ reads hostile text in linear time.

Mail comes from anyone, and one pattern that backtracks on a long run of spaces (`\\W*` then
`\\s*`) or repeats an ambiguous group lets a single email stall a worker for hours. These tests
find every pattern in app/: the compiled ones at module level and the literal ones handed to
`re.*` inside functions. They learn from the source how each is used (match, fullmatch, or a
search: search, findall, finditer, sub, split), and time it on 50,000-character runs of each
character class: spaces, tabs, no-break and ideographic spaces, newlines, letters, digits,
punctuation, mixes of two, and the pattern's own words. A linear pattern reads such a run in
milliseconds; a quadratic one takes seconds, an exponential one forever (a timer stops it).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import app

RUN_LENGTH = 50_000
LIMIT_S = 0.5  # linear patterns take milliseconds at RUN_LENGTH; quadratic ones many seconds

# Patterns in files this change does not own that fail today, marked for their owners to fix.
# Strict: once a pattern is fixed its mark must go. Key: the test id.
NOT_OURS: dict[str, str] = {}  # pattern id -> why it may stay slow (strict xfail); none today

_SEARCHES = {"search", "findall", "finditer", "sub", "subn", "split"}
_METHODS = _SEARCHES | {"match", "fullmatch"}
_ALL = frozenset({"match", "fullmatch", "search"})


@dataclass(frozen=True)
class Found:
    id: str  # "trimming._CLOSING"; "sections.<_number_list>#2": the third literal one in a function
    path: str  # "app/trimming.py"
    pattern: re.Pattern[Any]
    methods: frozenset[str]  # of "match", "fullmatch", "search"


def _module_names() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(app.__path__, "app.")]
    return [name for name in names if not name.startswith("app.migrations")]


def _path(module_name: str) -> Path:
    module = importlib.import_module(module_name)
    return Path(module.__file__ or "")


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names the module itself assigns (not those it imports)."""
    names = set()
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def _uses(trees: list[ast.Module]) -> dict[str, set[str]]:
    """How each name is used across app/: the pattern methods called on it, or "any" when it is
    passed on, iterated or otherwise read (then every method is tried)."""
    uses: dict[str, set[str]] = {}
    for tree in trees:
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                name = node.id
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                name = node.attr  # `trimming._EMAIL` from another module
            else:
                continue
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                if parent.attr in _METHODS:
                    uses.setdefault(name, set()).add(
                        "search" if parent.attr in _SEARCHES else parent.attr
                    )
                    continue
                if parent.attr in ("pattern", "flags", "groupindex"):
                    continue
            uses.setdefault(name, set()).add("any")
    return uses


def _methods(used: set[str] | None) -> frozenset[str]:
    return _ALL if used is None or "any" in used else frozenset(used)


def _module_patterns() -> Iterator[Found]:
    trees = {name: ast.parse(_path(name).read_text()) for name in _module_names()}
    uses = _uses(list(trees.values()))
    for module_name, tree in trees.items():
        module = importlib.import_module(module_name)
        short = module_name.removeprefix("app.")
        path = f"app/{short.replace('.', '/')}.py"
        for name in sorted(_top_level_names(tree)):
            value = getattr(module, name, None)
            items = (
                [(name, value)]
                if isinstance(value, re.Pattern)
                else [(f"{name}[{i}]", v) for i, v in enumerate(value)]
                if isinstance(value, (tuple, list))
                else [(f"{name}[{k!r}]", v) for k, v in value.items()]
                if isinstance(value, dict)
                else []
            )
            for label, item in items:
                if isinstance(item, re.Pattern):
                    yield Found(f"{short}.{label}", path, item, _methods(uses.get(name)))


# Where the flags go in each re function's arguments.
_FLAGS_ARG = {"compile": 1, "search": 2, "match": 2, "fullmatch": 2, "findall": 2, "finditer": 2}
_FLAGS_ARG |= {"sub": 4, "subn": 4, "split": 3}


def _constant(node: ast.expr) -> str | bytes | None:
    """The value of a literal pattern, including literals joined with `+`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _constant(node.left), _constant(node.right)
        if (
            isinstance(left, str)
            and isinstance(right, str)
            or isinstance(left, bytes)
            and isinstance(right, bytes)
        ):
            return left + right  # type: ignore[operator]
    return None


def _flags(call: ast.Call, function: str) -> int:
    position = _FLAGS_ARG[function]
    node = call.args[position] if len(call.args) > position else None
    node = next((k.value for k in call.keywords if k.arg == "flags"), node)
    return 0 if node is None else _flag_value(node)


def _flag_value(node: ast.expr) -> int:
    """`re.I`, `re.IGNORECASE | re.MULTILINE`, `0`."""
    if isinstance(node, ast.Attribute):
        return int(getattr(re, node.attr))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flag_value(node.left) | _flag_value(node.right)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    raise AssertionError(f"flags the audit cannot read: {ast.unparse(node)}")


def _inline_patterns() -> Iterator[Found]:
    """Literal patterns passed to re.* calls (re.compile only inside functions: the module-level
    ones are found as objects)."""
    for module_name in _module_names():
        tree = ast.parse(_path(module_name).read_text())
        short = module_name.removeprefix("app.")
        path = f"app/{short.replace('.', '/')}.py"
        scopes: list[tuple[str, ast.AST]] = [("<module>", tree)]
        scopes += [
            (n.name, n)
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        inner = {id(n) for _, scope in scopes[1:] for n in ast.walk(scope) if n is not scope}
        for scope_name, scope in scopes:
            count = 0
            for node in ast.walk(scope):
                if scope_name == "<module>" and id(node) in inner:
                    continue
                if (
                    scope_name != "<module>"
                    and node is not scope
                    and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                ):
                    continue
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "re"
                    and node.func.attr in _FLAGS_ARG
                    and node.args
                ):
                    continue
                function = node.func.attr
                if function == "compile" and scope_name == "<module>":
                    continue
                source = _constant(node.args[0])
                if source is None:
                    continue  # built at run time (inbound._header_pattern): read by eye
                methods = (
                    _ALL
                    if function == "compile"
                    else frozenset({"search" if function in _SEARCHES else function})
                )
                yield Found(
                    f"{short}.<{scope_name}>#{count}",
                    path,
                    re.compile(source, _flags(node, function)),
                    methods,
                )
                count += 1


def _all_patterns() -> list[Found]:
    return list(_module_patterns()) + list(_inline_patterns())


# --- the hostile runs -----------------------------------------------------------------------------

_RUNS = [" ", "\t", "\xa0", "\u3000", "\n", "\r\n", "a", "Z", "é", "1", "-", "*", ">", "="]
_RUNS += [".", ":", "_", "<", "(", "[", "@", "/", ",", "#", "'"]
_MIXES = ["a ", "a.", "1.", "1 ", "1,", "1:", "> ", ">\n", "- ", "-\n", "* ", " \n", "\t ", "a\n"]
_MIXES += ["a-", "a@", "a, ", "ab ", "<a", "a:", "=\n", ". ", "a\t", "\xa0 ", "1/", "a'"]


def _words(pattern: re.Pattern[Any]) -> list[str]:
    """A few of the pattern's own words ("regards", "wrote", "attachments"): runs of them, and
    one followed by a long run of spaces, are what a pattern built around them trips on."""
    source = (
        pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode("latin-1")
    )
    words = re.findall(r"[^\W\d_]{2,}", re.sub(r"\\.", " ", source))
    return list(dict.fromkeys(word.lower() for word in words))[:6]


def _inputs(pattern: re.Pattern[Any]) -> Iterator[str]:
    for unit in _RUNS + _MIXES:
        run = unit * (RUN_LENGTH // len(unit))
        yield run
        yield run + "\x01"  # a character nothing expects, so the match fails at the very end
    for word in _words(pattern):
        yield (word + " ") * (RUN_LENGTH // (len(word) + 1))
        yield word + " " * RUN_LENGTH + "\x01"


class _TooSlow(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TooSlow


def _seconds(call: Callable[[], object], limit_s: float = LIMIT_S) -> float:
    """Time one call; a call still running at twice `limit_s` is stopped (the regex engine checks
    for signals) and reported as infinitely slow."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s * 2)
    started = time.perf_counter()
    try:
        call()
        return time.perf_counter() - started
    except _TooSlow:
        return float("inf")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


PATTERNS = _all_patterns()


def _param(found: Found) -> Any:
    if found.id in NOT_OURS:
        reason = f"{found.path} is not ours to change here: {NOT_OURS[found.id]}"
        return pytest.param(found, id=found.id, marks=pytest.mark.xfail(strict=True, reason=reason))
    return pytest.param(found, id=found.id)


def test_every_pattern_is_found() -> None:
    ids = {found.id for found in PATTERNS}
    # A few we know are there, of each kind: a broken search must not pass by finding none.
    assert {"reading.trimming._CLOSING", "reading.machine._BOUNCE_BODY", "reading.sections._PRIORITY_PATTERNS[2]"} <= ids
    assert any(found.id.startswith("reading.sections.<_number_list>") for found in PATTERNS)
    assert any(isinstance(found.pattern.pattern, bytes) for found in PATTERNS)
    assert len(PATTERNS) > 100


@pytest.mark.parametrize("found", [_param(found) for found in PATTERNS])
def test_pattern_reads_long_runs_in_linear_time(found: Found) -> None:
    for text in _inputs(found.pattern):
        subject: str | bytes = text.encode() if isinstance(found.pattern.pattern, bytes) else text
        for method in sorted(found.methods):
            seconds = _seconds(partial(getattr(found.pattern, method), subject))
            assert seconds < LIMIT_S, (
                f"{found.path}: {found.id}.{method} took {seconds:.2f} s on {len(text):,} chars"
                f" starting {text[:12]!r}: {found.pattern.pattern!r}"
            )


# --- whole messages -------------------------------------------------------------------------------

# Lines that stalled a worker before (times on the code before issue 11), read through the
# functions a worker calls: trimming, section splitting, and the whole message.
HOSTILE_LINES = {
    "spaces before a letter": " " * 50_000 + "x",  # _CLOSING: 40k took 18.5 s
    "no-break spaces": "\xa0" * 50_000 + "x",
    "ideographic spaces": "\u3000" * 50_000 + "x",
    "tabs": "\t" * 50_000 + "x",
    "stars": "*" * 50_000 + "x",  # _FOOTER
    "a closing then spaces": "Best" + " " * 50_000 + "x",
    "a quoted rating label": "> business" + " " * 190 + "x",  # _RATING_LABEL_LINE: 49 s
    "a rating label": "Business" + " " * 190 + "x",
    "digits": "1" * 40 + "x",  # _number_list: exponential, 30 digits took minutes
    "digits and spaces": "7" + " " * 190 + "x",
    "a long heading tail": "Wins" + ":" * 400_000,  # the tail was sliced once per colon
    "priority then spaces": "priority" + " " * 50_000 + "x",  # _PRIORITY_PATTERNS
    "blank lines": "A" + "\n" * 50_000 + "x",
    "a wrote header's spaces": "On Mon, Anna wrote" + " " * 50_000 + ":x",
    "a field's spaces": "From" + " " * 50_000 + "x",
    "attachments": "This email " + "attachments " * 5_000,  # _DISCLAIMER_TERMS
}


def _body(line: str) -> str:
    return f"RATINGS\n{line}\n\nTOPIC\n{line}\n\nWINS\nA deal.\n{line}\n\n{line}"


@pytest.mark.parametrize("line", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_a_hostile_body_is_read_in_bounded_time(line: str) -> None:
    from email.message import EmailMessage

    from app.reading.message import read_message
    from app.reading.sections import split_sections
    from app.reading.trimming import new_words

    text = _body(line)
    assert _seconds(lambda: split_sections(new_words(text, "Anna Berg")), 2.0) < 2.0
    assert (
        _seconds(lambda: new_words(text.replace("\n", "\n> ") + "\nOn Mon, Anna wrote:"), 2.0) < 2.0
    )
    message = EmailMessage()
    message["From"] = "Anna Berg <anna@example.com>"
    message["To"] = "reply+0123456789abcdef0123456789abcdef@in.forum.example"
    message["Subject"] = "Re: Your update"
    message.set_content(text)
    raw = bytes(message)
    assert _seconds(lambda: read_message(raw, "anna@example.com", []), 4.0) < 4.0
