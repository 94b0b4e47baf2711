"""What MLflow and ``autolab report`` tell a researcher reviewing campaigns (docs/review.md).

Each test is a promise of docs/review.md checked on a real SQLite store (a copy of the session's
template) or on the report's own lines: invalidation tags reach a run already logged, through
``sync`` and through ``resume``; the campaign run's params tell two set-ups apart and are the
ones the docs list; the score terms add up to the score as logged; the campaign run carries the
latest stopping forecast; the report counts experiments as MLflow does.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.config import load_campaign, parse_campaign
from autolab.records import TrialStatus
from autolab.tracking import Journal, JournalHeader, sync
from autolab.tracking.base import (
    campaign_params,
    campaign_summary,
    round_metric,
    round_metrics,
    sum_preserving_round,
)
from autolab.tracking.journal import JOURNAL_NAME
from autolab.tracking.mlflow_tracker import MlflowTracker
from autolab.tracking.report import report_lines
from autolab.tracking.summary import campaign_view

from .conftest import NewTracker, TrialFactory

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = ROOT / "campaigns"


def _config(name: str = "target_550nm.yaml", **changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load((CAMPAIGNS / name).read_text())
    raw.update(changes)
    return parse_campaign(raw).model_dump(mode="json")


def _journal(run_dir: Path, n: int, make_trial: TrialFactory) -> Path:
    """A campaign folder whose journal holds ``n`` completed experiments."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / JOURNAL_NAME
    with Journal.create(path, JournalHeader.new("c", _config(), seed=7)) as j:
        for i in range(n):
            t = make_trial(i)
            j.append_started(i, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 1.5 * i + 1.2})
    return path


# ---- 7: an invalidation reaches MLflow with every tag docs/review.md names ---
#: docs/review.md, "An experiment run": the tags of an experiment invalidated after the fact.
INVALIDATION_TAGS = ("autolab.status", "autolab.reason", "autolab.invalidated_by",
                     "autolab.invalidated_at", "autolab.previous_status")


def _invalidated_run(tr: MlflowTracker, index: int) -> tuple[str, dict[str, str], float]:
    run = tr.trial_runs()[index]
    return run.info.status, dict(run.data.tags), run.data.metrics["failed"]


