"""sampling: each candidate records the acceptance mode that gave its rating

Revision ID: 0004_acceptance_mode
Revises: 0001
Create Date: 2026-11-24

Existing rows get the mode their rating actually came from: ``parse_ok`` (the trace wrote a
rating that parsed) -> "written"; no parse but a rating (the score read-out's argmax after the
answer cue, which earlier versions used silently) -> "forced_cue"; no rating -> NULL. Existing
runs get the setting that reproduces what they did, so a resume continues the same way:
"forced_cue" for local-engine runs with the read-out on (they accepted read-out ratings),
"written" otherwise.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_acceptance_mode'
down_revision = '0001'
branch_labels = None
depends_on = None

candidate = sa.table(
    'candidate', sa.column('parse_ok', sa.Boolean()), sa.column('predicted', sa.Float()),
    sa.column('acceptance_mode', sa.String(20)),
)
sampling_run = sa.table(
    'sampling_run', sa.column('id', sa.Integer()), sa.column('engine', sa.JSON()), sa.column('settings', sa.JSON()),
)


def upgrade() -> None:
    op.add_column('candidate', sa.Column('acceptance_mode', sa.String(length=20), nullable=True))
    op.execute(candidate.update().values(acceptance_mode=sa.case(
        (candidate.c.parse_ok.is_(True), 'written'),
        (candidate.c.predicted.is_not(None), 'forced_cue'),
        else_=None,
    )))
    bind = op.get_bind()
    for run_id, engine, settings in bind.execute(sa.select(sampling_run.c.id, sampling_run.c.engine,
                                                           sampling_run.c.settings)).all():
        settings = dict(settings or {})
        if 'acceptance' in settings:
            continue
        local = (engine or {}).get('kind', 'transformers') == 'transformers'
        read_out = settings.get('readout', True) and settings.get('mode', 'rejection') == 'rejection'
        settings['acceptance'] = 'forced_cue' if local and read_out else 'written'
        bind.execute(sampling_run.update().where(sampling_run.c.id == run_id).values(settings=settings))


def downgrade() -> None:
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.drop_column('acceptance_mode')
