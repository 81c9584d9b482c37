"""Whether a message really comes from its From address, by the SPF, DKIM and DMARC results
that came with it. Pure: no I/O, no clock, no settings; never raises on malformed input, and
every step is linear in its input (no backtracking regex), so a hostile header costs little.

The rule: hold ("fail") when the From domain's DMARC failed, or when SPF failed and DKIM gives
no support for the From domain. Nothing to go on at all is "unknown", accepted as before.

- SPF `fail` and `softfail` are failures; `none`, `neutral`, `temperror` and `permerror` are
  not (they say the sender's setup is missing or broken, not that this server is refused).
  Softfail alone is common for forwarded mail, so it holds a message only together with DKIM.
- DKIM supports the From domain when a signature passes for an aligned domain: the same
  domain, a subdomain or a parent (relaxed alignment, approximated without the public suffix
  list: a signature for a sibling such as mail.x.example does not count for news.x.example).
  It fails when there are signatures and none of them passes aligned, and also when the
  message has no signature at all (SendGrid's `none`): otherwise a forger who does not sign
  would get through where one who signs with their own domain is held. A temporary error on
  an aligned signature means we could not check, and holds nothing.
- DMARC failing for the From domain is enough on its own.
- "pass" needs a pass for the From domain itself: DMARC, aligned DKIM, or SPF for an aligned
  envelope sender. An SPF pass for some other domain proves nothing about the From address.

Where the results come from, and how far each is believed:
- SendGrid's form fields `SPF` (`pass`, `softfail`, ...) and `dkim` (`{@a.example : pass,
  @b.example : fail}`, or `none`; not JSON), with the envelope sender from `envelope`. SendGrid
  computed them at its own MX, so they count both ways.
- The topmost `Authentication-Results` (RFC 8601) and the topmost `Received-SPF` field of the
  message. Anyone can write these, and nobody above the sender adds one when mail goes straight
  to SendGrid. So in a SendGrid post they can only add failures (a forged failure only hurts
  its forger): a header's pass counts as no information and never outweighs SendGrid's fields.
  Only with no form fields at all (`/inbound/raw`, behind our own MTA) are the topmost fields
  our own server's, and count both ways. Only the topmost field of each name is read: a
  server that writes its results over several `Authentication-Results` fields is read in part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from app.reading.machine import decode_bytes

AuthVerdict = Literal["pass", "fail", "unknown"]


@dataclass(frozen=True)
class Authentication:
    verdict: AuthVerdict
    reason: str  # one sentence for the facilitator


@dataclass(frozen=True)
class _Result:
    """One result from one source: `dkim` / `pass` / `northwind.example`."""

    method: str  # spf, dkim or dmarc
    result: str  # lower case; `none` for DKIM means "checked: no signature"
    domain: str | None  # SPF: the envelope sender's; DKIM: the signer's; DMARC: the From's


_SPF_FAILED = frozenset({"fail", "softfail", "hardfail"})  # hardfail: an old name for fail
_MAX_HEADER_BLOCK = 256 * 1024
_MAX_SHOWN = 100  # characters of an address or domain quoted in a reason


def sender_authentication(raw: bytes, fields: dict[str, Any], from_address: str) -> Authentication:
    """Whether `raw` authenticates as coming from `from_address`, from SendGrid's `fields` and the
    message's topmost authentication headers. Pure; never raises."""
    fields = fields if isinstance(fields, dict) else {}
    domain = _domain(from_address)
    results = _sendgrid_results(fields)
    header_results = _header_results(raw if isinstance(raw, bytes) else b"")
    if fields:  # a SendGrid post: see the module's docstring
        header_results = [r for r in header_results if _is_failure(r)]
    results += header_results

    dmarc_failed = [
        r
        for r in results
        if r.method == "dmarc"
        and r.result == "fail"
        and (domain is None or r.domain in (None, domain))
    ]
    spf = [r for r in results if r.method == "spf"]
    spf_failed = any(r.result in _SPF_FAILED for r in spf)
    # An SPF pass for another domain (the forger's own) says nothing for the From domain: as
    # DMARC reads it, SPF failed to align.
    spf_elsewhere = sorted(
        {r.domain for r in spf if r.result == "pass" and r.domain and domain and not _aligned(r.domain, domain)}
    )
    if any(r.result == "pass" and _aligned(r.domain, domain) for r in spf):
        spf_elsewhere = []
    dkim = [r for r in results if r.method == "dkim"]
    dkim_state = _dkim_state(dkim, domain)

    shown = _shown(from_address)
    spf_not_for_sender = spf_failed or bool(spf_elsewhere)
    if dmarc_failed or (spf_not_for_sender and dkim_state in ("fail", "none")):
        clauses = (
            [f"DMARC failed for {_shown(domain or dmarc_failed[0].domain) or 'its domain'}"]
            if dmarc_failed
            else []
        )
        if spf_not_for_sender and dkim_state in ("fail", "none"):
            said_spf = "SPF failed" if spf_failed else f"SPF passed only for {', '.join(_shown(d) for d in spf_elsewhere[:3])}"
            clauses += [said_spf, _dkim_failure(dkim, domain, dkim_state)]
        said = ", ".join(clauses[:-1]) + " and " + clauses[-1] if len(clauses) > 1 else clauses[0]
        opening = f"it claims to be from {shown}, but" if shown else "it has no From address, and"
        return Authentication("fail", f"{opening} {said}")

    if domain is not None:
        for r in results:
            if r.method == "dmarc" and r.result == "pass" and r.domain in (None, domain):
                return Authentication("pass", f"DMARC passed for {_shown(domain)}")
        if dkim_state == "pass":
            signer = next(
                r.domain for r in dkim if r.result == "pass" and _aligned(r.domain, domain)
            )
            return Authentication("pass", f"DKIM passed for {_shown(signer)}")
        for r in results:
            if r.method == "spf" and r.result == "pass" and _aligned(r.domain, domain):
                return Authentication("pass", f"SPF passed for {_shown(r.domain)}")
    if not results:
        return Authentication("unknown", "no SPF, DKIM or DMARC results came with it")
    if domain is None:
        return Authentication("unknown", "it has no From address to check SPF and DKIM against")
    return Authentication(
        "unknown", f"neither SPF nor DKIM confirms that it comes from {_shown(domain)}"
    )


