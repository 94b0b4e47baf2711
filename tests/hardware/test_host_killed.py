"""The host process dies mid-experiment (SIGKILL: no handler, no atexit): the rig makes itself safe.

Nothing in the dead process can run a shutdown, so this is what the device-side watchdogs are for:
New Era Safe mode stops each pump when no valid packet arrives for ``safe_mode_s``, and the
Eurotherm remote setpoint falls back to the local standby setpoint when it is not refreshed.
Asserted from the emulators' own state, as a person at the rig would see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autolab.cli import app
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import SCALE, _eventually, _feeding, _pumps_stopped

HOST = """
import sys
from autolab.executors.cstr import CSTRExecutor
from autolab.records import Conditions
ex = CSTRExecutor.from_file(sys.argv[1])
ex.run(Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15, cl_to_i=6,
                  s_to_zn=2))
"""


#: Safe-mode timeout the host configures (the virtual lab's default, for a loaded host), s.
SAFE_MODE_S = 10
#: The pumps' and controllers' watchdogs once the host is killed, s.
WATCHDOG_S = 2


@pytest.mark.slow
def test_killed_host_leaves_pumps_stopped_and_heaters_falling_back(tmp_path: Path) -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        devices = lab.write_devices_file(tmp_path / "devices.yaml", safe_mode_s=SAFE_MODE_S)
        host = subprocess.Popen([sys.executable, "-c", HOST, str(devices)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert _eventually(lambda: _feeding(lab), limit_s=90), (
                "the host never started the feeds: "
                + (host.stderr.read().decode()[-2000:] if host.poll() is not None  # type: ignore[union-attr]
                   else "still running"))
            with lab.reactor.lock:
                hot = {k: h.remote_sp_c for k, h in lab.reactor.heaters.items()}
                # the host put every pump in Safe mode with the devices file's timeout and
                # every controller on its remote setpoint; the watchdogs it armed are then
                # shortened to WATCHDOG_S for the silence (the host dies at once, so no poll
                # of its can be late): the same mechanism, ~7 s less of a test that waited
                # out the 10-s timeout the virtual lab's file sets for a loaded host
                assert {p.safe_timeout_s for p in lab.reactor.pumps.values()} == {SAFE_MODE_S}
                assert all(h.remote for h in lab.reactor.heaters.values())
                feeding = [n for n, p in lab.reactor.pumps.items() if p.running]
                for p in lab.reactor.pumps.values():
                    p.safe_timeout_s = WATCHDOG_S
                for h in lab.reactor.heaters.values():
                    h.remote_timeout_s = WATCHDOG_S
                host.send_signal(signal.SIGKILL)
            assert max(hot.values()) > 150  # mid-experiment: stages heated
            host.wait(timeout=10)
            killed_at = time.monotonic()
            # Safe mode: every pump stops by itself once the host has been silent for safe_mode_s.
            assert _eventually(lambda: _pumps_stopped(lab), limit_s=30)
            # The controllers drop the stale remote setpoint and ramp toward the standby setpoint.
            assert _eventually(lambda: all(h.remote_failed for h in lab.reactor.heaters.values()),
                               limit_s=30)
            with lab.reactor.lock:
                for h in lab.reactor.heaters.values():
                    assert h.local_sp_c < 100
            assert time.monotonic() - killed_at < 30
            with lab.reactor.lock:  # each stopped itself: its Safe-mode timeout alarm
                assert {lab.reactor.pumps[n].alarm for n in feeding} == {"T"}
        finally:
            if host.poll() is None:
                host.kill()


def test_devices_check_pings_every_emulated_device(tmp_path: Path) -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        devices = lab.write_devices_file(tmp_path / "devices.yaml")
        result = CliRunner().invoke(app, ["devices", "check", str(devices)])
    assert result.exit_code == 0, result.output
    for name in ("pump_halide_cl", "heater_shell", "stirrer_core", "outlet_valve", "spectrometer"):
        assert name in result.output
    assert "FAIL" not in result.output


def test_devices_check_names_a_silent_device_and_exits_4(tmp_path: Path) -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        devices = lab.write_devices_file(tmp_path / "devices.yaml")
        lab.valves["outlet_valve"].disconnected = True
        result = CliRunner().invoke(app, ["devices", "check", str(devices)])
    assert result.exit_code == 4, result.output
    assert "outlet_valve" in result.output
    assert "FAIL" in result.output


def test_devices_check_refuses_a_bad_file_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "devices.yaml"
    bad.write_text("time_scale: -1\n")
    result = CliRunner().invoke(app, ["devices", "check", str(bad)])
    assert result.exit_code == 2
    assert "time_scale" in result.output


def test_lab_up_writes_a_devices_file_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    devices = tmp_path / "lab.yaml"
    # a child inherits an ignored SIGINT (a suite started in the background by a shell without
    # job control), and Python then never raises KeyboardInterrupt in it: give it the default
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autolab", "lab", "up", "--devices-file",
                                 str(devices)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert _eventually(devices.exists, limit_s=60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "spectrometer" in text
    assert "autolab devices check" in text
    assert "/dev/pts/" in devices.read_text()


def test_lab_up_with_other_pump_and_heater_kinds_answers_devices_check(tmp_path: Path) -> None:
    """`autolab lab up --pump-kind harvard --heater-kind julabo`: a rig of two other kinds,
    every device of its devices file answering `autolab devices check` over the ptys."""
    devices = tmp_path / "lab.yaml"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autolab", "lab", "up", "--devices-file",
                                 str(devices), "--pump-kind", "harvard", "--heater-kind",
                                 "julabo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert _eventually(devices.exists, limit_s=60)
        text = devices.read_text()
        assert "kind: harvard" in text and "kind: julabo" in text
        result = CliRunner().invoke(app, ["devices", "check", str(devices)])
        assert result.exit_code == 0, result.output
        assert "pump_sulfur" in result.output and "heater_shell" in result.output
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        if proc.poll() is None:
            proc.kill()


def test_lab_up_refuses_a_kind_it_does_not_emulate(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lab", "up", "--pump-kind", "syrris", "--devices-file",
                                      str(tmp_path / "l.yaml")])
    assert result.exit_code == 2
    assert "--pump-kind/--heater-kind" in result.output and "'syrris'" in result.output
    assert not (tmp_path / "l.yaml").exists()
