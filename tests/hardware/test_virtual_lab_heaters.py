"""A simulated experiment over ptys with the ramp-less heater kinds (VirtualLab(heater_kind=)).

The same procedure, executor and supervisor as with the Eurotherm controllers; only the
controllers' kind differs: the blocks reach their setpoints through the host-side ramp and the
product reads as the twin's truth.
"""

from __future__ import annotations

import pytest

from autolab.analysis import analyze
from autolab.executors.cstr import CSTRExecutor
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import GOOD, SCALE


@pytest.mark.parametrize(("kind", "scale"), [
    # a Julabo takes 250 ms per command: three per poll are 30 lab min at 2400x. The Omega and
    # Huber kinds run whole campaigns beside the Harvard and Chemyx pumps
    # (test_pump_kinds_lab.py).
    ("julabo", SCALE / 4)])
def test_an_experiment_over_ptys_with_another_heater_kind(kind: str, scale: float) -> None:
    with VirtualLab(time_scale=scale, heater_kind=kind) as lab:
        config = lab.devices_config()
        assert {config.devices[n].kind for n in lab.reactor.heaters} == {kind}
        ex = CSTRExecutor(config, install_signal_handlers=False)
        try:
            m = ex.run(GOOD)
        finally:
            ex.close()
        truth = lab.reactor.twin.truth(GOOD)
    assert any("blocks at core 180.0 °C, shell 290.0 °C" in line for line in m.device_log)
    assert analyze(m).pl_peak_nm == pytest.approx(truth.pl_peak_nm, abs=3)
