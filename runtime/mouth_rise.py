"""MouthRiseMeter: how long after a voice starts the face's mouth is half open, measured live.

The virtual microphone delays the voice by the engine's audio->frame latency. That alone puts
the voice too early by however long the drawn mouth takes to open after a voice starts: the
motion graph listens ahead (its look-ahead), but a mouth does not jump open; how soon it passes
half open depends on the voice (a crisp read onset, a breathy or a nasal one, a sung note) and
on the portrait. Without it, lips measured from outside came 3 ms after the voice on the
sample clip and 32-41 ms after it on the other development voices, the difference in how soon
their mouths opened. So the meter measures it on the speech being animated, as an outside
observer would:

* an **onset** is a place where the voice starts after a pause: at least ``QUIET_FRAMES`` (100 ms)
  of 10 ms feature frames more than ``QUIET_DB`` below the speech level, then
  ``LOUD_FRAMES`` (50 ms) within ``LOUD_DB`` of it; the onset is where the sound rises out of the
  pause (the earliest of the few frames before the loud run that is within ``START_DB`` of
  the level and ``PAUSE_MARGIN_DB`` above the pause). The speech level is the meter's own: it
  follows frames within ``SPEECH_DB`` of it (up in ~0.1 s, down in ~2 s) and sinks only
  ``PAUSE_SINK_DB`` a second in pauses, so a noise floor in long pauses does not become the
  level (the features' level, which sets the graph's input scale, does follow it down);
* the mouth's **openness** per video frame is the lip gap the render graph draws from the
  motion vector (:func:`openness`, in units of the jaw's full opening), mapped through the
  portrait's *view* curve when it has one (:meth:`MouthRiseMeter.set_view`,
  ``vcam.avatar.mouth_view``: how open a face tracker sees the drawn mouth; a small opening is not
  seen as one);
* the **rise** of one onset is the stream time of the first frame whose openness passes
  halfway from its rest value (the mean over 600..150 ms before the onset) to its open value
  (the largest from 150 ms before to 250 ms after): the same rule the ``--av-sync`` bench
  applies to the lip gap a face tracker sees;
* :attr:`rise_ms` is the mean of the middle half of the last ``KEEP`` rises (robust to an
  odd onset, and between two kinds of onset when a voice has two: a plain median would
  pick one and leave the other a whole frame off), or ``prior_ms`` until ``MIN_ONSETS`` were
  measured.

A frame's stream time is the newest audio sample fed when it was drawn minus the graph's
look-ahead: the engine's latency (newest sample's arrival -> frame out, plus the look-ahead) plus
this rise is then how long after a voice onset arrives the mouth shows it.

Real-time path: :meth:`observe` runs on the engine thread once per frame; everything is
preallocated (rings of numbers); the sort for the middle half happens only when :attr:`rise_ms`
is read (the daemon reads it five times a second, off the frame path).
"""

from __future__ import annotations

import math

import numpy as np

from vcam.runtime.channels import INDEX
from vcam.runtime.features import HOP, SAMPLE_RATE, LogMelStream

QUIET_DB = 13.0
"""A pause frame is this far below the tracked speech level (the bench: under 5 % of the loud power)."""
LOUD_DB = 7.0
"""A voiced frame is within this of the level (the bench: over 20 % of the loud power)."""
START_DB = 30.0
"""The sound has started once a frame is within this of the level."""
SPEECH_DB = 10.0
PAUSE_SINK_DB = 0.5
_UP = 1.0 - math.exp(-0.01 / 0.1)
_DOWN = 1.0 - math.exp(-0.01 / 2.0)
_NO_LEVEL = -200.0
QUIET_FRAMES = 10
LOUD_FRAMES = 5
GAP_FRAMES = 3
"""Frames allowed between the end of the pause and the loud run (a soft consonant)."""
PAUSE_MARGIN_DB = 6.0
"""... and this far above the pause before it (a noise floor is not the voice)."""
START_BACK_FRAMES = 6
"""How far before the loud run the sound's start is looked for (60 ms)."""
START_INSIDE = 160
"""Samples of a frame's 25 ms window the sound fills when the frame first passes ``START_DB``:
the onset is that far before the frame's end (voiced sounds starting from digital silence at
-45 to -12 dBFS land within 6 ms of their true start: tests/test_mouth_rise.py)."""
REST_MS = (-600.0, -150.0)
OPEN_MS = (-150.0, 250.0)
MIN_OPEN = 0.08
"""An onset counts only when the mouth opened at least this much (jaw fractions)."""
KEEP = 12
MIN_ONSETS = 2
PRIOR_MS = 25.0
"""The rise before ``MIN_ONSETS`` were measured: about the median over varied recorded and
synthetic voices, offline, as they are spoken (``vcam bench --mouth-rise``)."""

