"""Badge: the small visible "AI" mark in a corner of every frame, saying the face is synthetic.

The badge is drawn once (:meth:`Badge.make`, with Pillow) as premultiplied colour and
coverage; :meth:`Badge.draw` blends it into a frame's corner through one preallocated
float32 buffer, so it costs a few microseconds and allocates nothing.
"""

from __future__ import annotations

import numpy as np

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
#: Badge size and its distance from the frame's edges, in output pixels (512x512 frame).
WIDTH, HEIGHT, MARGIN = 34, 20, 10
#: Supersampling of the drawing, for smooth edges.
_SS = 4


class Badge:
    """A rounded dark label with white "AI", ``(HEIGHT, WIDTH)`` at ``origin`` ``(x0, y0)``.

    ``cover`` ``(HEIGHT, WIDTH, 1) float32`` 0..1 is how much the badge hides the frame,
    ``paint`` ``(HEIGHT, WIDTH, 3) float32`` the badge's colour times ``cover`` (plus 0.5, so
    the final cast rounds).
    """

    def __init__(self, cover: np.ndarray, paint: np.ndarray, origin: tuple[int, int]) -> None:
        self.cover = cover
        self.paint = paint
        self.origin = origin
        self._keep = (1.0 - cover).astype(np.float32)
        self._buf = np.empty(paint.shape, np.float32)

    @classmethod
    def make(cls, corner: str = "bottom-right", frame_size: int = 512) -> Badge:
        """Draw the badge for ``corner`` (one of :data:`CORNERS`) of a square frame."""
        from PIL import Image, ImageDraw, ImageFont

        if corner not in CORNERS:
            raise ValueError(f"badge corner must be one of {', '.join(CORNERS)}, got {corner!r}")
        w, h = WIDTH * _SS, HEIGHT * _SS
        shape = Image.new("L", (w, h), 0)
        ImageDraw.Draw(shape).rounded_rectangle((0, 0, w - 1, h - 1), radius=6 * _SS, fill=255)
        text = Image.new("L", (w, h), 0)
        font = ImageFont.load_default(size=13 * _SS)
        draw = ImageDraw.Draw(text)
        box = draw.textbbox((0, 0), "AI", font=font, stroke_width=_SS // 2)
        tx = (w - (box[2] - box[0])) / 2 - box[0]
        ty = (h - (box[3] - box[1])) / 2 - box[1]
        draw.text((tx, ty), "AI", font=font, fill=255, stroke_width=_SS // 2, stroke_fill=255)
        shape = np.asarray(shape.resize((WIDTH, HEIGHT), Image.LANCZOS), np.float32) / 255.0
        glyph = np.asarray(text.resize((WIDTH, HEIGHT), Image.LANCZOS), np.float32) / 255.0
        # A dark pill at 55 % over the picture, the letters white and opaque on it.
        cover = np.clip(np.maximum(0.55 * shape, glyph * shape), 0.0, 1.0)
        grey = 255.0 * glyph * shape  # white letters, black pill: colour times coverage
        paint = np.repeat(grey[:, :, None], 3, axis=2) + 0.5
        right = corner.endswith("right")
        bottom = corner.startswith("bottom")
        x0 = frame_size - MARGIN - WIDTH if right else MARGIN
        y0 = frame_size - MARGIN - HEIGHT if bottom else MARGIN
        return cls(cover[:, :, None].astype(np.float32), paint.astype(np.float32), (x0, y0))

    def overlaps(self, x0: int, y0: int, w: int, h: int) -> bool:
        """Whether the badge touches the rectangle ``(x0, y0, w, h)`` of the frame."""
        bx, by = self.origin
        return bx < x0 + w and x0 < bx + WIDTH and by < y0 + h and y0 < by + HEIGHT

    def draw(self, frame: np.ndarray) -> None:
        """Blend the badge into ``frame`` ``(H, W, 3) uint8`` in place."""
        x0, y0 = self.origin
        roi = frame[y0:y0 + HEIGHT, x0:x0 + WIDTH]
        np.multiply(roi, self._keep, out=self._buf)
        np.add(self._buf, self.paint, out=self._buf)
        np.copyto(roi, self._buf, casting="unsafe")
