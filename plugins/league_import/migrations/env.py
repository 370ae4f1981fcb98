"""Alembic environment: always online, on the connection league_import.schema hands over.

The version table is etl.alembic_version. Every revision runs in one transaction, after a
transaction-level advisory lock, so two processes never migrate at once. Importing this file
outside a migration (Airflow's plugin loader walks plugins/) does nothing.
"""

from __future__ import annotations

from alembic import context

from league_import.schema import SCHEMA_LOCK, VERSION_SCHEMA, VERSION_TABLE


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}")
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=VERSION_SCHEMA,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _in_a_migration() -> bool:
    try:
        return context.config is not None
    except AttributeError:
        return False


if _in_a_migration():
    run_migrations()
