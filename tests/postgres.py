"""A throwaway PostgreSQL server for the SQL tests and benchmarks, from Debian's ``postgresql``
package (or any PostgreSQL whose ``initdb`` is on PATH or under /usr/lib/postgresql/*/bin).

``initdb`` into a new temporary folder, a random superuser password (SCRAM over TCP, so a test
that leaves the password out fails as it would against a real server), listening on
127.0.0.1 on a free port, no Unix socket outside the folder. As root (CI), initdb refuses to
run, so the folder is given to the ``postgres`` user and the server runs as that user.

Standard library only: ``.ci/run`` uses it before any virtual environment exists::

    python3.11 tests/postgres.py start DIR   # prints DIR's connection facts; DIR must be empty
    python3.11 tests/postgres.py stop DIR    # stops the server and removes DIR

The tests' ``postgres`` fixture (tests/conftest.py) uses the server named by
:data:`SERVER_ENV` when it is set (CI starts one for the whole run), else starts its own.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_ENV = "ADGEN_TEST_POSTGRES"
"""A folder made by ``tests/postgres.py start``: the tests use that server."""
USER = "postgres"
FACTS = "adgen-server.json"


@dataclass(frozen=True)
class Server:
    """A running server: connect as ``user`` with ``password`` to 127.0.0.1:``port``."""

    folder: Path
    port: int
    password: str
    user: str = USER

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A SQLAlchemy URL (psycopg 3); ``password`` is put in as given (e.g. ``${VAR}``)."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql+psycopg://{self.user}{secret}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with the server's own ``psql`` (no Python driver needed); its output."""
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run(
            [str(binaries() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout


def binaries() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``; FileNotFoundError saying what to install."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise FileNotFoundError("initdb not found on PATH or under /usr/lib/postgresql/*/bin: "
                            "install PostgreSQL (apt-get install postgresql, or "
                            "bash tests/system_deps.sh)")


def _as_server_user() -> list[str]:
    """The command prefix that runs a PostgreSQL program: as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise FileNotFoundError("running as root, and runuser (util-linux) is missing: "
                                "PostgreSQL refuses to run as root")
    return [runuser, "-u", USER, "--"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(folder: Path | None = None) -> Server:
    """initdb into ``folder`` (a new temporary one by default) and start the server."""
    bin_dir = binaries()
    prefix = _as_server_user()
    folder = Path(folder or tempfile.mkdtemp(prefix="adgen-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    password = secrets.token_urlsafe(18)
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n", encoding="utf-8")
    if prefix:  # the server user owns the folder; /tmp itself is open to everyone
        shutil.chown(folder, USER)
        shutil.chown(pwfile, USER)
        folder.chmod(0o700)
    _run(prefix, [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
         "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
         "--locale=C.UTF-8", "--no-sync"])
    pwfile.unlink()
    for attempt in range(3):  # another process may take the free port before the server does
        port = _free_port()
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{data}'"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        try:
            _run(prefix, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                          str(folder / "server.log"), "-o", options, "-w", "-t", "60", "start"])
            break
        except RuntimeError:
            if attempt == 2:
                raise
    server = Server(folder, port, password)
    (folder / FACTS).write_text(json.dumps({"port": port, "password": password}),
                                encoding="utf-8")
    return server


def _run(prefix: list[str], command: list[str]) -> None:
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, check=False,
                          cwd="/")
    if done.returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed: "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")


def running(folder: Path) -> Server:
    """The server a ``start`` left in ``folder``."""
    facts = json.loads((Path(folder) / FACTS).read_text(encoding="utf-8"))
    return Server(Path(folder), int(facts["port"]), str(facts["password"]))


def stop(folder: Path) -> None:
    """Stop the server in ``folder`` (immediately: it holds test data only) and remove it."""
    data = Path(folder) / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run([*_as_server_user(), str(binaries() / "pg_ctl"), "-D", str(data),
                        "-m", "immediate", "-w", "stop"], capture_output=True, check=False,
                       cwd="/")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        started = start(where)
        print(f"PostgreSQL on 127.0.0.1:{started.port} in {where}")
    elif command == "stop":
        stop(where)
    else:
        sys.exit(f"usage: {sys.argv[0]} start|stop DIR")
