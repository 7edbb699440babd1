"""VoiceDelay: the voice the call hears, delayed to arrive with the face that speaks it.

The face a frame shows was drawn for audio about 100 ms old (the motion graph's look-ahead,
the frame period, the render); a call app that hears the speaker directly hears the voice
that much before the lips move. The virtual microphone (:mod:`vcam.sinks.virtual_mic`)
plays the captured voice through :class:`VoiceDelay`, which holds each sample back until the
frame drawn from it is out.

Timing, in ``time.monotonic_ns()`` for both sides:

* the capture side is the :class:`vcam.runtime.audio_ring.AudioRing` the engine reads: sample
  ``ring.written - 1`` arrived at ``ring.last_write_ns``, earlier samples one sample period
  apart each. Capture comes in blocks, late by varying amounts (more on a loaded machine),
  so each delivery only bounds the capture clock from above; the clock is the lower envelope
  of the deliveries (the earliest ones), allowed to creep later by
  :data:`ENVELOPE_LEAK_MS_PER_S` to follow drift;
* the playback side is the output stream: the first sample of each block reaches the device
  at ``play_ns`` (the callback's ``monotonic_ns`` plus PortAudio's ``outputBufferDacTime -
  currentTime``).

Each block reads the ring from the sample that arrived at ``play_ns - delay``. The read
position advances by ``ratio`` samples per output sample (times the rate ratio when the two
sides run at different rates); ``ratio`` is steered (at most +-0.1 %, inaudible) toward
the position that time says, so the delay holds across clock drift between the capture and
playback devices and follows slow changes of the wanted delay. A misalignment over
:data:`RESYNC_MS` (start, a new audio source, a big offset change) is a jump instead. Smaller
misalignments over :data:`DEADBAND_MS` wait (up to :data:`QUIET_WAIT_MS`) for a pause in the
voice and jump there, unheard; only when no pause comes is the rate steered.

The delay cannot be shorter than the output buffer plus the longest gap between the capture's
deliveries (a loaded machine delivers capture in bursts): asked for less, the read would run
past the newest sample and play holes. So the delay used is at least that floor, tracked as it
changes (``floor_ms``): a voice a few ms late is far less noticeable than one that stutters.

While the source delivers nothing (device lost, paused stream) the output is silence, never
old audio. Not a thread: :meth:`VoiceDelay.fill` runs on the output stream's audio thread and
allocates nothing (every work array is made in ``__init__``); the controls are attribute
writes, safe from any thread.
"""

from __future__ import annotations

import math

import numpy as np

from vcam.runtime.audio_ring import AudioRing

RESYNC_MS = 25.0
"""Jump instead of steering when the read position is off by more than this."""
DEADBAND_MS = 4.0
"""A smoothed error below this leaves the ratio at exactly 1 and the read position on whole
samples: the voice is copied sample for sample, untouched. Above it the ratio is steered until
the error is back under :data:`SETTLED_MS`."""
SETTLED_MS = 1.0
QUIET_PEAK = 0.003
"""A block whose peak is below this (-50 dBFS) is a pause: the read position may jump right
after it, unheard, instead of steering through speech."""
QUIET_WAIT_MS = 2000.0
"""How long to wait for a pause before steering instead."""
MAX_SKEW = 0.001
"""Largest deviation of the read rate from nominal (0.1 %: 1 ms of correction per second, ten
times the drift of two unlocked sound-card clocks; a 0.35 s syllable stretched by 0.1 % still
correlates 0.99 with the original)."""
SKEW_PER_MS = 0.0002
"""Ratio correction per millisecond of smoothed error (5 ms -> the full 0.1 %)."""
SMOOTHING = 0.05
"""Weight of each block's error in the running error (the timestamps jitter by a few ms)."""
SLACK_MS = 30.0
"""How far past the newest captured sample a read may point before the source counts as
silent (capture arrives in blocks, so the newest sample is always a little old)."""
MAX_DELAY_MS = 1000.0
ENVELOPE_LEAK_MS_PER_S = 0.15
"""How fast the capture clock's estimate may move later without a fresh earliest delivery
(one and a half times the worst drift of two sound cards, 100 ppm = 0.1 ms/s)."""
RESTART_MS = 100.0
"""Deliveries this much later than the clock estimate: the capture restarted (a lost device
came back); the estimate starts over."""
FLOOR_MARGIN_MS = 5.0
"""Kept between the read position and the newest captured sample beyond the capture's gaps."""
FLOOR_DECAY = 0.995
"""Per block: how slowly the capture-gap peak is forgotten (10 ms blocks: ~2 s)."""


