"""Rig: an enrolled portrait's landmarks -> the per-avatar tensors the render graph reads.

The rig is a set of maps over a 256x256 face-space grid (see :mod:`vcam.avatar.rig_layout`):

* smooth forward displacement fields, one per expression basis (smile, brows, gaze...),
  built from Gaussian bumps placed and scaled by the face's own landmarks;
* for the mouth and each eye, a local frame (along the mouth / eye line and across it) and
  per-column *knots* (upper lid or lip edge, lower edge, chin, ...). The render graph moves
  the knots with the motion and maps each output column piecewise-linearly back to the
  photo, so lips meet exactly on M/B/P and lids close exactly on a blink, even when the
  photo's mouth is open;
* a head weight and a depth map, for head rotation with parallax.

Everything is in pixels of the 512x512 frame. Pure numpy; built in a few ms per photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vcam.avatar import landmarks as lm
from vcam.avatar.mouth_colours import mouth_colours
from vcam.avatar.rig_layout import BASIS, CELL, FRAME, GRID_H, GRID_W, MAP_INDEX, MAPS, PARAM_INDEX, PARAMS, PATCH_H, PATCH_W


@dataclass(frozen=True, slots=True)
class Avatar:
    """Everything the render graph needs of one portrait (C-contiguous).

    image:  ``(1, 3, 512, 512) float32`` the framed photo, RGB 0..1.
    plate:  ``(1, 3, PATCH_H, PATCH_W) float32`` the background without the person under the
            moving window, RGB 0..1.
    rig_basis: ``(len(BASIS), 2 * GRID_H * GRID_W) float32``;
    rig_maps: ``(1, len(MAPS), GRID_H, GRID_W) float32``; rig_params: ``(1, len(PARAMS)) float32``.
    still:  ``(512, 512, 3) uint8`` the framed photo: the frame outside the moving window.
    mouth_view: ``(2, K) float32`` how open a face tracker sees the drawn mouth against its
            openness (:mod:`vcam.avatar.mouth_view`), or ``None`` (not measured, or not readable).
    """

    image: np.ndarray
    plate: np.ndarray
    rig_basis: np.ndarray
    rig_maps: np.ndarray
    rig_params: np.ndarray
    still: np.ndarray
    mouth_view: np.ndarray | None = None

    @property
    def patch_origin(self) -> tuple[int, int]:
        """``(x0, y0)``: where the moving window sits in the frame."""
        return (int(self.rig_params[0, PARAM_INDEX["patch_x0"]]), int(self.rig_params[0, PARAM_INDEX["patch_y0"]]))


def grid_points(x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates of the field grid's cells: two ``(GRID_H, GRID_W) float32`` (x, y).

    Cell ``(i, j)`` is the centre of the 2x2 pixel block at ``(x0 + 2j, y0 + 2i)``; pixel
    ``(x, y)`` has its centre at ``(x, y)``.
    """
    cx = x0 + (np.arange(GRID_W, dtype=np.float32) + 0.5) * CELL - 0.5
    cy = y0 + (np.arange(GRID_H, dtype=np.float32) + 0.5) * CELL - 0.5
    return np.meshgrid(cx, cy)


def patch_origin(face_center_x: float, eyes_y: float) -> tuple[int, int]:
    """Top-left corner of the moving window: centred on the face, inside the frame."""
    x0 = int(round(face_center_x - PATCH_W / 2))
    y0 = int(round(eyes_y - 0.47 * PATCH_H))
    return min(max(x0, 0), FRAME - PATCH_W), min(max(y0, 0), FRAME - PATCH_H)


def _bump(gx, gy, center, sigma, vec):
    """Gaussian bump of displacement ``vec`` (x, y) at ``center``: ``(2, G, G)``."""
    w = np.exp(-((gx - center[0]) ** 2 + (gy - center[1]) ** 2) / (2.0 * sigma * sigma))
    return np.stack([w * vec[0], w * vec[1]])


