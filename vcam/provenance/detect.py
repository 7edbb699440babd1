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

from vcam.runtime.watermark import (FORMAT_VERSION, TEXTURE_RADIUS, TILE, Payload, band_mask, box_mean, decode_payload,
                               key_tiles, local_variance, mark_amplitude, shifts_word)

#: Key A's correlation z-score from which the mark counts as found. Unmarked photos and
#: videos read at most ~5 here (``vcam bench --provenance``); marked ones 8 and up.
Z_FOUND = 6.5
#: Z-score each of keys B and C must reach for the payload to be read (CRC-4 alone would
#: let 1 in 16 misreadings through).
Z_PAYLOAD = 5.0
#: Radius (tile pixels) of key A's peak taken as the template B's and C's peaks are matched to.
PEAK_RADIUS = 4
#: Periods searched: scales from 0.3 (a 512 frame shown at 154 px) to 2.0 (upscaled 2x).
SCALE_RANGE = (0.3, 2.0)
#: Candidate periods kept from the autocorrelation, before refining; the halves of the
#: strongest ``HALVED`` of them are tried as well. The lattice's score is weak in a cropped and
#: rescaled copy: with 10, a 20 % crop scaled back to 512 of the sample render ranked the true
#: period (157.5 px) 15th after the motion graph changed what the averaged face looks like, and
#: the mark was missed (z 4.5; found with 16: z 13.9).
CANDIDATES = 16
HALVED = 5
#: Relative steps of the fine search around the two best candidate periods.
REFINE_STEPS = np.linspace(-0.012, 0.012, 9)
#: vcam's output frame, pixels a side.
FRAME_PX = 512
#: Pictures whose shorter side is at least this are averaged 2x2 (again, until it is less):
#: a 720p or larger copy.
BIG_SIDE = 700


@dataclass(frozen=True, slots=True)
class Detection:
    """What :func:`detect` found: ``found``; ``z`` (key A's peak z-score); ``confidence``
    0..1; ``scale`` (the copy's size against vcam's output, e.g. 0.70 for 360 lines);
    ``payload`` when it was read (``None`` when keys B and C were too faint to trust, or no
    shift of theirs gave a word that passes the checksum)."""

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
    return detail * mark_amplitude(y) / (local_variance(y, TEXTURE_RADIUS) + NOISE_VAR)


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


def _autocorrelation(r: np.ndarray) -> np.ndarray:
    """``(2H, 2W)``: the autocorrelation of ``r`` at every lag ``(dy, dx)`` (negative lags
    wrap to the end), each normalised by its overlap and by the lag 0 value."""
    h, w = r.shape
    spectrum = np.fft.rfft2(r, s=(2 * h, 2 * w))
    ac = np.fft.irfft2(spectrum * spectrum.conj(), s=(2 * h, 2 * w))
    lag_y = np.abs(np.fft.fftfreq(2 * h) * 2 * h)
    lag_x = np.abs(np.fft.fftfreq(2 * w) * 2 * w)
    overlap = np.maximum((h - lag_y)[:, None] * (w - lag_x)[None, :], 1.0)
    ac = ac / overlap
    return ac / max(float(ac[0, 0]), 1e-12)


#: Offsets of the ring a lattice point of the autocorrelation is compared with.
_RING = ((4, 0), (-4, 0), (0, 4), (0, -4), (3, 3), (3, -3), (-3, 3), (-3, -3))


