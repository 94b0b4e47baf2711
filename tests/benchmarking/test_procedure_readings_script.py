"""benchmarks/procedure_readings.py: both procedures read the same conditions, paired honestly."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np

from autolab.benchmarking.spec import load_spec
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    return load_script("benchmarks/procedure_readings.py")


def test_both_procedures_read_the_same_conditions_and_the_pairing_holds() -> None:
    script = _script()
    spec = load_spec(ROOT / "benchmarks" / "lab_hours.yaml")
    twin = spec.members()[0]
    rows = {p: list(script.read_sequence(spec, twin, 4, 7, p)) for p in script.PROCEDURES}
    adaptive, fixed = rows["adaptive"], rows["fixed"]
    assert [r.get("true_pl_nm") for r in adaptive] == [r.get("true_pl_nm") for r in fixed]
    read = [r for r in fixed if "pl_nm" in r]
    assert len(read) >= 2
    assert all(r["settle_reason"] == "fixed" and r["pl_sd_nm"] > 0 and r["lab_h"] > 0 for r in read)
    assert all(r["settle_reason"] in {"steady", "cap"} for r in adaptive if "pl_nm" in r)
    # the adaptive wait never exceeds the fixed one (its cap)
    assert all(a["settle_min"] <= f["settle_min"] + 1e-9
               for a, f in zip(adaptive, fixed, strict=True) if "pl_nm" in a and "pl_nm" in f)
    assert math.isnan(read[0]["previous_true_pl_nm"])
    summary = script.summarize(adaptive + fixed)
    assert summary["fixed"]["readings"] == len(read)
    pairs = summary["adaptive_minus_fixed_toward_previous_nm"]
    assert sum(v["readings"] for v in pairs.values()) == len(read) - 1
    # z before and after the carry-over term, per procedure and member kind
    calib = summary["calibration"]
    assert set(calib) == {"adaptive / twin", "fixed / twin"}
    assert calib["fixed / twin"]["pl_z"]["readings"] == len(read)
    assert {"mean", "sd", "within_2sd"} <= set(calib["adaptive / twin"]["pl_z_without_carryover"])
    assert all(r["pl_sd_without_carryover_nm"] <= r["pl_sd_nm"] for r in read + [
        r for r in adaptive if "pl_nm" in r])
    assert all(r["pl_sd_without_carryover_nm"] == r["pl_sd_nm"] for r in read)  # flushed, 3 τ
    # the analyzer's own QY bias, each run's read-out gain divided out
    bias = calib["fixed / twin"]["qy_bias_analyzer"]
    assert bias["readings"] == len(read) and abs(bias["mean"]) < 0.02
    assert all(abs(r["pl_gain"] - 1.0) < 0.5 for r in read)


def test_the_inner_filter_correction_brightens_the_blue_side_and_keeps_the_rest() -> None:
    script = _script()
    spec = load_spec(ROOT / "benchmarks" / "lab_hours.yaml")
    twin = spec.members()[0]
    ex = twin.executor(seed=3, settling="fixed", flush="always")
    problem = script.problems(spec, twin)[0]
    m = ex.run(problem.conditions(problem.space.from_unit(np.full((1, problem.space.dim),
                                                                  0.5))[0]))
    out = script.inner_filter_corrected(m)
    s, c = m.spectra, out.spectra
    assert np.array_equal(c.sample_counts, s.sample_counts)
    assert np.array_equal(c.dark_pl_counts, s.dark_pl_counts)
    net, net_c = s.pl_counts - s.dark_pl_counts, c.pl_counts - c.dark_pl_counts
    absorbance = np.log10((s.blank_counts - s.dark_abs_counts)
                          / (s.sample_counts - s.dark_abs_counts))
    strong = absorbance > 0.05
    assert strong.any()
    assert np.allclose(net_c[strong], net[strong] * 10 ** (absorbance[strong] / 2))