def _is_failure(r: _Result) -> bool:
    """What a header may say in a SendGrid post, where anyone could have written it."""
    if r.method == "spf":
        return r.result in _SPF_FAILED
    if r.method == "dkim":
        return r.result not in ("pass", "temperror")
    return r.result == "fail"


def _dkim_state(dkim: list[_Result], domain: str | None) -> str:
    """pass (an aligned signature passed), unknown (no results, or an aligned one could not be
    checked), none (checked: no signature) or fail (signatures, none passing aligned)."""
    if any(r.result == "pass" and _aligned(r.domain, domain) for r in dkim):
        return "pass"
    if any(r.result == "temperror" and _aligned(r.domain, domain) for r in dkim):
        return "unknown"
    if any(r.result != "none" for r in dkim):
        return "fail"
    return "none" if dkim else "unknown"


def _dkim_failure(dkim: list[_Result], domain: str | None, state: str) -> str:
    if state == "none":
        return "it has no DKIM signature"
    others = sorted(
        {
            r.domain
            for r in dkim
            if r.result == "pass" and r.domain and not _aligned(r.domain, domain)
        }
    )
    if others:
        return f"DKIM passed only for {', '.join(_shown(d) for d in others[:3])}"
    return "DKIM failed"


def _aligned(signer: str | None, domain: str | None) -> bool:
    """Relaxed alignment, without the public suffix list: the same domain, a subdomain or a
    parent. A bare TLD never aligns (both have a dot, by `_domain`)."""
    if not signer or not domain:
        return False
    return signer == domain or signer.endswith("." + domain) or domain.endswith("." + signer)


def _domain(value: str | None) -> str | None:
    """The domain of an address or domain, lower case and IDNA-encoded; None unless it looks
    like a domain with at least two labels."""
    if not isinstance(value, str):
        return None
    host = value.rpartition("@")[2].strip().strip("<>[]\"' \t").rstrip(".").lower()
    if not host or len(host) > 253 or "." not in host or host.startswith("."):
        return None
    if not all(c.isalnum() or c in "-._" for c in host):
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:  # a label too long or empty: compare it as written
            pass
    return host


