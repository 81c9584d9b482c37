"""a group's country, language and packet cadence; when a cycle's next packet version is due

`groups.country` (ISO 3166 alpha-2, empty when unknown) chooses the packet's paper size (Letter
in the US and Canada, A4 elsewhere); `groups.language` (a BCP 47 primary tag such as "en" or
"es") is the language members answer in besides English; `groups.packet_cadence` says how the
packet is re-issued after the deadline: "daily" (at most one new version a day) or "immediate";
`cycles.packet_due_at` is when late mail that changed a packet already sent goes out as its next version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('groups') as batch:
        batch.add_column(sa.Column('country', sa.String(2), nullable=False, server_default=''))
        batch.add_column(sa.Column('language', sa.String(8), nullable=False, server_default='en'))
        batch.add_column(sa.Column('packet_cadence', sa.String(10), nullable=False, server_default='daily'))
    with op.batch_alter_table('cycles') as batch:
        batch.add_column(sa.Column('packet_due_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cycles') as batch:
        batch.drop_column('packet_due_at')
    with op.batch_alter_table('groups') as batch:
        batch.drop_column('packet_cadence')
        batch.drop_column('language')
        batch.drop_column('country')
