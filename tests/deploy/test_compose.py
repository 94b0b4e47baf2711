"""docker-compose.yml, checked without a Docker engine.

Structure (services, health checks, start order, volumes, no secrets in the file), consistency with
``.env.example`` and the Dockerfiles, and, where Debian's ``docker-compose`` is installed, its own
``config`` validation (offline: it validates against the schema it ships).
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


def test_named_volumes_declared_and_mounted(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    mounted = {}
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source, _, target = vol.partition(":")
            assert not source.startswith(("/", ".")), f"{name}: bind mount {vol}; use a volume"
            mounted[source] = target
    assert set(mounted) == declared == {"pgdata", "mlartifacts", "runs"}
    assert mounted["pgdata"] == "/var/lib/postgresql/data"
    assert mounted["mlartifacts"] == compose["services"]["mlflow"]["environment"][
        "MLFLOW_ARTIFACTS_DESTINATION"]


def test_no_secret_in_the_file(compose: dict[str, Any]) -> None:
    env = compose["services"]["postgres"]["environment"]
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    uri = compose["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    userinfo = uri.split("://", 1)[1].split("@", 1)[0]
    assert userinfo.startswith("${POSTGRES_USER")
    assert ":${POSTGRES_PASSWORD" in userinfo
    for line in COMPOSE.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and re.search(r"PASSWORD|SECRET|TOKEN", key):
            assert value.strip().startswith("${"), f"literal secret: {line.strip()}"
    assert _env_example()["POSTGRES_PASSWORD"] == ""  # the example carries no password


def test_every_variable_documented_in_env_example() -> None:
    used = set(VAR.findall(COMPOSE.read_text()))
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


@pytest.mark.parametrize("env_file", [None, ENV_EXAMPLE], ids=["defaults", "env-example"])
def test_docker_compose_config_validates(env_file: Path | None, tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose (Debian package docker-compose) not installed")
    cmd = [exe, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    # a clean environment: no DOCKER_HOST, no stray POSTGRES_PASSWORD from the developer's shell
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    done = subprocess.run([*cmd, "config"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {"postgres", "mlflow", "autolab"}
    uri = resolved["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith("postgresql+psycopg2://autolab:")
    assert "${" not in done.stdout
