"""The review notebooks run top to bottom on a fresh campaign, and are committed without outputs.

A short simulated Pareto campaign (``campaigns/max_qy_pareto.yaml``, 6 experiments) is logged to
a temporary SQLite MLflow store; each notebook is executed by nbclient in a real kernel with its
parameters injected through the environment variables its first cell reads. Any cell error fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the 'notebooks' extra")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the 'notebooks' extra")

ROOT = Path(__file__).parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """(tracking URI, campaign run id, work folder) of one fresh 6-experiment Pareto campaign."""
    from autolab.campaign import Campaign
    from autolab.config import load_campaign
    from autolab.tracking import MlflowTracker

    tmp = tmp_path_factory.mktemp("nb")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = load_campaign(ROOT / "campaigns" / "max_qy_pareto.yaml",
                        {"budget.max_experiments": 6, "optimizer.settings": {"n_init": 6}})
    tracker = MlflowTracker(tracking_uri=uri, experiment_name="autolab",
                            artifact_location=(tmp / "artifacts").as_uri())
    result = Campaign.create(cfg, tmp / "runs", tracker=tracker).run()
    assert result.tracking_run_id is not None
    assert len(result.trials) == 6
    # The seeded campaign has experiments inside the 540-580 nm constraints: a front to draw.
    assert any(t.objective is not None for t in result.trials)
    return uri, result.tracking_run_id, tmp


def _execute(name: str, workdir: Path, env: dict[str, str],
             monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a notebook in a fresh kernel (which inherits this process's environment)."""
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


@pytest.mark.parametrize("select", ["most recent", "run id"])
def test_review_campaign(campaign_store: tuple[str, str, Path], select: str,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    uri, run_id, tmp = campaign_store
    key = "" if select == "most recent" else run_id
    nb = _execute("review_campaign.ipynb", tmp,
                  {"AUTOLAB_TRACKING_URI": uri, "AUTOLAB_CAMPAIGN": key}, monkeypatch)
    text = _text(nb)
    assert f"(run {run_id})" in text
    assert "6 experiments" in text
    assert "[pareto]" in text
    assert "Downloading artifacts" not in text
    # convergence, parameters vs outcomes, GP slices, Pareto front
    assert _images(nb) == 4
    assert "no Pareto front" not in text
    assert "fwhm_nm" in text  # the front's table was printed


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