def test_invalidation_reaches_a_logged_run_through_sync(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    from autolab.steer import invalidate

    run_dir = tmp_path / "run"
    path = _journal(run_dir, 3, make_trial)
    tr = new_tracker()
    assert sync(path, tr, refresh_plots=False) == 3
    invalidate(run_dir, "exp-002", "leak", by="dr-x")
    assert sync(path, new_tracker(), refresh_plots=False) == 1  # "logged 1 experiment"
    status, tags, failed = _invalidated_run(tr, 2)
    when = Journal.read(path).invalidated[2]["time"]
    assert status == "FAILED"
    assert {k: tags.get(k) for k in INVALIDATION_TAGS} == {
        "autolab.status": "invalid", "autolab.reason": "invalidated after the fact: leak",
        "autolab.invalidated_by": "dr-x", "autolab.invalidated_at": when,
        "autolab.previous_status": "completed"}
    assert tags["autolab.error"] == tags["autolab.reason"]
    assert failed == 1.0
    assert sync(path, new_tracker(), refresh_plots=False) == 0  # nothing left to correct
    assert "autolab.invalidated_by" not in _invalidated_run(tr, 1)[1]


def test_invalidation_reaches_a_logged_run_through_resume(
        sqlite_store: tuple[str, str], experiment_name: str, tmp_path: Path) -> None:
    """The real loop (twin, Sobol): a campaign logged live, invalidated, then resumed."""
    from autolab.campaign import Campaign
    from autolab.steer import invalidate

    uri, _ = sqlite_store
    raw = yaml.safe_load((CAMPAIGNS / "target_550nm.yaml").read_text())
    raw.update(budget={"max_experiments": 2}, optimizer={"kind": "sobol"},
               stop={"target_reached": False})
    cfg = parse_campaign(raw)
    done = Campaign.create(cfg, tmp_path / "runs",
                           tracker=MlflowTracker(uri, experiment_name)).run()
    invalidate(done.run_dir, "exp-001", "syringe leak", by="dr-y")
    resumed = Campaign.resume(done.run_dir, tracker=MlflowTracker(uri, experiment_name))
    try:
        tr = resumed.tracker
        assert isinstance(tr, MlflowTracker)
        status, tags, failed = _invalidated_run(tr, 1)
    finally:
        resumed.journal.close()
    assert (status, failed) == ("FAILED", 1.0)
    assert tags["autolab.status"] == "invalid"
    assert tags["autolab.invalidated_by"] == "dr-y"
    assert tags["autolab.invalidated_at"].startswith("20")
    assert tags["autolab.previous_status"] == "completed"


# ---- 11: params that tell set-ups apart, and exactly the ones docs/review.md lists ---
def test_params_tell_a_dynamic_campaign_from_a_steady_one() -> None:
    steady = campaign_params(_config())
    dynamic = campaign_params(_config("target_550nm_dynamic.yaml"))
    assert (steady["mode"], dynamic["mode"]) == ("steady", "dynamic")
    assert dynamic["dynamic.plan"] == "approach"
    assert dynamic["dynamic.ramp_limits.heating_c_per_min"] == "10.0"
    assert not [k for k in steady if k.startswith("dynamic.")]  # a steady campaign ignores it
    differ = {k for k in {*steady, *dynamic} if steady.get(k) != dynamic.get(k)}
    assert differ - {k for k in differ if k.startswith(("budget.", "dynamic.", "stop."))} == {
        "mode"}
    assert steady["stop.qy_min"] == "0.35"
    assert steady["stop.target_reached"] == "true"
    assert "stop.fwhm_max_nm" not in steady  # a rule not set is not shown
    assert (steady["executor"], steady["review"]) == ("twin", "off")
    assert steady["analyzer.qy_calibration_rel"] == "0.05"


def test_a_live_start_logs_the_same_params_as_a_start_by_sync(
        new_tracker: NewTracker, tmp_path: Path) -> None:
    """The campaign logs its set-up from the journaled config, as ``autolab sync`` does when
    the store was down at the start: one function, the same params either way."""
    from autolab.campaign import Campaign

    raw = yaml.safe_load((CAMPAIGNS / "target_550nm_dynamic.yaml").read_text())
    raw.update(optimizer={"kind": "sobol"}, executor={"kind": "twin",
                                                      "settings": {"settling": "fixed"}})
    cfg = parse_campaign(raw)
    tr = new_tracker()
    campaign = Campaign.create(cfg, tmp_path / "runs", tracker=tr)
    campaign.journal.close()
    live = tr.client.get_run(tr.run_id).data.params  # type: ignore[arg-type]
    assert live == campaign_params(cfg.model_dump(mode="json"))
    assert (live["mode"], live["executor.settling"]) == ("dynamic", "fixed")


def test_params_show_the_executor_settings_that_change_an_experiment() -> None:
    fixed = campaign_params(_config(executor={"kind": "twin", "settings": {
        "settling": "fixed", "flush": "always"}}, review={"mode": "file"}))
    assert (fixed["executor.settling"], fixed["executor.flush"]) == ("fixed", "always")
    assert fixed["review"] == "file"
    assert not [k for k in fixed if k.startswith(("executor.twin", "twin", "tracking"))]


def test_params_fit_mlflow_limits_and_old_journals_read_as_steady() -> None:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    dynamic = _config("target_550nm_dynamic.yaml")
    dynamic["dynamic"]["mapping"]["spread_limits"] = {f"c{'x' * 300}{i}": [1.0, 2.0]
                                                      for i in range(3)}
    params = campaign_params(dynamic)
    assert all(len(k) <= 250 and re.fullmatch(r"[A-Za-z0-9_\-. /]+", k) for k in params)
    assert all(len(v) <= min(500, MAX_PARAM_VAL_LENGTH) for v in params.values())
    old = _config()
    del old["mode"], old["dynamic"]
    assert campaign_params(old)["mode"] == "steady"


def _documented_params() -> list[str]:
    """docs/review.md's campaign-run param table as patterns (``<name>``: any dotted name)."""
    text = (ROOT / "docs" / "review.md").read_text()
    table = text.split("| param | what it is |", 1)[1].split("\n\n", 1)[0]
    names = [n for row in table.splitlines()[2:] for n in re.findall(r"`([^`]+)`",
                                                                     row.split("|")[1])]
    return [re.sub(r"<[^>]+>", ".+", re.escape(n))
            for n in names]


@pytest.mark.parametrize("name", sorted(p.name for p in CAMPAIGNS.glob("*.yaml")))
def test_docs_list_every_param_a_shipped_campaign_logs(name: str) -> None:
    patterns = _documented_params()
    config = load_campaign(CAMPAIGNS / name).model_dump(mode="json")
    params = campaign_params(config)
    assert [k for k in params if not any(re.fullmatch(p, k) for p in patterns)] == []
    assert {"mode", "executor", "review", "objective"} <= set(params)


# ---- 12: score terms add up to the score as logged ---
def test_demo_exp_007_terms_add_up_and_are_not_rounded_as_wavelengths() -> None:
    terms = {"score.target_pl_peak_nm": 0.000812, "score.maximize_qy": 3.7591,
             "score.minimize_fwhm_nm": -2.6928}
    metrics = round_metrics({"score": math.fsum(terms.values()), **terms,
                             "pl_peak_nm": 549.5512345, "distance_to_target_nm.pl_peak_nm": 0.44877,
                             "predicted_fwhm_nm_sd": 1.23456, "qy": 0.375912})
    assert metrics["score.minimize_fwhm_nm"] == -2.693  # not -2.69 (0.01 "nm")
    assert math.fsum(metrics[k] for k in terms) == pytest.approx(metrics["score"], abs=1e-12)
    assert metrics["score"] == 1.067
    assert metrics["pl_peak_nm"] == 549.55
    assert metrics["distance_to_target_nm.pl_peak_nm"] == 0.45
    assert metrics["predicted_fwhm_nm_sd"] == 1.23
    assert metrics["qy"] == 0.3759
    assert round_metric("score.minimize_fwhm_nm", -2.6928) == -2.693
    assert round_metric("in_band.pl_peak_nm", 1.0) == 1.0


_TERM = st.floats(min_value=-5e4, max_value=5e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TERM, min_size=1, max_size=6))
def test_rounded_terms_add_up_to_the_rounded_score(values: list[float]) -> None:
    terms = {f"score.t{i}": v for i, v in enumerate(values)}
    score = math.fsum(values)
    out = round_metrics({"score": score, **terms})
    largest = max(abs(v) for v in (*values, score))
    unit = 10.0 ** -min(12, max(0, 3 - math.floor(math.log10(largest)))) if largest else 1.0
    total = math.fsum(out[k] for k in terms)
    assert total == pytest.approx(out["score"], abs=1e-9 * max(1.0, largest))
    assert abs(out["score"] - score) <= unit / 2 + 1e-9 * max(1.0, largest)
    assert all(abs(out[k] - v) <= unit + 1e-9 * max(1.0, largest) for k, v in terms.items())


