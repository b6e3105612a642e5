"""Alembic environment: runs on the connection JudgeEye hands over (see store.db.upgrade_schema)."""

from alembic import context
from sqlalchemy import Connection, create_engine

from judgeeye.store.db import database_url
from judgeeye.store.models import Base

target_metadata = Base.metadata
config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic` command line: use JUDGEEYE_DB or the default database
    with create_engine(database_url()).connect() as conn:
        _run(conn)
        conn.commit()
