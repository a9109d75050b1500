"""Baseline: the schema of the releases before migrations (made by their start-up's create_all).

On a new database it creates everything. On a database an earlier release made (tables, no alembic_version)
it adopts what is there: a missing table is created, a missing nullable column added (those releases added
columns that way on start-up), an index or the knowledge base's full-text index created if absent, so the
database ends up exactly as a new one, rows kept.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "incident",
    "keyvalue",
    "lease",
    "outbox",
    "playbook",
    "silence",
    "alert",
    "decision",
    "knowledgeentry",
    "messageref",
    "postmortem",
    "timelineevent",
    "proposal",
    "approval",
    "execution",
    "executionattempt",
)
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_fts USING fts5("
    "title, search_text, tokenize = 'unicode61 remove_diacritics 2')",
)
POSTGRES_FTS = (
    "CREATE INDEX IF NOT EXISTS ix_knowledge_fts ON knowledgeentry "
    "USING GIN (to_tsvector('simple', title || ' ' || search_text))",
)


def _table(name: str, *elements: sa.schema.SchemaItem) -> None:
    """Create the table, or adopt an earlier release's: add the nullable columns it lacks."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(name):
        op.create_table(name, *elements)
        return
    present = {column["name"] for column in inspector.get_columns(name)}
    missing = [e for e in elements if isinstance(e, sa.Column) and e.name not in present]
    impossible = [column.name for column in missing if not column.nullable]
    if impossible:
        raise RuntimeError(f"this database is too old for an in-place migration: {name} lacks NOT NULL column(s) "
                           f"{', '.join(impossible)}")
    references = {
        column: f' REFERENCES "{constraint.elements[0].target_fullname.split(".")[0]}" '
                f'("{constraint.elements[0].target_fullname.split(".")[1]}")'
        for constraint in elements if isinstance(constraint, sa.ForeignKeyConstraint)
        for column in constraint.column_keys
    }
    for column in missing:
        kind = column.type.compile(dialect=bind.dialect)
        op.execute(f'ALTER TABLE "{name}" ADD COLUMN "{column.name}" {kind}{references.get(column.name, "")}')


