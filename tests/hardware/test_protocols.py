"""Byte-level protocol tests: frames from the manuals/reference, and encode<->parse round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConfigError
from autolab.hardware.fluidics import Geometry, conditions_from_rates, flow_setpoints
from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.protocols import ika, newera, spectro, vici
from autolab.hardware.transport import DeviceRefused
from autolab.records import Conditions
from autolab.twin import TwinConfig
from autolab.twin.cascade import flow_plan


def test_safe_mode_frame_matches_the_manual_example() -> None:
    # NE-1000 manual p.34: return to Basic mode = 02 08 'S' 'A' 'F' '0' 55 43 03
    assert newera.encode_safe_data(b"SAF0") == bytes.fromhex("020853414630554303")
    assert newera.decode_safe(bytes.fromhex("020853414630554303")) == b"SAF0"


def test_basic_mode_frames_from_the_reference() -> None:
    assert newera.encode_basic(0, "dia", "12.45") == b"00DIA12.45\r"
    assert newera.parse_basic(b"\x0200S12.45\x03") == newera.PumpReply(0, "S", "", "12.45")
    assert newera.parse_basic(b"\x0200I?\x03").error == ""
    stall = newera.parse_basic(b"\x0201A?S\x03")
    assert (stall.address, stall.alarm, stall.pumping) == (1, "S", False)


def test_corrupted_safe_packet_is_rejected() -> None:
    packet = bytearray(newera.encode_safe(3, "RAT", "1.5MM"))
    packet[4] ^= 0x01
    with pytest.raises(newera.PumpProtocolError, match="CRC"):
        newera.decode_safe(bytes(packet))


@given(st.integers(0, 99), st.sampled_from(["RAT", "DIA", "DIR", "RUN", "STP", "DIS", "SAF"]),
       st.from_regex(r"[0-9.]{0,5}(MM|UM|UH|MH|INF|WDR)?", fullmatch=True))
def test_safe_packet_round_trip(address: int, command: str, args: str) -> None:
    packet = newera.encode_safe(address, command, args)
    assert packet[1] == len(packet) - 1
    assert newera.split_request(newera.decode_safe(packet).decode()) == (address, command, args)


@given(st.floats(0.0005, 9000.0))
def test_rate_encoding_keeps_four_significant_digits(rate: float) -> None:
    args = newera.rate_command_args(rate)
    number = args[:-2]
    assert len(number.replace(".", "")) <= 4
    assert "." not in number or len(number.split(".")[1]) <= 3
    assert math.isclose(newera.parse_rate(args), rate, rel_tol=2e-3)


def test_number_format_rejects_what_the_pump_cannot_show() -> None:
    assert newera.format_number(123.456) == "123.5"  # rounded, not truncated to '3.456'
    with pytest.raises(ConfigError, match="4 digits"):
        newera.format_number(12345.0)


@given(st.floats(0, 500), st.floats(0, 500))
def test_dispensed_round_trip(infused: float, withdrawn: float) -> None:
    got = newera.parse_dispensed(newera.format_dispensed(infused, withdrawn, "ML"))
    assert got[0] == pytest.approx(infused, rel=1e-3, abs=1e-3)
    assert got[1] == pytest.approx(withdrawn, rel=1e-3, abs=1e-3)


def test_modbus_crc_matches_minimalmodbus_request() -> None:
    # minimalmodbus' own read of register 1 at slave 1: 01 03 00 01 00 01 D5 CA
    assert eu.crc_modbus(bytes.fromhex("010300010001")) == bytes.fromhex("D5CA")


@given(st.floats(-300, 1000))
def test_eurotherm_register_round_trip(t_c: float) -> None:
    assert eu.from_register(eu.to_register(t_c)) == pytest.approx(t_c, abs=0.051)


def test_eurotherm_status_bits() -> None:
    status = eu.decode_status(1 << 5)
    assert status.sensor_break and status.fault == "sensor_break"
    assert eu.decode_status(eu.encode_status(remote_sp_fail=True)).fault == "remote_sp_fail"


def test_namur_and_vici_frames() -> None:
    assert ika.encode("OUT_SP_4", 600) == b"OUT_SP_4 600\r\n"
    assert ika.parse_value(b"600 4\r\n") == 600.0
    with pytest.raises(ika.NamurProtocolError):
        ika.parse_value(b"600 2\r\n")
    assert vici.encode("GO", 3) == b"GO3\r"
    assert vici.parse_position(b"Position is = 3\r") == 3
    with pytest.raises(DeviceRefused, match="Bad command"):  # a refusal, not noise
        vici.parse_position(b"Bad command\r")
    with pytest.raises(vici.ValveProtocolError):
        vici.parse_position(b"Posit\r")


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=300))
def test_spectrum_frame_round_trip(counts: list[int]) -> None:
    arr = np.asarray(counts, dtype=np.float64)
    frame = spectro.encode_frame(arr)
    assert spectro.frame_length(frame[:6]) == len(frame)
    np.testing.assert_array_equal(spectro.decode_frame(frame), arr)


def test_spectrum_frame_with_bad_crc_is_rejected() -> None:
    frame = bytearray(spectro.encode_frame(np.arange(10.0)))
    frame[8] ^= 0xFF
    with pytest.raises(spectro.SpectroProtocolError, match="CRC"):
        spectro.decode_frame(bytes(frame))


@settings(deadline=None)
@given(st.floats(5, 60), st.floats(5, 60), st.floats(0.5, 20), st.floats(0.5, 4),
       st.floats(2, 5), st.integers(0, 7), st.integers(1, 3))
def test_fluidics_match_the_twin_flow_plan_and_invert(tau_core: float, tau_shell: float,
                                                      cl_to_i: float, s_to_zn: float,
                                                      p_to_in: float, inject: int,
                                                      count: int) -> None:
    inject = 0 if inject == 1 else inject  # tank 1 has no core stage before it
    count = min(count, 8 - (inject or 4))  # injections stay inside the 7 tanks
    c = Conditions(t_core_c=180, tau_core_min=tau_core, t_shell_c=290, tau_shell_min=tau_shell,
                   cl_to_i=cl_to_i, s_to_zn=s_to_zn, p_to_in=p_to_in, s_inject_tank=inject,
                   s_inject_count=count)
    ours = flow_setpoints(c, Geometry())
    twin = flow_plan(c, TwinConfig())
    r = ours.rates_ml_min
    assert ours.core_ml_min == pytest.approx(twin.core_ml_min)
    assert ours.shell_ml_min == pytest.approx(twin.shell_ml_min)
    assert r["halide_cl"] + r["halide_i"] == pytest.approx(twin.indium_halide_ml_min)
    assert r["phosphine"] == pytest.approx(twin.phosphine_ml_min)
    assert r["zinc"] + r["sulfur"] == pytest.approx(twin.shell_feed_ml_min)
    assert r["solvent"] == pytest.approx(twin.makeup_ml_min, abs=1e-12)
    assert r["bleed"] == pytest.approx(twin.bleed_ml_min, abs=1e-12)
    back = conditions_from_rates(r, 180, 290, Geometry(), s_inject_tank=inject,
                                 s_inject_count=count)
    assert back is not None
    for name, value in c.as_dict().items():
        assert getattr(back, name) == pytest.approx(value, rel=1e-9)
