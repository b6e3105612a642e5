"""experiments: the experiment and its stages; prompt tokens of each prediction

Revision ID: 0006_experiments
Revises: 0005_codebook_sections
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_experiments'
down_revision = '0005_codebook_sections'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('experiment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('preset', sa.String(length=40), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_experiment_job_id_job')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_experiment_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiment'))
    )
    op.create_index('ix_experiment_project', 'experiment', ['project_id'], unique=False)
    op.create_table('experiment_stage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('cache_key', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('reused', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('tokens', sa.Integer(), nullable=True),
    sa.Column('generated_tokens', sa.Integer(), nullable=True),
    sa.Column('jobs', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], name=op.f('fk_experiment_stage_experiment_id_experiment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiment_stage')),
    sa.UniqueConstraint('experiment_id', 'key', name=op.f('uq_experiment_stage_experiment_id'))
    )
    op.create_index('ix_experiment_stage_run', 'experiment_stage', ['kind', 'run_id'], unique=False)
    with op.batch_alter_table('prediction') as batch:
        batch.add_column(sa.Column('prompt_tokens', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('prediction') as batch:
        batch.drop_column('prompt_tokens')
    op.drop_index('ix_experiment_stage_run', table_name='experiment_stage')
    op.drop_table('experiment_stage')
    op.drop_index('ix_experiment_project', table_name='experiment')
    op.drop_table('experiment')
