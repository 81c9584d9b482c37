"""what each update version changed, and members removed from a group

`updates.change` records how a later message was read (a whole new update, a correction, an
addition, or unclear and flagged) and which sections it touched, so a receipt and the packet
can say what changed. `inbound_messages.note` keeps the words of a message that changed nothing
(thanks, a question), for the facilitator. `members.removed_at` keeps a removed member in the history of past cycles
while they leave the roster.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('updates') as batch:
        batch.add_column(sa.Column('change', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('inbound_messages') as batch:
        batch.add_column(sa.Column('note', sa.Text(), nullable=True))
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.drop_column('removed_at')
    with op.batch_alter_table('inbound_messages') as batch:
        batch.drop_column('note')
    with op.batch_alter_table('updates') as batch:
        batch.drop_column('change')