def candidate_periods(r: np.ndarray, count: int = CANDIDATES) -> list[float]:
    """Periods (px) where the whitened image ``r`` repeats, strongest first, sub-pixel.

    A mark with period ``d`` makes the autocorrelation peak on a lattice: at ``(d, 0)``,
    ``(0, d)``, ``(d, d)``, ``(d, -d)``, ``(2d, 0)``, ... Each period is scored by how far
    those points rise above a ring of neighbours (so the ridges of edges and letterbox bars do
    not count), each rise in units of its own noise (a lag overlaps fewer pixels the longer it
    is)."""
    h, w = r.shape
    ac = _autocorrelation(r)
    lo = max(int(TILE * SCALE_RANGE[0]), 8)
    hi = min(int(TILE * SCALE_RANGE[1]), min(h, w) // 2 - 2)
    if hi <= lo + 2:
        return [float(TILE)]

    def rise(dy: int, dx: int) -> float:
        if abs(dy) + 4 >= h or abs(dx) + 4 >= w:
            return 0.0
        ring = np.median([ac[(dy + oy) % (2 * h), (dx + ox) % (2 * w)] for oy, ox in _RING])
        noise = np.sqrt(max(h - abs(dy), 1) * max(w - abs(dx), 1) / (h * w))
        return float(ac[dy % (2 * h), dx % (2 * w)] - ring) * noise

    scores = np.array([rise(d, 0) + rise(0, d) + rise(d, d) + rise(d, -d)
                       + 0.5 * (rise(2 * d, 0) + rise(0, 2 * d)) for d in range(lo, hi + 1)])
    order = np.argsort(scores)[::-1]
    picked: list[float] = []
    for i in order:
        d = lo + int(i)
        if any(abs(d - p) < 2.5 for p in picked):
            continue
        # Parabolic refinement on the two axes' profiles.
        prof = np.array([ac[d + k, 0] + ac[0, d + k] for k in (-1, 0, 1)])
        denom = prof[0] - 2 * prof[1] + prof[2]
        off = 0.5 * (prof[0] - prof[2]) / denom if denom < 0 else 0.0
        picked.append(d + float(np.clip(off, -0.5, 0.5)))
        if len(picked) == count:
            break
    # A mark that repeats every d repeats every 2d too, and a small copy's lattice can score
    # best at twice its period (a 240-line copy: 117 px for 59): half of each strong candidate
    # is worth a look.
    # Only a candidate within half a pixel stands for the half: at a period of 59 px a 240-line
    # copy's z-score falls from 11.6 to 3.6 half a pixel off (a coarse 57.5 once kept 58.75 out).
    for p in picked[:HALVED]:
        if p / 2 >= lo and not any(abs(p / 2 - q) < 0.5 for q in picked):
            picked.append(p / 2)
    if not any(abs(p - TILE) < 1.0 for p in picked):
        picked.append(float(TILE))  # an unscaled copy: always worth one look
    # A copy scaled so vcam's square frame fills its height or width (240p, 360p, a 720p
    # letterbox): the period exactly, where the autocorrelation's peak can sit a pixel off
    # (a 240-line copy: 58.0 found for 59.06, and the mark's z-score falls to 1 there).
    for side in (h, w):
        p = TILE * side / FRAME_PX
        if lo <= p <= hi and not any(abs(p - q) < 0.2 for q in picked):
            picked.append(p)
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


def _cross_spectra(tile: np.ndarray) -> np.ndarray:
    """``(3, TILE, TILE) complex``: the phase-only cross-power spectra of a folded tile with
    keys A, B, C over the keys' band (their inverse FFTs are the correlation surfaces)."""
    spectrum = np.fft.fft2(tile)
    spectrum = np.where(band_mask(), spectrum / (np.abs(spectrum) + 1e-12), 0.0)
    return spectrum[None] * np.fft.fft2(key_tiles()).conj()


def correlate(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase correlation of a folded tile with keys A, B, C over the keys' band.

    Returns ``(surfaces, peaks, z)``: ``surfaces`` ``(3, TILE, TILE)`` the correlation
    surfaces, ``peaks`` ``(3, 2)`` sub-pixel ``(dy, dx)`` of each key's peak and ``z`` ``(3,)``
    each peak's z-score over its surface."""
    surfaces = np.fft.ifft2(_cross_spectra(tile)).real
    peaks = np.zeros((3, 2))
    z = np.zeros(3)
    for k, s in enumerate(surfaces):
        i = int(np.argmax(s))
        py, px = divmod(i, TILE)
        z[k] = (s[py, px] - s.mean()) / (s.std() + 1e-12)
        peaks[k] = (py + _subpixel(s[(py - 1) % TILE, px], s[py, px], s[(py + 1) % TILE, px]),
                    px + _subpixel(s[py, (px - 1) % TILE], s[py, px], s[py, (px + 1) % TILE]))
    return surfaces, peaks, z


def _subpixel(a: float, b: float, c: float) -> float:
    denom = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0


def read_payload(surfaces: np.ndarray, peak_a: np.ndarray) -> Payload | None:
    """The payload from a folded tile's correlation ``surfaces`` (:func:`correlate`) whose key
    A peaks at ``peak_a``, or ``None``.

    B's and C's shifts against A come from matching the shape of A's peak in their surfaces
    (in a video the mark on the head moves with it, and each key's peak is a blend of the
    background's and the head's). Noise can still put a peak half a pixel off, so the two
    best shifts of each key are tried, best pair first, and the first pair whose word passes
    the CRC and names this format is read (a wrong pair passes both 1 time in 256)."""
    ay, ax = (int(round(v)) % TILE for v in peak_a)
    yy = (np.arange(TILE) - ay + TILE // 2) % TILE - TILE // 2
    xx = (np.arange(TILE) - ax + TILE // 2) % TILE - TILE // 2
    near = (yy[:, None] ** 2 + xx[None, :] ** 2) <= PEAK_RADIUS**2
    template = np.fft.fft2(np.where(near, surfaces[0], 0.0)).conj()
    options = []
    for s in surfaces[1:]:
        if (s.max() - s.mean()) / (s.std() + 1e-12) < Z_PAYLOAD:
            return None  # too faint to trust: better no payload than a wrong one
        match = np.fft.ifft2(template * np.fft.fft2(s)).real
        match /= match.max()
        by, bx = divmod(int(np.argmax(match)), TILE)
        ring = [((by + dy) % TILE, (bx + dx) % TILE) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        second = max(ring, key=lambda q: match[q])
        options.append([((by, bx), 1.0), (second, float(match[second]))])
    pairs = sorted(((b, c, sb + sc) for b, sb in options[0] for c, sc in options[1]), key=lambda t: -t[2])
    for b, c, _ in pairs:
        word = shifts_word(b, c)
        payload = None if word is None else decode_payload(word)
        if payload is not None and payload.format_version == FORMAT_VERSION:
            return payload
    return None


def confidence(z: float, trials: int) -> float:
    """1 - the chance that noise alone reaches key A's z-score ``z`` in ``trials`` positions
    (Gaussian tail, Bonferroni): 0.99 and up means found."""
    tail = 0.5 * math.erfc(z / math.sqrt(2.0))
    return max(0.0, 1.0 - min(1.0, tail * trials))


def detect(y: np.ndarray) -> Detection:
    """Look for the mark in ``y`` ``(H, W) float`` luma (0..255), a picture or the mean of a
    video's frames."""
    y = np.asarray(y, np.float64)
    shrink = 1
    while min(y.shape) >= BIG_SIDE:
        # A big picture (a 720p or 1080p copy): 2x2 means keep the mark (then at least 4 px a
        # wavelength) and quarter the work.
        h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        shrink *= 2
    if min(y.shape) < 48:
        return Detection(False, 0.0, 0.0, 1.0, None)
    r = whiten(weigh(y))
    tried = 0

    def look(period: float) -> tuple[float, np.ndarray, float, np.ndarray]:  # z, peaks, period, surfaces
        nonlocal tried
        tried += 1
        surfaces, peaks, z = correlate(fold(r, period))
        return float(z[0]), peaks, period, surfaces

    # Every candidate once, then a fine search around the best two.
    coarse = sorted((look(p) for p in candidate_periods(r)), key=lambda c: c[0], reverse=True)
    best = coarse[0]
    for _, _, period, _ in coarse[:2]:
        for step in REFINE_STEPS:
            if step:
                best = max(best, look(period * (1.0 + step)), key=lambda c: c[0])
    z_a, peaks, period, surfaces = best
    found = z_a >= Z_FOUND
    payload = read_payload(surfaces, peaks[0]) if found else None
    return Detection(found, z_a, confidence(z_a, tried * TILE * TILE), shrink * period / TILE, payload)
