"""inbound raw mail compressed with lz4 where PostgreSQL has it

A stored message of more than about 2 KB is compressed by PostgreSQL. Its default, pglz, costs
the webhook's insert more time than lz4 does for the same mail (with 5 KB replies stored four
to a statement, PostgreSQL's CPU per message fell from 0.068 to 0.050 ms). lz4 comes with
PostgreSQL 14 and newer when built with it, as Debian's and the official images are;
elsewhere, and on SQLite, nothing changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 02:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _has_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    query = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    return bool(bind.scalar(sa.text(query)))


def upgrade() -> None:
    # Rows stored before keep their compression; PostgreSQL reads both.
    if _has_lz4():
        op.execute("ALTER TABLE inbound_messages ALTER COLUMN raw SET COMPRESSION lz4")


def downgrade() -> None:
    if _has_lz4():
        op.execute("ALTER TABLE inbound_messages ALTER COLUMN raw SET COMPRESSION default")
