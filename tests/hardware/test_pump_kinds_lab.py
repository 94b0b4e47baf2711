"""A campaign end to end on the virtual lab with Harvard or Chemyx pumps instead of New Era
(and Huber or Omega controllers instead of Eurotherm).

The same path as ``test_virtual_lab.py``'s campaign through the serial stack: the campaign, the
executor, the procedure and the supervisor over the real drivers and the pty emulators, with the
pump kind swapped (``VirtualLab(pump_kind=...)``). Neither kind has a hardware watchdog, so
nothing here feeds one: the rig must not assume every pump has it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autolab.campaign import Campaign
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.base import Watchdogged
from autolab.records import Measurement, TrialStatus
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import SCALE, _three_sobol_experiments


@pytest.mark.parametrize(("kind", "heater_kind"), [("harvard", "huber"),
                                                   ("chemyx", "omega_cn7500")])
def test_a_campaign_runs_over_the_pump_kind(kind: str, heater_kind: str, tmp_path: Path) -> None:
    """Each pump kind beside a ramp-less controller kind (the Julabo's campaign is slower:
    test_virtual_lab_heaters.py), so one campaign covers both kinds' paths."""
    with VirtualLab(time_scale=SCALE, pump_kind=kind, heater_kind=heater_kind) as lab:
        config = lab.devices_config()
        assert {config.devices[n].kind for n in lab.reactor.heaters} == {heater_kind}
        executor = CSTRExecutor(config, install_signal_handlers=False)
        pumps = executor.rig.pumps.values()
        assert {type(p).__name__ for p in pumps} == {f"{kind.capitalize()}Pump"}
        assert not any(isinstance(p, Watchdogged) for p in pumps)
        campaign = Campaign.create(_three_sobol_experiments(f"cstr-{kind}", n=2),
                                   tmp_path / "runs", executor=executor)
        result = campaign.run()
        assert len(result.trials) == 2
        assert all(t.status is TrialStatus.COMPLETED for t in result.trials), [
            (t.status, t.error) for t in result.trials]
        for trial in result.trials:
            m = trial.measurement
            assert isinstance(m, Measurement) and m.trace is not None
            assert m.reagent_ml["phosphine"] > 0
            assert any("pump_phosphine" in line for line in m.device_log)
        # campaign.run closed the executor: the shutdown left the rig safe
        report = executor.last_shutdown
        assert report is not None and report.ok, report and report.lines()
        with lab.reactor.lock:
            assert not any(p.running for p in lab.reactor.pumps.values())
            assert all(h.remote_sp_c == 25.0 for h in lab.reactor.heaters.values())