def _frame(origin, p_left, p_right):
    """Unit axes of a local frame: ex from ``p_left`` to ``p_right``, ey perpendicular (down)."""
    ex = (p_right - p_left) / max(np.linalg.norm(p_right - p_left), 1e-6)
    ey = np.array([-ex[1], ex[0]], np.float32)
    return origin, ex, ey


def _local(gx, gy, origin, ex, ey):
    dx, dy = gx - origin[0], gy - origin[1]
    return dx * ex[0] + dy * ex[1], dx * ey[0] + dy * ey[1]


def _profile(points, origin, ex, ey, a):
    """The contour ``points`` (k, 2) as b(a) in a local frame, evaluated at ``a`` (clamped ends)."""
    pa = (points[:, 0] - origin[0]) * ex[0] + (points[:, 1] - origin[1]) * ex[1]
    pb = (points[:, 0] - origin[0]) * ey[0] + (points[:, 1] - origin[1]) * ey[1]
    order = np.argsort(pa)
    return np.interp(a, pa[order], pb[order]).astype(np.float32)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mouth_maps(L, gx, gy, maps, params, face_h):
    c_r, c_l = L[lm.MOUTH_CORNER_RIGHT, :2], L[lm.MOUTH_CORNER_LEFT, :2]
    origin, ex, ey = _frame((c_r + c_l) / 2, c_r, c_l)
    width = float(np.linalg.norm(c_l - c_r))
    a, b = _local(gx, gy, origin, ex, ey)
    upper = _profile(L[list(lm.LIPS_INNER_UPPER), :2], origin, ex, ey, a)
    lower = _profile(L[list(lm.LIPS_INNER_LOWER), :2], origin, ex, ey, a)
    gap = np.maximum(lower - upper, 0.0)
    center_a = np.array([0.0], np.float32)
    upper_c = float(_profile(L[list(lm.LIPS_INNER_UPPER), :2], origin, ex, ey, center_a)[0])
    gap_c = max(float(_profile(L[list(lm.LIPS_INNER_LOWER), :2], origin, ex, ey, center_a)[0]) - upper_c, 0.0)
    if gap_c < 1.5:  # a closed mouth: one lip line, no sliver of a gap
        mid = (upper + lower) / 2
        upper, lower, gap, gap_c = mid, mid, np.zeros_like(mid), 0.0
    upper_frac = 0.25
    line = upper + upper_frac * gap
    inner_half = float(np.linalg.norm(L[78, :2] - L[308, :2])) / 2
    u = a / max(inner_half, 1.0)
    prof = np.clip(1.0 - u * u, 0.0, 1.0) ** 0.6
    # Chin: the jaw line as b(a); the jaw taper falls to 0 at the jaw angles.
    jaw_pts = L[list(lm.JAW), :2]
    chin = _profile(jaw_pts, origin, ex, ey, a)
    ja = np.abs((jaw_pts[:, 0] - origin[0]) * ex[0] + (jaw_pts[:, 1] - origin[1]) * ex[1])
    half_jaw = max(float(ja.max()), width)
    taper = np.clip(1.0 - (a / half_jaw) ** 2, 0.0, 1.0) ** 0.8
    sub = L[lm.SUBNASALE, :2]
    d_sn = float(abs((sub[0] - origin[0]) * ey[0] + (sub[1] - origin[1]) * ey[1]))
    line_c = upper_c + upper_frac * gap_c
    chin_c = float(_profile(jaw_pts, origin, ex, ey, center_a)[0])
    top = np.minimum(line - 0.75 * d_sn, upper - 2.0)
    chin = np.maximum(chin, lower + 4.0)
    bottom = chin + 0.45 * max(chin_c - line_c, 10.0)
    for name, arr in (("mb", b), ("mSa", top), ("mSul", upper), ("mSll", lower), ("mSch", chin),
                      ("mSb", bottom), ("mProf", prof), ("mJaw", taper), ("mU", u)):
        maps[MAP_INDEX[name]] = arr
    params[PARAM_INDEX["m_eyx"]], params[PARAM_INDEX["m_eyy"]] = ey
    params[PARAM_INDEX["jaw_px"]] = min(0.62 * width, 0.18 * face_h)
    params[PARAM_INDEX["lip_up_px"]] = 0.10 * width
    params[PARAM_INDEX["lip_down_px"]] = 0.14 * width
    params[PARAM_INDEX["src_gap_px"]] = gap_c
    params[PARAM_INDEX["upper_frac"]] = upper_frac
    return width, gap_c


