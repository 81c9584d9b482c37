"""asks: members' resource requests, their circulation to peers, and the offers that came back

`asks` holds one request per item (from an update's asks section or mail to the group's
address), unique by where it came from; `ask_circulations` one row per other member it went to
(their reply token, the email it went in); `offers` each answer routed privately to the asker.
`groups` gains the asks settings: facilitator approval, a weekly limit per member, and daily
digests or immediate circulation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('groups') as batch:
        batch.add_column(sa.Column('asks_need_approval', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('asks_per_week', sa.Integer(), nullable=False, server_default='3'))
        batch.add_column(sa.Column('ask_circulation', sa.String(10), nullable=False, server_default='daily'))
    op.create_table(
        'asks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('source_key', sa.String(120), nullable=False),
        sa.Column('update_request_id', sa.Integer(), nullable=True),
        sa.Column('inbound_message_id', sa.Integer(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(20), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('token', sa.String(64), nullable=False),
        sa.Column('approval_token', sa.String(64), nullable=False),
        sa.Column('thanked', sa.Text(), nullable=True),
        sa.Column('opened_at', TZ, nullable=True),
        sa.Column('closed_at', TZ, nullable=True),
        sa.Column('followed_up_at', TZ, nullable=True),
        sa.Column('created_at', TZ, nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name='fk_asks_group_id_groups'),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'], name='fk_asks_member_id_members'),
        sa.ForeignKeyConstraint(['update_request_id'], ['update_requests.id'],
                                name='fk_asks_update_request_id_update_requests'),
        sa.ForeignKeyConstraint(['inbound_message_id'], ['inbound_messages.id'],
                                name='fk_asks_inbound_message_id_inbound_messages'),
        sa.PrimaryKeyConstraint('id', name='pk_asks'),
        sa.UniqueConstraint('source_key', name='uq_asks_source_key'),
        sa.UniqueConstraint('token', name='uq_asks_token'),
        sa.UniqueConstraint('approval_token', name='uq_asks_approval_token'),
    )
    op.create_index('ix_asks_group_id', 'asks', ['group_id'])
    op.create_index('ix_asks_follow_up', 'asks', ['opened_at'],
                    postgresql_where=sa.text("followed_up_at IS NULL AND status IN ('open', 'answered')"))
    op.create_table(
        'ask_circulations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ask_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(64), nullable=False),
        sa.Column('outbound_message_id', sa.Integer(), nullable=True),
        sa.Column('digest_token', sa.String(64), nullable=True),
        sa.Column('sent_at', TZ, nullable=True),
        sa.Column('created_at', TZ, nullable=False),
        sa.ForeignKeyConstraint(['ask_id'], ['asks.id'], name='fk_ask_circulations_ask_id_asks'),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'], name='fk_ask_circulations_member_id_members'),
        sa.ForeignKeyConstraint(['outbound_message_id'], ['outbound_messages.id'],
                                name='fk_ask_circulations_outbound_message_id_outbound_messages'),
        sa.PrimaryKeyConstraint('id', name='pk_ask_circulations'),
        sa.UniqueConstraint('ask_id', 'member_id', name='uq_ask_circulations_ask_id_member_id'),
        sa.UniqueConstraint('token', name='uq_ask_circulations_token'),
    )
    op.create_index('ix_ask_circulations_digest_token', 'ask_circulations', ['digest_token'])
    op.create_index('ix_ask_circulations_unsent', 'ask_circulations', ['member_id'],
                    postgresql_where=sa.text('sent_at IS NULL'))
    op.create_index('ix_ask_circulations_member_sent', 'ask_circulations', ['member_id', 'sent_at'])
    op.create_table(
        'offers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ask_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('inbound_message_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', TZ, nullable=False),
        sa.ForeignKeyConstraint(['ask_id'], ['asks.id'], name='fk_offers_ask_id_asks'),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'], name='fk_offers_member_id_members'),
        sa.ForeignKeyConstraint(['inbound_message_id'], ['inbound_messages.id'],
                                name='fk_offers_inbound_message_id_inbound_messages'),
        sa.PrimaryKeyConstraint('id', name='pk_offers'),
        sa.UniqueConstraint('inbound_message_id', name='uq_offers_inbound_message_id'),
    )
    op.create_index('ix_offers_ask_id', 'offers', ['ask_id'])


def downgrade() -> None:
    op.drop_table('offers')
    op.drop_table('ask_circulations')
    op.drop_table('asks')
    with op.batch_alter_table('groups') as batch:
        batch.drop_column('ask_circulation')
        batch.drop_column('asks_per_week')
        batch.drop_column('asks_need_approval')

