"""The Ocean Insight backend: the seabreeze calls it makes, and that it fits the capability.

No USB spectrometer exists here, so the seabreeze device is a stand-in with seabreeze's own
method names and FIFO behaviour (the one place a fake is used in the hardware tests).
"""

from __future__ import annotations

import numpy as np
import pytest

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.base import Spectrometer
from autolab.hardware.ocean import SeabreezeSpectrometer, open_seabreeze


class FakeOcean:
    """seabreeze.spectrometers.Spectrometer's surface, with the exposure FIFO.

    Also stands in for the ``seabreeze.spectrometers.Spectrometer`` class itself
    (:meth:`from_serial_number`), so the ``ocean`` devices-file kind can be opened by a rig
    (tests/hardware/test_rig_registry.py): one detector, serial number ``FLMS12345``.
    """

    model = "FLAME-S"
    max_intensity = 65535.0
    integration_time_micros_limits = (1000, 65_000_000)

    def __init__(self, serial_number: str = "FLMS12345") -> None:
        self.serial_number = serial_number
        self._us = 10_000
        self._pending = self._us
        self.calls: list[tuple[str, object]] = []
        #: Fault injection: the USB cable is pulled (every call raises, as seabreeze does).
        self.unplugged = False
        #: The detector has no stored nonlinearity coefficients (seabreeze then raises).
        self.has_nonlinearity = True
        #: Trigger mode, the detector's own state (0 normal; others wait for a trigger).
        self.trigger = 0

    def _usb(self) -> None:
        if self.unplugged:
            raise SeaBreezeError("Data transfer error")

    @classmethod
    def from_serial_number(cls, serial: str) -> FakeOcean:
        """seabreeze's lookup: only the one detector is attached."""
        if serial != "FLMS12345":
            raise RuntimeError(f"No device attached with serial number '{serial}'")
        return cls(serial)

    def wavelengths(self) -> np.ndarray:
        return np.linspace(350.0, 850.0, 2048)

    def integration_time_micros(self, us: int) -> None:
        self._usb()
        self.calls.append(("int", us))
        self._pending = us

    def trigger_mode(self, mode: int) -> None:
        self._usb()
        self.calls.append(("trigger", mode))
        self.trigger = mode

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        self._usb()
        if self.trigger != 0:  # an external trigger that never comes: the USB read times out
            raise SeaBreezeError("Timeout: no spectrum (waiting for an external trigger)")
        if correct_nonlinearity and not self.has_nonlinearity:
            raise SeaBreezeError("This device does not support nonlinearity correction")
        exposed, self._us = self._us, self._pending  # the frame in the FIFO used the old time
        self.calls.append(("frame", (exposed, correct_dark_counts, correct_nonlinearity)))
        return np.full(2048, exposed / 100.0)


class SeaBreezeError(Exception):
    """seabreeze's own error type (not an autolab error): what its calls raise."""


class Light:
    def __init__(self) -> None:
        self.state: tuple[str, bool, str] | None = None

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        self.state = (source, shutter_open, cell)


def test_integration_change_discards_the_stale_frame() -> None:
    dev = FakeOcean()
    spec = SeabreezeSpectrometer(dev, Light(), excitation_nm=405.0)
    spec.set_integration_ms(50)
    frame = spec.acquire()
    assert frame[0] == pytest.approx(500.0)  # exposed at 50 ms, not the old 10 ms
    assert ("int", 50_000) in dev.calls
    assert dev.calls[-1] == ("frame", (50_000, False, True))  # raw counts; nonlinearity corrected


def test_fits_the_spectrometer_capability_and_delegates_the_light_path() -> None:
    light = Light()
    spec = SeabreezeSpectrometer(FakeOcean(), light, excitation_nm=405.0, path_length_cm=0.2)
    assert isinstance(spec, Spectrometer)
    spec.configure(source="EXC", shutter_open=True, cell="DYE")
    assert light.state == ("EXC", True, "DYE")
    assert spec.wavelengths_nm.shape == (2048,)
    assert spec.saturation_counts == 65535.0
    assert "FLMS12345" in spec.ping()


def test_connect_puts_a_detector_left_waiting_for_a_trigger_back_to_free_running() -> None:
    """python-seabreeze ``trigger_mode``: the mode is the detector's state, kept from whatever
    program used it last; in an external-trigger mode no frame comes without a trigger."""
    dev = FakeOcean()
    dev.trigger = 3  # external synchronisation, left by another program
    spec = SeabreezeSpectrometer(dev, Light(), excitation_nm=405.0)
    spec.connect()
    assert dev.calls[0] == ("trigger", 0)  # before the first frame
    assert spec.acquire()[0] == pytest.approx(100.0)


def test_limits_and_settings_are_checked() -> None:
    spec = SeabreezeSpectrometer(FakeOcean(), Light(), excitation_nm=405.0)
    with pytest.raises(HardwareError, match=r"integration_ms = 0.1 .*\[1, 65000\] ms"):
        spec.set_integration_ms(0.1)
    with pytest.raises(ConfigError, match="excitation_nm"):
        SeabreezeSpectrometer(FakeOcean(), Light(), excitation_nm=50.0)


def test_no_device_connected_is_a_clear_hardware_error() -> None:
    pytest.importorskip("seabreeze")
    with pytest.raises(HardwareError, match="no Ocean Insight spectrometer NOPE"):
        open_seabreeze("NOPE")


def test_a_detector_that_fails_mid_run_is_a_hardware_error_naming_it_and_the_call() -> None:
    """python-seabreeze raises its own SeaBreezeError (unplugged, a correction it lacks); the
    executor only puts the rig in its safe state for a HardwareError, so it must be one."""
    dev = FakeOcean()
    spec = SeabreezeSpectrometer(dev, Light(), name="ocean1", excitation_nm=405.0)
    dev.has_nonlinearity = False
    with pytest.raises(HardwareError, match=r"ocean1: intensities\(correct_dark_counts=False, "
                                            r"correct_nonlinearity=True\) failed: "
                                            r"SeaBreezeError: .*nonlinearity"):
        spec.acquire()
    dev.has_nonlinearity, dev.unplugged = True, True
    with pytest.raises(HardwareError, match=r"ocean1: integration_time_micros\(20000\) failed: "
                                            r"SeaBreezeError: Data transfer error"):
        spec.set_integration_ms(20)
    with pytest.raises(HardwareError, match=r"ocean1: intensities\(.*\) failed"):
        spec.acquire()


def test_a_frame_with_non_finite_counts_is_a_device_failure_not_a_spectrum() -> None:
    """An out-of-range reading (NaN or inf counts from a failing readout) is never analyzed."""
    dev = FakeOcean()
    spec = SeabreezeSpectrometer(dev, Light(), name="ocean1", excitation_nm=405.0)
    frame = spec.acquire()
    bad = frame.copy()
    bad[7] = np.nan
    dev.intensities = lambda **kw: bad  # type: ignore[method-assign]
    with pytest.raises(HardwareError, match=r"ocean1: frame has 1 non-finite count \(pixel 7\)"):
        spec.acquire()
