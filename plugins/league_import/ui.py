"""`make ui` (`league-import ui`): Airflow's UI on the demo set-up, in the foreground.

`airflow standalone` (scheduler, dag-processor, triggerer and api-server, LocalExecutor) in the
demo's environment (league_import.demo.airflow_env: the demo's Airflow home, this checkout's DAGs
and plugins, the demo's league database, the bundled season as the configured source folder, this
environment's commands on PATH), on loopback, on port 8080 or LEAGUE_IMPORT_UI_PORT. It prints the
URL and the login once the components answer, and on Ctrl-C stops every process it started.

Airflow's components start processes of their own (LocalExecutor workers, log servers, a
supervisor and a process per task), a task process sits in a process group of its own, and several
rename themselves (setproctitle), which also blanks their environment as /proc shows it: stopping
standalone's process, or even its group, can leave some behind. So standalone runs in a session
of its own (which no Airflow process leaves: they change process groups, never sessions), is
stopped as a terminal's Ctrl-C would stop it (SIGINT to its group), and every process still alive
after a grace is killed: every process of its session, of its tree, or with this start's marker in
its environment (a task's own subprocess that made a session of its own). The end-to-end tests
start their servers with the same functions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

DEFAULT_PORT = 8080
PORT_ENV = "LEAGUE_IMPORT_UI_PORT"
# Set in the environment of everything a start launches: the last resort for finding it again.
MARKER_ENV = "LEAGUE_IMPORT_PROCESS_GROUP"
READY_TIMEOUT = 240
GRACE = 30  # seconds for Airflow to stop by itself before what is left is killed


def server_env(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """Airflow's api-server on `host`:`port`, with the URLs every component uses to reach it (the
    UI's base URL, the execution API the tasks call), so any free port works."""
    base = f"http://{host}:{port}"
    return {
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
    }


