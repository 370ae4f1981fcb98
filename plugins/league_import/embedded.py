"""An embedded PostgreSQL (the pgserver wheel) for the demo and the tests: no server, no root, no Docker."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from league_import.db import socket_uri

REPO = Path(__file__).resolve().parents[2]
DEMO_PGDATA = REPO / ".demo" / "pgdata"


def ensure_server(pgdata: Path = DEMO_PGDATA, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) the server in `pgdata` and return an Airflow-style URI for it.

    The server outlives this process unless `delete_on_exit`, so `make demo` twice reuses it.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="delete" if delete_on_exit else None)
    return socket_uri(str(server.get_postmaster_info().socket_dir))


def stop_server(pgdata: Path = DEMO_PGDATA) -> None:
    from pgserver import pg_ctl

    if (pgdata / "postmaster.pid").exists():
        pg_ctl(["-w", "stop"], pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None)


def target_uri() -> str:
    """AIRFLOW_CONN_LEAGUE_DB when set (an operator's own server), else the embedded one."""
    return os.environ.get("AIRFLOW_CONN_LEAGUE_DB") or ensure_server()
