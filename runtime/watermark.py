"""The invisible watermark every vcam frame carries: its key patterns, payload and embedding.

The mark is a faint luma pattern, periodic with a tile of :data:`TILE` pixels, that is the sum
of three keyed noise tiles (band-passed to wavelengths of 5.7-31.5 px, which survive H.264
and downscaling): ``A`` as it is, and ``B`` and ``C`` shifted cyclically by the two halves of the
payload. A detector (``vcam.provenance.detect``) finds the tile's period in a frame (so a
rescaled, letterboxed or cropped copy is found too), folds the frame onto one tile and reads
``A``'s position and the shifts of ``B`` and ``C`` relative to it: translation and cropping
move all three together and leave the payload intact.

The keys come from SHAKE-256, not from a numpy generator, so they never change with a numpy
release. The amplitude follows the photo's local texture: up to 6 levels in hair and fabric,
where the eye does not see it and the encoder keeps it, 0.8 on flat skin and walls, where a
stronger mark shows as grain, none where the face moves; the whole is held to 42.5 dB PSNR
or more.

The pattern for a portrait is made once (:func:`mark_pattern`) and added to the portrait
itself (``vcam.runtime.render.RenderStage``): the render graph then draws it as part of the face
and background, so it moves with them and costs nothing per frame.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Side of the periodic tile in output pixels. Not a multiple of 8 or 16, so codec block
#: edges (periodic at 4, 8, 16 px) never pose as the mark's period.
TILE = 126
#: The keys' band, in cycles per tile (wavelengths TILE/22 = 5.7 px to TILE/4 = 31.5 px): high
#: enough to stand above a photo's own smooth shading, low enough to outlive H.264 at CRF 32
#: and a downscale to 360 lines (chosen by ``vcam bench --provenance``).
BAND = (4.0, 22.0)
#: Format of the mark; bump when the keys or the payload layout change.
FORMAT_VERSION = 1
#: Payload bits carried by each shifted key (a shift of ``v % TILE, v // TILE``).
BITS_PER_KEY = 13
#: Share of the mark's energy in each key: the sync key ``A`` carries most, as finding it is
#: what tells marked from unmarked; ``B`` and ``C`` are only read once ``A`` is found.
KEY_WEIGHTS = (0.70, 0.50, 0.50)

#: Amplitude of the mark in 8-bit levels: ``AMP_FLAT + AMP_PER_STD * texture``, clipped to
#: ``[AMP_FLAT, AMP_MAX]`` (see :func:`mark_amplitude`).
AMP_FLAT = 0.8
AMP_PER_STD = 0.3
AMP_MAX = 6.0
TEXTURE_RADIUS = 4
#: The mark's RMS over the whole frame is held at most this (levels): PSNR >= 42.5 dB on any
#: portrait, however busy (the whole amplitude map is scaled down where it would be more).
RMS_MAX = 1.9


@dataclass(frozen=True, slots=True)
class Payload:
    """What the mark says: its format and the vcam version that made it (nothing else)."""

    format_version: int
    version: tuple[int, int, int]

    def __str__(self) -> str:
        return f"format {self.format_version}, vcam {'.'.join(map(str, self.version))}"


def _crc4(value: int, bits: int) -> int:
    """CRC-4 (polynomial x^4 + x + 1) of the low ``bits`` bits of ``value``."""
    reg = 0
    for i in range(bits - 1, -1, -1):
        top = ((reg >> 3) & 1) ^ ((value >> i) & 1)
        reg = (reg << 1) & 0xF
        if top:
            reg ^= 0x3
    return reg


def encode_payload(payload: Payload) -> int:
    """The 26-bit word: format (4 bits), major, minor, patch (6 bits each), CRC-4 of those."""
    major, minor, patch = payload.version
    for name, v, bits in (("format", payload.format_version, 4), ("major", major, 6),
                          ("minor", minor, 6), ("patch", patch, 6)):
        if not 0 <= v < (1 << bits):
            raise ValueError(f"watermark payload: {name} {v} does not fit in {bits} bits")
    body = (payload.format_version << 18) | (major << 12) | (minor << 6) | patch
    return (body << 4) | _crc4(body, 22)


def decode_payload(word: int) -> Payload | None:
    """The payload of a 26-bit word, or ``None`` when its CRC does not match."""
    body, crc = word >> 4, word & 0xF
    if _crc4(body, 22) != crc:
        return None
    return Payload(body >> 18, ((body >> 12) & 63, (body >> 6) & 63, body & 63))


def payload_shifts(word: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Cyclic shifts ``(dy, dx)`` of keys B and C for a payload word."""
    mask = (1 << BITS_PER_KEY) - 1
    return tuple(divmod(v, TILE) for v in (word & mask, word >> BITS_PER_KEY))  # type: ignore[return-value]


def shifts_word(shift_b: tuple[int, int], shift_c: tuple[int, int]) -> int | None:
    """The payload word for the shifts of B and C, or ``None`` when a shift carries no word."""
    vb, vc = (dy * TILE + dx for dy, dx in (shift_b, shift_c))
    if vb >= 1 << BITS_PER_KEY or vc >= 1 << BITS_PER_KEY:
        return None
    return vb | (vc << BITS_PER_KEY)


def band_mask(size: int = TILE) -> np.ndarray:
    """``(size, size) bool``: the FFT bins of the keys' band (cycles per tile)."""
    f = np.fft.fftfreq(size) * size
    radius = np.hypot(f[:, None], f[None, :])
    return (radius >= BAND[0]) & (radius <= BAND[1])