def upgrade() -> None:
    _table('incident',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('receiver', sa.String(), nullable=False),
    sa.Column('group_key', sa.Text(), nullable=False),
    sa.Column('open_key', sa.Text(), nullable=True),
    sa.Column('alertname', sa.String(), nullable=False),
    sa.Column('title', sa.String(), nullable=False),
    sa.Column('severity', sa.String(), nullable=False),
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('namespace', sa.String(), nullable=False),
    sa.Column('common_labels', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('needs_analysis', sa.Boolean(), nullable=False),
    sa.Column('analysis_claimed_by', sa.String(), nullable=True),
    sa.Column('analysis_claimed_at', sa.DateTime(), nullable=True),
    sa.Column('analysis_requested_by', sa.String(), nullable=True),
    sa.Column('remediated_at', sa.DateTime(), nullable=True),
    sa.Column('silence_id', sa.Integer(), nullable=True),
    sa.Column('muted', sa.Boolean(), nullable=True),
    sa.Column('chats', sa.JSON(), nullable=True),
    sa.Column('route', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('open_key')
    )
    op.create_index('ix_incident_alertname', 'incident', ['alertname'], unique=False, if_not_exists=True)
    op.create_index('ix_incident_created_at', 'incident', ['created_at'], unique=False, if_not_exists=True)
    op.create_index('ix_incident_needs_analysis', 'incident', ['needs_analysis'], unique=False, if_not_exists=True)
    op.create_index('ix_incident_resolved_at', 'incident', ['resolved_at'], unique=False, if_not_exists=True)
    op.create_index('ix_incident_service', 'incident', ['service'], unique=False, if_not_exists=True)
    op.create_index('ix_incident_silence_id', 'incident', ['silence_id'], unique=False, if_not_exists=True)
    op.create_index('ix_incident_status', 'incident', ['status'], unique=False, if_not_exists=True)

    _table('keyvalue',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    _table('lease',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    _table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('chat_id', sa.String(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('template', sa.String(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('reply_to_card', sa.Boolean(), nullable=False),
    sa.Column('reply_to_message_id', sa.String(), nullable=True),
    sa.Column('dedup_key', sa.Text(), nullable=True),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('claimed_by', sa.String(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('message_id', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('max_attempts', sa.Integer(), nullable=True),
    sa.Column('fallback', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedup_key')
    )
    op.create_index('ix_outbox_due', 'outbox', ['channel', 'state', 'id'], unique=False, if_not_exists=True)
    op.create_index('ix_outbox_incident_id', 'outbox', ['incident_id'], unique=False, if_not_exists=True)

    _table('playbook',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('symptoms', sa.JSON(), nullable=False),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('category', sa.String(), nullable=False),
    sa.Column('risk', sa.String(), nullable=False),
    sa.Column('root_cause', sa.Text(), nullable=False),
    sa.Column('executions', sa.Integer(), nullable=False),
    sa.Column('successes', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    _table('silence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('matchers', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(), nullable=False),
    sa.Column('created_by_name', sa.String(), nullable=False),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('chat_id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=False),
    sa.Column('removed_at', sa.DateTime(), nullable=True),
    sa.Column('removed_by', sa.String(), nullable=True),
    sa.Column('expired_noted_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_silence_ends_at', 'silence', ['ends_at'], unique=False, if_not_exists=True)

    _table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('receiver', sa.String(), nullable=False),
    sa.Column('fingerprint', sa.String(), nullable=False),
    sa.Column('active_key', sa.Text(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('alertname', sa.String(), nullable=False),
    sa.Column('severity', sa.String(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('annotations', sa.JSON(), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=True),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('generator_url', sa.String(), nullable=False),
    sa.Column('links', sa.JSON(), nullable=True),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.Column('repeat_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('active_key')
    )
    op.create_index('ix_alert_fingerprint', 'alert', ['fingerprint'], unique=False, if_not_exists=True)
    op.create_index('ix_alert_first_seen', 'alert', ['first_seen'], unique=False, if_not_exists=True)
    op.create_index('ix_alert_incident_id', 'alert', ['incident_id'], unique=False, if_not_exists=True)
    op.create_index('ix_alert_status', 'alert', ['status'], unique=False, if_not_exists=True)

    _table('decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('model', sa.String(), nullable=True),
    sa.Column('outcome', sa.String(), nullable=False),
    sa.Column('fallback_reason', sa.String(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('response_format', sa.String(), nullable=True),
    sa.Column('repaired', sa.Boolean(), nullable=False),
    sa.Column('proposal', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('fresh', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_decision_incident_id', 'decision', ['incident_id'], unique=False, if_not_exists=True)

    _table('knowledgeentry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('category', sa.String(), nullable=False),
    sa.Column('services', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('search_text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_knowledgeentry_created_at', 'knowledgeentry', ['created_at'], unique=False, if_not_exists=True)
    op.create_index('ix_knowledgeentry_incident_id', 'knowledgeentry', ['incident_id'], unique=False,
                    if_not_exists=True)

    _table('messageref',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('chat_id', sa.String(), nullable=False),
    sa.Column('message_id', sa.String(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=True),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'chat_id', 'incident_id', 'kind', name='uq_message_ref')
    )
    op.create_index('ix_messageref_incident_id', 'messageref', ['incident_id'], unique=False, if_not_exists=True)

    _table('postmortem',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_by', sa.String(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('model', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('incident_id')
    )
    op.create_index('ix_postmortem_state', 'postmortem', ['state'], unique=False, if_not_exists=True)

    _table('timelineevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('actor', sa.String(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_timelineevent_incident_id', 'timelineevent', ['incident_id'], unique=False, if_not_exists=True)

    _table('proposal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('model', sa.String(), nullable=True),
    sa.Column('category', sa.String(), nullable=False),
    sa.Column('root_cause', sa.Text(), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('risk', sa.String(), nullable=False),
    sa.Column('reasoning', sa.Text(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.String(), nullable=True),
    sa.Column('decided_by', sa.String(), nullable=True),
    sa.Column('decided_by_name', sa.String(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decision_reason', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('decision_id', sa.Integer(), nullable=True),
    sa.Column('fallback_reason', sa.String(), nullable=True),
    sa.Column('tool_calls', sa.Integer(), nullable=True),
    sa.Column('consensus', sa.JSON(), nullable=True),
    sa.Column('playbook_id', sa.Integer(), nullable=True),
    sa.Column('playbook_name', sa.String(), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=True),
    sa.Column('blast_score', sa.Integer(), nullable=True),
    sa.Column('tier', sa.String(), nullable=True),
    sa.Column('required_approvals', sa.Integer(), nullable=True),
    sa.Column('score_reasons', sa.JSON(), nullable=True),
    sa.Column('blocked_reason', sa.Text(), nullable=True),
    sa.Column('rollback_plan', sa.Text(), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=True),
    sa.Column('proposed_by', sa.String(), nullable=True),
    sa.Column('review_url', sa.Text(), nullable=True),
    sa.Column('reminded_at', sa.DateTime(), nullable=True),
    sa.Column('escalated_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['decision_id'], ['decision.id'], ),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['playbook_id'], ['playbook.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_proposal_created_at', 'proposal', ['created_at'], unique=False, if_not_exists=True)
    op.create_index('ix_proposal_decided_at', 'proposal', ['decided_at'], unique=False, if_not_exists=True)
    op.create_index('ix_proposal_incident_id', 'proposal', ['incident_id'], unique=False, if_not_exists=True)
    op.create_index('ix_proposal_state', 'proposal', ['state'], unique=False, if_not_exists=True)

    _table('approval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposal.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('proposal_id', 'actor', name='uq_approval_actor')
    )
    op.create_index('ix_approval_proposal_id', 'approval', ['proposal_id'], unique=False, if_not_exists=True)

    _table('execution',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('executor', sa.String(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('auto', sa.Boolean(), nullable=False),
    sa.Column('requested_by', sa.String(), nullable=True),
    sa.Column('approvers', sa.JSON(), nullable=False),
    sa.Column('commands', sa.JSON(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('rollback', sa.Text(), nullable=True),
    sa.Column('replicas_before', sa.Integer(), nullable=True),
    sa.Column('credited_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposal.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('proposal_id')
    )
    op.create_index('ix_execution_finished_at', 'execution', ['finished_at'], unique=False, if_not_exists=True)
    op.create_index('ix_execution_incident_id', 'execution', ['incident_id'], unique=False, if_not_exists=True)
    op.create_index('ix_execution_state', 'execution', ['state'], unique=False, if_not_exists=True)

    _table('executionattempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('execution_id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('argv', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('stdout', sa.Text(), nullable=False),
    sa.Column('stderr', sa.Text(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('result', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['execution_id'], ['execution.id'], ),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_executionattempt_execution_id', 'executionattempt', ['execution_id'], unique=False,
                    if_not_exists=True)
    op.create_index('ix_executionattempt_incident_id', 'executionattempt', ['incident_id'], unique=False,
                    if_not_exists=True)
    for statement in SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS knowledge_fts")
    for name in reversed(TABLES):
        op.drop_table(name)
