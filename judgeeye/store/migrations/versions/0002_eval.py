"""rater evaluation: a cache for slow aggregates and indexes for the agreement page

Revision ID: 0002_eval
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = '0002_eval'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stats_cache',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.JSON(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_stats_cache'))
    )
    with op.batch_alter_table('rater_run', schema=None) as batch_op:
        batch_op.create_index('ix_rater_run_project', ['project_id'], unique=False)
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.create_index('ix_prediction_item', ['item_id'], unique=False)
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.create_index('ix_candidate_run_id_id', ['run_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.drop_index('ix_candidate_run_id_id')
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_item')
    with op.batch_alter_table('rater_run', schema=None) as batch_op:
        batch_op.drop_index('ix_rater_run_project')
    op.drop_table('stats_cache')
