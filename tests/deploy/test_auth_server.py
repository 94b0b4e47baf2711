"""A campaign logs to an MLflow server with a login (MLflow's basic-auth app), issue 12 §5.

The server runs as docker-compose.auth.yml runs it (``--app-name basic-auth``, the image's
settings file, secrets from the environment). The admin makes an account for the lab PC; the
campaign (the real CLI, run by Typer's runner in this process) reads that account from
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as a lab deploys it. Wrong credentials are
refused by the server and reported by autolab in one clear line (no traceback); the campaign
still runs, journal-only, and nothing reaches the server. No secret is in the repository: every
password here is random.
"""

from __future__ import annotations

import os
import secrets
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from autolab.cli import app
from autolab.exceptions import TrackingError
from autolab.tracking import MlflowTracker

from .conftest import AuthServer

pytestmark = pytest.mark.server

CAMPAIGN = Path(__file__).parents[2] / "campaigns" / "target_550nm.yaml"
LAB_USER = "lab-pc"


@pytest.fixture(scope="module")
def lab_password(mlflow_auth_server: AuthServer) -> str:
    """An account for the lab PC, made by the admin through MLflow's auth client."""
    from mlflow.server import get_app_client

    password = secrets.token_urlsafe(16)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = mlflow_auth_server.admin_user
    os.environ["MLFLOW_TRACKING_PASSWORD"] = mlflow_auth_server.admin_password
    try:
        auth = get_app_client("basic-auth", tracking_uri=mlflow_auth_server.uri)
        auth.create_user(username=LAB_USER, password=password)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return password


def _run_cli(tmp_path: Path, uri: str, experiment: str, monkeypatch: pytest.MonkeyPatch,
             **login: str) -> str:
    """``autolab run`` with ``login`` in the environment; returns its output (exit 0 checked).

    The command runs in this process (Typer's runner), its environment set by ``monkeypatch``
    (restored after the test): MLflow reads the login from the environment at each request,
    as in a fresh process, and a process of its own only added ~5 s of imports to each run.
    """
    raw = yaml.safe_load(CAMPAIGN.read_text())
    raw["optimizer"] = {"kind": "sobol"}
    raw["tracking"] = {"experiment": experiment}
    cfg = tmp_path / "campaign.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    for key in [k for k in os.environ if k.startswith("MLFLOW_TRACKING_")]:
        monkeypatch.delenv(key)
    # a generous HTTP timeout: checking a password hash takes seconds on a loaded CI machine
    for key, value in {"MPLBACKEND": "Agg", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60", **login}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    # One experiment: the login rides on every request of the campaign (its run, the nested
    # experiment run, their artifacts, the stop), and the server checks the password hash on
    # each one, seconds on a loaded machine; a second experiment repeated the same requests.
    done = CliRunner().invoke(app, ["run", str(cfg), "--budget", "1", "--tracking-uri", uri,
                                    "--runs-dir", str(tmp_path / "runs")])
    assert done.exit_code == 0, (done.exception, done.output)  # no crash, no failure exit
    return done.output


def _client(server: AuthServer, user: str, password: str) -> MlflowClient:
    os.environ["MLFLOW_TRACKING_USERNAME"] = user
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    return MlflowClient(tracking_uri=server.uri)


def test_the_server_wants_a_login(mlflow_auth_server: AuthServer) -> None:
    url = f"{mlflow_auth_server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 401
    with urllib.request.urlopen(f"{mlflow_auth_server.uri}/health", timeout=10) as resp:
        assert resp.status == 200  # the compose health check needs no login
    good = b64encode(f"{mlflow_auth_server.admin_user}:{mlflow_auth_server.admin_password}"
                     .encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {good}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def test_campaign_logs_with_credentials_from_the_environment(
        mlflow_auth_server: AuthServer, lab_password: str, tmp_path: Path,
        experiment_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run_cli(tmp_path, mlflow_auth_server.uri, experiment_name, monkeypatch,
                   MLFLOW_TRACKING_USERNAME=LAB_USER, MLFLOW_TRACKING_PASSWORD=lab_password)
    assert "Traceback" not in out
    assert "not yet in MLflow" not in out and "tracking unavailable" not in out, out

    for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    client = _client(mlflow_auth_server, LAB_USER, lab_password)
    exp = client.get_experiment_by_name(experiment_name)
    assert exp is not None
    parents = client.search_runs([exp.experiment_id],
                                 filter_string="tags.`autolab.role` = 'campaign'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert [c.info.run_name for c in children] == ["exp-000"]

    # the lab account made the experiment (so it owns it): the server knew who logged
    from mlflow.server import get_app_client

    _client(mlflow_auth_server, mlflow_auth_server.admin_user, mlflow_auth_server.admin_password)
    auth = get_app_client("basic-auth", tracking_uri=mlflow_auth_server.uri)
    perm = auth.get_user_permission(LAB_USER, "experiment", exp.experiment_id)
    assert perm.permission == "MANAGE"


def test_wrong_credentials_are_refused_with_a_clear_message(
        mlflow_auth_server: AuthServer, lab_password: str, tmp_path: Path,
        experiment_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run_cli(tmp_path, mlflow_auth_server.uri, experiment_name, monkeypatch,
                   MLFLOW_TRACKING_USERNAME=LAB_USER,
                   MLFLOW_TRACKING_PASSWORD=lab_password + "-wrong")
    assert "Traceback" not in out, out  # and exit 0: the campaign itself ran, journal-only
    assert "HTTP 401 Unauthorized" in out, out
    assert "MLFLOW_TRACKING_USERNAME" in out and "MLFLOW_TRACKING_PASSWORD" in out
    assert "autolab sync" in out
    assert lab_password not in out  # the password is never echoed

    for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    client = _client(mlflow_auth_server, mlflow_auth_server.admin_user,
                     mlflow_auth_server.admin_password)
    assert client.get_experiment_by_name(experiment_name) is None  # nothing reached the server


@pytest.mark.parametrize("user", ["nobody", None])
def test_tracker_error_says_what_to_set(mlflow_auth_server: AuthServer, user: str | None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if user is None:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        who = "no login"
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        who = f"the login of MLFLOW_TRACKING_USERNAME='{user}'"
    tracker = MlflowTracker(mlflow_auth_server.uri, "autolab-auth-check", http_timeout_s=60)
    with pytest.raises(TrackingError) as err:
        tracker.start_campaign("x", {}, {}, {}, campaign_id="auth-check")
    assert f"refused {who} (HTTP 401 Unauthorized): set MLFLOW_TRACKING_USERNAME and " \
           "MLFLOW_TRACKING_PASSWORD" in str(err.value)
    assert "not-the-password" not in str(err.value)
