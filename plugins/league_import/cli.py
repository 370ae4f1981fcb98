"""The `league-import` command (also `python -m league_import.cli`): the demo, read-only health,
and the decisions operators make by hand. `league-import --help` and `COMMAND --help` list them.

Every command works on the database named by AIRFLOW_CONN_LEAGUE_DB, else the demo's embedded
one. Commands that change data take the task lock for a moment, and refuse while a run holds the
database; each decision is recorded with the operating-system user who made it.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from contextlib import contextmanager
from typing import Annotated

import typer

from league_import.words import plural, verb

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
quarantine_app = typer.Typer(no_args_is_help=True, help="Rows waiting in quarantine.")
alias_app = typer.Typer(no_args_is_help=True, help="Spellings tied to a team id (etl.team_aliases).")
review_app = typer.Typer(
    no_args_is_help=True, help="Open questions: quarantined rows, suspected renames, growth alarms."
)
target_app = typer.Typer(
    no_args_is_help=True,
    help="The target database (LEAGUE_IMPORT_TARGET: a mapping file; README, Targets): what the pipeline "
    "would change, and making it.",
)
app.add_typer(target_app, name="target")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(alias_app, name="alias")
app.add_typer(review_app, name="review")


def _by() -> str:
    return f"cli:{getpass.getuser()}"


@contextmanager
def _database(*, write: bool = False):
    """A connection to the target; for a change, with the task lock and no live run on the database."""
    from league_import.db import connect
    from league_import.embedded import target_uri
    from league_import.errors import LeagueImportError
    from league_import.runs import check_lease, lock_task
    from league_import.schema import ensure_schema

    try:
        with connect(target_uri()) as conn:
            if write:  # the lease again once the lock is held: a run may have claimed it meanwhile
                check_lease(conn, "league-import cli")
                lock_task(conn, wait=True)
                check_lease(conn, "league-import cli")
                ensure_schema(conn)
            yield conn
    except LeagueImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo() -> None:
    """Run the DAG on the bundled season, replay the old system's id churn, run the next night,
    and print what was repaired by which strategy and what waits in quarantine."""
    from league_import.demo import run_demo

    raise typer.Exit(run_demo())


@app.command("demo-app")
def demo_app() -> None:
    """The same story on the league app's own database: its schema filled by its old importer,
    `target check`, `target apply`, a night that adopts it, the old system's churn, the repair."""
    from league_import.app_demo import run_app_demo

    raise typer.Exit(run_app_demo())


@app.command()
def ui() -> None:
    """Start Airflow (standalone) on the demo set-up in the foreground: prints the URL and the login;
    Ctrl-C stops it and every process it started. Port 8080, or LEAGUE_IMPORT_UI_PORT."""
    from league_import.ui import run_ui

    raise typer.Exit(run_ui())


@app.command()
def env() -> None:
    """Print the shell exports for running Airflow commands on the demo set-up yourself:
    eval "$(.venv/bin/league-import env)" then .venv/bin/airflow dags test league_import -c '...'."""
    import shlex

    from league_import.demo import airflow_env, bin_dir, demo_home, prepare_airflow
    from league_import.embedded import target_uri

    uri = target_uri()
    home = demo_home()
    prepare_airflow(home, uri)
    for key, value in airflow_env(home, uri, inherit=False).items():
        if key == "AIRFLOW_CONN_LEAGUE_DB" and os.environ.get(key):
            continue  # your own server's URI (and its password) stays where you set it
        if key == "PATH":  # this environment's commands first, on the shell's own PATH
            typer.echo(f'export PATH={shlex.quote(str(bin_dir()))}"{os.pathsep}$PATH"')
            continue
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.command()
def summary() -> None:
    """Print the latest run's summary."""
    from league_import.demo import summarize
    from league_import.runs import latest_run

    with _database() as conn:
        found = latest_run(conn)
    typer.echo(summarize(found) if found else "no runs yet")


@app.command()
def health() -> None:
    """Run the health checks read-only; exit 1 when any is an error."""
    from league_import.health import format_table, rollup, run_checks

    with _database() as conn:
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.commit()
        checks = run_checks(conn)
    typer.echo(format_table(checks))
    _, counts = rollup(checks)
    errors, warnings = plural(counts["error"], "error"), plural(counts["warn"], "warning")
    typer.echo(f"{plural(len(checks), 'check')}: {errors}, {warnings}")
    raise typer.Exit(1 if counts["error"] else 0)


