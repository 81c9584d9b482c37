"""Email addresses, display names and reply tokens: the one place for how we compare addresses,
clean a name we show, and how a reply address carries its token. Pure."""

from __future__ import annotations

import re
import secrets

# A reply token: 128 random bits, lower-case hex, in `reply+<token>@<inbound domain>`.
TOKEN_BYTES = 16
# `+` may be stripped by an MTA, or arrive as a space from an unescaped query string.
_TOKEN_IN_ADDRESS = re.compile(rf"\breply[+ ]?([0-9a-f]{{{2 * TOKEN_BYTES}}})@", re.IGNORECASE)


def normalize(address: str) -> str:
    """An address as we store and compare it: no angle brackets or spaces around it, lower case
    (mailbox names are case-insensitive at every provider our members use)."""
    return address.strip().strip("<>").strip().lower()


def same(a: str, b: str) -> bool:
    return bool(a) and normalize(a) == normalize(b)


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def reply_address(domain: str, token: str) -> str:
    return f"reply+{token}@{domain}"


def find_tokens(addresses: list[str]) -> list[str]:
    """Reply tokens in the order given, each once; tolerant of a stripped `+` and case."""
    tokens: list[str] = []
    for address in addresses:
        for match in _TOKEN_IN_ADDRESS.finditer(address or ""):
            token = match.group(1).lower()
            if token not in tokens:
                tokens.append(token)
    return tokens


# Bidirectional formatting characters (embeddings, overrides, isolates and the marks): in a name
# or file name they reorder what is shown, so "invoice\u202efdp.exe" reads as "invoiceexe.pdf".
_BIDI_CONTROLS = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def without_bidi(text: str) -> str:
    """`text` without bidirectional formatting characters: for names and file names we show
    (app.roster cleans them on the way in, app.packets those stored before). Pure."""
    return _BIDI_CONTROLS.sub("", text)
