"""the meeting: date polls, agenda, calendar invite, RSVPs and the recap (app/meeting/)

`groups.meeting_rule` (an RFC 5545 RRULE) and `groups.meeting_hours` ("08:30-12:30") let the tick
create cycles ahead; `groups.meeting_logistics` is what each new meeting's logistics start from.
`meetings` holds one cycle's invite UID and SEQUENCE, agenda and recap; `rsvps` each member's
answer and confirmed commitments; `polls` and `poll_votes` a date poll.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table('groups') as batch:
        batch.add_column(sa.Column('meeting_rule', sa.String(200), nullable=False, server_default=''))
        batch.add_column(sa.Column('meeting_hours', sa.String(11), nullable=False, server_default=''))
        batch.add_column(sa.Column('meeting_logistics', sa.JSON(), nullable=False, server_default='{}'))
    op.create_table(
        'meetings',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('group_id', sa.Integer(), sa.ForeignKey('groups.id', name='fk_meetings_group_id_groups'), nullable=False),
        sa.Column('cycle_id', sa.Integer(), sa.ForeignKey('cycles.id', name='fk_meetings_cycle_id_cycles'), nullable=False),
        sa.Column('occurrence', sa.String(10), nullable=True),
        sa.Column('uid', sa.String(255), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('logistics', sa.JSON(), nullable=False),
        sa.Column('agenda', sa.JSON(), nullable=False),
        sa.Column('agenda_status', sa.String(20), nullable=False),
        sa.Column('agenda_token', sa.String(64), nullable=False),
        _at('agenda_drafted_at'),
        _at('agenda_approved_at'),
        sa.Column('invited_sequence', sa.Integer(), nullable=True),
        _at('rsvp_reminder_sent_at'),
        sa.Column('recap_token', sa.String(64), nullable=False),
        _at('recap_requested_at'),
        sa.Column('recap_notes', sa.Text(), nullable=True),
        _at('recap_sent_at'),
        _at('cancelled_at'),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_meetings'),
        sa.UniqueConstraint('cycle_id', name='uq_meetings_cycle_id'),
        sa.UniqueConstraint('uid', name='uq_meetings_uid'),
        sa.UniqueConstraint('agenda_token', name='uq_meetings_agenda_token'),
        sa.UniqueConstraint('recap_token', name='uq_meetings_recap_token'),
        sa.UniqueConstraint('group_id', 'occurrence', name='uq_meetings_group_id'),
    )
    op.create_table(
        'rsvps',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('meeting_id', sa.Integer(), sa.ForeignKey('meetings.id', name='fk_rsvps_meeting_id_meetings'), nullable=False),
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', name='fk_rsvps_member_id_members'), nullable=False),
        sa.Column('token', sa.String(64), nullable=False),
        sa.Column('recap_token', sa.String(64), nullable=False),
        sa.Column('response', sa.String(10), nullable=False),
        _at('responded_at'),
        sa.Column('response_source', sa.String(20), nullable=True),
        _at('invited_at'),
        sa.Column('commitments', sa.JSON(), nullable=True),
        _at('commitments_confirmed_at'),
        sa.PrimaryKeyConstraint('id', name='pk_rsvps'),
        sa.UniqueConstraint('token', name='uq_rsvps_token'),
        sa.UniqueConstraint('recap_token', name='uq_rsvps_recap_token'),
        sa.UniqueConstraint('meeting_id', 'member_id', name='uq_rsvps_meeting_id'),
    )
    op.create_table(
        'polls',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('group_id', sa.Integer(), sa.ForeignKey('groups.id', name='fk_polls_group_id_groups'), nullable=False),
        sa.Column('token', sa.String(64), nullable=False),
        sa.Column('options', sa.JSON(), nullable=False),
        sa.Column('hours', sa.String(11), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('confirmed_option', sa.Integer(), nullable=True),
        sa.Column('cycle_id', sa.Integer(), sa.ForeignKey('cycles.id', name='fk_polls_cycle_id_cycles'), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_polls'),
        sa.UniqueConstraint('token', name='uq_polls_token'),
    )
    op.create_table(
        'poll_votes',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('poll_id', sa.Integer(), sa.ForeignKey('polls.id', name='fk_poll_votes_poll_id_polls'), nullable=False),
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', name='fk_poll_votes_member_id_members'), nullable=False),
        sa.Column('token', sa.String(64), nullable=False),
        sa.Column('choices', sa.JSON(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        _at('answered_at'),
        sa.PrimaryKeyConstraint('id', name='pk_poll_votes'),
        sa.UniqueConstraint('token', name='uq_poll_votes_token'),
        sa.UniqueConstraint('poll_id', 'member_id', name='uq_poll_votes_poll_id'),
    )


def downgrade() -> None:
    op.drop_table('poll_votes')
    op.drop_table('polls')
    op.drop_table('rsvps')
    op.drop_table('meetings')
    with op.batch_alter_table('groups') as batch:
        batch.drop_column('meeting_logistics')
        batch.drop_column('meeting_rule')
        batch.drop_column('meeting_hours')