@lru_cache(maxsize=1)
def key_tiles() -> np.ndarray:
    """``(3, TILE, TILE) float64``: keys A, B, C, band-passed, zero mean, unit RMS."""
    keep = band_mask()
    tiles = np.empty((3, TILE, TILE))
    for k in range(3):
        raw = hashlib.shake_256(f"vcam watermark key {k}".encode()).digest(TILE * TILE * 2)
        noise = np.frombuffer(raw, np.uint16).reshape(TILE, TILE) / 65536.0 - 0.5
        spectrum = np.fft.fft2(noise)
        spectrum[~keep] = 0.0
        tile = np.fft.ifft2(spectrum).real
        tiles[k] = tile / tile.std()
    tiles.setflags(write=False)
    return tiles


def mark_tile(payload: Payload) -> np.ndarray:
    """``(TILE, TILE) float64``, unit RMS: A + B and C shifted by the payload."""
    a, b, c = key_tiles()
    (by, bx), (cy, cx) = payload_shifts(encode_payload(payload))
    wa, wb, wc = KEY_WEIGHTS
    tile = wa * a + wb * np.roll(b, (by, bx), axis=(0, 1)) + wc * np.roll(c, (cy, cx), axis=(0, 1))
    return tile / tile.std()


def current_payload() -> Payload:
    """The payload of this vcam: :data:`FORMAT_VERSION` and the package version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("vcam")
    except PackageNotFoundError:
        text = "0.0.0"
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in text.split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return Payload(FORMAT_VERSION, (parts[0] & 63, parts[1] & 63, parts[2] & 63))


def box_mean(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean of ``a`` over a ``(2r+1)^2`` box, edges by replication (summed-area table)."""
    k = 2 * radius + 1
    padded = np.pad(a, radius, mode="edge")
    p = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    p[1:, 1:] = padded.cumsum(0).cumsum(1)
    return (p[k:, k:] - p[:-k, k:] - p[k:, :-k] + p[:-k, :-k]) / (k * k)


def local_variance(a: np.ndarray, radius: int) -> np.ndarray:
    """Variance of ``a`` over a ``(2r+1)^2`` box (see :func:`box_mean`), never negative."""
    mean = box_mean(a, radius)
    return np.maximum(box_mean(a * a, radius) - mean * mean, 0.0)


def luma(rgb: np.ndarray) -> np.ndarray:
    """``(H, W) float32`` BT.601 luma of an ``(H, W, 3) uint8`` RGB image."""
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def mark_amplitude(y: np.ndarray) -> np.ndarray:
    """``(H, W) float64``: the mark's amplitude (levels) over luma ``y`` ``(H, W)``.

    ``AMP_FLAT + AMP_PER_STD * texture``, clipped to ``[AMP_FLAT, AMP_MAX]``. Texture is the
    geometric mean of the luma's standard deviation over the ``(2r+1)^2`` box and the
    smallest over the four ``(r+1)^2`` windows with the pixel at a corner (``r`` =
    :data:`TEXTURE_RADIUS`). The box alone reads an edge as texture and puts visible grain on
    the flat sides along it; the smallest window alone leaves edges, which keep the mark
    through compression best, almost unmarked. In real texture both are large."""
    y = np.asarray(y, np.float64)
    half = TEXTURE_RADIUS // 2
    padded = np.pad(local_variance(y, half), half, mode="edge")
    h, w = y.shape
    quads = [padded[dy:dy + h, dx:dx + w] for dy in (0, 2 * half) for dx in (0, 2 * half)]
    flattest = np.minimum(np.minimum(quads[0], quads[1]), np.minimum(quads[2], quads[3]))
    whole = local_variance(y, TEXTURE_RADIUS)
    texture = (flattest * whole) ** 0.25  # geometric mean of the two deviations
    return np.clip(AMP_FLAT + AMP_PER_STD * texture, AMP_FLAT, AMP_MAX)


def mark_pattern(still: np.ndarray, payload: Payload | None = None, quiet: np.ndarray | None = None) -> np.ndarray:
    """``(H, W) int16``: the mark, in 8-bit levels, for a portrait whose still frame is
    ``still`` ``(H, W, 3) uint8``. Made once per portrait; added to every frame's luma.
    ``quiet`` ``(H, W) float`` 0..1, where given, is where the face moves (eyes, brows,
    mouth): the mark fades out there, so those features look exactly as the photo has them
    and what a face tracker reads of them (lip gap, blinks, brows) stays as it was."""
    h, w = still.shape[:2]
    tile = mark_tile(payload or current_payload())
    pattern = np.tile(tile, (-(-h // TILE), -(-w // TILE)))[:h, :w]
    amp = mark_amplitude(luma(still))
    if quiet is not None:
        amp *= 1.0 - np.clip(quiet, 0.0, 1.0)
    mark = amp * pattern
    rms = float(np.sqrt(np.mean(mark * mark)))
    if rms > RMS_MAX:
        mark *= RMS_MAX / rms
    return np.rint(mark).astype(np.int16)


def apply_mark(rgb: np.ndarray, pattern: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``clip(rgb + pattern, 0, 255)``: ``rgb`` ``(H, W, 3) uint8`` with the ``(H, W) int16``
    mark added to every channel (so to the luma), into ``out`` where given."""
    marked = np.clip(rgb.astype(np.int16) + pattern[:, :, None], 0, 255)
    if out is None:
        return marked.astype(np.uint8)
    np.copyto(out, marked, casting="unsafe")
    return out


def mark_frame(frame: np.ndarray, payload: Payload | None = None) -> np.ndarray:
    """A marked copy of one ``(H, W, 3) uint8`` picture (tests, benchmarks)."""
    return apply_mark(frame, mark_pattern(frame, payload))