def _eye_maps(L, image, gx, gy, maps, params, prefix, left_idx, right_idx, upper_idx, lower_idx, brow_idx):
    p_left, p_right = L[left_idx, :2], L[right_idx, :2]
    origin, ex, ey = _frame((p_left + p_right) / 2, p_left, p_right)
    a, b = _local(gx, gy, origin, ex, ey)
    upper = _profile(L[list(upper_idx), :2], origin, ex, ey, a)
    lower = _profile(L[list(lower_idx), :2], origin, ex, ey, a)
    lower = np.maximum(lower, upper)
    half_w = float(np.linalg.norm(p_right - p_left)) / 2
    gap_c = float(np.max(lower - upper))
    lid = max(1.3 * gap_c, 0.45 * half_w)
    # The lid skin that slides down on a blink stops well below the brow.
    brow = _profile(L[list(brow_idx), :2], origin, ex, ey, a)
    top = np.maximum(upper - lid, upper + 0.55 * np.minimum(brow - upper, -2.0))
    # On a blink the lid skin slides down from most of the way up to the brow: the closed
    # lid's cover then fades in over a tall stretch of skin and reads as a lid, not a patch.
    slide = np.maximum(upper - 1.5 * lid, upper + 0.82 * np.minimum(brow - upper, -2.0))
    bot = lower + max(0.9 * gap_c, 0.35 * half_w)
    for name, arr in (("b", b), ("St", slide), ("Sue", upper), ("Sle", lower), ("Sbt", bot)):
        maps[MAP_INDEX[prefix + name]] = arr
    # Closed-lid colour: the lit skin around the eye. Above the lid (between crease and brow)
    # and below it (the top of the cheek), the brighter half of each band; the brighter band
    # wins (deep-set eyes have a shadowed upper band), slightly shaded as a lid is.
    h = np.maximum(lower - upper, 0.25 * half_w)
    bands = ((b > top + 0.15 * (upper - top)) & (b < upper - 0.55 * (upper - top)),
             (b > lower + 0.4 * h) & (b < lower + 1.2 * h))
    colour = np.full(3, 0.6, np.float32)
    best = -1.0
    for band in bands:
        ii, jj = np.nonzero(band & (np.abs(a) < 0.7 * half_w))
        if ii.size < 4:
            continue
        py_, px_ = np.round(gy[ii, jj]).astype(int), np.round(gx[ii, jj]).astype(int)
        px = image[np.clip(py_, 0, FRAME - 1), np.clip(px_, 0, FRAME - 1)].astype(np.float32) / 255.0
        lum = px.mean(axis=1)
        c = np.median(px[lum >= np.median(lum)], axis=0)
        if float(c.mean()) > best:
            best, colour = float(c.mean()), c * 0.88
    for k, ch in enumerate("rgb"):
        params[PARAM_INDEX[f"{prefix}lid_{ch}"]] = float(colour[k])
    params[PARAM_INDEX[prefix + "_eyx"]], params[PARAM_INDEX[prefix + "_eyy"]] = ey
    return origin, half_w, (upper, lower, a, b)


def _iris(L, idx, fallback):
    if L.shape[0] > max(idx):
        pts = L[list(idx), :2]
        return pts[0], float(np.mean(np.linalg.norm(pts[1:] - pts[0], axis=1)))
    return fallback, 0.0