LIP_PART_BOOST = 0.6  # vcam.graphs.render_model.LIP_PART_BOOST: the lips part ahead of the jaw
UP_GAIN, DOWN_GAIN = 0.17, 0.24
"""The upper/lower lip raisers' share of the gap relative to the jaw's (``vcam.avatar.rig``: lip_up_px
0.10, lip_down_px 0.14 of the mouth width against jaw_px 0.62 of it, x 0.95)."""

_J, _C = INDEX["jawOpen"], INDEX["mouthClose"]
_UL, _UR = INDEX["mouthUpperUpLeft"], INDEX["mouthUpperUpRight"]
_LL, _LR = INDEX["mouthLowerDownLeft"], INDEX["mouthLowerDownRight"]


def openness(motion: np.ndarray) -> float:
    """The lip gap the render graph draws for one motion vector ``(43,) float32``, in units of the
    jaw's full opening (0 closed; about 1 wide open)."""
    part = max(float(motion[_J]) - float(motion[_C]), 0.0)
    return (part * (1.0 + LIP_PART_BOOST * (1.0 - part))
            + UP_GAIN * 0.5 * (float(motion[_UL]) + float(motion[_UR]))
            + DOWN_GAIN * 0.5 * (float(motion[_LL]) + float(motion[_LR])))


