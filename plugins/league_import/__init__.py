"""league-import: nightly league data into PostgreSQL without breaking what users created.

Plain functions live in one module per concern (sources, identity, upsert, ...); the Airflow
operators in `operators` are thin wrappers that open a connection and call them.
"""