@app.command()
def migrate() -> None:
    """Upgrade the database's schema to this version (every run does it too)."""
    with _database(write=True) as conn:
        from league_import.schema import current

        typer.echo(f"schema at revision {current(conn)}")


@app.command()
def unlock(yes: bool = typer.Option(False, "--yes", help="free it without asking")) -> None:
    """Show which run holds the database, and free its lease (after `kill -9`, a lost worker)."""
    from league_import.runs import free_lease, lease

    with _database() as conn:
        held = lease(conn)
        if held is None:
            typer.echo("no run holds the database")
            return
        typer.echo(f"held by {held.describe()}; its run {'says it is running' if held.running else 'has ended'}")
        if not yes and not typer.confirm("free it? the run is marked failed", default=False):
            raise typer.Exit(1)
        free_lease(conn, held.run_id, f"league-import unlock by {_by()}")
        typer.echo(f"freed: run {held.run_id} marked failed")


@target_app.command("check")
def target_check(
    source_dir: str = typer.Option(
        None, help="league folders to check the target against (default: LEAGUE_IMPORT_SOURCE_DIR; none: no data)"
    ),
    leagues: Annotated[list[str] | None, typer.Option("--league", help="only these leagues (repeat)")] = None,
    as_json: bool = typer.Option(False, "--json", help="as JSON"),
) -> None:
    """Read-only: what the pipeline would add to the target, every conflict between the target and
    the files (with the mapping's resolution), and what adoption will match. Exits 1 while a
    conflict is unresolved or the mapping does not fit the database."""
    from league_import import config, target
    from league_import.errors import LeagueImportError
    from league_import.sources import read_leagues
    from league_import.targetplan import describe, make_plan

    chosen = target.configured()
    folder = source_dir or os.environ.get(config.SOURCE_DIR_ENV)
    with _connection() as conn:
        try:
            read = read_leagues(folder, leagues or []) if folder else None
        except LeagueImportError as exc:
            typer.echo(f"the files cannot be read: {exc}", err=True)
            raise typer.Exit(1) from None
        plan = make_plan(conn, chosen, read)
    if folder is None:
        plan.notes.append(
            f"no league folders given (--source-dir, or {config.SOURCE_DIR_ENV}): the files were not checked"
        )
    if as_json:
        out = {
            "target": str(chosen.path),
            "problems": plan.problems,
            "changes": plan.pending(),
            "conflicts": plan.conflicts,
            "resolved": plan.resolved,
            "adoption": plan.adoption,
            "notes": plan.notes,
        }
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        typer.echo(describe(plan))
    raise typer.Exit(0 if plan.ok else 1)


@target_app.command("apply")
def target_apply() -> None:
    """Make the changes `target check` prints, in one transaction, recorded in etl.target_changes.
    No prompt: read `target check` first. Run twice, it changes nothing."""
    from league_import import target
    from league_import.targetplan import apply

    chosen = target.configured()
    with _connection(lock=True) as conn:
        done = apply(conn, chosen, by=_by())
    if not done:
        typer.echo("nothing to change: every change is applied")
        return
    typer.echo(f"applied to the target ({chosen.path}), recorded in etl.target_changes:")
    for what in done:
        typer.echo(f"- {what}")


@contextmanager
def _connection(*, lock: bool = False):
    """A connection to the target before the pipeline's schema may exist there (target commands);
    with `lock`, the task lock and no live run, where the pipeline's schema exists already."""
    from league_import import pgcatalog
    from league_import.db import connect
    from league_import.embedded import target_uri
    from league_import.errors import LeagueImportError
    from league_import.runs import check_lease, lock_task

    try:
        with connect(target_uri()) as conn:
            if lock:
                with conn.transaction(), conn.cursor() as cur:
                    exists = pgcatalog.table_exists(cur, "run_lock", "etl")
                if exists:
                    check_lease(conn, "league-import target apply")
                    lock_task(conn, wait=True)
                    check_lease(conn, "league-import target apply")
            yield conn
    except LeagueImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@quarantine_app.command("list")
