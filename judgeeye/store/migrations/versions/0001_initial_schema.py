"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _project_codebook_fk_inline() -> list:
    """SQLite accepts a forward reference inline (and cannot add a constraint later)."""
    if not _is_sqlite():
        return []
    return [sa.ForeignKeyConstraint(['current_codebook_id'], ['codebook.id'], name=op.f('fk_project_current_codebook_id_codebook'), ondelete='SET NULL')]



def upgrade() -> None:
    op.create_table('annotator',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('password_hash', sa.String(length=300), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotator')),
    sa.UniqueConstraint('name', name=op.f('uq_annotator_name'))
    )
    op.create_table('project',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('task', sa.String(length=200), nullable=False),
    sa.Column('dimension', sa.String(length=100), nullable=False),
    sa.Column('generation_type', sa.String(length=100), nullable=False),
    sa.Column('scale_min', sa.Integer(), nullable=False),
    sa.Column('scale_max', sa.Integer(), nullable=False),
    sa.Column('text_fields', sa.JSON(), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('gold_rule', sa.JSON(), nullable=False),
    sa.Column('current_codebook_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    *_project_codebook_fk_inline(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project')),
    sa.UniqueConstraint('name', name=op.f('uq_project_name'))
    )
    op.create_table('codebook',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('rubric', sa.JSON(), nullable=False),
    sa.Column('output_format', sa.Text(), nullable=False),
    sa.Column('origin', sa.String(length=60), nullable=False),
    sa.Column('author', sa.String(length=200), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['codebook.id'], name=op.f('fk_codebook_parent_id_codebook')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_codebook_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_codebook')),
    sa.UniqueConstraint('project_id', 'version', name=op.f('uq_codebook_project_id'))
    )
    if not _is_sqlite():
        # project <-> codebook reference each other: the second link is added once both exist.
        op.create_foreign_key(op.f('fk_project_current_codebook_id_codebook'), 'project', 'codebook', ['current_codebook_id'], ['id'], ondelete='SET NULL')
    op.create_table('item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('ratings', sa.JSON(), nullable=False),
    sa.Column('gold', sa.Float(), nullable=True),
    sa.Column('rating_std', sa.Float(), nullable=True),
    sa.Column('gold_status', sa.String(length=40), nullable=False),
    sa.Column('split', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_item_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item')),
    sa.UniqueConstraint('project_id', 'external_id', name=op.f('uq_item_project_id'))
    )
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.create_index('ix_item_project_gold_status', ['project_id', 'gold_status'], unique=False)
        batch_op.create_index('ix_item_project_split', ['project_id', 'split'], unique=False)

    op.create_table('job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('progress_text', sa.Text(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('log_path', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_job_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job'))
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index('ix_job_status', ['status'], unique=False)

    op.create_table('rater_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('codebook_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('rater', sa.JSON(), nullable=False),
    sa.Column('split', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['codebook_id'], ['codebook.id'], name=op.f('fk_rater_run_codebook_id_codebook')),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_rater_run_job_id_job')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_rater_run_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rater_run'))
    )
    op.create_table('sampling_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('codebook_id', sa.Integer(), nullable=False),
    sa.Column('engine', sa.JSON(), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('temperature', sa.Float(), nullable=False),
    sa.Column('top_p', sa.Float(), nullable=False),
    sa.Column('max_tokens', sa.Integer(), nullable=False),
    sa.Column('splits', sa.JSON(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['codebook_id'], ['codebook.id'], name=op.f('fk_sampling_run_codebook_id_codebook')),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_sampling_run_job_id_job')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_sampling_run_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sampling_run'))
    )
    op.create_table('training_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('adapter_path', sa.Text(), nullable=True),
    sa.Column('best_step', sa.Integer(), nullable=True),
    sa.Column('best_metric', sa.Float(), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_training_run_job_id_job')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_training_run_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_run'))
    )
    op.create_table('candidate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=120), nullable=False),
    sa.Column('target_label', sa.Float(), nullable=True),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('reasoning', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('predicted', sa.Float(), nullable=True),
    sa.Column('parse_ok', sa.Boolean(), nullable=False),
    sa.Column('score_dist', sa.JSON(), nullable=True),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('finish_reason', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_candidate_item_id_item'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['sampling_run.id'], name=op.f('fk_candidate_run_id_sampling_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_candidate')),
    sa.UniqueConstraint('run_id', 'item_id', 'target', 'sample_index', name=op.f('uq_candidate_run_id'))
    )
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.create_index('ix_candidate_item', ['item_id'], unique=False)
        batch_op.create_index('ix_candidate_run_accepted', ['run_id', 'accepted'], unique=False)

    op.create_table('prediction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rater_run_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('reasoning', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('rating', sa.Float(), nullable=True),
    sa.Column('score_dist', sa.JSON(), nullable=True),
    sa.Column('parse_ok', sa.Boolean(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_prediction_item_id_item'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rater_run_id'], ['rater_run.id'], name=op.f('fk_prediction_rater_run_id_rater_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction')),
    sa.UniqueConstraint('rater_run_id', 'item_id', name=op.f('uq_prediction_rater_run_id'))
    )
    op.create_table('training_metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], name=op.f('fk_training_metric_run_id_training_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_metric')),
    sa.UniqueConstraint('run_id', 'step', 'name', name=op.f('uq_training_metric_run_id'))
    )
    with op.batch_alter_table('training_metric', schema=None) as batch_op:
        batch_op.create_index('ix_training_metric_run', ['run_id'], unique=False)

    op.create_table('critique',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=True),
    sa.Column('codebook_id', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=True),
    sa.Column('cluster', sa.Integer(), nullable=True),
    sa.Column('representative', sa.Boolean(), nullable=False),
    sa.Column('x', sa.Float(), nullable=True),
    sa.Column('y', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidate.id'], name=op.f('fk_critique_candidate_id_candidate'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['codebook_id'], ['codebook.id'], name=op.f('fk_critique_codebook_id_codebook')),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_critique_job_id_job')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_critique'))
    )
    op.create_table('selection',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=True),
    sa.Column('edited_text', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('codebook_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotator.id'], name=op.f('fk_selection_annotator_id_annotator'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidate.id'], name=op.f('fk_selection_candidate_id_candidate')),
    sa.ForeignKeyConstraint(['codebook_id'], ['codebook.id'], name=op.f('fk_selection_codebook_id_codebook')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_selection_item_id_item'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_selection')),
    sa.UniqueConstraint('item_id', 'annotator_id', name=op.f('uq_selection_item_id'))
    )
    op.create_table('selection_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('selection_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotator.id'], name=op.f('fk_selection_event_annotator_id_annotator')),
    sa.ForeignKeyConstraint(['selection_id'], ['selection.id'], name=op.f('fk_selection_event_selection_id_selection'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_selection_event'))
    )
    with op.batch_alter_table('selection_event', schema=None) as batch_op:
        batch_op.create_index('ix_selection_event_selection', ['selection_id'], unique=False)



def downgrade() -> None:
    if not _is_sqlite():
        op.drop_constraint(op.f('fk_project_current_codebook_id_codebook'), 'project', type_='foreignkey')
    with op.batch_alter_table('selection_event', schema=None) as batch_op:
        batch_op.drop_index('ix_selection_event_selection')

    op.drop_table('selection_event')
    op.drop_table('selection')
    op.drop_table('critique')
    with op.batch_alter_table('training_metric', schema=None) as batch_op:
        batch_op.drop_index('ix_training_metric_run')

    op.drop_table('training_metric')
    op.drop_table('prediction')
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.drop_index('ix_candidate_run_accepted')
        batch_op.drop_index('ix_candidate_item')

    op.drop_table('candidate')
    op.drop_table('training_run')
    op.drop_table('sampling_run')
    op.drop_table('rater_run')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_status')

    op.drop_table('job')
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.drop_index('ix_item_project_split')
        batch_op.drop_index('ix_item_project_gold_status')

    op.drop_table('item')
    op.drop_table('codebook')
    op.drop_table('project')
    op.drop_table('annotator')
