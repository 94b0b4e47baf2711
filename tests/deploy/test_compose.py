"""docker-compose.yml, checked without a Docker engine.

Structure (services, health checks, start order, volumes, no secrets in the file), consistency with
``.env.example`` and the Dockerfiles, and, where Debian's ``docker-compose`` is installed, its own
``config`` validation (offline: it validates against the schema it ships): the stack refuses to
start without POSTGRES_PASSWORD (issue 12 §5: it used to fall back to a fixed password), and the
login option ``docker-compose.auth.yml`` (MLflow's basic-auth app) resolves and requires its
secrets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
AUTH = ROOT / "docker-compose.auth.yml"
ENV_EXAMPLE = ROOT / ".env.example"
VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_services_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "autolab"}
    for name in ("postgres", "mlflow"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}
        assert check["retries"] >= 3
    assert services["mlflow"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["autolab"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_mlflow_serves_artifacts_from_postgres_backed_store(compose: dict[str, Any]) -> None:
    mlf = compose["services"]["mlflow"]
    env = mlf["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in env["MLFLOW_BACKEND_STORE_URI"]
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "/mlartifacts"
    assert "--serve-artifacts" in mlf["command"]
    assert "mlflow" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]  # the autolab container's Host header
    assert compose["services"]["autolab"]["environment"]["MLFLOW_TRACKING_URI"] == \
        "http://mlflow:5000"
    # published on localhost unless the lab opts in
    assert any(p.startswith("${MLFLOW_BIND:-127.0.0.1}:") for p in mlf["ports"])


def _mounts(data: dict[str, Any]) -> dict[str, str]:
    mounted = {}
    for name, svc in data["services"].items():
        for vol in svc.get("volumes", []):
            source, _, target = vol.partition(":")
            assert not source.startswith(("/", ".")), f"{name}: bind mount {vol}; use a volume"
            mounted[source] = target
    return mounted


def test_named_volumes_declared_and_mounted(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    mounted = _mounts(compose)
    assert set(mounted) == declared == {"pgdata", "mlartifacts", "runs"}
    assert mounted["pgdata"] == "/var/lib/postgresql/data"
    assert mounted["mlartifacts"] == compose["services"]["mlflow"]["environment"][
        "MLFLOW_ARTIFACTS_DESTINATION"]


REQUIRED = re.compile(r"\$\{([A-Z_]+):\?([^}]+)\}")


def test_no_secret_in_the_file_and_no_fallback_password(compose: dict[str, Any]) -> None:
    env = compose["services"]["postgres"]["environment"]
    # required, with a message: no fallback such as the former "local-only-change-me"
    assert REQUIRED.fullmatch(env["POSTGRES_PASSWORD"]), env["POSTGRES_PASSWORD"]
    uri = compose["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    userinfo = uri.split("://", 1)[1].split("@", 1)[0]
    assert userinfo.startswith("${POSTGRES_USER")
    assert ":${POSTGRES_PASSWORD:?" in userinfo
    for path in (COMPOSE, AUTH):
        text = path.read_text()
        assert "change-me" not in text
        assert not re.search(r"\$\{[A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*:-", text), \
            f"{path.name}: a secret with a fallback value"
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert value.strip().startswith("${"), f"literal secret: {line.strip()}"
    example = _env_example()
    for name in ("POSTGRES_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD",
                 "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_TRACKING_PASSWORD"):
        assert example[name] == "", f".env.example carries a value for {name}"
    ini = (ROOT / "docker" / "mlflow-auth.ini").read_text()
    assert not re.search(r"^\s*admin_password\s*=", ini, re.M)  # from the environment only


def test_auth_override_runs_the_basic_auth_app(compose: dict[str, Any]) -> None:
    auth = yaml.safe_load(AUTH.read_text())
    mlf = auth["services"]["mlflow"]
    assert mlf["command"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    base = compose["services"]["mlflow"]["command"]
    assert [c for c in mlf["command"] if c not in ("--app-name", "basic-auth")] == base
    env = mlf["environment"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert REQUIRED.fullmatch(env[name]), env[name]
    client = auth["services"]["autolab"]["environment"]
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert REQUIRED.fullmatch(client[name]), client[name]
    assert _mounts(auth) == {"mlauth": "/mlauth"} and set(auth["volumes"]) == {"mlauth"}
    ini = (ROOT / "docker" / "mlflow-auth.ini").read_text()
    assert "database_uri = sqlite:////mlauth/basic_auth.db" in ini
    server = (ROOT / "docker" / "mlflow.Dockerfile").read_text()
    assert '"mlflow[auth]==${MLFLOW_VERSION}"' in server  # Flask-WTF for the auth app
    assert "COPY docker/mlflow-auth.ini /etc/mlflow/basic_auth.ini" in server


def test_every_variable_documented_in_env_example() -> None:
    used = set(VAR.findall(COMPOSE.read_text() + AUTH.read_text()))
    documented = set(_env_example())
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_dockerfiles_pin_what_the_tests_use() -> None:
    app = (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in app
    assert "download.pytorch.org/whl/cpu" in app  # torch's CPU build, not several GB of CUDA
    assert re.search(r"^torch==2\.13\.0$", (ROOT / "constraints.txt").read_text(), re.M)
    assert re.search(r"^USER (?!root)", app, re.M)
    server = (ROOT / "docker" / "mlflow.Dockerfile").read_text()
    pinned = re.search(r"MLFLOW_VERSION=(\S+)", server)
    assert pinned is not None
    assert pinned.group(1) == mlflow.__version__, "server and client MLflow versions differ"
    assert "psycopg2-binary" in server
    assert f"autolab-mlflow:{mlflow.__version__}" in COMPOSE.read_text()


def _compose_config(tmp_path: Path, files: tuple[Path, ...], env_file: Path | None = None,
                    **env: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose (Debian package docker-compose) not installed")
    cmd = [exe, "--project-directory", str(ROOT)]
    for f in files:
        cmd += ["-f", str(f)]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    # a clean environment: no DOCKER_HOST, no stray POSTGRES_PASSWORD from the developer's shell
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    return subprocess.run([*cmd, "config"], capture_output=True, text=True, env=clean,
                          timeout=60, check=False, cwd=tmp_path)


@pytest.mark.parametrize("env_file", [None, ENV_EXAMPLE], ids=["no-env-file", "env-example"])
def test_missing_postgres_password_stops_compose_with_a_message(env_file: Path | None,
                                                                tmp_path: Path) -> None:
    done = _compose_config(tmp_path, (COMPOSE,), env_file)
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD is not set - copy .env.example to .env" in done.stderr
    assert "local-only-change-me" not in done.stdout + done.stderr


@pytest.mark.parametrize("env_file", [None, ENV_EXAMPLE], ids=["no-env-file", "env-example"])
def test_docker_compose_config_validates(env_file: Path | None, tmp_path: Path) -> None:
    password = "s3cret-from-the-environment"
    done = _compose_config(tmp_path, (COMPOSE,), env_file, POSTGRES_PASSWORD=password)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {"postgres", "mlflow", "autolab"}
    uri = resolved["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith(f"postgresql+psycopg2://autolab:{password}@postgres:5432/")
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    assert "${" not in done.stdout


AUTH_SECRETS = {"POSTGRES_PASSWORD": "pg-pw", "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-pw",
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-key",
                "MLFLOW_TRACKING_USERNAME": "lab-pc", "MLFLOW_TRACKING_PASSWORD": "lab-pw"}


def test_auth_override_resolves_with_its_secrets(tmp_path: Path) -> None:
    done = _compose_config(tmp_path, (COMPOSE, AUTH), ENV_EXAMPLE, **AUTH_SECRETS)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    mlf = resolved["services"]["mlflow"]
    assert mlf["command"][2:4] == ["--app-name", "basic-auth"]
    assert "--serve-artifacts" in mlf["command"]
    assert mlf["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "admin-pw"
    assert mlf["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    assert mlf["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith(
        "postgresql+psycopg2://autolab:pg-pw@")  # the base file's settings are kept
    targets = {str(v).split(":")[1] if isinstance(v, str) else v["target"]
               for v in mlf["volumes"]}
    assert targets == {"/mlartifacts", "/mlauth"}
    client = resolved["services"]["autolab"]["environment"]
    assert client["MLFLOW_TRACKING_USERNAME"] == "lab-pc"
    assert client["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


@pytest.mark.parametrize("missing", sorted(set(AUTH_SECRETS) - {"MLFLOW_TRACKING_USERNAME"}))
def test_auth_override_names_a_missing_secret(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in AUTH_SECRETS.items() if k != missing}
    done = _compose_config(tmp_path, (COMPOSE, AUTH), ENV_EXAMPLE, **env)
    assert done.returncode != 0
    assert f"{missing} is not set" in done.stderr
