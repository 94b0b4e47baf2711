"""The review notebooks run top to bottom on fresh campaigns, and are committed without outputs.

Two short simulated campaigns, a Pareto one (``campaigns/max_qy_pareto.yaml``, 4 experiments) and
a scalar one (``campaigns/target_550nm.yaml``, 5 experiments, the last proposed by the model),
are logged to one temporary SQLite MLflow store; each notebook is executed by nbclient in a real
kernel with its parameters injected through the environment variables its first cell reads. Any
cell error fails. The store the review notebook reads must not depend on the kernel's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from autolab.tracking.report import find_tracking_store, source_root
from tests.conftest import copy_store

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the 'notebooks' extra")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the 'notebooks' extra")

ROOT = Path(__file__).parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory: pytest.TempPathFactory,
                   sqlite_template: Path) -> tuple[str, str, Path]:
    """(tracking URI, campaign run id, work folder) of one fresh 4-experiment Pareto campaign.

    Each campaign is as short as its checks allow (they were 6 experiments each: a third of this
    file's CPU time): four Sobol points of the seeded Pareto campaign already include one inside
    the 540-580 nm constraints (exp-002, a front of one) and enough completed experiments for
    the notebook's GP slices; the scalar one needs one experiment proposed by the model (the
    fifth, after four Sobol points) for the model-fit figure, and a BoTorch proposal costs
    seconds.
    """
    from autolab.campaign import Campaign
    from autolab.config import load_campaign
    from autolab.tracking import MlflowTracker

    tmp = tmp_path_factory.mktemp("nb")
    uri = copy_store(sqlite_template, tmp / "mlflow.db")
    cfg = load_campaign(ROOT / "campaigns" / "max_qy_pareto.yaml",
                        {"budget.max_experiments": 4, "optimizer.settings": {"n_init": 4}})
    tracker = MlflowTracker(tracking_uri=uri, experiment_name="autolab",
                            artifact_location=(tmp / "artifacts").as_uri())
    result = Campaign.create(cfg, tmp / "runs", tracker=tracker).run()
    assert result.tracking_run_id is not None
    assert len(result.trials) == 4
    # The seeded campaign has experiments inside the 540-580 nm constraints: a front to draw.
    assert any(t.objective is not None for t in result.trials)
    scalar = load_campaign(ROOT / "campaigns" / "target_550nm.yaml",
                           {"budget.max_experiments": 5, "optimizer.settings": {"n_init": 4},
                            "stop.target_reached": False})
    tracker = MlflowTracker(tracking_uri=uri, experiment_name="autolab",
                            artifact_location=(tmp / "artifacts").as_uri())
    done = Campaign.create(scalar, tmp / "runs", tracker=tracker).run()
    assert len(done.trials) == 5
    return uri, result.tracking_run_id, tmp


def _execute(name: str, workdir: Path, env: dict[str, str],
             monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a notebook in a fresh kernel (which inherits this process's environment)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws figures
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError on any cell error
    return nb


def _text(nb: Any) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def _images(nb: Any) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_review_pareto_campaign(campaign_store: tuple[str, str, Path],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    uri, run_id, tmp = campaign_store
    nb = _execute("review_campaign.ipynb", tmp,
                  {"AUTOLAB_TRACKING_URI": uri, "AUTOLAB_CAMPAIGN": run_id}, monkeypatch)
    text = _text(nb)
    assert f"(run {run_id})" in text
    assert "4 experiments" in text
    assert "[pareto]" in text
    assert "Downloading artifacts" not in text
    assert "exp-000" in text and "exp-004" not in text  # numbered from 0, as everywhere
    assert "no model predictions yet" in text  # four Sobol points: nothing was predicted
    # convergence, parameters vs outcomes, GP slices, Pareto front
    assert _images(nb) == 4
    assert "no Pareto front" not in text
    assert "fwhm_nm" in text  # the front's table was printed
    assert "hypervolume after the last experiment" in text


def test_review_scalar_campaign_draws_no_pareto_front(campaign_store: tuple[str, str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    uri, _, tmp = campaign_store
    nb = _execute("review_campaign.ipynb", tmp,
                  {"AUTOLAB_TRACKING_URI": uri, "AUTOLAB_CAMPAIGN": ""}, monkeypatch)
    text = _text(nb)
    assert "campaign target-550nm" in text  # the most recent one
    assert "target band: pl_peak_nm 550 ± 2" in text
    assert "objective mode 'scalar': no Pareto front to draw" in text
    # convergence, parameters vs outcomes, model fit (one model proposal), GP slices
    assert _images(nb) == 4


def test_review_store_does_not_depend_on_the_kernel_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run with no store named: the repository root's mlflow.db, or an error naming the places.

    (A named store that does not exist is refused too: :func:`test_find_tracking_store`.)
    """
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    root_store = source_root() / "mlflow.db"
    if root_store.is_file():  # a developer's checkout with campaigns in it: that store is read
        nb = _execute("review_campaign.ipynb", workdir, {"AUTOLAB_TRACKING_URI": ""},
                      monkeypatch)
        assert f"MLflow store: sqlite:///{root_store}" in _text(nb)
    else:
        with pytest.raises(nbclient.exceptions.CellExecutionError) as err:
            _execute("review_campaign.ipynb", workdir, {"AUTOLAB_TRACKING_URI": ""},
                     monkeypatch)
        assert "no MLflow store found: looked for" in str(err.value)
        assert str(root_store) in str(err.value) and str(workdir / "mlflow.db") in str(err.value)
    assert not (workdir / "mlflow.db").exists()  # no empty store left in the kernel's folder


