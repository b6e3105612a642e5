"""codebook: rubric text that is no level (lead-in, notes) and instructions after the rubric

Revision ID: 0005_codebook_sections
Revises: 0001
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_codebook_sections'
down_revision = '0001'
branch_labels = None
depends_on = None

COLUMNS = ('rubric_intro', 'rubric_notes', 'instructions_after')


def upgrade() -> None:
    with op.batch_alter_table('codebook') as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('codebook') as batch:
        for name in COLUMNS:
            batch.drop_column(name)