def start_group(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `command` in a session (and process group) of its own, its output appended to `log`,
    with a marker in its environment that every process it starts inherits (`.marker`)."""
    marker = uuid.uuid4().hex
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        process = subprocess.Popen(
            command,
            env={**env, MARKER_ENV: marker},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.marker = marker
    return process


def session_members(session: int) -> list:
    """Every live process of `session` (a session's id is its leader's pid)."""
    import psutil

    found = []
    for pid in psutil.pids():
        try:
            if pid != os.getpid() and os.getsid(pid) == session:
                found.append(psutil.Process(pid))
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def marked(marker: str) -> list:
    """Every live process whose environment carries `marker` (this user's processes only)."""
    import psutil

    found = []
    for candidate in psutil.process_iter():
        try:
            if candidate.pid != os.getpid() and candidate.environ().get(MARKER_ENV) == marker:
                found.append(candidate)
        except (psutil.Error, OSError):
            continue
    return found


def group_members(process: subprocess.Popen) -> list:
    """Every live process `process` started: its session, its tree, its marker."""
    import psutil

    members: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(process.pid)
        for member in (root, *root.children(recursive=True)):
            members[member.pid] = member
    except psutil.NoSuchProcess:
        pass
    for member in session_members(process.pid):
        members.setdefault(member.pid, member)
    marker = getattr(process, "marker", None)
    for member in marked(marker) if marker else ():
        members.setdefault(member.pid, member)
    return list(members.values())


def stop_group(
    process: subprocess.Popen, grace: float = GRACE, sig: int = signal.SIGINT, group: bool = True
) -> list[str]:
    """Stop what start_group started: `sig` to its process group, or with `group` false to the
    process alone (`airflow standalone` stops its components itself on SIGINT, with SIGTERM each,
    and LocalExecutor's workers are better left to the scheduler), `grace` seconds for everything
    to end, then SIGKILL to every process it started that is still alive. Returns what had to be
    killed (the processes' titles)."""
    import psutil

    deadline = time.monotonic() + grace
    others = [m for m in group_members(process) if m.pid != process.pid]
    try:
        os.killpg(process.pid, sig) if group else process.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
    # What outlived the grace, and what was started meanwhile (a worker forked during shutdown).
    left = {m.pid: m for m in [*others, *group_members(process)] if m.pid != process.pid and _alive(m)}
    if process.poll() is None:
        left[process.pid] = psutil.Process(process.pid)
    killed = []
    for member in left.values():
        try:
            killed.append(_title(member))
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs([m for m in left.values() if m.pid != process.pid], timeout=10)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        pass
    return killed


def _title(member) -> str:
    """`airflow scheduler`, `airflow worker` (a title set by setproctitle, without its details)."""
    argv = [a for a in member.cmdline() if a]
    if len(argv) > 1 and Path(argv[0]).name.startswith("python"):
        argv = argv[1:]
    words = [Path(argv[0]).name, *argv[1:2]] if argv else [member.name()]
    return " ".join(words).split(" -- ")[0].strip()


def _counted(titles: list[str]) -> str:
    """`32 x airflow worker, 1 x airflow scheduler`."""
    from collections import Counter

    return ", ".join(f"{n} x {title}" for title, n in Counter(titles).most_common())


def _alive(member) -> bool:
    import psutil

    try:
        return member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _answers(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read() or b"{}")
    except (OSError, ValueError, urllib.error.HTTPError):
        return None


def wait_until_ready(base: str, process: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT) -> None:
    """Until the api-server says its scheduler, dag-processor and triggerer are healthy (GET
    /api/v2/monitor/health needs no login); a component that dies first, or the timeout, is an
    error quoting the end of the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited ({process.returncode}); the end of {log}:\n{_tail(log)}")
        health = _answers(f"{base}/api/v2/monitor/health") or {}
        parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
            return
        time.sleep(1)
    raise RuntimeError(f"Airflow did not answer at {base} within {timeout:.0f} s; the end of {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def login(home: Path, env: dict[str, str]) -> str:
    """The login to print: the simple auth manager's users and the passwords standalone generated
    (in the home, kept between starts), or where they are set."""
    if env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true":
        return "no login (every visitor is an admin: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS)"
    configured = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    path = Path(configured) if configured else home / "simple_auth_manager_passwords.json.generated"
    try:
        passwords = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"the users and passwords of your auth manager (no password file at {path})"
    return "; ".join(f"user {user}, password {password}" for user, password in passwords.items())


def run_ui() -> int:
    """The command: start, print the URL and the login, wait for Ctrl-C, stop everything."""
    from league_import.demo import airflow_env, bin_dir, demo_home, prepare_airflow
    from league_import.embedded import target_uri

    try:
        port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    except ValueError:
        print(f"error: {PORT_ENV}={os.environ[PORT_ENV]!r} is not a port number", file=sys.stderr)
        return 2
    if port_in_use(port):
        print(f"error: port {port} is in use: stop what listens there, or set {PORT_ENV}", file=sys.stderr)
        return 2

    def stop_on(_signum, _frame):  # a terminal closed, or `kill`: the same orderly stop as Ctrl-C
        raise KeyboardInterrupt

    # Ctrl-C stops it even when it was started with SIGINT ignored (a script's background job);
    # and a handler, unlike an ignored signal, is not inherited: standalone stops on SIGINT too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop_on)
    signal.signal(signal.SIGHUP, stop_on)
    home = demo_home()
    log = home / "standalone.log"
    process, code = None, 0
    try:
        uri = target_uri()
        where = "AIRFLOW_CONN_LEAGUE_DB" if os.environ.get("AIRFLOW_CONN_LEAGUE_DB") else "embedded PostgreSQL"
        print(f"starting Airflow (scheduler, dag-processor, triggerer, api-server) in {home}; league_db: {where}")
        print(f"Airflow's own output: {log}", flush=True)
        prepare_airflow(home, uri, log)
        env = {**airflow_env(home, uri), **server_env(port)}
        base = env["AIRFLOW__API__BASE_URL"]
        process = start_group([str(bin_dir() / "airflow"), "standalone"], env, log)
        wait_until_ready(base, process, log)
        print(f"Airflow UI: {base}")
        print(f"login: {login(home, env)}")
        print("the DAGs start paused: trigger league_import from its page (its defaults read the bundled season)")
        print("Ctrl-C stops Airflow and every process it started", flush=True)
        code = process.wait() or 1  # standalone never ends by itself
        print(f"airflow standalone exited ({process.returncode}); the end of {log}:\n{_tail(log)}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C never cuts the clean-up short
        if process is not None:
            print("stopping Airflow ...", flush=True)
            killed = stop_group(process, group=False)
            print(f"stopped{f'; killed after {GRACE} s: {_counted(killed)}' if killed else ''}", flush=True)
    return code
