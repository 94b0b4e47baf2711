"""Fixtures of the deployment tests: the docker-compose stack run natively.

``postgres`` is a throwaway PostgreSQL cluster (``initdb`` in a temporary folder, TCP on a free
127.0.0.1 port, no Unix socket in a system folder); ``mlflow_pg_server`` is ``mlflow server`` on
it with served artifacts, as docker-compose.yml runs it. Both start once per session and are
stopped (and their files deleted) at its end.

PostgreSQL refuses to run as root. When the tests run as root (CI containers), the server runs as
an unprivileged user: ``$AUTOLAB_PG_USER``, default ``postgres`` (Debian's package creates it;
``scripts/ci/postgres.sh`` installs the package or the user if missing). The cluster then lives in
a folder of its own under the system temp dir, because pytest's temp dirs are private to root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import pytest

from tests.conftest import copy_store, free_port, mlflow_server_process, stop_process_group

INSTALL_HINT = "run scripts/ci/postgres.sh (it installs Debian's postgresql)"


@dataclass(frozen=True)
class Postgres:
    """A running throwaway cluster: connect as ``user``/``password`` on 127.0.0.1:``port``."""

    port: int
    user: str
    password: str
    data_dir: Path

    def uri(self, database: str) -> str:
        """SQLAlchemy URI for ``mlflow server --backend-store-uri``.

        The driver is named: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, while
        the stack (and docker-compose.yml) ships psycopg2-binary.
        """
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"


def _pg_bindir() -> Path | None:
    """The folder with ``initdb`` and ``postgres``: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    versions = sorted(glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("AUTOLAB_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"running as root, and PostgreSQL refuses root: no unprivileged user {name!r} "
                    f"to run it as ({INSTALL_HINT}, or set AUTOLAB_PG_USER)")


_stop = stop_process_group  # the postgres fixture stops its postmaster the same way


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster on a free localhost port, with password (scram) login."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL server binaries (initdb) not found: {INSTALL_HINT}")
    psycopg2 = pytest.importorskip("psycopg2", reason="pip install psycopg2-binary")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="autolab-pg-"))
    data = root / "data"
    password = secrets.token_hex(12)
    (root / "pwfile").write_text(password + "\n")
    as_user: dict[str, int] = {}
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(root / "pwfile", user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "HOME": str(root)}
    log_path = root / "postgres.log"
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "autolab", f"--pwfile={root / 'pwfile'}",
         "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync"],
        cwd=root, env=env, capture_output=True, timeout=120, check=False, **as_user)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}): {init.stderr.decode()[-2000:]}")
    port = free_port()
    log = log_path.open("wb")
    # -k: the Unix socket goes into the cluster folder, not /var/run/postgresql (root's).
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(root), "-c", "fsync=off", "-c", "full_page_writes=off"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        **as_user)
    pg = Postgres(port=port, user="autolab", password=password, data_dir=data)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"postgres exited with {proc.returncode}: "
                            f"{log_path.read_text()[-2000:]}")
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user=pg.user,
                                        password=password, dbname="postgres", connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail(f"postgres not ready in 60 s: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield pg
    finally:
        _stop(proc, signal.SIGINT, "postgres")  # SIGINT to the postmaster: fast shutdown
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_pg_server(postgres: Postgres,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on the PostgreSQL cluster, artifacts served by the server (HTTP URI)."""
    root = tmp_path_factory.mktemp("mlflow-pg")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "server", "--backend-store-uri", postgres.uri("mlflow"),
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # the first start creates the schema (migrations)
    with mlflow_server_process(cmd, root, env, port, "mlflow server", timeout_s=120) as uri:
        yield uri


@dataclass(frozen=True)
class AuthServer:
    """``mlflow server --app-name basic-auth`` on localhost, and its admin's credentials."""

    uri: str
    admin_user: str
    admin_password: str


@pytest.fixture(scope="session")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory,
                       sqlite_template: Path) -> Iterator[AuthServer]:
    """MLflow's own login (the basic-auth app), configured as docker-compose.auth.yml does.

    The settings file is the one the image bakes in (``docker/mlflow-auth.ini``) with the user
    store moved into a temporary folder; the admin password and the form-signing key are fresh
    random values passed through the environment, as compose passes them.
    """
    pytest.importorskip("flask_wtf", reason="pip install -e '.[deploy]' (Flask-WTF)")
    root = tmp_path_factory.mktemp("mlflow-auth")
    ini = (Path(__file__).parents[2] / "docker" / "mlflow-auth.ini").read_text()
    ini = ini.replace("sqlite:////mlauth/basic_auth.db", f"sqlite:///{root / 'basic_auth.db'}")
    assert str(root) in ini
    (root / "basic_auth.ini").write_text(ini)
    copy_store(sqlite_template, root / "mlflow.db")  # tracking tables current: no migrations
    admin_password = secrets.token_urlsafe(16)
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "server", "--app-name", "basic-auth",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_"))}
    env.update({"MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
                "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
                "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32)})
    # the user store still migrates, on a busy CI machine
    with mlflow_server_process(cmd, root, env, port, "mlflow server (basic-auth)",
                               timeout_s=180) as uri:
        yield AuthServer(uri=uri, admin_user="admin", admin_password=admin_password)

