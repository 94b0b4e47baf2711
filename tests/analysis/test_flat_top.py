"""A frame clipped below its stated full scale is saturated, never chemistry (flat tops).

Hardware reference §3: "some units rescale ADC by EEPROM saturation value (~15 bit)", and
python-seabreeze allows a unit that saturates below ``max_intensity`` without rescaling. Such a
frame never reaches the stated ``saturation_counts``, so the analyzer finds the clip from the
frame itself (``_core.flat_topped_in``: a run of pixels at the frame's maximum whose flanks fall
as a clip's do). Unclipped frames of the analyzer's synthetic experiments and of the twin's
detector, across the operating range, are never flagged; clipped ones always are (5 % or more
over the clip level: a clip by a little less than the noise breaks the flat top into pieces,
and distorts the line by about as little).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from analysis_synth import WL, Case, frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolab.analysis import extract_features_batch
from autolab.analysis._core import flat_topped_in
from autolab.records import QualityFlag as Q
from autolab.twin.optics import read_frame

#: What the unit says its full scale is (``max_intensity``): the clip comes below it.
STATED = 65535.0
#: Clip levels a unit may saturate at, counts, with a dark level that fits under each.
CLIPS = {4095.0: 100.0, 16383.0: 1000.0, 32767.0: 1000.0, 50000.0: 1500.0}
LINES = {"peak": st.floats(470.0, 680.0), "fwhm": st.floats(15.0, 150.0),
         "asym": st.floats(-0.3, 0.3), "read_noise": st.floats(0.0, 20.0),
         "gain": st.floats(0.0, 1.0), "rounded": st.booleans(), "seed": st.integers(0, 2**31)}
ALL = np.array([0]), np.array([WL.size])


def _flags(case: Case, seed: int, rounded: bool, clip: float | None) -> Q:
    """The analyzer's flags for ``case``, its PL frame clipped at ``clip`` (stated: 65535)."""
    fr, truth = frames(replace(case, saturation=STATED), np.random.default_rng(seed), 1)
    if rounded:  # a detector's whole counts (ties are likelier)
        fr = {k: np.round(v) for k, v in fr.items()}
    if clip is not None:
        fr["pl_counts"] = np.minimum(fr["pl_counts"], clip)
    fb = extract_features_batch(WL, **fr, excitation_nm=case.excitation_nm,
                                saturation_counts=STATED, qy_reference=truth.reference)
    return Q(int(fb.flags[0]))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(height=st.floats(50.0, 55_000.0), dark=st.floats(0.0, 2000.0), **LINES)
def test_an_unclipped_line_is_never_saturated(height: float, dark: float, peak: float,
                                              fwhm: float, asym: float, read_noise: float,
                                              gain: float, rounded: bool, seed: int) -> None:
    """Any line the analyzer meets, dim or bright, narrow or broad, noisy or noise-free, whole
    counts or not: not ``saturated``."""
    case = Case(peak_nm=peak, fwhm_nm=fwhm, asym=asym, height=height, dark_level=dark,
                read_noise=read_noise, gain=gain, exciton_nm=min(peak - 40.0, 600.0))
    assert Q.SATURATED not in _flags(case, seed, rounded, None)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(clip=st.sampled_from(sorted(CLIPS)), over=st.floats(1.05, 4.0), **LINES)
def test_a_line_clipped_below_the_stated_full_scale_is_always_saturated(
        clip: float, over: float, peak: float, fwhm: float, asym: float, read_noise: float,
        gain: float, rounded: bool, seed: int) -> None:
    """A 12-, 14-, 15-bit or EEPROM clip under a stated 65535: ``saturated``, so blocked."""
    dark = CLIPS[clip]
    case = Case(peak_nm=peak, fwhm_nm=fwhm, asym=asym, height=over * clip - dark,
                dark_level=dark, read_noise=read_noise, gain=gain,
                exciton_nm=min(peak - 40.0, 600.0))
    flags = _flags(case, seed, rounded, clip)
    assert Q.SATURATED in flags and flags & Q.blocking(), flags.names()


def _twin_line(height: float, fwhm_nm: float) -> np.ndarray:
    return height * np.exp(-0.5 * ((WL - 560.0) / (fwhm_nm / 2.3548)) ** 2)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(height=st.floats(0.0, 60_000.0), fwhm=st.floats(10.0, 250.0),
       read_noise=st.sampled_from([0.0, 1.0, 8.0]), shot=st.booleans(),
       clip=st.sampled_from([None, *sorted(CLIPS)]), over=st.floats(1.05, 4.0),
       seed=st.integers(0, 2**31))
def test_the_twin_s_frames_clipped_or_not(height: float, fwhm: float, read_noise: float,
                                          shot: bool, clip: float | None, over: float,
                                          seed: int) -> None:
    """The twin's detector (``read_frame``: whole counts, read and shot noise or none): a frame
    within full scale is never flagged, one clipped below the stated full scale always is."""
    rng = np.random.default_rng(seed)
    if clip is None:
        frame = read_frame(_twin_line(height, fwhm), rng, dark_offset=1000.0,
                           read_noise=read_noise, gain=1.0, full_scale=STATED, shot_noise=shot)
        assert not flat_topped_in(frame[None], *ALL)[0]
        return
    dark = CLIPS[clip]
    frame = read_frame(_twin_line(over * clip - dark, fwhm), rng, dark_offset=dark,
                       read_noise=read_noise, gain=1.0, full_scale=clip, shot_noise=shot)
    assert flat_topped_in(frame[None], *ALL)[0]


def test_a_clip_outside_the_region_or_a_frame_without_a_top_is_not_flagged() -> None:
    """Only a top inside the region counts, and a frame that is flat throughout (a noise-free
    dark) or whose maximum ties on a pixel or two has no clipped top."""
    line = np.round(1000.0 + _twin_line(40_000.0, 40.0))
    clipped = np.minimum(line, 30_000.0)
    top = np.flatnonzero(clipped == clipped.max())
    assert flat_topped_in(clipped[None], np.array([top[0]]), np.array([top[-1]]))[0]
    assert not flat_topped_in(clipped[None], np.array([0]), np.array([top[0] - 5]))[0]
    assert not flat_topped_in(np.full((1, WL.size), 1000.0), *ALL)[0]
    two = line.copy()
    two[top[0]:top[0] + 2] = line.max() + 50.0  # a tie of two at the maximum: a smooth top
    assert not flat_topped_in(two[None], *ALL)[0]
    batch = np.stack([line, clipped, line])  # row by row, and a shared frame for every row
    assert flat_topped_in(batch, np.zeros(3, np.int64), np.full(3, WL.size)).tolist() == \
        [False, True, False]
    assert flat_topped_in(clipped[None], np.zeros(3, np.int64),
                          np.array([WL.size, top[0] - 5, top[-1]])).tolist() == [True, False, True]
