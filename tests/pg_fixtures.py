"""A throwaway PostgreSQL cluster for the tests (and the bench), and the backend switch.

``python -m pytest --backend postgres`` (or ``NURTURE_TEST_BACKEND=postgres``) makes the
``db_path`` fixture a fresh PostgreSQL database per test instead of a SQLite file, so the
store's tests run on both backends unchanged. Tests that only make sense on SQLite (WAL,
file sizes, query plans) carry ``@pytest.mark.sqlite_only`` and are skipped there.

The cluster is started once per session: ``initdb`` into a temporary folder, ``pg_ctl start``
on a free loopback port with its socket in that folder (as the ``postgres`` user when running
as root, since PostgreSQL refuses to run as root), fsync off. Each test gets a database cloned
from a migrated template, dropped afterwards.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgres")


def pg_bindir() -> str | None:
    """Where initdb/pg_ctl are: $NURTURE_PG_BIN, Debian's /usr/lib/postgresql/N/bin, or PATH."""
    if os.environ.get("NURTURE_PG_BIN"):
        return os.environ["NURTURE_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return str(Path(found[-1]).parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayCluster:
    """A PostgreSQL server in a temporary folder, for tests and benchmarks only."""

    def __init__(self, *, bindir: str | None = None) -> None:
        found = bindir or pg_bindir()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql, "
                               "or set NURTURE_PG_BIN)")
        self.bindir = found
        self.dir = Path(tempfile.mkdtemp(prefix="nurture-pg-"))
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        # PostgreSQL refuses to run as root: use Debian's postgres user (or nobody).
        self._user = "postgres" if _user_exists("postgres") else "nobody"
        self._admin = None
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self, *, durable: bool = False) -> ThrowawayCluster:
        """Start the server; ``durable`` keeps fsync and synchronous commit on (benchmarks)."""
        if self._as_root:
            shutil.chown(self.dir, self._user)
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C.UTF-8")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
                " -c max_connections=300 -c shared_buffers=64MB")
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(data), "-l", str(self.dir / "log"), "-o", opts, "-w", "start")
        import psycopg

        self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        return self

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, *, template: str | None = None) -> str:
        """A new empty (or template-cloned) database; its URL."""
        name = f"nurture_{os.getpid()}_{next(self._names)}"
        sql = f"CREATE DATABASE {name}"
        if template:
            sql += f" TEMPLATE {template} STRATEGY FILE_COPY"
        self._admin.execute(sql)  # type: ignore[union-attr]
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# -- pytest wiring -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=BACKENDS, default=os.environ.get("NURTURE_TEST_BACKEND", "sqlite"),
                     help="database backend for the store tests (default: sqlite, or $NURTURE_TEST_BACKEND)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): only meaningful on the SQLite backend")
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (started by the tests)")


def pytest_report_header(config: pytest.Config) -> str:
    return f"nurture backend: {config.getoption('--backend')}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.config.getoption("--backend") == "postgres":
        mark = item.get_closest_marker("sqlite_only")
        if mark is not None:
            pytest.skip(f"SQLite only: {mark.args[0] if mark.args else mark.kwargs.get('reason', '')}")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this run tests: ``sqlite`` or ``postgres``."""
    return request.config.getoption("--backend")


@pytest.fixture(scope="session")
def pg_cluster(request: pytest.FixtureRequest) -> Iterator[ThrowawayCluster]:
    """A throwaway cluster for the session, with a migrated template database.

    Skips when PostgreSQL or psycopg is not installed, unless the run is ``--backend postgres``."""
    missing = None
    if pg_bindir() is None:
        missing = "PostgreSQL server binaries not installed"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            missing = 'psycopg not installed (pip install "nurture[postgres]")'
    if missing is not None:
        if request.config.getoption("--backend") == "postgres":
            pytest.fail(f"--backend postgres: {missing}")
        pytest.skip(missing)
    cluster = ThrowawayCluster().start()
    try:
        from nurture.store import open_store

        template = cluster.create_database()
        open_store(template).close()  # migrate once; tests clone it
        cluster.template = template.rsplit("/", 1)[1]  # type: ignore[attr-defined]
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: ThrowawayCluster) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test; dropped afterwards."""
    url = pg_cluster.create_database(template=pg_cluster.template)  # type: ignore[attr-defined]
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)
