"""Email addresses and reply tokens: the one place for how we compare addresses and how a reply
address carries its token. Pure."""

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
