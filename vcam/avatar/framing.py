"""Head-and-shoulders framing: one scale-and-shift warp from the photo into the square frame.

Coordinates: landmark (x, y) are continuous pixel coordinates, (0, 0) being the top-left
corner of the top-left pixel (MediaPipe's ``x * width``). Affine matrices here map OpenCV
pixel-centre coordinates (pixel i's centre at i), as ``cv2.warpAffine`` expects;
:func:`landmark_affine` converts.
"""

from __future__ import annotations

import math

import numpy as np

from vcam.avatar import landmarks as L

FRAME = 512
#: Height of the eye midpoint in the frame, as a fraction of its size.
EYE_Y_FRAC = 0.40


def eye_midpoint(lm: np.ndarray) -> np.ndarray:
    """(2,) float64: the midpoint between the two eyes' corner midpoints of (478, 3) ``lm``."""
    pts = lm[[L.RIGHT_EYE_OUTER, L.RIGHT_EYE_INNER, L.LEFT_EYE_OUTER, L.LEFT_EYE_INNER], :2]
    return pts.astype(np.float64).mean(axis=0)


def face_width(lm: np.ndarray) -> float:
    """The x-extent of the face oval of (478, 3) ``lm``, in its pixels."""
    xs = lm[list(L.FACE_OVAL), 0]
    return float(xs.max() - xs.min())


#: When the photo has too little margin for the asked framing, the face may grow up to this
#: much larger and sit this far off its place (fractions of the frame), so the frame stays
#: within the photo instead of reaching past its edge.
MAX_ZOOM_IN = 1.35
MAX_SHIFT_X_FRAC = 0.06
#: Eyes may go up further than down: a frame's top edge cutting the hair is how webcams
#: frame people anyway, while a chin near the bottom edge is not.
MAX_SHIFT_UP_FRAC = 0.12
MAX_SHIFT_DOWN_FRAC = 0.05


def framing_affine(lm: np.ndarray, face_width_frac: float, size: int = FRAME,
                   photo_wh: tuple[int, int] | None = None) -> np.ndarray:
    """(2, 3) float64 affine, OpenCV pixel-centre convention, from the photo to the frame.

    ``lm`` is (478, 3) in the photo's pixels. The face oval's width becomes
    ``face_width_frac * size``; the eye midpoint goes to (size/2, EYE_Y_FRAC*size). No rotation.

    With ``photo_wh`` (the photo's width and height), a photo with too little margin round the
    face is framed within what it has: the least zoom-in (up to :data:`MAX_ZOOM_IN`) and shift
    (up to :data:`MAX_SHIFT_X_FRAC` sideways, :data:`MAX_SHIFT_UP_FRAC` up or
    :data:`MAX_SHIFT_DOWN_FRAC` down, of the frame) that keep the frame
    inside the photo; where none does, the one that reaches past it least.
    """
    s0 = face_width_frac * size / max(face_width(lm), 1e-6)
    mid = eye_midpoint(lm)
    target = np.array([size / 2.0, EYE_Y_FRAC * size])
    s = s0
    if photo_wh is not None:
        s, target = _fit_inside(mid, s0, target, photo_wh, size)
    # continuous coords u' = s (u - mid) + target; pixel-centre coords c = u - 0.5
    t = s * (0.5 - mid) + target - 0.5
    return np.array([[s, 0.0, t[0]], [0.0, s, t[1]]])


def _fit_inside(mid: np.ndarray, s0: float, target: np.ndarray, photo_wh: tuple[int, int],
                size: int) -> tuple[float, np.ndarray]:
    """``(scale, eye target)``: see :func:`framing_affine`."""
    w, h = photo_wh
    lows = np.array([-MAX_SHIFT_X_FRAC, -MAX_SHIFT_UP_FRAC]) * size
    highs = np.array([MAX_SHIFT_X_FRAC, MAX_SHIFT_DOWN_FRAC]) * size
    best = (math.inf, s0, target)
    for zoom in np.linspace(1.0, MAX_ZOOM_IN, 15):
        s = s0 * zoom
        shifted = target.copy()
        past = 0.0
        for k, extent in ((0, w), (1, h)):
            # the frame covers photo coords mid + (0 - target) / s .. mid + (size - target) / s
            lo = mid[k] - target[k] / s
            hi = mid[k] + (size - target[k]) / s
            need = 0.0  # also where the frame is wider than the photo: no shift helps then
            if lo < 0.0 and hi <= extent:
                need = lo * s  # move the target up/left (negative) by this many frame px
            elif hi > extent and lo >= 0.0:
                need = (hi - extent) * s
            move = float(np.clip(need, lows[k], highs[k]))
            shifted[k] = target[k] + move
            lo = mid[k] - shifted[k] / s
            hi = mid[k] + (size - shifted[k]) / s
            past += (max(0.0, -lo) + max(0.0, hi - extent)) * s  # frame px past the photo
        if past < 0.5:
            return s, shifted
        if past < best[0] - 0.5:
            best = (past, s, shifted)
    return best[1], best[2]


def landmark_affine(m: np.ndarray) -> np.ndarray:
    """(2, 3) affine for continuous (landmark) coordinates from a pixel-centre one ``m``."""
    out = m.astype(np.float64).copy()
    out[:, 2] += 0.5 - 0.5 * (m[:, 0] + m[:, 1])
    return out


