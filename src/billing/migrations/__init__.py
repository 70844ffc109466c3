"""Alembic migrations; the schema exists only through them (``billing migrate``)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from billing.db import CONNECT_TIMEOUT, sqlalchemy_url

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    # ConfigParser treats % as interpolation; URLs may contain percent-encoded characters.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


class SchemaBehind(Exception):
    """The database's schema is older than this billing's migrations (``billing migrate``)."""


def check_schema_current(connection: Connection) -> None:
    """Raise ``SchemaBehind`` unless the database is at this code's head revision.

    A schema *ahead* of the code (revisions this code does not know: a newer billing
    migrated it during a rolling deploy) is let through with a warning: refusing would stop
    the old processes before the new ones replace them.
    """
    script = ScriptDirectory(str(HERE))
    heads = set(script.get_heads())
    # Read directly rather than through Alembic's MigrationContext, which logs two INFO
    # lines on every check.
    migrated = connection.scalar(text("SELECT to_regclass('alembic_version')")) is not None
    versions = text("SELECT version_num FROM alembic_version")
    current = set(connection.scalars(versions)) if migrated else set()
    if current == heads:
        return
    known = {revision.revision for revision in script.walk_revisions()}
    if current - known:
        log.warning("the database schema is newer than this billing: %s", ", ".join(current))
        return
    at = f"at {', '.join(sorted(current))}" if current else "never migrated"
    raise SchemaBehind(
        f"the database schema is behind ({at}; this billing needs {', '.join(sorted(heads))}):"
        " run `billing migrate`"
    )


def ensure_schema_current(database_url: str) -> None:
    """``check_schema_current`` on a connection of its own (the CLI, before it starts)."""
    engine = create_engine(
        sqlalchemy_url(database_url),
        poolclass=NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )
    try:
        with engine.connect() as connection:
            check_schema_current(connection)
    finally:
        engine.dispose()