def _mouth_corner_fields(gx, gy, c_r, c_l, W):
    """Smile and frown fields of each mouth corner: ``{"smileL": (2, G, G), ...}``.

    They act on the corner and fade to nothing at the mouth's centre line, so a smile curves
    the mouth up at its corners instead of lifting the whole mouth; the skin around the
    corner (cheek above it, chin below) goes along. A smile also bunches the cheek up and
    out above the corner (the nasolabial fold deepens).
    """
    origin, ex, ey = _frame((c_r + c_l) / 2, c_r, c_l)
    a, b = _local(gx, gy, origin, ex, ey)
    half = 0.5 * W
    out = {}
    for side, sa in (("L", 1.0), ("R", -1.0)):
        u = sa * a / half  # 0 at the centre line, 1 at this corner
        reach = _smoothstep(-0.1, 1.0, u)
        g = np.exp(-((u - 1.0) * half) ** 2 / (2 * (0.38 * W) ** 2) - b ** 2 / (2 * (0.42 * W) ** 2)) * reach

        def field(w, va, vb):
            vx, vy = va * ex + vb * ey
            return np.stack([w * vx, w * vy])

        cheek = np.exp(-((u - 1.3) * half) ** 2 / (2 * (0.35 * W) ** 2) - (b + 0.55 * W) ** 2 / (2 * (0.35 * W) ** 2))
        out["smile" + side] = (field(g, 0.07 * sa * W, -0.15 * W)
                               + field(cheek * _smoothstep(0.0, 0.6, u), 0.03 * sa * W, -0.06 * W))
        out["frown" + side] = field(g, 0.02 * sa * W, 0.13 * W)
    return out


