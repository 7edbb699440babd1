"""The tray glyph: a video camera whose body is a face (also the menu entry's icon)."""

from __future__ import annotations

# vcam's colours: an indigo camera with a warm face; grey while lip sync is paused.
BODY = (67, 76, 214, 255)
BODY_PAUSED = (128, 131, 145, 255)
FACE = (255, 200, 87, 255)
INK = (33, 30, 52, 255)


def draw_icon(size: int = 64, *, paused: bool = False):
    """The tray glyph as a ``size`` x ``size`` RGBA Pillow image: a video camera whose body is a face."""
    from PIL import Image, ImageDraw

    s = 4 * size  # drawn 4x larger, then scaled down: smooth edges without anti-aliasing support

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (round(x0 * s), round(y0 * s), round(x1 * s), round(y1 * s))

    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    body = BODY_PAUSED if paused else BODY
    d.rounded_rectangle(box(0.03, 0.18, 0.74, 0.82), radius=round(0.14 * s), fill=body)  # camera body
    d.polygon([(0.70 * s, 0.50 * s), (0.97 * s, 0.26 * s), (0.97 * s, 0.74 * s)], fill=body)  # lens cone
    d.ellipse(box(0.13, 0.25, 0.63, 0.75), fill=FACE)  # the face
    d.ellipse(box(0.255, 0.38, 0.325, 0.46), fill=INK)  # eyes
    d.ellipse(box(0.435, 0.38, 0.505, 0.46), fill=INK)
    if paused:  # a closed, level mouth
        d.rounded_rectangle(box(0.27, 0.57, 0.49, 0.62), radius=round(0.02 * s), fill=INK)
    else:  # a smile
        d.arc(box(0.25, 0.42, 0.51, 0.66), start=20, end=160, fill=INK, width=max(1, round(0.045 * s)))
    return img.resize((size, size), Image.LANCZOS)
