"""The analyzer's first exciton agrees with the twin's truth over the whole campaign box.

Issue 12 §4: ``autolab simulate`` showed the measured first exciton 7-15 nm red of the twin's
truth, often by more than 3σ. The twin's truth is the *visible* absorbance maximum of the band
(what the seed paper reports, and what the twin is calibrated to), which a continuum rising to
the blue pulls 5-17 nm blue of the band centre; the analyzer used to report the band centre (the
second-derivative minimum). It now reports the maximum, so both name the same quantity.

The twin's process jitter (setpoint and flow errors) is switched off here: it moves the product
away from the nominal conditions the truth is computed at, an error the analyzer cannot know
about. Detector noise is fully on.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from autolab.analysis import analyze, exciton_peak
from autolab.exceptions import ExperimentFailed
from autolab.executors.simulated import SimulatedExecutor
from autolab.twin import DigitalTwin
from autolab.twin.calibrate import box_conditions
from autolab.twin.config import NoiseParams, TwinConfig
from autolab.twin.model import states, truth_features
from autolab.twin.optics import absorbance_shape

# was 256, then 128 (1σ 0.71, 2σ 0.99); on the first 64 points: found 0.98, 1σ 0.77, 2σ 0.98,
# median offset -0.2 nm, the same verdicts at half the CPU (CI time)
N_POINTS = 64


@pytest.fixture(scope="module")
def box_results() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Measured peak, its σ and the truth at ``N_POINTS`` Sobol points of the box."""
    cfg = TwinConfig(trace_frames=0,  # the settling trace is not needed here (speed)
                     noise=NoiseParams(temperature_jitter_c=0.0, flow_jitter_rel=0.0,
                                       ratio_jitter_rel=0.0))
    conds = box_conditions(N_POINTS, seed=11)
    got, err, truth = [], [], []
    for i in range(len(conds)):
        ex = SimulatedExecutor(cfg, seed=i)  # a fresh rig: no product left from an earlier run
        try:
            measurement = ex.run(conds.take(i))
        except ExperimentFailed:
            continue
        gt = ex.truths[max(ex.truths)]
        f = analyze(measurement)
        got.append(f.abs_peak_nm)
        err.append(f.abs_peak_nm_err)
        truth.append(gt.abs_peak_nm)
    return np.array(got), np.array(err), np.array(truth), len(conds)


def test_measured_exciton_matches_the_truth_within_its_sigma(box_results):
    got, err, truth, n = box_results
    assert len(got) > 0.9 * n  # few failed experiments (clogging, no emission)
    found = np.isfinite(got)
    assert found.mean() >= 0.95, found.mean()  # a weak band is still found (was 0.9)
    assert np.all(np.isnan(err[~found]))
    z = (got[found] - truth[found]) / err[found]
    within_2 = float(np.mean(np.abs(z) <= 2.0))
    assert within_2 >= 0.9, within_2
    # no systematic offset any more (it was +7 to +15 nm)
    assert abs(float(np.median(got[found] - truth[found]))) < 1.0


def test_stated_sigma_is_not_absurdly_wide(box_results):
    got, err, truth, _ = box_results
    found = np.isfinite(got)
    z = np.abs(got[found] - truth[found]) / err[found]
    within_1 = float(np.mean(z <= 1.0))
    assert 0.55 <= within_1 <= 0.9, within_1  # a Gaussian 1σ band holds 68 %
    assert float(np.median(err[found])) < 4.0
    assert float(np.max(err[found])) < 15.0


def test_noise_free_twin_absorbance_gives_the_truth_to_half_a_nm():
    cfg = TwinConfig()
    conds = box_conditions(300, seed=3)
    core, shell = states(conds, cfg)
    wl = DigitalTwin().wavelengths_nm
    a = (cfg.optics.absorbance_1s_full * core.conversion[:, None]
         * absorbance_shape(wl, core, shell, cfg.chemistry, cfg.optics))
    truth = truth_features(conds, cfg, with_abs=True).abs_peak_nm
    ex = exciton_peak(wl, a)
    assert ex.found.all() and not ex.shoulder.any()
    assert float(np.max(np.abs(ex.peak_nm - truth))) < 0.6


def test_simulate_example_from_the_issue_is_within_3_sigma():
    """The 7-of-7 failure of the issue: a fresh executor, the CLI's path, jitter on."""
    from autolab.executors.simulated import SimulatedExecutor
    from autolab.records import Conditions

    bad = 0
    for seed in range(7):
        ex = SimulatedExecutor(seed=seed)
        f = analyze(ex.run(Conditions(180, 13, 290, 15, 6, 2, 3.6)))
        t = ex.truths[max(ex.truths)]
        assert math.isfinite(f.abs_peak_nm)
        bad += abs(f.abs_peak_nm - t.abs_peak_nm) > 3 * f.abs_peak_nm_err
    assert bad <= 1