class VoiceDelay:
    """Delay line from an :class:`AudioRing` to an output stream, in step with the video.

    Parameters
    ----------
    out_rate:
        Sample rate of the output stream, Hz.
    max_block:
        Most frames one :meth:`fill` is asked for.

    Attributes (read anywhere): ``delay_ms`` (the delay aimed at), ``error_ms`` (smoothed:
    how much less than that the output is delayed now), ``ratio``, ``underruns`` (blocks that
    needed samples not yet captured while the source was live), ``underrun_ms``,
    ``silence_ms`` (played as silence because no source delivered), ``resyncs`` (jumps),
    ``quiet_jumps`` (small corrections made in pauses).
    """

    def __init__(self, out_rate: int, *, max_block: int = 4096) -> None:
        if out_rate < 1 or max_block < 1:
            raise ValueError(f"out_rate and max_block must be >= 1, got {out_rate}, {max_block}")
        self.out_rate = int(out_rate)
        self.max_block = int(max_block)
        self._ramp = np.arange(max_block, dtype=np.float64)
        self._pos_buf = np.zeros(max_block, np.float64)
        self._floor = np.zeros(max_block, np.float64)
        self._idx = np.zeros(max_block, np.int64)
        self._a = np.zeros(max_block, np.float32)
        self._b = np.zeros(max_block, np.float32)
        self._frac32 = np.zeros(max_block, np.float32)
        self.ring: AudioRing | None = None
        self.delay_ms = 0.0
        self.enabled = True
        self._ring_seen: AudioRing | None = None
        self._pos: float | None = None  # ring sample index of the next output sample
        self._steering = False
        self._snap = False
        self._off_blocks = 0
        self.quiet_jumps = 0
        self._gap_peak_ms = 0.0
        self.floor_ms = 0.0
        self._origin_ns: float | None = None  # capture clock: sample i arrived at origin + (i + 1) / rate
        self.error_ms = 0.0
        self.ratio = 1.0
        self.underruns = 0
        self.underrun_ms = 0.0
        self.silence_ms = 0.0
        self.resyncs = 0

    # -- controls (any thread: single attribute writes) --

    def set_ring(self, ring: AudioRing | None) -> None:
        """Read from ``ring`` from the next block on (``None``: silence)."""
        self.ring = ring

    def set_delay_ms(self, delay_ms: float) -> None:
        """Aim at ``delay_ms`` between a sample's capture and its playback (clamped 0..1000)."""
        self.delay_ms = float(min(max(delay_ms, 0.0), MAX_DELAY_MS))

    # -- the audio thread --

    def fill(self, out: np.ndarray, play_ns: int, now_ns: int | None = None) -> None:
        """Write the next block: ``out`` ``(n,) float32``, ``n <= max_block``, whose first sample
        reaches the device at ``play_ns`` (``monotonic_ns``); ``now_ns``: the time of the call
        (default ``play_ns``), for the floor (see the module docstring).

        Contract: runs on the output stream's real-time thread; reads the ring's counters
        and buffer, writes ``out`` and this object's counters; allocates no arrays, takes no
        locks, logs nothing, never raises for any ring state.
        """
        n = out.shape[0]
        ring = self.ring
        block_ms = n * 1000.0 / self.out_rate
        if ring is None or not self.enabled:
            out[:] = 0.0
            self.silence_ms += block_ms
            self._pos = None
            return
        written = ring.written
        last_ns = ring.last_write_ns
        rate = ring.rate
        if ring is not self._ring_seen:
            self._ring_seen = ring
            self._pos = None
            self._origin_ns = None
        if now_ns is None:
            now_ns = play_ns
        age_ms = (now_ns - last_ns) / 1e6  # how old the newest captured sample is now
        if 0.0 <= age_ms < 200.0:  # (older: the source stalled, handled below)
            self._gap_peak_ms = max(age_ms, self._gap_peak_ms * FLOOR_DECAY)
        self.floor_ms = (play_ns - now_ns) / 1e6 + block_ms + self._gap_peak_ms + FLOOR_MARGIN_MS
        want_ns = play_ns - int(max(self.delay_ms, self.floor_ms) * 1e6)
        newest = written - 1
        origin = last_ns - written * 1e9 / rate  # this delivery's (late) bound on the capture clock
        if self._origin_ns is None or origin - self._origin_ns > RESTART_MS * 1e6:
            self._origin_ns = origin
        else:
            leak = ENVELOPE_LEAK_MS_PER_S * 1e6 * n / self.out_rate  # ns this block may creep
            self._origin_ns = min(origin, self._origin_ns + leak)
        target = (want_ns - self._origin_ns) * rate / 1e9 - 1.0
        if written == 0 or last_ns == 0 or target > newest + SLACK_MS * rate / 1000.0:
            out[:] = 0.0  # the source is not delivering: silence, and a fresh start when it does
            self.silence_ms += block_ms
            self._pos = None
            return
        pos = self._pos
        far = pos is not None and abs(pos - target) > RESYNC_MS * rate / 1000.0
        if pos is None or far or self._snap:  # start, far off, or off and the last block was quiet
            if far:
                self.resyncs += 1
            elif pos is not None:
                self.quiet_jumps += 1
            pos = float(round(target))
            self.error_ms = 0.0
            self._steering = False
            self._off_blocks = 0
        self._snap = False
        err_ms = (pos - target) * 1000.0 / rate  # > 0: reading newer audio than wanted (too little delay)
        self.error_ms += SMOOTHING * (err_ms - self.error_ms)
        e = self.error_ms
        if self._steering and abs(e) < SETTLED_MS:
            self._steering = False
            self._off_blocks = 0
            pos = float(round(pos))  # back on whole samples (a jump of < 11 us)
        elif not self._steering and abs(e) > DEADBAND_MS:
            self._off_blocks += 1  # wait for a pause to jump in; steer if none comes
            if self._off_blocks * block_ms > QUIET_WAIT_MS:
                self._steering = True
        else:
            self._off_blocks = 0
        if self._steering:
            ratio = 1.0 - min(max(e * SKEW_PER_MS, -MAX_SKEW), MAX_SKEW)
        else:
            ratio = 1.0
        self.ratio = ratio
        step = ratio * rate / self.out_rate

        # out[j] = ring[pos + j * step], linear interpolation
        p = self._pos_buf[:n]
        fl = self._floor[:n]
        idx = self._idx[:n]
        a = self._a[:n]
        b = self._b[:n]
        frac = self._frac32[:n]
        np.multiply(self._ramp[:n], step, out=p)
        np.add(p, pos, out=p)
        np.floor(p, out=fl)
        np.subtract(p, fl, out=p)
        idx[:] = fl
        buf = ring.buffer
        np.take(buf, idx, mode="wrap", out=a)
        np.add(idx, 1, out=idx)
        np.take(buf, idx, mode="wrap", out=b)
        frac[:] = p
        np.subtract(b, a, out=b)
        np.multiply(b, frac, out=b)
        np.add(a, b, out=out)

        # samples not captured yet (the read caught up with the capture): silence, counted
        have = math.ceil((newest - pos) / step) if newest > pos else 0  # positions p with floor(p) + 1 <= newest
        if have < n:
            out[max(have, 0):] = 0.0
            self.underruns += 1
            self.underrun_ms += (n - max(have, 0)) * 1000.0 / self.out_rate
        self._pos = pos + n * step
        if abs(self.error_ms) > DEADBAND_MS and max(float(out.max()), -float(out.min())) < QUIET_PEAK:
            self._snap = True

    def status(self) -> dict:
        """JSON-safe counters (see the class docstring)."""
        return {"muted": not self.enabled, "delay_ms": round(self.delay_ms, 1), "floor_ms": round(self.floor_ms, 1),
                "error_ms": round(self.error_ms, 2), "ratio": round(self.ratio, 5), "underruns": self.underruns,
                "underrun_ms": round(self.underrun_ms, 1), "silence_ms": round(self.silence_ms, 1),
                "resyncs": self.resyncs, "quiet_jumps": self.quiet_jumps}
