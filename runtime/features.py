"""Causal log-mel features of 16 kHz speech, for the motion graph.

Frame ``k`` (100 frames/s, 10 ms hop) is the 25 ms Hann-windowed stretch of samples ending at
sample ``(k + 1) * HOP`` (before the start of the audio, samples are zero). Each frame becomes
``N_MELS`` log-mel values relative to a slowly tracked speech level, so that mic gain, shouting
and whispering give similar features:

    feature = max(10 * log10(mel_power + 1e-12) - level_db, -60) / 20       (FLOOR = -3.0)

``level_db`` follows the loud frames of speech (rises with a ~0.2 s time constant, falls with
~2 s, holds in pauses and slowly sinks there) and is clamped to ``[LEVEL_MIN, LEVEL_MAX]`` dB
(0 dB: a full-scale sine). Digital silence always gives exactly ``FLOOR``.

It starts at ``LEVEL_INIT`` (-30 dB), low in the range of speech levels: the level rises ten
times faster than it falls, so loud speech is tracked within a few tenths of a second while
quiet speech (a soft voice, a mic with little gain) has little way to fall. Started at -18 dB,
speech 20 dB quieter than the sample clips (-37 to -44 dBFS RMS) was still read as murmur for
its first 4 seconds: the lip model of the time scored LibriVox offline 0.749 as is, 0.673 20 dB
quieter and 0.388 30 dB quieter; started at -30 dB, 0.750, 0.746 and 0.671.

:func:`log_mel` (a whole file) and :class:`LogMelStream` (blocks of any size) run the same
per-frame code, so their results are identical bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000
HOP = 160
WIN = 400
N_FFT = 512
N_MELS = 64
FMIN = 40.0
FMAX = 7600.0
FLOOR = -3.0
LEVEL_INIT = -30.0  # dB: where the tracked level starts (see above)
LEVEL_MIN = -45.0
LEVEL_MAX = 0.0
_EPS = 1e-12
_REL_FLOOR_DB = -60.0
_A_UP = 1.0 - math.exp(-0.01 / 0.2)
_A_DOWN = 1.0 - math.exp(-0.01 / 2.0)
_GATE_DB = 30.0
_HOLD_DECAY_DB = 0.01  # per frame in pauses: 1 dB/s


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank() -> np.ndarray:
    """Triangular HTK-mel filters, ``(N_FFT // 2 + 1, N_MELS) float32``, peak 1."""
    n_bins = N_FFT // 2 + 1
    freqs = np.arange(n_bins) * SAMPLE_RATE / N_FFT
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fb = np.zeros((n_bins, N_MELS), np.float64)
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[:, m] = np.maximum(0.0, np.minimum(up, down))
    return fb.astype(np.float32)


def _dft_matrix() -> np.ndarray:
    """Windowed real DFT as one matrix, ``(WIN, 2 * (N_FFT // 2 + 1)) float32``: [cos | sin].

    Scaled so that ``sum(re**2 + im**2)`` over the bins is about the frame's mean square.
    """
    n = np.arange(WIN)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * (n + 0.5) / WIN)
    k = np.arange(N_FFT // 2 + 1)
    ang = 2.0 * np.pi * np.outer(n, k) / N_FFT
    scale = math.sqrt(2.0) / w.sum()
    m = np.concatenate([np.cos(ang), -np.sin(ang)], axis=1) * (w * scale)[:, None]
    return m.astype(np.float32)


class LogMelStream:
    """Streaming causal log-mel features with a ring of the last ``capacity`` frames.

    Push 16 kHz mono float32 samples in blocks of any size with :meth:`push`; read the window
    of frames the motion graph needs with :meth:`window`. After construction nothing is
    allocated per call.

    Parameters
    ----------
    capacity:
        Frames kept in the ring (older ones are forgotten); must exceed any window asked for.
    """

    def __init__(self, capacity: int = 512) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 frames, got {capacity}")
        self.capacity = int(capacity)
        self._dft = _dft_matrix()
        self._fb = mel_filterbank()
        nb = N_FFT // 2 + 1
        self._frame = np.zeros(WIN, np.float32)
        self._shift = np.zeros(WIN - HOP, np.float32)
        self._spec = np.zeros(2 * nb, np.float32)
        self._pow = np.zeros(nb, np.float32)
        self._mel = np.zeros(N_MELS, np.float32)
        self._ring = np.full((N_MELS, self.capacity), FLOOR, np.float32)
        self._energy = np.full(self.capacity, -120.0, np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all audio: frame count 0, level back to its initial value."""
        self._frame[:] = 0.0
        self._ring[:] = FLOOR
        self._energy[:] = -120.0
        self._fill = 0
        self._frames = 0
        self._level = LEVEL_INIT

    @property
    def frames(self) -> int:
        """Number of complete frames so far (the newest is ``frames - 1``)."""
        return self._frames

    @property
    def samples(self) -> int:
        """Samples pushed so far (the newest is ``samples - 1``)."""
        return self._frames * HOP + self._fill

    def energy_db(self, k: int) -> float:
        """Frame ``k``'s power in dB (0 dB: a full-scale sine; digital silence -120), for a
        frame still in the ring."""
        return float(self._energy[k % self.capacity])

    @property
    def level_db(self) -> float:
        """The tracked speech level in dB (0 dB: a full-scale sine)."""
        return self._level

    def push(self, pcm: np.ndarray) -> int:
        """Append samples ``(n,) float32`` in ``[-1, 1]``; returns the new frame count."""
        if pcm.ndim != 1:
            raise ValueError(f"pcm must be 1-D (n,) float32, got shape {pcm.shape}")
        n = pcm.shape[0]
        pos = 0
        tail = WIN - HOP
        while pos < n:
            m = min(HOP - self._fill, n - pos)
            self._frame[tail + self._fill: tail + self._fill + m] = pcm[pos: pos + m]
            self._fill += m
            pos += m
            if self._fill == HOP:
                self._compute()
                self._shift[:] = self._frame[HOP:]
                self._frame[:tail] = self._shift
                self._fill = 0
        return self._frames

    def _compute(self) -> None:
        nb = N_FFT // 2 + 1
        spec, pw, mel = self._spec, self._pow, self._mel
        np.dot(self._frame, self._dft, out=spec)
        np.multiply(spec, spec, out=spec)
        np.add(spec[:nb], spec[nb:], out=pw)
        e_db = 10.0 * math.log10(float(pw.sum()) + _EPS)
        lv = self._level
        if e_db > lv:
            lv += _A_UP * (e_db - lv)
        elif e_db > lv - _GATE_DB:
            lv += _A_DOWN * (e_db - lv)
        else:
            lv -= _HOLD_DECAY_DB
        lv = min(max(lv, LEVEL_MIN), LEVEL_MAX)
        self._level = lv
        np.dot(pw, self._fb, out=mel)
        np.add(mel, _EPS, out=mel)
        np.log10(mel, out=mel)
        np.multiply(mel, 10.0, out=mel)
        np.subtract(mel, np.float32(lv), out=mel)
        np.maximum(mel, _REL_FLOOR_DB, out=mel)
        np.multiply(mel, 1.0 / 20.0, out=mel)
        self._ring[:, self._frames % self.capacity] = mel
        self._energy[self._frames % self.capacity] = e_db
        self._frames += 1

    def window(self, end_frame: int, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` ``(N_MELS, W) float32`` with frames ``end_frame - W + 1 .. end_frame``.

        Frames before 0 or not yet computed (past :attr:`frames`) read as the silence floor
        ``FLOOR``; frames older than the ring's capacity raise ``ValueError``. Returns ``out``.
        """
        w = out.shape[1]
        start = end_frame - w + 1
        if start < self._frames - self.capacity:
            raise ValueError(f"frames from {start} are no longer in the ring (capacity {self.capacity}, "
                             f"newest {self._frames - 1})")
        lo = max(start, 0)
        hi = min(end_frame + 1, self._frames)
        if lo >= hi:
            out[:] = FLOOR
            return out
        if lo > start:
            out[:, : lo - start] = FLOOR
        if hi < end_frame + 1:
            out[:, hi - start:] = FLOOR
        cap = self.capacity
        a = lo % cap
        b = a + (hi - lo)
        if b <= cap:
            out[:, lo - start: hi - start] = self._ring[:, a:b]
        else:
            k = cap - a
            out[:, lo - start: lo - start + k] = self._ring[:, a:]
            out[:, lo - start + k: hi - start] = self._ring[:, : b - cap]
        return out

    def copy_frames(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Copy frames ``start .. stop - 1`` (all still in the ring) into ``out`` ``(stop - start, N_MELS)``."""
        if start < self._frames - self.capacity or stop > self._frames or start < 0:
            raise ValueError(f"frames {start}..{stop - 1} are not all in the ring")
        view = out.T
        return self.window(stop - 1, view).T if stop > start else out


def log_mel(pcm: np.ndarray) -> np.ndarray:
    """Log-mel features of a whole utterance, ``(T, N_MELS) float32`` with ``T = len(pcm) // HOP``.

    ``pcm`` is ``(n,)`` 16 kHz mono float in ``[-1, 1]``. Identical to pushing the same samples
    through a fresh :class:`LogMelStream`.
    """
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    t = pcm.shape[0] // HOP
    stream = LogMelStream(capacity=max(t, 2))
    stream.push(pcm)
    out = np.empty((t, N_MELS), np.float32)
    if t:
        stream.copy_frames(0, t, out)
    return out
