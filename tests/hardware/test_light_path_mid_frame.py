"""A light source that goes out during a frame makes the experiment invalid, never chemistry.

ASP-1 (autolab/hardware/protocols/spectro.py): ``SRC?`` answers the source that is lit, so a
failed lamp or LED reads ``OFF``. The driver checks it when it sets the light path, and the
supervisor between its polls; a source that goes out after the setting is checked and before
the frame is read, on the last lit frame of an experiment (the reference-dye frame, followed by
the dark frame, which sets the source ``OFF``), was found by neither: the dark dye frame went
into the QY as chemistry. The driver now reads the light path back after every frame. Real
drivers over ptys; the failure is injected between the dye frame's setting and its ``ACQ``
(the emulator's own hooks, tied to the commands, never to wall time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autolab.campaign import JOURNAL_NAME, Campaign, StopReason
from autolab.executors.cstr import CSTRExecutor
from autolab.records import TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import SCALE, _three_sobol_experiments


def test_a_source_that_goes_out_during_the_dye_frame_makes_the_experiment_invalid(
        tmp_path: Path) -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False,
                                poll_period_s=0.1)
        spec = lab.spectrometer
        step = {"armed": False, "cell": spec.cell, "fail_next": False, "failed": False}

        def arm(c: Campaign, trial: Any) -> None:
            step["armed"] = len(c.trials) == 1

        def before_reply() -> None:
            # the light path is set under the driver's lock (SRC, SRC?, SHUT, SHUT?, CELL,
            # CELL?), so the reply after "CELL DYE" is its read-back: fail the LED there, after
            # the read-back was answered and before the frame is taken
            if step["fail_next"]:
                step["fail_next"], step["failed"] = False, True
                spec.source_failed = True
            elif step["armed"] and spec.cell == "DYE" and step["cell"] != "DYE":
                step["armed"], step["fail_next"] = False, True
            elif step["failed"] and spec.source == "OFF":  # the lamp replaced
                step["failed"] = False
                spec.source_failed = False
            step["cell"] = spec.cell

        spec.before_reply = before_reply
        campaign = Campaign.create(_three_sobol_experiments("cstr-dark-dye", n=3),
                                   tmp_path / "runs", executor=executor, on_trial=arm)
        result = campaign.run()
        assert result.stop_reason is StopReason.MAX_EXPERIMENTS
        state = Journal.read(campaign.run_dir / JOURNAL_NAME)
        statuses = [t.status for t in state.trials]
        assert statuses == [TrialStatus.COMPLETED, TrialStatus.INVALID, TrialStatus.COMPLETED], [
            (t.status, t.error) for t in state.trials]
        bad = state.trials[1]
        assert bad.error is not None and "spectrometer" in bad.error
        assert "SRC reads OFF, set EXC" in bad.error
        assert state.extras[bad.index]["device"] == "spectrometer"
        with lab.reactor.lock:  # ended safe
            assert not any(p.running for p in lab.reactor.pumps.values())