def quarantine_list() -> None:
    """Rows waiting in quarantine, with the reason and the candidates seen."""
    from league_import.display import printable
    from league_import.review import pending

    with _database() as conn:
        items = [i for i in pending(conn) if i.kind == "quarantine"]
    for item in items:
        line = f"{item.id}  {item.evidence['table']} row {item.evidence['row']}: {item.evidence['reason']}"
        typer.echo(printable(line))
        typer.echo(item.lines()[-1])
    typer.echo(f"{plural(len(items), 'row')} {verb(len(items), 'waits', 'wait')}")


@app.command()
def release(
    table: str = typer.Option(..., help="the user table, e.g. polls"),
    row_id: str = typer.Option(..., help="etl.quarantine.row_id of the row"),
    team_id: int = typer.Option(..., help="the team the row belongs to"),
    column: str = typer.Option("team_id", help="the team column"),
    inactive: bool = typer.Option(False, "--inactive", help="the team is inactive, and meant all the same"),
) -> None:
    """Put a quarantined row back on the team a person decided."""
    from league_import.review import release as release_row

    with _database(write=True) as conn:
        typer.echo(release_row(conn, table, row_id, team_id, column, by=_by(), inactive_ok=inactive))


@alias_app.command("add")
def alias_add(
    league: str = typer.Option(..., help="league code, e.g. the folder name"),
    series: str = typer.Option(..., help="the series label as the files write it"),
    spelling: str = typer.Option(..., help="the team name as the files write it"),
    team_id: int = typer.Option(..., help="the team this spelling names"),
) -> None:
    """Tie a spelling to a team id: the next runs match it to that team instead of creating one."""
    from league_import.review import alias

    with _database(write=True) as conn:
        typer.echo(f"alias {alias(conn, league, series, spelling, team_id, by=_by())} added")


@alias_app.command("list")
def alias_list(league: str = typer.Option(None, help="only this league")) -> None:
    """Every alias, with the team it names."""
    from league_import.history import list_aliases

    with _database() as conn, conn.cursor() as cur:
        rows = list_aliases(cur, league)
    for alias_id, code, series, spelling, team_id, name, source, by, at in rows:
        typer.echo(
            f"{alias_id}  {code} {series}: {spelling!r} -> team {team_id} ({name}); {source} by {by} {at:%Y-%m-%d}"
        )
    typer.echo(plural(len(rows), "alias", "aliases"))


@alias_app.command("remove")
def alias_remove(alias_id: int = typer.Argument(..., help="the alias id (alias list)")) -> None:
    """Remove an alias: the spelling no longer names that team."""
    from league_import.history import remove_alias

    with _database(write=True) as conn, conn.transaction(), conn.cursor() as cur:
        code, series, spelling, team_id = remove_alias(cur, alias_id)
    typer.echo(f"alias {alias_id} removed: {code} {series} {spelling!r} no longer names team {team_id}")


@review_app.command("list")
def review_list(as_json: bool = typer.Option(False, "--json", help="as JSON")) -> None:
    """Every open question with its evidence and options."""
    from league_import.review import pending

    with _database() as conn:
        items = pending(conn)
    if as_json:
        typer.echo(json.dumps([i.__dict__ for i in items], default=str, indent=2))
        return
    for item in items:
        for line in item.lines():
            typer.echo(line)
    typer.echo(plural(len(items), "open question"))


@review_app.command("decide")
def review_decide(
    item: str = typer.Argument(..., help="quarantine:<id>, rename:<id> or growth:<id> (review list)"),
    option: str = typer.Argument(..., help="one of the item's options, as listed (or a team id)"),
    inactive: bool = typer.Option(False, "--inactive", help="the team id given is inactive, and meant all the same"),
) -> None:
    """Answer one open question; applied in one transaction and recorded with your user name."""
    from league_import.review import decide

    with _database(write=True) as conn:
        typer.echo(decide(conn, item, option, by=_by(), via="cli", inactive_ok=inactive))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (for tests and `python -m`)."""
    try:
        code = app(args=argv, prog_name="league-import", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except SystemExit as done:  # click's own usage errors
        return int(done.code or 0)
    except Exception as exc:
        # Usage errors (a missing argument, an unknown option or command) are click's exceptions,
        # as vendored by Typer (typer._click): shown as click shows them, exit 2, no traceback.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return code if isinstance(code, int) else 0


def run() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
