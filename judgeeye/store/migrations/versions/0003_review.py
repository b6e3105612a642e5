"""review: rounds, tasks, leased assignments, adjudications; selection verdict and edit diff

Revision ID: 0003_review
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_review'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_round',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('overlap', sa.Integer(), nullable=False),
    sa.Column('high_overlap', sa.Integer(), nullable=False),
    sa.Column('high_overlap_share', sa.Float(), nullable=False),
    sa.Column('include_unaccepted', sa.Boolean(), nullable=False),
    sa.Column('max_shown', sa.Integer(), nullable=False),
    sa.Column('lease_minutes', sa.Integer(), nullable=False),
    sa.Column('annotator_ids', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['annotator.id'], name=op.f('fk_review_round_created_by_annotator')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_review_round_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['sampling_run.id'], name=op.f('fk_review_round_run_id_sampling_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_round'))
    )
    op.create_table('adjudication',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=True),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('verdict', sa.String(length=20), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=True),
    sa.Column('edited_text', sa.Text(), nullable=True),
    sa.Column('codebook_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidate.id'], name=op.f('fk_adjudication_candidate_id_candidate')),
    sa.ForeignKeyConstraint(['codebook_id'], ['codebook.id'], name=op.f('fk_adjudication_codebook_id_codebook')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_adjudication_item_id_item'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['annotator.id'], name=op.f('fk_adjudication_lead_id_annotator')),
    sa.ForeignKeyConstraint(['round_id'], ['review_round.id'], name=op.f('fk_adjudication_round_id_review_round'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adjudication'))
    )
    op.create_index('ix_adjudication_item', 'adjudication', ['item_id'], unique=False)
    op.create_table('review_assignment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotator.id'], name=op.f('fk_review_assignment_annotator_id_annotator'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_review_assignment_item_id_item'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['review_round.id'], name=op.f('fk_review_assignment_round_id_review_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_assignment')),
    sa.UniqueConstraint('round_id', 'item_id', 'annotator_id', name=op.f('uq_review_assignment_round_id'))
    )
    op.create_index('ix_review_assignment_round_annotator', 'review_assignment', ['round_id', 'annotator_id'], unique=False)
    op.create_table('review_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('required', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_review_task_item_id_item'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['review_round.id'], name=op.f('fk_review_task_round_id_review_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_task')),
    sa.UniqueConstraint('round_id', 'item_id', name=op.f('uq_review_task_round_id'))
    )
    op.create_index('ix_review_task_item', 'review_task', ['item_id'], unique=False)
    op.add_column('selection', sa.Column('verdict', sa.String(length=20), nullable=True))
    op.add_column('selection', sa.Column('edit_diff', sa.JSON(), nullable=True))
    op.add_column('selection', sa.Column('round_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35): rebuilding the table would cascade into its events
    op.drop_column('selection', 'round_id')
    op.drop_column('selection', 'edit_diff')
    op.drop_column('selection', 'verdict')
    op.drop_index('ix_review_task_item', table_name='review_task')
    op.drop_table('review_task')
    op.drop_index('ix_review_assignment_round_annotator', table_name='review_assignment')
    op.drop_table('review_assignment')
    op.drop_index('ix_adjudication_item', table_name='adjudication')
    op.drop_table('adjudication')
    op.drop_table('review_round')