def _shown(value: str | None) -> str:
    """A value as quoted in a reason: printable, one line, short."""
    text = " ".join("".join(c for c in (value or "") if c.isprintable()).split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _word(text: str) -> str:
    """The first word of a result, lower case, letters only: `Fail` -> fail, `pass;` -> pass."""
    words = text.split(None, 1)
    return "".join(c for c in words[0][:20].lower() if "a" <= c <= "z") if words else ""


# --- SendGrid's fields --------------------------------------------------------------------------


def _sendgrid_results(fields: dict[str, Any]) -> list[_Result]:
    results: list[_Result] = []
    spf = fields.get("SPF")
    if isinstance(spf, str) and _word(spf):
        results.append(_Result("spf", _word(spf), _envelope_domain(fields.get("envelope"))))
    dkim = fields.get("dkim")
    if isinstance(dkim, str):
        results += _sendgrid_dkim(dkim)
    return results


def _sendgrid_dkim(value: str) -> list[_Result]:
    """`{@a.example : pass, @b.example : fail}` (a Ruby hash printed, not JSON), or `none`."""
    if value.strip().lower() == "none":
        return [_Result("dkim", "none", None)]
    results = []
    for entry in value.replace("{", " ").replace("}", " ").split(","):
        signer, colon, result = entry.partition(":")
        if colon and _word(result):
            results.append(_Result("dkim", _word(result), _domain(signer)))
    return results


def _envelope_domain(envelope: Any) -> str | None:
    if not isinstance(envelope, str):
        return None
    try:
        data = json.loads(envelope)
    except (ValueError, RecursionError):
        return None
    return _domain(data.get("from")) if isinstance(data, dict) else None


# --- the message's headers ---------------------------------------------------------------------


def _header_results(raw: bytes) -> list[_Result]:
    results: list[_Result] = []
    fields = _topmost_fields(raw[:_MAX_HEADER_BLOCK], (b"authentication-results", b"received-spf"))
    if b"authentication-results" in fields:
        results += _authentication_results(fields[b"authentication-results"])
    if b"received-spf" in fields:
        results += _received_spf(fields[b"received-spf"])
    return results


def _topmost_fields(raw: bytes, names: tuple[bytes, ...]) -> dict[bytes, str]:
    """The first field of each name in the header block, unfolded; a scan, not a parse."""
    found: dict[bytes, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line:
            break  # the end of the header block
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        name, colon, value = line.partition(b":")
        name = name.rstrip(b" \t").lower()
        current = None
        if colon and name in names and name not in found:
            current = found[name] = [value]
        if len(found) == len(names) and current is None:
            break
    return {name: decode_bytes(b" ".join(lines), "utf-8") for name, lines in found.items()}


# A quoted pair, a special, or a run of anything else: one token per step, so no backtracking.
_TOKEN = re.compile(r'\\.|[()";]|[^\\()";]+', re.DOTALL)


def _segments(value: str) -> list[list[str]]:
    """`a; b=c (comment; with=x) d="e;f"` -> [["a"], ["b=c", "d=e;f"]]: the header split at its
    semicolons, comments dropped, quotes undone, `key = value` joined into one word."""
    segments: list[list[str]] = []
    current: list[str] = []
    depth = 0  # of comment parentheses
    quoted = False
    for match in _TOKEN.finditer(value):
        token = match.group()
        if quoted:
            if token == '"':
                quoted = False
            else:
                current.append(token.removeprefix("\\"))
        elif depth:
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if not depth:
                    current.append(" ")
        elif token == "(":
            depth = 1
        elif token == '"':
            quoted = True
        elif token == ";":
            segments.append(_words("".join(current)))
            current = []
        else:
            current.append(" " if token == ")" else token)
    segments.append(_words("".join(current)))
    return segments


def _words(text: str) -> list[str]:
    parts: list[list[str]] = []
    for word in text.split():
        if parts and (word.startswith("=") or parts[-1][-1].endswith("=")):
            parts[-1].append(word)
        else:
            parts.append([word])
    return ["".join(p) for p in parts]


def _authentication_results(value: str) -> list[_Result]:
    """`mx.example; spf=fail smtp.mailfrom=a@x.example; dkim=pass header.d=x.example; dmarc=...`.
    Microsoft 365 leaves out the leading authserv-id: any word without `=` before a method's
    result is skipped, the authserv-id and its version among them."""
    results = []
    for words in _segments(value):
        pairs = [w.partition("=") for w in words if "=" in w]
        if not pairs:
            continue
        method, _, result = pairs[0]
        method, result = method.lower().partition("/")[0], _word(result)
        if not result:
            continue
        properties = {key.lower(): prop for key, _, prop in pairs[1:]}
        if method == "spf":
            domain = properties.get("smtp.mailfrom")
        elif method == "dkim":
            domain = properties.get("header.d") or properties.get("header.i")
        elif method == "dmarc":
            domain = properties.get("header.from")
        else:
            continue
        results.append(_Result(method, result, _domain(domain)))
    return results


def _received_spf(value: str) -> list[_Result]:
    """`Fail (mx.example: domain of a@x.example does not designate ...) envelope-from=a@x.example; ...`"""
    segments = _segments(value)
    first = segments[0][0] if segments[0] else "="
    result = "" if "=" in first else _word(first)
    if not result:
        return []
    properties = {
        key.lower(): prop
        for words in segments
        for key, _, prop in (w.partition("=") for w in words)
    }
    return [_Result("spf", result, _domain(properties.get("envelope-from")))]
