"""Reading a user's photo: bytes (for the content hash), then pixels as 8-bit RGB.

Anything Pillow reads is accepted (JPEG, PNG incl. 16-bit, WebP, BMP, TIFF, GIF's first
frame, ...). EXIF orientation is applied; greyscale, palette and CMYK become RGB; an alpha
channel is composited over neutral grey and handed back separately as a person-mask hint.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np

from vcam.runtime.errors import InputError

#: The grey that transparent pixels are composited over.
NEUTRAL_GREY = 128
#: An alpha channel counts as a person cut-out when at least this fraction of the photo is
#: transparent and at least this fraction opaque.
CUTOUT_MIN_FRAC = 0.02


@dataclass(frozen=True, slots=True)
class Photo:
    """A decoded photo.

    rgb:   (H, W, 3) uint8, upright (EXIF orientation applied), alpha composited over grey.
    alpha: (H, W) float32 0..1 when the photo is a cut-out (a real part of it transparent),
           else None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; InputError naming the file when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"photo not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"not an image: {path} (it is a folder)") from None
    except PermissionError:
        raise InputError(f"cannot read photo {path}: permission denied") from None
    except OSError as e:
        raise InputError(f"cannot read photo {path}: {e.strerror or e}") from None


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, path: str | os.PathLike) -> Photo:
    """Decode image bytes into an upright 8-bit RGB :class:`Photo`; ``path`` is for messages."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(data))
        im.load()  # the first frame of an animation
    except UnidentifiedImageError:
        raise InputError(f"not an image: {path} (no image format recognised)") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"photo too large: {path} ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"not an image: {path} (damaged or truncated: {e})") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the photo
        pass
    try:
        return _to_rgb(im)
    except (OSError, ValueError) as e:
        raise InputError(f"not an image: {path} (cannot convert {im.mode} pixels: {e})") from None


def _to_rgb(im) -> Photo:
    mode = im.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        grey = _high_depth_to_u8(np.asarray(im), mode)
        return Photo(np.repeat(grey[:, :, None], 3, axis=2), None)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info) or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[:, :, 3].astype(np.float32) / 255.0
        rgb = rgba[:, :, :3]
        if alpha.min() >= 254.5 / 255.0:
            return Photo(np.ascontiguousarray(rgb), None)
        a = alpha[:, :, None]
        comp = rgb.astype(np.float32) * a + NEUTRAL_GREY * (1.0 - a)
        # a cut-out only if a real part is transparent and a real part opaque (not a stray pixel)
        clear = float((alpha < 0.5).mean())
        hint = alpha if CUTOUT_MIN_FRAC <= clear <= 1.0 - CUTOUT_MIN_FRAC else None
        return Photo(np.clip(comp + 0.5, 0, 255).astype(np.uint8), hint)
    if mode != "RGB":
        im = im.convert("RGB")
    return Photo(np.ascontiguousarray(np.asarray(im)), None)


def _high_depth_to_u8(a: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) 16/32-bit integer or float greyscale -> (H, W) uint8."""
    a = a.astype(np.float64)
    if mode == "F":
        top = 1.0 if np.nanmax(a) <= 1.0 else 255.0
        a = np.nan_to_num(a) * (255.0 / top)
    elif mode.startswith("I;16") or a.max() > 255:
        a = a / 257.0
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)