def test_a_score_that_is_not_the_sum_of_its_terms_is_rounded_on_its_own() -> None:
    terms, total = sum_preserving_round({"a": 1.23456, "b": 2.34567}, total=10.98765)
    assert total == 10.99  # its own value at the terms' place, not their sum 3.580
    assert terms["a"] + terms["b"] == pytest.approx(3.58)


def test_experiment_run_score_terms_add_up_to_its_score(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    objective = load_campaign(CAMPAIGNS / "target_550nm.yaml").objective
    path = tmp_path / JOURNAL_NAME
    with Journal.create(path, JournalHeader.new("c", _config(), seed=7)) as j:
        for i in range(3):  # the score as the campaign computes it (the fixture's is made up)
            t = make_trial(i)
            outcomes = t.outcomes()
            assert outcomes is not None
            t = replace(t, objective=objective.score(outcomes))
            j.append_started(i, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 1.5 * i + 1.2})
    tr = new_tracker()
    sync(path, tr, refresh_plots=False)
    for run in tr.trial_runs():
        m = run.data.metrics
        terms = [v for k, v in m.items() if k.startswith("score.")]
        assert len(terms) == 3
        assert math.fsum(terms) == pytest.approx(m["score"], abs=1e-12)


# ---- 9: the campaign run carries the latest stopping forecast ---
def _forecast(p_spec_met: float, median: float) -> dict[str, Any]:
    fc = {"p_spec_met": p_spec_met, "p_next": 0.2, "p_improve": 0.31234567,
          "expected_experiments": 12.0, "median_experiments": median, "q80_experiments": 25.0}
    return {"forecast": fc, "metrics": {f"forecast_{k}": v for k, v in fc.items()}}


def test_campaign_run_shows_the_latest_forecast(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = _journal(tmp_path / "run", 3, make_trial)
    with Journal.open(path) as j:
        for i, (p, median) in enumerate(((0.01, 20.0), (0.02, 9.0))):
            j.append_record("forecast", {"index": i + 1, **_forecast(p, median)})
        fault = make_trial(3, TrialStatus.INVALID)  # a device fault: no forecast after it
        j.append_started(3, fault.conditions)
        j.append_trial(fault, extra={"lab_clock_h": 6.0})
        tr = new_tracker()
        sync(j, tr, refresh_plots=False)
    parent = tr.client.get_run(tr.run_id)  # type: ignore[arg-type]
    m = parent.data.metrics
    assert (m["forecast_p_spec_met"], m["forecast_median_experiments"]) == (0.02, 9.0)
    assert m["forecast_p_improve"] == 0.3123  # 4 significant digits
    assert tr.trial_runs()[1].data.metrics["forecast_p_spec_met"] == 0.01  # the one after it
    history = tr.client.get_metric_history(tr.run_id, "forecast_p_spec_met")  # type: ignore[arg-type]
    assert [h.step for h in history] == [4]


# ---- 17: the report counts experiments as MLflow does ---
def test_report_counts_an_interrupted_attempt_apart(
        make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    with Journal.create(path, JournalHeader.new("c", _config(), seed=7)) as j:
        for i in range(2):
            t = make_trial(i)
            j.append_started(i, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 1.5 * i + 1.2})
        j.append_started(2, make_trial(2).conditions)
        j.append_interrupted(2, "the campaign process ended while it ran")
        redo = replace(make_trial(3), conditions=make_trial(2).conditions)
        j.append_started(3, redo.conditions)
        j.append_trial(redo, extra={"lab_clock_h": 6.0})
    state = Journal.read(path)
    view = campaign_view(state.finished(), state.extras, state.header.config)
    summary = campaign_summary(view.trials, view.accounts, view.objective)
    lines = report_lines(state, view)
    assert lines[0] == "experiments: 3 (3 completed, 0 failed, 0 invalid)"
    assert lines[1].startswith("interrupted attempts: 1 ")
    assert (summary.n_experiments, summary.n_interrupted) == (3, 1)  # MLflow's numbers
