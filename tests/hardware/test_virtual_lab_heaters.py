"""A simulated experiment over ptys with the ramp-less heater kinds (VirtualLab(heater_kind=)).

The same procedure, executor and supervisor as with the Eurotherm controllers; only the
controllers' kind differs: the blocks reach their setpoints through the host-side ramp and the
product reads as the twin's truth.
"""

from __future__ import annotations

import threading
import time

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


def test_a_host_stall_is_not_counted_against_a_host_ramped_heater() -> None:
    """A controller without a ramp of its own heats only as fast as the host steps its
    setpoint: while the host stands still (here the core's port held for 1.5 wall s, 60 lab
    min at 2400x, more than the 45-min allowance of a 25 -> 180 °C heat-up), nothing moves.
    The heat step counts that time as the host's, not the heater's: the experiment completes
    (it timed out at the first look after the stall, a CI failure on a loaded machine)."""
    with VirtualLab(time_scale=SCALE, heater_kind="huber") as lab:
        ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
        core = ex.rig.heaters["core"]
        read = core.temperature_c
        calls = []

        def stalled_once() -> float:
            if threading.current_thread() is threading.main_thread():
                calls.append(1)
                if len(calls) == 2:  # the heat step's first look, after heaters_on's
                    with core.transport.lock:  # the supervisor's polls wait too
                        time.sleep(1.5)
            return read()

        core.temperature_c = stalled_once  # type: ignore[method-assign]
        try:
            m = ex.run(GOOD)
        finally:
            ex.close()
    assert len(calls) > 2
    assert any("blocks at core 180.0 °C, shell 290.0 °C" in line for line in m.device_log)
