"""Alembic migrations of the pipeline's schema (etl, etl_archive and the tables it creates).

Run by league_import.schema.ensure_schema under the task lock; `league-import migrate` runs
them by hand. Each revision holds its own SQL.
"""
