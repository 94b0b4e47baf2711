"""The docker-compose stack, run natively: PostgreSQL + ``mlflow server`` + a simulated campaign.

The same three pieces as docker-compose.yml, with the same server flags (PostgreSQL backend store,
artifacts served by the server), so CI checks what a lab deploys without a Docker engine. The
campaign talks to the server over HTTP only; it is read back with MLflow's own client, as a
researcher's notebook would.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from autolab.campaign import Campaign
from autolab.config import parse_campaign
from autolab.tracking import MlflowTracker

from .conftest import Postgres

pytestmark = [pytest.mark.stack, pytest.mark.server]

CAMPAIGN = Path(__file__).parents[2] / "campaigns" / "target_550nm.yaml"


def test_campaign_on_postgres_backed_server(postgres: Postgres, mlflow_pg_server: str,
                                            tmp_path: Path, experiment_name: str) -> None:
    raw = yaml.safe_load(CAMPAIGN.read_text())
    raw["optimizer"] = {"kind": "sobol"}
    raw["budget"] = {"max_experiments": 3}
    raw["tracking"] = {"experiment": experiment_name, "uri": mlflow_pg_server}
    config = parse_campaign(raw, str(CAMPAIGN))
    tracker = MlflowTracker(mlflow_pg_server, experiment_name)
    result = Campaign.create(config, tmp_path / "runs", tracker=tracker).run()
    assert len(result.trials) == 3
    assert result.untracked == []

    client = MlflowClient(tracking_uri=mlflow_pg_server)
    exp = client.get_experiment_by_name(experiment_name)
    assert exp is not None
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # served, not a local path
    parents = client.search_runs([exp.experiment_id],
                                 filter_string="tags.`autolab.role` = 'campaign'")
    assert [p.info.run_id for p in parents] == [result.tracking_run_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["autolab.campaign"] == "target-550nm"
    assert parent.data.tags["autolab.n_experiments"] == "3"
    assert parent.data.params["optimizer"] == "sobol"
    assert "550" in parent.data.tags["mlflow.note.content"]

    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        order_by=["attributes.run_name ASC"])
    assert [c.info.run_name for c in children] == ["exp-000", "exp-001", "exp-002"]
    for child, trial in zip(children, result.trials, strict=True):
        assert child.data.tags["autolab.status"] == trial.status.value
        # params are logged to 6 significant digits (what a researcher compares)
        assert float(child.data.params["t_core_c"]) == pytest.approx(
            trial.conditions["t_core_c"], rel=1e-5)
        if trial.features is not None:
            assert child.data.metrics["pl_peak_nm"] == pytest.approx(  # logged to 0.01 nm
                trial.features.pl_peak_nm, abs=0.006)
    # the campaign summary is logged after every experiment (step = experiments finished)
    history = client.get_metric_history(parent.info.run_id, "n_experiments")
    assert sorted(m.step for m in history)[-1] == 3
    assert parent.data.metrics["n_experiments"] == 3

    # artifacts go through the server into its artifacts destination
    measured = next(c for c in children if c.data.metrics.get("pl_peak_nm") is not None)
    csv = client.download_artifacts(measured.info.run_id, "spectra.csv", str(tmp_path))
    table = np.loadtxt(io.StringIO(Path(csv).read_text()), delimiter=",", skiprows=1)
    assert table.shape[1] == 8
    assert np.isfinite(table[:, 0]).all()
    png = client.download_artifacts(measured.info.run_id, "spectrum.png", str(tmp_path))
    assert Path(png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/convergence.png", "plots/parameters_vs_outcomes.png"} <= plots
    summary = client.download_artifacts(parent.info.run_id, "summary/trials.md", str(tmp_path))
    assert "exp-00" in Path(summary).read_text() or "| 0 |" in Path(summary).read_text()

    # and the rows really are in PostgreSQL, not in some local fallback store
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user,
                          password=postgres.password, dbname="mlflow") as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s",
                    (int(exp.experiment_id),))
        row = cur.fetchone()
    conn.close()
    assert row is not None
    assert row[0] == 4
