"""The pipeline's schema, versioned with Alembic (league_import/migrations).

Every task calls ensure_schema under the task lock: on a database at the newest revision it costs
one query; otherwise it upgrades, whatever the starting point (an empty database, one made by the
first release, one a revision behind). Nothing ever needs `make clean`.

On an app's own database (a target the pipeline does not own, league_import.target) the
pipeline's schemas are first made by `league-import target apply`, which a person runs after
reading `target check`; a task finding them absent fails, naming that command. Later revisions
change only the pipeline's own schemas and are applied by the tasks as on any target.
"""

from __future__ import annotations

from functools import cache

import psycopg
from psycopg import sql

from league_import.errors import ConfigError
from league_import.pgcatalog import table_exists

# One lock id for every schema change, so two processes never migrate at once.
SCHEMA_LOCK = 7_412_001
VERSION_SCHEMA = "etl"
VERSION_TABLE = "alembic_version"
SCRIPT_LOCATION = "league_import:migrations"


def _config(connection=None, owns_tables: bool = True):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
        config.attributes["owns_tables"] = owns_tables
    return config


@cache
def head() -> str:
    """The newest revision of league_import/migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current(conn: psycopg.Connection) -> str | None:
    """The database's revision; None before the first migration."""
    with conn.transaction(), conn.cursor() as cur:
        if not table_exists(cur, VERSION_TABLE, VERSION_SCHEMA):
            return None
        row = cur.execute(
            sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(VERSION_SCHEMA, VERSION_TABLE))
        ).fetchone()
    return row[0] if row else None


def ensure_schema(conn: psycopg.Connection) -> str:
    """Upgrade the database to the newest revision, on this connection; returns the revision."""
    from league_import.target import current as current_target

    revision = head()
    found = current(conn)
    if found == revision:
        return revision
    target = current_target()
    if found is None and not target.owns_tables:
        raise ConfigError(
            f"the target database has no schema etl of the pipeline yet (target {target.path}): read "
            "`league-import target check`, then run `league-import target apply`"
        )
    migrate(conn, owns_tables=target.owns_tables)
    conn.commit()
    return revision


def migrate(conn: psycopg.Connection, *, owns_tables: bool) -> None:
    """Run the migrations up to the newest revision in the connection's transaction."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    # Alembic runs on this very session (StaticPool hands it over), so the task lock it holds
    # covers the migration; and in its transaction, which belongs to the caller (a task commits
    # it, `target apply` commits it with its other changes): this engine never commits or rolls
    # back. The engine is never disposed, which would close the connection.
    engine = create_engine("postgresql+psycopg://", creator=lambda: conn, poolclass=StaticPool)
    engine.dialect.do_commit = engine.dialect.do_rollback = lambda dbapi_connection: None
    with engine.connect() as connection:
        command.upgrade(_config(connection, owns_tables), "head")