def _brow_fields(L, gx, gy, iod, face_c, r_origin, l_origin):
    """Brow fields: ``browDownL/R``, ``browOuterUpL/R`` and ``browInnerUp`` (2, G, G) each.

    Each brow moves as a whole (its inner or outer part more), with the forehead above it.
    Below the brow's upper edge the motion fades out over the brow and the lid skin and is
    zero at the upper lid, so the eye itself stays put (eyeWide/eyeSquint move the lids).
    The amplitude is capped by the room between lid and brow, so the lid skin never folds.
    """
    out = {}
    inner_up = np.zeros((2,) + gx.shape, np.float32)
    for side, origin, p0, p1, brow_up, brow_lo, lid in (
            ("R", r_origin, lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.RIGHT_BROW, lm.RIGHT_BROW_LOWER,
             lm.RIGHT_EYE_UPPER),
            ("L", l_origin, lm.LEFT_EYE_INNER, lm.LEFT_EYE_OUTER, lm.LEFT_BROW, lm.LEFT_BROW_LOWER,
             lm.LEFT_EYE_UPPER)):
        origin, ex, ey = _frame(origin, L[p0, :2], L[p1, :2])
        a, b = _local(gx, gy, origin, ex, ey)
        top_pts, lid_pts = L[list(brow_up), :2], L[list(lid), :2]
        mid_pts = (top_pts + L[list(brow_lo), :2]) / 2
        lid_b = _profile(lid_pts, origin, ex, ey, a)
        top = np.minimum(_profile(top_pts, origin, ex, ey, a), lid_b - 4.0)  # the brow's upper edge
        # along the brow: 0 at its inner end, 1 at its outer end
        pa = (mid_pts[:, 0] - origin[0]) * ex[0] + (mid_pts[:, 1] - origin[1]) * ex[1]
        a_out, a_in = float(pa[0]), float(pa[-1])
        t = (a - a_in) / (a_out - a_in)
        env = np.exp(-np.minimum(t, 0.0) ** 2 / (2 * 0.25 ** 2) - np.maximum(t - 1.0, 0.0) ** 2 / (2 * 0.4 ** 2))
        # 0 at the upper lid, 1 at the brow's upper edge (half linear, half smoothstep: the
        # steepest slope is 1.25 / room instead of 1.5 / room), fading slowly up the forehead
        ramp = np.clip((b - lid_b) / np.minimum(top - lid_b, -1e-3), 0.0, 1.0)
        vert = (0.5 * ramp + 0.5 * ramp * ramp * (3.0 - 2.0 * ramp)) * np.exp(
            -np.maximum(top - b, 0.0) ** 2 / (2 * (0.5 * iod) ** 2))
        # The cap is a smooth function of the column, so it adds no steep sideways gradient.
        a_line = np.linspace(float(a.min()), float(a.max()), 256, dtype=np.float32)
        room = np.maximum(_profile(lid_pts, origin, ex, ey, a_line)
                          - np.minimum(_profile(top_pts, origin, ex, ey, a_line),
                                       _profile(lid_pts, origin, ex, ey, a_line) - 4.0), 4.0)
        cap = np.minimum(0.2 * iod, 0.5 * room)
        k = np.exp(-0.5 * (np.arange(-40, 41) * (a_line[1] - a_line[0]) / (0.06 * iod)) ** 2)
        cap = np.lib.stride_tricks.sliding_window_view(np.pad(cap, 8, mode="edge"), 17).min(axis=1)
        cap = np.convolve(np.pad(cap, 40, mode="edge"), k / k.sum(), mode="valid")
        amp = np.interp(a, a_line, cap).astype(np.float32)
        w_out = _smoothstep(0.15, 0.85, t)
        w_in = 1.0 - w_out
        to_nose = np.array([float(np.sign(face_c[0] - L[brow_up[-1], 0])), 0.0], np.float32)
        up = -ey

        def field(w, vec):
            return np.stack([w * vec[0], w * vec[1]]).astype(np.float32)

        shape = vert * env * amp
        out["browOuterUp" + side] = field(shape * w_out, up)
        inner_up += field(shape * w_in, up) + field(vert * env * w_in, 0.025 * iod * to_nose)
        # Lowered brows: the inner end drops more, and the brow heads are drawn toward the
        # nose (with the skin above them), capped by the room between lid and brow.
        pull = np.exp(-np.minimum(t, 0.0) ** 2 / (2 * 0.3 ** 2) - np.maximum(t - 0.3, 0.0) ** 2 / (2 * 0.35 ** 2))
        lo_b = np.minimum(_profile(L[list(brow_lo), :2], origin, ex, ey, a), lid_b - 3.0)
        ramp = np.clip((b - lid_b) / np.minimum(lo_b - lid_b, -1e-3), 0.0, 1.0)
        vert_lo = (0.5 * ramp + 0.5 * ramp * ramp * (3.0 - 2.0 * ramp)) * np.exp(
            -np.maximum(lo_b - b, 0.0) ** 2 / (2 * (0.6 * iod) ** 2))
        squeeze = np.minimum(0.2 * iod, 0.42 * np.maximum(lid_b - lo_b, 3.0))
        out["browDown" + side] = (field(shape * (0.27 + 0.42 * np.clip(1.0 - t, 0.0, 1.0)), -up)
                                  + field(0.5 * vert_lo * pull * squeeze, to_nose))
    out["browInnerUp"] = inner_up
    # Corrugator squeeze: frowning gathers the skin between the brows toward the midline,
    # from just above the brow heads down to the root of the nose, so the brow heads and
    # the glabella narrow together (face trackers read a frown from that band, not from
    # the brows alone). A compression about the midline, each side in its own field.
    mid = (L[lm.RIGHT_BROW_LOWER[-1], :2] + L[lm.LEFT_BROW_LOWER[-1], :2]) / 2
    mid, ex, ey = _frame(mid, L[lm.RIGHT_EYE_OUTER, :2], L[lm.LEFT_EYE_OUTER, :2])
    u, v = _local(gx, gy, mid, ex, ey)
    band = np.clip(np.minimum(v + 0.1 * iod, 0.3 * iod - v) / (0.15 * iod), 0.0, 1.0)
    # 0.5: at browDown 0.72 (angry at 0.8) the band narrows by about a third at the midline
    # and the inner eye corners come in by ~0.05 inter-ocular distances. The displacement
    # stays monotonic across (0.5 < 1) and only shears along the band's edges: no fold.
    squeeze = (-0.5 * u * np.exp(-(u / (0.65 * iod)) ** 2) * band).astype(np.float32)
    side_l = 1.0 / (1.0 + np.exp(np.clip(-u / (0.03 * iod), -60.0, 60.0)))  # the subject's left: image right
    for side, w in (("L", side_l), ("R", 1.0 - side_l)):
        out["browDown" + side] += np.stack([squeeze * w * ex[0], squeeze * w * ex[1]]).astype(np.float32)
    return out