def transform_landmarks(lm: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(478, 3) float32 landmarks moved by pixel-centre affine ``m``; z scaled like x and y."""
    a = landmark_affine(m)
    xy = lm[:, :2].astype(np.float64) @ a[:, :2].T + a[:, 2]
    scale = math.sqrt(abs(np.linalg.det(a[:, :2])))
    z = lm[:, 2:3].astype(np.float64) * scale
    return np.concatenate([xy, z], axis=1).astype(np.float32)


def warp(src: np.ndarray, m: np.ndarray, size: tuple[int, int], *, border: int) -> np.ndarray:
    """Warp ``src`` ((H, W) or (H, W, C), uint8 or float32) by scale-and-shift ``m`` into
    ``size`` = (width, height), without aliasing when shrinking.

    ``cv2.warpAffine`` has no area filter (INTER_AREA acts as bilinear there), so a shrink is
    done as an exact integer box-average (``cv2.resize`` INTER_AREA over a pixel-aligned crop)
    followed by a gentle Gaussian for the remaining factor, then one bilinear warp. An
    enlargement is one bicubic warp. Only the part of ``src`` that lands in the output is read.
    """
    import cv2

    m = np.asarray(m, dtype=np.float64)
    s = math.sqrt(abs(np.linalg.det(m[:, :2])))
    h, w = src.shape[:2]
    # the output rectangle mapped back into src, plus a margin, clipped to src
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[-1, -1], [size[0], -1], [-1, size[1]], [size[0], size[1]]], np.float64)
    back = corners @ inv[:, :2].T + inv[:, 2]
    k = max(1, int(math.floor(1.0 / s + 1e-9))) if s < 1.0 else 1
    margin = 4 * k + 4
    x0 = int(max(0, math.floor(back[:, 0].min()) - margin))
    y0 = int(max(0, math.floor(back[:, 1].min()) - margin))
    x1 = int(min(w, math.ceil(back[:, 0].max()) + margin + 1))
    y1 = int(min(h, math.ceil(back[:, 1].max()) + margin + 1))
    if x1 - x0 < k or y1 - y0 < k:  # the output lies wholly outside src: keep a border strip
        x0, y0, x1, y1 = 0, 0, w, h
    roi = src[y0:y1, x0:x1]
    m2 = m.copy()
    if k > 1:
        rw, rh = (x1 - x0) // k, (y1 - y0) // k
        roi = cv2.resize(roi[: rh * k, : rw * k], (rw, rh), interpolation=cv2.INTER_AREA)
        # small pixel j covers src pixels x0 + k j .. x0 + k j + k - 1
        m2[:, :2] = m[:, :2] * k
        m2[:, 2] = m[:, :2] @ np.array([x0 + (k - 1) / 2.0, y0 + (k - 1) / 2.0]) + m[:, 2]
    else:
        m2[:, 2] = m[:, :2] @ np.array([x0, y0], np.float64) + m[:, 2]
    r = s * k
    if r < 0.95:
        sigma = 0.45 * math.sqrt(1.0 / (r * r) - 1.0)
        roi = cv2.GaussianBlur(roi, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    interp = cv2.INTER_CUBIC if r > 1.0 + 1e-6 else cv2.INTER_LINEAR
    return cv2.warpAffine(np.ascontiguousarray(roi), m2, size, flags=interp, borderMode=border)


def frame_photo(rgb: np.ndarray, m: np.ndarray, size: int = FRAME,
                alpha: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Warp a (H, W, 3) uint8 photo into the (size, size) frame by affine ``m``.

    Returns ``(image, valid, alpha)``: image (size, size, 3) uint8, mirrored at the photo's
    border where the frame reaches past it (see :func:`vcam.avatar.matting.fill_padding` for the
    final fill there); valid (size, size) float32, 1 where the pixel came from the photo, 0
    past its border; alpha (size, size) float32 or None, the photo's alpha warped likewise.
    """
    import cv2

    dsize = (size, size)
    m = np.asarray(m, np.float64)
    # Photos often end in a dark or damaged edge line (scans, vignettes, JPEG blocks): on each
    # side the frame reaches past, drop a thin strip so the mirror does not repeat that line.
    x0, y0, x1, y1 = _trim_edges(rgb.shape[1], rgb.shape[0], m, size)
    rgb = rgb[y0:y1, x0:x1]
    alpha = None if alpha is None else alpha[y0:y1, x0:x1]
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    image = warp(rgb, m, dsize, border=cv2.BORDER_REFLECT_101)
    h, w = rgb.shape[:2]
    # valid: the photo's extent, exactly (warping a ones image would blur its edge)
    inv = cv2.invertAffineTransform(m)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    inside = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    valid = inside.astype(np.float32)
    warped_alpha = None
    if alpha is not None:
        warped_alpha = np.clip(warp(alpha.astype(np.float32), m, dsize, border=cv2.BORDER_REPLICATE), 0, 1)
        warped_alpha *= valid
    return image, valid, warped_alpha


def _trim_edges(w: int, h: int, m: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """The photo's rectangle (x0, y0, x1, y1), less a thin strip on each side the frame passes."""
    import cv2

    inv = cv2.invertAffineTransform(m)
    corners = np.array([[-0.5, -0.5], [size - 0.5, size - 0.5]]) @ inv[:, :2].T + inv[:, 2]
    (fx0, fy0), (fx1, fy1) = corners.min(axis=0), corners.max(axis=0)
    b = max(2, round(0.004 * max(w, h)))
    if min(w, h) <= 8 * b:
        return 0, 0, w, h
    x0 = b if fx0 < -0.5 else 0
    y0 = b if fy0 < -0.5 else 0
    x1 = w - b if fx1 > w - 0.5 else w
    y1 = h - b if fy1 > h - 0.5 else h
    return x0, y0, x1, y1