class MouthRiseMeter:
    """Measures the mouth's rise after voice onsets on the live stream (see the module doc).

    Parameters
    ----------
    features:
        The engine's :class:`vcam.runtime.features.LogMelStream` (its frames' energy and level).
    lookahead_ms:
        The motion graph's look-ahead.
    prior_ms:
        :attr:`rise_ms` until ``MIN_ONSETS`` onsets were measured.

    Call :meth:`observe` once per drawn frame, after its audio was fed and its motion computed.
    """

    def __init__(self, features: LogMelStream, *, lookahead_ms: float, prior_ms: float = PRIOR_MS) -> None:
        self._features = features
        self._lookahead = int(round(lookahead_ms * SAMPLE_RATE / 1000.0))
        self.prior_ms = float(prior_ms)
        self._ft = np.zeros(128, np.int64)  # frame stream times (samples at 16 kHz)
        self._fo = np.zeros(128, np.float32)  # frame openness
        self._pending = np.zeros(4, np.int64)  # onsets (samples) waiting for their frames
        self._rises = np.zeros(KEEP, np.float32)
        self._view_x: np.ndarray | None = None
        self._view_y: np.ndarray | None = None
        self.reset()

    def set_view(self, curve: np.ndarray | None) -> None:
        """How open the mouth is seen: ``(2, K) float32``, row 0 openness (increasing), row 1 the
        seen opening; ``None``: the openness as it is. Takes effect from the next frame."""
        if curve is None:
            self._view_x = self._view_y = None
            return
        c = np.asarray(curve, np.float64)
        if c.ndim != 2 or c.shape[0] != 2 or c.shape[1] < 2 or np.any(np.diff(c[0]) <= 0):
            raise ValueError(f"mouth view must be (2, K>=2) with increasing openness, got shape {c.shape}")
        self._view_x, self._view_y = c[0].copy(), c[1].copy()

    def reset(self) -> None:
        """Forget every onset and frame (a new audio source)."""
        self._nf = 0
        self._np = 0
        self._nr = 0
        self.onsets = 0  # onsets found
        self.last_onset = -1  # the newest onset (stream samples at 16 kHz), -1 before any
        self._next = self._features.frames
        self._quiet_run = 0
        self._last_pause_end = -(10 ** 9)  # frame index after the last long-enough pause
        self._cand = -1
        self._loud = 0
        self.level_db = _NO_LEVEL  # the speech level (dB, as LogMelStream.energy_db)
        self._pause_db = -120.0  # the latest pause's level

    @property
    def measured(self) -> int:
        """Onsets whose rise was measured."""
        return self._nr

    @property
    def rise_ms(self) -> float:
        """The mean of the middle half of the last ``KEEP`` onsets' rises (ms), ``prior_ms``
        before ``MIN_ONSETS``. (Sorts a copy: read it off the frame path.)"""
        n = min(self._nr, KEEP)
        if n < MIN_ONSETS:
            return self.prior_ms
        r = np.sort(self._rises[:n])
        q = n // 4
        return float(r[q:n - q].mean())

    def observe(self, motion: np.ndarray) -> None:
        """One drawn frame: its motion vector ``(43,) float32``. Reads the features' new frames."""
        self._scan()
        t = self._features.samples - self._lookahead
        i = self._nf % self._ft.shape[0]
        self._ft[i] = t
        o = openness(motion)
        vx = self._view_x
        if vx is not None:
            o = float(np.interp(o, vx, self._view_y))
        self._fo[i] = o
        self._nf += 1
        while self._np and t - self._pending[0] >= OPEN_MS[1] * SAMPLE_RATE / 1000.0:
            self._measure(int(self._pending[0]))
            self._np -= 1
            self._pending[: self._np] = self._pending[1: self._np + 1]

    # -- onsets (feature frames) --

    def _scan(self) -> None:
        f = self._features
        end = f.frames
        k = max(self._next, end - f.capacity + 1)
        lv = self.level_db
        while k < end:
            e = f.energy_db(k)
            if lv == _NO_LEVEL:
                if e < -60.0:  # nothing heard yet: a pause
                    self._quiet_run += 1
                    k += 1
                    continue
                lv = e
            elif e > lv:
                lv += _UP * (e - lv)
            elif e > lv - SPEECH_DB:
                lv += _DOWN * (e - lv)
            else:
                lv -= PAUSE_SINK_DB / 100.0
            if e < lv - QUIET_DB:
                self._pause_db += 0.3 * (e - self._pause_db) if self._quiet_run else e - self._pause_db
                self._quiet_run += 1
                self._cand = -1
            else:
                if self._quiet_run >= QUIET_FRAMES:
                    self._last_pause_end = k
                self._quiet_run = 0
                if e > lv - LOUD_DB:
                    if self._cand < 0:
                        if k - self._last_pause_end <= GAP_FRAMES:
                            self._cand, self._loud = k, 1
                    else:
                        self._loud += 1
                    if self._cand >= 0 and self._loud >= LOUD_FRAMES:
                        self._onset(self._cand, lv)
                        self._cand = -1
                        self._last_pause_end = -(10 ** 9)
                else:
                    self._cand = -1
            k += 1
        self._next = end
        self.level_db = lv

    def _onset(self, k: int, lv: float) -> None:
        f = self._features
        j = k
        lo = max(k - START_BACK_FRAMES, f.frames - f.capacity + 1, 0)
        floor = max(lv - START_DB, self._pause_db + PAUSE_MARGIN_DB)
        while j - 1 >= lo and f.energy_db(j - 1) > floor:
            j -= 1
        self.onsets += 1
        self.last_onset = (j + 1) * HOP - START_INSIDE
        if self._np < self._pending.shape[0]:
            self._pending[self._np] = self.last_onset
            self._np += 1

    # -- the mouth (video frames) --

    def _measure(self, onset: int) -> None:
        cap = self._ft.shape[0]
        n = min(self._nf, cap)
        if n < 4:
            return
        ms = 1000.0 / SAMPLE_RATE
        first = (self._nf - n) % cap
        if (self._ft[first] - onset) * ms > REST_MS[0]:
            return  # the frames do not reach back to the rest window
        rest_sum, rest_n = 0.0, 0
        peak, peak_set = 0.0, False
        for m in range(n):
            i = (first + m) % cap
            rel = (self._ft[i] - onset) * ms
            if REST_MS[0] <= rel <= REST_MS[1]:
                rest_sum += float(self._fo[i])
                rest_n += 1
            elif OPEN_MS[0] < rel <= OPEN_MS[1]:
                o = float(self._fo[i])
                if not peak_set or o > peak:
                    peak, peak_set = o, True
        if rest_n < 2 or not peak_set:
            return
        rest = rest_sum / rest_n
        if peak - rest < MIN_OPEN:
            return
        half = 0.5 * (rest + peak)
        for m in range(n):
            i = (first + m) % cap
            rel = (self._ft[i] - onset) * ms
            if OPEN_MS[0] < rel <= OPEN_MS[1] and self._fo[i] >= half:
                self._rises[self._nr % KEEP] = rel
                self._nr += 1
                return