def test_find_tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AUTOLAB_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    first, second = tmp_path / "root", tmp_path / "cwd"
    first.mkdir()
    second.mkdir()
    with pytest.raises(FileNotFoundError, match="no MLflow store found") as err:
        find_tracking_store(search=[first, second])
    assert str(first / "mlflow.db") in str(err.value) and str(second / "mlflow.db") in str(
        err.value)
    (second / "mlflow.db").write_bytes(b"")
    assert find_tracking_store(search=[first, second]) == f"sqlite:///{second / 'mlflow.db'}"
    (first / "mlflow.db").write_bytes(b"")
    assert find_tracking_store(search=[first, second]) == f"sqlite:///{first / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert find_tracking_store(search=[first]) == "http://mlflow:5000"  # servers are not checked
    monkeypatch.setenv("AUTOLAB_TRACKING_URI", f"sqlite:///{tmp_path / 'gone.db'}")
    with pytest.raises(FileNotFoundError, match=r"from \$AUTOLAB_TRACKING_URI"):
        find_tracking_store()
    assert find_tracking_store(f"sqlite:///{first / 'mlflow.db'}") == \
        f"sqlite:///{first / 'mlflow.db'}"
    assert os.environ["AUTOLAB_TRACKING_URI"].endswith("gone.db")


def test_review_campaign_unknown_name(campaign_store: tuple[str, str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    uri, _, tmp = campaign_store
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="no autolab campaign"):
        _execute("review_campaign.ipynb", tmp,
                 {"AUTOLAB_TRACKING_URI": uri, "AUTOLAB_CAMPAIGN": "no-such-campaign"},
                 monkeypatch)


def test_twin_explorer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("twin_explorer.ipynb", tmp_path, {"AUTOLAB_TWIN_CONFIG": ""}, monkeypatch)
    text = _text(nb)
    assert "T_shell 290 °C" in text
    assert "Cl:I" in text
    assert _images(nb) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    for cell in code:
        assert cell.outputs == [], f"{path.name}: a cell has outputs; clear them before committing"
        assert cell.execution_count is None, f"{path.name}: clear the execution counts"


def test_both_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"review_campaign.ipynb", "twin_explorer.ipynb"}


def test_report_and_mlflow_show_the_same_campaign(campaign_store: tuple[str, str, Path]) -> None:
    """The real Pareto campaign: report and MLflow agree on clocks, front and hypervolume."""
    import csv
    import io

    from mlflow import MlflowClient

    from autolab.campaign import JOURNAL_NAME
    from autolab.tracking import Journal
    from autolab.tracking.report import write_report

    uri, run_id, tmp = campaign_store
    journal = next(p for p in (tmp / "runs").glob("max-qy-pareto*/" + JOURNAL_NAME))
    files = {p.name for p in write_report(Journal.read(journal), tmp / "report")}
    assert "pareto_front.png" in files and "trials.html" in files
    client = MlflowClient(tracking_uri=uri)
    plots = {f.path for f in client.list_artifacts(run_id, "plots")}
    assert "plots/pareto_front.png" in plots  # MLflow holds the same figure
    table = list(csv.DictReader(io.StringIO((tmp / "report" / "trials.csv").read_text())))
    parent = client.get_run(run_id)
    children = client.search_runs([parent.info.experiment_id],
                                   f"tags.`mlflow.parentRunId` = '{run_id}'")
    by_index = {int(r.data.tags["autolab.trial_index"]): r.data.metrics for r in children}
    for row in table:
        m = by_index[int(row["index"])]
        assert float(row["lab_clock_h"]) == pytest.approx(m["lab_clock_h"], rel=1e-3)
        assert float(row["experiment_lab_h"]) == pytest.approx(m["experiment_lab_h"], rel=1e-3)
    hv = client.get_metric_history(run_id, "hypervolume")
    assert hv and hv[-1].value == pytest.approx(float(table[-1]["hypervolume"]), rel=1e-3)
    front = client.get_metric_history(run_id, "pareto_front_size")[-1].value
    assert front == sum(r["pareto_front"] == "1" for r in table)