#: How dark the frown's creases and the brow ridge's shadow get at browDown 1 (share of the light).
FROWN_CREASE, FROWN_RIDGE = 0.2, 0.18


def _frown_shade(L, gx, gy, iod):
    """``(G, G) float32`` 0..1: where a frown darkens the skin, at full strength.

    Two vertical creases between the brow heads (the glabellar lines), from the root of the
    nose up past the brows, and the brow ridge's shadow over each inner upper lid. Drawn from
    the landmarks, not the photo: a painting without visible eyebrows frowns too.
    """
    mid = (L[lm.RIGHT_BROW_LOWER[-1], :2] + L[lm.LEFT_BROW_LOWER[-1], :2]) / 2
    mid, ex, ey = _frame(mid, L[lm.RIGHT_EYE_OUTER, :2], L[lm.LEFT_EYE_OUTER, :2])
    u, v = _local(gx, gy, mid, ex, ey)  # v: down the face
    along = _smoothstep(-0.35 * iod, -0.15 * iod, v) * (1.0 - _smoothstep(0.05 * iod, 0.2 * iod, v))
    creases = np.zeros_like(u)
    for side in (-1.0, 1.0):
        creases = np.maximum(creases, np.exp(-0.5 * ((u - side * 0.075 * iod) / (0.03 * iod)) ** 2))
    shade = FROWN_CREASE * creases * along
    for inner, upper in ((lm.RIGHT_EYE_INNER, lm.RIGHT_EYE_UPPER), (lm.LEFT_EYE_INNER, lm.LEFT_EYE_UPPER)):
        lid = L[list(upper), :2].mean(axis=0)
        c = 0.6 * L[inner, :2] + 0.4 * lid + np.array([0.0, -0.12 * iod], np.float32)
        ridge = np.exp(-(((gx - c[0]) / (0.2 * iod)) ** 2 + ((gy - c[1]) / (0.09 * iod)) ** 2) / 2.0)
        shade = np.maximum(shade, FROWN_RIDGE * ridge)
    return shade.astype(np.float32)


