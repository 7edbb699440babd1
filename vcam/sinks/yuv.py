"""RGB -> I420 (planar YUV 4:2:0) into one preallocated buffer.

Colour: BT.601, limited ("TV", "MPEG") range: Y in 16..235, Cb/Cr in 16..240, which is what
FFmpeg, x264 and v4l2 consumers assume for untagged SD video. Chroma is the mean of each 2x2
block, i.e. sited at the block centre (Y4M ``C420jpeg``; H.264 ``chroma_loc`` center).

The buffer holds the Y, U and V planes back to back (``width*height*3/2`` bytes): the exact
payload of a Y4M ``FRAME`` and the layout ``av.VideoFrame.from_numpy_buffer(..., 'yuv420p')``
wraps without a copy.
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr; columns: R, G, B (8-bit in, 8-bit out; ITU-R BT.601, limited range).
_BT601_LIMITED = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
) / 255.0


class I420Converter:
    """Converts ``(height, width, 3) uint8`` RGB frames to I420, reusing every buffer.

    ``convert()`` allocates nothing; it returns ``buffer``, which the next call overwrites.
    """

    def __init__(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"I420 needs positive even width and height, got {width}x{height}")
        self.width = width
        self.height = height
        w, h, cw, ch = width, height, width // 2, height // 2
        self.buffer = np.empty(w * h + 2 * cw * ch, np.uint8)
        """``(width*height*3/2,) uint8``: Y, then U, then V plane."""
        self.y = self.buffer[: w * h].reshape(h, w)
        self.u = self.buffer[w * h : w * h + cw * ch].reshape(ch, cw)
        self.v = self.buffer[w * h + cw * ch :].reshape(ch, cw)
        self._rgb = np.empty((h, w, 3), np.float32)  # the frame as float
        self._y = np.empty((h, w), np.float32)
        self._ty = np.empty((h, w), np.float32)  # one weighted channel
        self._rows = np.empty((ch, w, 3), np.float32)  # vertical pair sums
        self._sub = np.empty((ch, cw, 3), np.float32)  # 2x2 block sums
        self._c = np.empty((ch, cw), np.float32)
        self._tc = np.empty((ch, cw), np.float32)
        # Weights as float32 scalars, so products stay float32; /4 turns 2x2 sums into means.
        self._ky = [np.float32(k) for k in _BT601_LIMITED[0]]
        self._ku = [np.float32(k / 4.0) for k in _BT601_LIMITED[1]]
        self._kv = [np.float32(k / 4.0) for k in _BT601_LIMITED[2]]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of the RGB frames ``convert()`` takes."""
        return (self.height, self.width, 3)

    def check(self, frame: np.ndarray) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``frame`` is ``(height, width, 3) uint8``."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            got = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
            raise TypeError(f"frame must be a uint8 RGB array, got {got}")
        if frame.shape != self.frame_shape:
            raise ValueError(f"unexpected frame shape: got {frame.shape}, expected {self.frame_shape}")

    def convert(self, frame: np.ndarray) -> np.ndarray:
        """``(height, width, 3) uint8`` RGB -> ``buffer``, ``(width*height*3/2,) uint8`` I420."""
        self.check(frame)
        # Element-wise ufuncs with out=, no matmul: BLAS would start threads that fight the
        # inference threads for cores (5x slower on a busy 2-core machine).
        rgb = self._rgb
        np.copyto(rgb, frame)  # uint8 -> float32
        self._weigh(rgb, self._ky, self._y, self._ty)
        self._y += np.float32(16.5)  # offset, plus 0.5 so the truncating cast rounds
        np.copyto(self.y, self._y, casting="unsafe")
        np.add(rgb[0::2], rgb[1::2], out=self._rows)
        np.add(self._rows[:, 0::2], self._rows[:, 1::2], out=self._sub)
        for k, plane in ((self._ku, self.u), (self._kv, self.v)):
            self._weigh(self._sub, k, self._c, self._tc)
            self._c += np.float32(128.5)
            np.copyto(plane, self._c, casting="unsafe")
        return self.buffer

    @staticmethod
    def _weigh(rgb: np.ndarray, k: list[np.float32], out: np.ndarray, tmp: np.ndarray) -> None:
        """``out = k[0]*R + k[1]*G + k[2]*B`` for ``rgb`` ``(..., 3)``, ``out``/``tmp`` ``(...)``."""
        np.multiply(rgb[..., 0], k[0], out=out)
        np.multiply(rgb[..., 1], k[1], out=tmp)
        out += tmp
        np.multiply(rgb[..., 2], k[2], out=tmp)
        out += tmp
