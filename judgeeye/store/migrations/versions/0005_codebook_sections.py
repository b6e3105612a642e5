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
    # a plain ADD COLUMN (SQLite allows NOT NULL with a default): a batch copy of the table would
    # drop and recreate `codebook`, which the foreign keys of existing runs refuse
    for name in COLUMNS:
        op.add_column('codebook', sa.Column(name, sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no table copy for the foreign keys to refuse)
    for name in COLUMNS:
        if op.get_bind().dialect.name == 'sqlite':
            op.execute(f'ALTER TABLE codebook DROP COLUMN {name}')
        else:
            op.drop_column('codebook', name)