def build_rig(image: np.ndarray, landmarks: np.ndarray, person_mask: np.ndarray, plate: np.ndarray) -> Avatar:
    """Make an :class:`Avatar` from an enrolled portrait.

    Parameters
    ----------
    image: ``(512, 512, 3) uint8`` RGB framed photo.
    landmarks: ``(478, 3) float32`` MediaPipe face mesh in frame pixels (z: smaller = nearer).
    person_mask: ``(512, 512) float32`` 0..1.
    plate: ``(512, 512, 3) uint8`` background without the person.
    """
    L = np.array(landmarks, np.float32)
    L[:, :2] -= 0.5  # MediaPipe's (0, 0) is a pixel's corner; the graph's is its centre
    oval = L[list(lm.FACE_OVAL), :2]
    face_w = float(oval[:, 0].max() - oval[:, 0].min())
    face_h = float(np.linalg.norm(L[lm.FOREHEAD, :2] - L[lm.CHIN, :2]))
    face_c = oval.mean(axis=0)
    eyes_y = float((L[lm.RIGHT_EYE_OUTER, 1] + L[lm.LEFT_EYE_OUTER, 1]) / 2)
    x0, y0 = patch_origin(float(face_c[0]), eyes_y)
    gx, gy = grid_points(x0, y0)
    maps = np.zeros((len(MAPS), GRID_H, GRID_W), np.float32)
    params = np.zeros((len(PARAMS),), np.float32)
    params[PARAM_INDEX["patch_x0"]], params[PARAM_INDEX["patch_y0"]] = x0, y0
    maps[MAP_INDEX["gx"]], maps[MAP_INDEX["gy"]] = gx, gy

    m_width, gap_c = _mouth_maps(L, gx, gy, maps, params, face_h)
    r_origin, r_half, r_geo = _eye_maps(L, image, gx, gy, maps, params, "r", lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER,
                                        lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, lm.RIGHT_BROW_LOWER)
    l_origin, l_half, l_geo = _eye_maps(L, image, gx, gy, maps, params, "l", lm.LEFT_EYE_INNER, lm.LEFT_EYE_OUTER,
                                        lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, lm.LEFT_BROW_LOWER)
    iod = float(np.linalg.norm(l_origin - r_origin))

    # --- smooth expression fields -------------------------------------------------------
    W = m_width
    c_r, c_l = L[lm.MOUTH_CORNER_RIGHT, :2], L[lm.MOUTH_CORNER_LEFT, :2]
    up_c = L[0, :2]
    lo_c = L[17, :2]
    basis = {}
    basis.update(_mouth_corner_fields(gx, gy, c_r, c_l, W))
    for side, corner, sx in (("L", c_l, 1.0), ("R", c_r, -1.0)):
        basis["stretch" + side] = _bump(gx, gy, corner, 0.45 * W, (0.10 * sx * W, 0.03 * W))
        eye_o = l_origin if side == "L" else r_origin
        # The cheek rises under the eye (a smile, a squint) and pushes the lower lid up.
        basis["cheek" + side] = _bump(gx, gy, eye_o + np.array([0.0, 0.36 * iod], np.float32), 0.24 * iod,
                                      (0.0, -0.085 * iod))
    basis["pucker"] = (_bump(gx, gy, c_l, 0.5 * W, (-0.16 * W, 0.0)) + _bump(gx, gy, c_r, 0.5 * W, (0.16 * W, 0.0))
                       + _bump(gx, gy, up_c, 0.35 * W, (0.0, -0.03 * W)) + _bump(gx, gy, lo_c, 0.35 * W, (0.0, 0.03 * W)))
    basis["funnel"] = _bump(gx, gy, c_l, 0.5 * W, (-0.10 * W, 0.0)) + _bump(gx, gy, c_r, 0.5 * W, (0.10 * W, 0.0))
    basis["press"] = _bump(gx, gy, up_c, 0.45 * W, (0.0, 0.03 * W)) + _bump(gx, gy, lo_c, 0.45 * W, (0.0, -0.05 * W))
    basis.update(_brow_fields(L, gx, gy, iod, face_c, r_origin, l_origin))
    maps[MAP_INDEX["frown"]] = _frown_shade(L, gx, gy, iod)

    for side, iris_idx, origin, half, geo in (("R", lm.RIGHT_IRIS, r_origin, r_half, r_geo),
                                              ("L", lm.LEFT_IRIS, l_origin, l_half, l_geo)):
        center, radius = _iris(L, iris_idx, origin)
        radius = radius if radius > 0.5 else 0.22 * half
        upper, lower, ea, eb = geo
        soft = 0.3 * np.maximum(lower - upper, 1.0) + 1.0  # the iris slides under the lids
        inside = (_smoothstep(upper - 0.5, upper + soft, eb) * _smoothstep(-lower - 0.5, -lower + soft, -eb)
                  * _smoothstep(-half, -0.7 * half, -np.abs(ea)))
        w = np.exp(-((gx - center[0]) ** 2 + (gy - center[1]) ** 2) / (2 * (1.6 * radius) ** 2)) * inside
        basis["gaze" + side + "x"] = np.stack([w * 0.5 * half, w * 0.0])
        basis["gaze" + side + "y"] = np.stack([w * 0.0, w * 0.35 * max(float(np.max(lower - upper)), 1.0)])
    rig_basis = np.stack([basis[name].reshape(-1) for name in BASIS]).astype(np.float32)

    # --- head weight and depth ------------------------------------------------------------
    chin_y = float(L[lm.CHIN, 1])
    hc = np.array([face_c[0], face_c[1] - 0.12 * face_h], np.float32)
    r = np.sqrt(((gx - hc[0]) / (0.78 * face_w)) ** 2 + ((gy - hc[1]) / (0.80 * face_h)) ** 2)
    below_chin = 1.0 - _smoothstep(chin_y + 0.02 * face_h, chin_y + 0.30 * face_h, gy)
    head = (1.0 - _smoothstep(1.0, 1.3, r)) * below_chin
    # The whole silhouette above the neck (hair, a hat, ears, glasses) moves with the head as
    # one piece, and the motion fades out over ~24 px of background round it (the head can
    # advance into that; the background itself is never dragged: the graph shows the plate
    # wherever the head moved and what it sampled is background).
    import cv2

    # The person mask on the grid: the head weight's silhouette, and the graph's alpha map.
    maps[MAP_INDEX["alpha"]] = cv2.remap(np.ascontiguousarray(person_mask, np.float32), gx, gy, cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE)
    solid = (maps[MAP_INDEX["alpha"]] > 0.5).astype(np.float32)
    grown = cv2.dilate(solid, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13)))
    silhouette = np.clip(cv2.GaussianBlur(grown, (0, 0), 3.0) * 1.05, 0.0, 1.0)
    head = np.maximum(head, silhouette * below_chin)
    # Nothing moves at the window's edges (the still frame continues there), except where
    # the window meets the frame's own border.
    margin = 24.0
    for lo, hi, coord in ((x0, x0 + PATCH_W, gx), (y0, y0 + PATCH_H, gy)):
        if lo > 0:
            head = head * _smoothstep(lo + 2.0, lo + margin, coord)
        if hi < FRAME:
            head = head * (1.0 - _smoothstep(hi - margin, hi - 2.0, coord))
    rz = 0.55 * face_w
    depth = rz * np.sqrt(np.clip(1.0 - np.minimum(r, 1.0) ** 2, 0.0, 1.0))
    # Face detail from the mesh's own depth (smaller z = nearer), splatted onto the grid.
    # The mesh's median depth sits about at the ellipsoid's front.
    residual = rz - (L[:468, 2] - np.median(L[:468, 2]))
    small = 64
    sx = (np.arange(small, dtype=np.float32) + 0.5) * (FRAME / small)
    qx, qy = np.meshgrid(sx, sx)
    sig = 0.06 * face_w
    wsum = np.zeros((small, small), np.float32)
    vsum = np.zeros((small, small), np.float32)
    ell_at_pts = rz * np.sqrt(np.clip(1.0 - (((L[:468, 0] - hc[0]) / (0.78 * face_w)) ** 2
                                             + ((L[:468, 1] - hc[1]) / (0.80 * face_h)) ** 2), 0.0, 1.0))
    res = residual - ell_at_pts
    for k in range(0, 468, 64):
        px, py = L[k:min(k + 64, 468), 0, None, None], L[k:min(k + 64, 468), 1, None, None]
        w = np.exp(-((qx - px) ** 2 + (qy - py) ** 2) / (2 * sig * sig))
        wsum += w.sum(0)
        vsum += (w * res[k:min(k + 64, 468), None, None]).sum(0)
    detail = vsum / np.maximum(wsum, 1e-6) * np.clip(wsum / 0.5, 0.0, 1.0)
    detail = cv2.remap(cv2.resize(detail, (FRAME, FRAME), interpolation=cv2.INTER_LINEAR), gx, gy,
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    maps[MAP_INDEX["head"]] = head
    maps[MAP_INDEX["depth"]] = np.maximum(depth + detail, 0.0)
    params[PARAM_INDEX["pivot_x"]], params[PARAM_INDEX["pivot_y"]] = face_c

    sealed = mouth_colours(image, L, params, gap_c)
    img = np.ascontiguousarray(sealed.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
    pl = plate[y0:y0 + PATCH_H, x0:x0 + PATCH_W].transpose(2, 0, 1)[None]
    pl = np.ascontiguousarray(pl, dtype=np.float32) / np.float32(255.0)
    return Avatar(image=img, plate=pl, rig_basis=np.ascontiguousarray(rig_basis), rig_maps=np.ascontiguousarray(maps[None]),
                  rig_params=params[None].copy(), still=np.ascontiguousarray(image, dtype=np.uint8))
