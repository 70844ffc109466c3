"""Alembic environment: runs migrations on the configured URL with psycopg 3 (sync)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from billing.models import Base
from billing.sandbox import models as sandbox_models  # noqa: F401 - the sandbox's own tables

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by billing.migrations.alembic_config"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            # Procrastinate's tables are created by its own SQL, not by our models.
            include_name=lambda name, type_, _parent: (
                not (type_ == "table" and name is not None and name.startswith("procrastinate_"))
            ),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
