"""Find vcam's watermark in a picture (or the average of a video's frames) and read its payload.

The steps, for a luma image ``Y`` (``(H, W) float``):

1. *Weigh and whiten*: take ``Y`` less its local mean, weighted by the mark's expected
   amplitude over the local variance (busy hair and fabric hide the mark behind much more
   of the photo's own detail than flat skin does), then keep the phase of the spectrum and
   flatten its magnitude, so the photo's own strong structure weighs no more than the mark.
2. *Period*: a periodic mark makes the whitened image's autocorrelation peak at multiples of
   the tile's period; the strongest such peaks on the axes give candidate periods (a copy
   downscaled to 360 lines has a period of 88.6 px instead of 126).
3. *Fold*: for each candidate, resample so the period is :data:`TILE`, sum the image onto one
   tile, and phase-correlate it with the keys. Key A's peak height against the spread of the
   correlation surface (a z-score) says whether the mark is there; B's and C's peaks, read
   relative to A's, give the payload.

Cropping and letterboxing only move the tile, which step 3 finds at any position; rotation
and a change of aspect ratio are not searched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.watermark import (AMP_FLAT, AMP_MAX, AMP_PER_STD, TEXTURE_RADIUS, TILE, Payload, band_mask,
                               box_mean, decode_payload, key_tiles, shifts_word)

#: Key A's correlation z-score from which the mark counts as found. Unmarked photos and
#: videos read at most ~5 here (``vcam bench --provenance``); marked ones 8 and up.
Z_FOUND = 6.5
#: Periods searched: scales from 0.3 (a 512 frame shown at 154 px) to 2.0 (upscaled 2x).
SCALE_RANGE = (0.3, 2.0)
#: Candidate periods kept from the autocorrelation, before refining.
CANDIDATES = 6
#: Relative steps of the fine search around each candidate period.
REFINE_STEPS = np.linspace(-0.012, 0.012, 9)


@dataclass(frozen=True, slots=True)
class Detection:
    """What :func:`detect` found: ``found``; ``z`` (key A's peak z-score); ``confidence``
    0..1; ``scale`` (the copy's size against vcam's output, e.g. 0.70 for 360 lines);
    ``payload`` when it was read (``None`` if its checksum failed)."""

    found: bool
    z: float
    confidence: float
    scale: float
    payload: Payload | None


#: Variance (levels^2) added to the local variance when weighing: the noise floor of an
#: 8-bit, compressed picture. 4 gave the highest z-scores on the sample portraits.
NOISE_VAR = 4.0


def weigh(y: np.ndarray) -> np.ndarray:
    """``(H, W) float64``: ``y`` less its local mean (7x7), times the mark's expected
    amplitude at each pixel over the local variance there (plus :data:`NOISE_VAR`)."""
    y = np.asarray(y, np.float64)
    detail = y - box_mean(y, 3)
    mean = box_mean(y, TEXTURE_RADIUS)
    var = np.maximum(box_mean(y * y, TEXTURE_RADIUS) - mean * mean, 0.0)
    amp = np.clip(AMP_FLAT + AMP_PER_STD * np.sqrt(var), AMP_FLAT, AMP_MAX)
    return detail * amp / (var + NOISE_VAR)


def whiten(y: np.ndarray) -> np.ndarray:
    """``(H, W) float32``: ``y`` with its spectrum's magnitude flattened (phase kept), limited
    to wavelengths of 2.5 px and up."""
    y = np.asarray(y, np.float64)
    spectrum = np.fft.rfft2(y - y.mean())
    fy = np.fft.fftfreq(y.shape[0])[:, None]
    fx = np.fft.rfftfreq(y.shape[1])[None, :]
    keep = np.hypot(fy, fx) <= 0.4
    spectrum = np.where(keep, spectrum / (np.abs(spectrum) + 1e-9), 0.0)
    return np.fft.irfft2(spectrum, s=y.shape).astype(np.float32)


def _axis_autocorrelation(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation of ``r`` along x (lag ``(0, d)``) and y (lag ``(d, 0)``), each lag
    normalised by its overlap, for ``d = 0 .. size - 1``."""
    h, w = r.shape
    spectrum = np.fft.rfft2(r, s=(2 * h, 2 * w))
    ac = np.fft.irfft2(spectrum * spectrum.conj(), s=(2 * h, 2 * w))
    ac_x = ac[0, :w] / ((w - np.arange(w)) * h)
    ac_y = ac[:h, 0] / ((h - np.arange(h)) * w)
    return ac_x / max(ac[0, 0] / (h * w), 1e-12), ac_y / max(ac[0, 0] / (h * w), 1e-12)


def candidate_periods(r: np.ndarray, count: int = CANDIDATES) -> list[float]:
    """Periods (px) where the whitened image ``r`` repeats, strongest first, sub-pixel."""
    ac_x, ac_y = _axis_autocorrelation(r)
    lo = max(int(TILE * SCALE_RANGE[0]), 8)
    hi = min(int(TILE * SCALE_RANGE[1]), min(r.shape) // 2 - 2)
    if hi <= lo + 2:
        return [float(TILE)]
    scores = []
    for d in range(lo, hi + 1):
        s = 0.0
        for ac in (ac_x, ac_y):
            # Peak above its neighbours 3-6 lags away, so ridges (edges, bars) don't count.
            around = np.concatenate((ac[d - 6:d - 2], ac[d + 3:d + 7]))
            s += ac[d] - np.median(around)
            if 2 * d < len(ac) - 7:
                around2 = np.concatenate((ac[2 * d - 6:2 * d - 2], ac[2 * d + 3:2 * d + 7]))
                s += 0.5 * (ac[2 * d] - np.median(around2))
        scores.append(s)
    scores = np.asarray(scores)
    order = np.argsort(scores)[::-1]
    picked: list[float] = []
    for i in order:
        d = lo + int(i)
        if any(abs(d - p) < 2.5 for p in picked):
            continue
        # Parabolic refinement of the peak on the summed axis profiles.
        prof = ac_x[d - 1:d + 2] + ac_y[d - 1:d + 2]
        denom = prof[0] - 2 * prof[1] + prof[2]
        off = 0.5 * (prof[0] - prof[2]) / denom if denom < 0 else 0.0
        picked.append(d + float(np.clip(off, -0.5, 0.5)))
        if len(picked) == count:
            break
    if not any(abs(p - TILE) < 1.0 for p in picked):
        picked.append(float(TILE))  # an unscaled copy: always worth one look
    return picked


def _fold_matrix(n: int, scale: float) -> np.ndarray:
    """``(TILE, n)``: bilinear weights taking sample ``i`` to tile row ``(i * scale) % TILE``."""
    pos = np.arange(n) * scale
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    m = np.zeros((TILE, n))
    cols = np.arange(n)
    m[i0 % TILE, cols] += 1.0 - frac
    m[(i0 + 1) % TILE, cols] += frac
    return m


def fold(r: np.ndarray, period: float) -> np.ndarray:
    """``(TILE, TILE) float64``: ``r`` resampled so ``period`` becomes :data:`TILE` and summed
    modulo the tile (bilinear), as two matrix products."""
    scale = TILE / period
    return _fold_matrix(r.shape[0], scale) @ r.astype(np.float64) @ _fold_matrix(r.shape[1], scale).T


def correlate(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase correlation of a folded tile with keys A, B, C over the keys' band.

    Returns ``(peaks, z)``: ``peaks`` ``(3, 2)`` sub-pixel ``(dy, dx)`` of each key's peak and
    ``z`` ``(3,)`` each peak's z-score over the correlation surface."""
    keep = band_mask()
    spectrum = np.fft.fft2(tile)
    spectrum = np.where(keep, spectrum / (np.abs(spectrum) + 1e-12), 0.0)
    keys = np.fft.fft2(key_tiles())
    surfaces = np.fft.ifft2(spectrum[None] * keys.conj()).real
    peaks = np.zeros((3, 2))
    z = np.zeros(3)
    for k, s in enumerate(surfaces):
        i = int(np.argmax(s))
        py, px = divmod(i, TILE)
        z[k] = (s[py, px] - s.mean()) / (s.std() + 1e-12)
        peaks[k] = (py + _subpixel(s[(py - 1) % TILE, px], s[py, px], s[(py + 1) % TILE, px]),
                    px + _subpixel(s[py, (px - 1) % TILE], s[py, px], s[py, (px + 1) % TILE]))
    return peaks, z


def _subpixel(a: float, b: float, c: float) -> float:
    denom = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0


def read_payload(peaks: np.ndarray) -> Payload | None:
    """The payload from the keys' peak positions (B and C relative to A), or ``None``."""
    shifts = [tuple(int(round(v)) % TILE for v in peaks[k] - peaks[0]) for k in (1, 2)]
    word = shifts_word(shifts[0], shifts[1])
    return None if word is None else decode_payload(word)


def confidence(z: float, trials: int) -> float:
    """1 - the chance that noise alone reaches key A's z-score ``z`` in ``trials`` positions
    (Gaussian tail, Bonferroni): 0.99 and up means found."""
    tail = 0.5 * math.erfc(z / math.sqrt(2.0))
    return max(0.0, 1.0 - min(1.0, tail * trials))


def detect(y: np.ndarray) -> Detection:
    """Look for the mark in ``y`` ``(H, W) float`` luma (0..255), a picture or the mean of a
    video's frames."""
    if min(y.shape) < 48:
        return Detection(False, 0.0, 0.0, 1.0, None)
    r = whiten(weigh(y))
    best = (-np.inf, None, 1.0)
    tried = 0
    for period in candidate_periods(r):
        for step in REFINE_STEPS:
            p = period * (1.0 + step)
            peaks, z = correlate(fold(r, p))
            tried += 1
            if z[0] > best[0]:
                best = (float(z[0]), peaks, p / TILE)
    z_a, peaks, scale = best
    found = z_a >= Z_FOUND
    payload = read_payload(peaks) if found else None
    return Detection(found, z_a, confidence(z_a, tried * TILE * TILE), scale, payload)
