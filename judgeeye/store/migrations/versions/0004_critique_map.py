"""critique map: how a refinement's critiques were embedded and projected (coordinates stay on critique)

Revision ID: 0004_critique_map
Revises: 0001
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_critique_map'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('critique_map',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('embedder', sa.String(length=300), nullable=False),
    sa.Column('dimensions', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('pca_components', sa.Integer(), nullable=True),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_critique_map_job_id_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_critique_map')),
    sa.UniqueConstraint('job_id', name=op.f('uq_critique_map_job_id'))
    )


def downgrade() -> None:
    op.drop_table('critique_map')
