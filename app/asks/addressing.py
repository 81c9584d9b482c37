"""Which group a message was sent to by its own address: `GROUPSLUG@<inbound domain>` or
`ask+GROUPSLUG@<inbound domain>`."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.addresses import find_tokens, normalize
from app.models import Group, InboundMessage
from app.settings import Settings


def group_slugs(addresses: list[str], inbound_domain: str) -> list[str]:
    """The group slugs addressed: `slug@<inbound domain>` or `ask+slug@<inbound domain>`. Pure."""
    slugs = []
    for address in addresses:
        local, _, domain = normalize(address).rpartition("@")
        if domain != inbound_domain.lower() or not local or find_tokens([address]):
            continue
        slug = local.removeprefix("ask+")
        if slug and slug not in slugs:
            slugs.append(slug)
    return slugs


def _recipients(row: InboundMessage) -> list[str]:
    """The envelope recipients first, then the To and Cc of the stored message."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(row.raw[:200_000], headersonly=True)
    values = [str(v) for name in ("To", "Cc") for v in headers.get_all(name, [])]
    envelope = [a for a in (row.envelope_to or "").split(",") if a.strip()]
    return envelope + [address for _, address in getaddresses(values)]


def group_addressed(session: Session, settings: Settings, row: InboundMessage) -> Group | None:
    """The group whose own address this message was sent to (the envelope's first), if any."""
    for slug in group_slugs(_recipients(row), settings.inbound_domain):
        group = session.scalar(select(Group).where(Group.slug == slug))
        if group is not None:
            return group
    return None
