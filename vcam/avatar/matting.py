"""The person mask and the clean background plate of a framed portrait (numpy + OpenCV only).

The mask is the union of a segmentation (MediaPipe selfie segmentation, run by the caller)
and a head region drawn from the face mesh, so paintings and illustrations, where
segmentation often fails, still get their head, hair and neck.
"""

from __future__ import annotations

import numpy as np

from vcam.avatar import landmarks as L

#: Hair above the forehead landmark, as a fraction of the forehead-to-chin height.
HAIR_UP = 0.35
#: How far below the chin the neck region reaches, as a fraction of that height.
NECK_DOWN = 0.45


def _face_axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Unit 'down' and 'right' image vectors of the face (keeps its roll), its height and width."""
    top = lm[L.FOREHEAD, :2].astype(np.float64)
    chin = lm[L.CHIN, :2].astype(np.float64)
    down = chin - top
    height = float(np.linalg.norm(down)) or 1.0
    down /= height
    right = np.array([down[1], -down[0]])  # image right, for an upright face (1, 0)
    oval = lm[list(L.FACE_OVAL), :2].astype(np.float64)
    across = oval @ right
    width = float(across.max() - across.min()) or 1.0
    return down, right, height, width


def head_region(lm: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8 0/1: face oval (dilated), hair above it and the neck below it.

    ``lm`` is (478, 3) in the frame's pixels.
    """
    import cv2

    down, right, height, width = _face_axes(lm)
    oval = lm[list(L.FACE_OVAL), :2].astype(np.float64)
    centre = oval.mean(axis=0)
    region = np.zeros((size, size), np.uint8)
    # face oval pushed out by ~6% of the face width
    grown = oval + 0.06 * width * _unit(oval - centre)
    cv2.fillConvexPoly(region, _i32(grown), 1, lineType=cv2.LINE_8)
    # cranium and hair: the upper half of an ellipse over the oval's centre
    top = lm[L.FOREHEAD, :2].astype(np.float64)
    up_len = float((centre - top) @ down) + HAIR_UP * height
    angle = float(np.degrees(np.arctan2(right[1], right[0])))
    hull = cv2.ellipse2Poly(_ipt(centre), (int(round(0.58 * width)), int(round(up_len))),
                            int(round(angle)), 180, 360, 8)
    cv2.fillPoly(region, [np.vstack([hull, _i32(centre[None])])], 1)
    # neck: from the jaw's middle down past the chin
    jaw = lm[list(L.JAW), :2].astype(np.float64)
    chin = lm[L.CHIN, :2].astype(np.float64)
    half = 0.21 * width
    upper = chin - 0.25 * height * down
    lower = chin + NECK_DOWN * height * down
    neck = np.array([upper - half * right, upper + half * right,
                     lower + 1.15 * half * right, lower - 1.15 * half * right])
    cv2.fillConvexPoly(region, _i32(neck), 1)
    cv2.fillConvexPoly(region, _i32(np.vstack([jaw, chin[None]])), 1)
    return region


def person_mask(seg: np.ndarray | None, lm: np.ndarray, image: np.ndarray,
                alpha: np.ndarray | None = None) -> np.ndarray:
    """(S, S) float32 0..1 person mask with a soft edge of a few pixels.

    seg:   (S, S) float32 segmentation confidence, or None.
    lm:    (478, 3) landmarks in frame pixels.
    image: (S, S, 3) uint8 framed image, the guide for snapping the edge.
    alpha: (S, S) float32 framed alpha of the photo, or None; when given it decides the
           outline (the user already cut the person out) and segmentation is ignored.
    """
    import cv2

    size = image.shape[0]
    head = head_region(lm, size)
    if alpha is not None:
        hard = (alpha > 0.5).astype(np.uint8)
        face_only = np.zeros_like(head)
        cv2.fillConvexPoly(face_only, _i32(lm[list(L.FACE_OVAL), :2]), 1)
        hard |= face_only
    else:
        hard = head.copy()
        if seg is not None:
            hard |= (seg > 0.5).astype(np.uint8)
    hard = _keep_touching(hard, head)
    hard = _fill_holes(hard)
    hard = cv2.morphologyEx(hard, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    hard |= head if alpha is None else face_only
    soft = hard.astype(np.float32)
    soft = _snap_edge(soft, image)
    if alpha is not None:
        soft = np.maximum(np.minimum(soft, np.maximum(alpha, head.astype(np.float32))), face_only)
    soft = cv2.GaussianBlur(soft, (0, 0), 1.0)
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def clean_plate(image: np.ndarray, mask: np.ndarray, *, grow: int = 3, texture_px: int = 56) -> np.ndarray:
    """(S, S, 3) uint8: ``image`` with the person (``mask`` > 0.004, grown by ``grow`` px) filled in.

    What a moving head uncovers is the band just inside the person's outline, so that band
    is filled with the background's own texture: each hole pixel takes the background pixel
    mirrored across its nearest point of the outline (up to ``texture_px`` deep). Deeper in,
    or where the mirror falls outside the frame or into the person, a push-pull pyramid (a
    smooth membrane of the surrounding colours) fills the rest. Outside the hole the plate is
    the image itself, pixel for pixel.
    """
    import cv2

    size = image.shape[0]
    hole = (mask > 0.004).astype(np.uint8)
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    if not hole.any():
        return image.copy()
    known = 1.0 - hole.astype(np.float32)
    f = image.astype(np.float32)
    small = size // 4
    ks = cv2.resize(known, (small, small), interpolation=cv2.INTER_AREA)
    fs = cv2.resize(f * known[:, :, None], (small, small), interpolation=cv2.INTER_AREA)
    filled = cv2.GaussianBlur(_push_pull(fs, ks), (0, 0), 1.5)
    smooth = cv2.resize(filled, (size, size), interpolation=cv2.INTER_CUBIC)
    mirrored, reach = _mirror_fill(f, hole, texture_px)
    w = np.clip((texture_px - reach) / (0.3 * texture_px), 0.0, 1.0)[:, :, None]
    fill = mirrored * w + smooth * (1.0 - w)
    out = np.where(hole[:, :, None] > 0, fill, f)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _mirror_fill(f: np.ndarray, hole: np.ndarray, max_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel of ``hole`` (S, S) uint8 0/1 -> the colour of ``f`` (S, S, 3) float32 at its
    mirror image across the nearest pixel outside the hole, and how far that mirror reaches
    (S, S) float32 px: ``max_px`` or more where the mirror is unusable (outside the frame, in
    the hole, or deeper than ``max_px``)."""
    import cv2

    size = hole.shape[0]
    dist, labels = cv2.distanceTransformWithLabels(hole, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    zy, zx = np.nonzero(hole == 0)
    lx = np.zeros(labels.max() + 1, np.float32)
    ly = np.zeros_like(lx)
    lx[labels[zy, zx]], ly[labels[zy, zx]] = zx, zy
    py, px = np.mgrid[0:size, 0:size].astype(np.float32)
    bx, by = lx[labels], ly[labels]
    sx, sy = 2.0 * bx - px, 2.0 * by - py
    inside = (sx >= 0) & (sx <= size - 1) & (sy >= 0) & (sy <= size - 1)
    sxi = np.clip(np.round(sx), 0, size - 1).astype(np.int32)
    syi = np.clip(np.round(sy), 0, size - 1).astype(np.int32)
    usable = inside & (hole[syi, sxi] == 0)
    # A mirror that lands in the hole (a concave outline) gets a second chance: half as far.
    hx, hy = 1.5 * bx - 0.5 * px, 1.5 * by - 0.5 * py
    hxi = np.clip(np.round(hx), 0, size - 1).astype(np.int32)
    hyi = np.clip(np.round(hy), 0, size - 1).astype(np.int32)
    second = ~usable & (hole[hyi, hxi] == 0)
    mx = np.where(second, hx, sx).astype(np.float32)
    my = np.where(second, hy, sy).astype(np.float32)
    out = cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    reach = np.where(usable | second, dist, float(max_px) * 2.0).astype(np.float32)
    # Smooth the reach so the hand-over to the smooth fill has no seams of its own.
    reach = cv2.GaussianBlur(reach, (0, 0), 2.0)
    return out, reach


def fill_padding(image: np.ndarray, valid: np.ndarray, person: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8: ``image`` with its padding (``valid`` < 0.5) filled plausibly.

    image:  (S, S, 3) uint8 frame, mirrored past the photo's border.
    valid:  (S, S) float32, 1 inside the photo.
    person: (S, S) float32 0..1, a first person mask (inside the photo only).
    lm:     (478, 3) landmarks in frame pixels.

    Right at the border the mirror image stays (blurred), so nothing shows a hard edge. Further
    out, above the shoulders the padding continues only the background (so a head cut by the
    top of the photo does not get a mirrored twin), while below the chin what the photo shows
    under the chin continues, blurred (the body goes on downwards; a small head in a large
    photo does not get a twin under it either).
    """
    import cv2

    inside = valid >= 0.5
    if inside.all():
        return image
    size = image.shape[0]
    d = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5)
    f = image.astype(np.float32)
    near = cv2.GaussianBlur(f, (0, 0), 3.0, borderType=cv2.BORDER_REFLECT_101)
    body = cv2.GaussianBlur(cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA), (0, 0), 2.0)
    body = cv2.resize(body, (size, size), interpolation=cv2.INTER_CUBIC)
    grown = cv2.dilate((person > 0.1).astype(np.uint8), np.ones((9, 9), np.uint8))
    w_bg = inside.astype(np.float32) * (1.0 - grown.astype(np.float32))
    # Above the chin the padding continues what the photo's edge shows there: hair cut by the
    # top of the photo goes on upwards (a flat cut with background above reads as a band),
    # the background beside the head goes on sideways.
    bg = _smooth_fill(f, inside.astype(np.float32), 4, 1.5) if w_bg.mean() > 0.01 else body
    down, _, height, _ = _face_axes(lm)
    chin_y = float(lm[L.CHIN, 1])
    # Below the chin the padding continues what the photo shows there (neck, shoulders,
    # background), not the mirror image, which past a small head would repeat the head.
    rows = np.arange(size, dtype=np.float32)[:, None]
    w_below = inside.astype(np.float32) * (rows > chin_y + 0.1 * height)
    if w_below.mean() > 0.005:
        body = _smooth_fill(f, w_below, 8, 1.0)
    ys = np.arange(size, dtype=np.float32)[:, None, None]
    w_body = np.clip((ys - chin_y) / max(0.4 * height, 1.0), 0.0, 1.0)
    far = bg * (1.0 - w_body) + body * w_body
    w_near = np.clip(d / 4.0, 0.0, 1.0)[:, :, None]
    w_far = np.clip((d - 3.0) / 14.0, 0.0, 1.0)[:, :, None]
    out = f * (1.0 - w_near) + near * w_near
    out = out * (1.0 - w_far) + far * w_far
    # The smooth fill carries the colours on; the mirror image's fine detail (grain, hair,
    # cloth, brush strokes) is laid over it, so the padding is not a flat, smeared band. Only
    # the detail: the mirror's shapes (a second chin, a twin of the hair) would show.
    detail = f - cv2.GaussianBlur(f, (0, 0), 2.5, borderType=cv2.BORDER_REFLECT_101)
    fade = (np.clip(1.0 - d / 160.0, 0.4, 1.0) * (1.0 - 0.6 * w_body[:, :, 0]))[:, :, None]
    out = out + detail * (w_near * fade)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _smooth_fill(f: np.ndarray, weight: np.ndarray, shrink: int, blur: float) -> np.ndarray:
    """(S, S, 3) float32: the colours of ``f`` where ``weight`` (S, S) is 1, spread smoothly
    everywhere else (push-pull at 1/``shrink`` of the size, blurred, scaled back up)."""
    import cv2

    size = f.shape[0]
    small = size // shrink
    ws = cv2.resize(weight, (small, small), interpolation=cv2.INTER_AREA)
    cs = cv2.resize(f * weight[:, :, None], (small, small), interpolation=cv2.INTER_AREA)
    out = cv2.GaussianBlur(_push_pull(cs, ws), (0, 0), blur)
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_CUBIC)


def _push_pull(premult: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill where ``weight`` is 0: (h, w, 3) colour premultiplied by (h, w) weight -> (h, w, 3)."""
    import cv2

    if weight.min() > 0.999:
        return _unpremultiply(premult, weight, fallback=premult)
    if min(weight.shape) <= 2:  # coarsest level: the known pixels' mean colour fills the rest
        total = float(weight.sum())
        mean = premult.reshape(-1, 3).sum(axis=0) / total if total > 1e-6 else np.full(3, 128.0)
        return _unpremultiply(premult, weight, fallback=np.broadcast_to(mean.astype(np.float32), premult.shape))
    h, w = weight.shape
    cw = cv2.resize(weight, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    cc = cv2.resize(premult, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    if cw.max() <= 0:  # nothing known at all: mid grey
        return np.full_like(premult, 128.0)
    coarse = _push_pull(cc, cw)
    coarse_up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    fine = _unpremultiply(premult, weight, fallback=coarse_up)
    a = np.clip(weight, 0.0, 1.0)[:, :, None]
    return fine * a + coarse_up * (1.0 - a)


def _unpremultiply(premult: np.ndarray, weight: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    w = weight[:, :, None]
    return np.where(w > 1e-4, premult / np.maximum(w, 1e-4), fallback)


def _snap_edge(hard: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Soften the mask edge along the image's own edges (guided filter), else a plain blur."""
    import cv2

    try:
        from cv2 import ximgproc
        guide = image.astype(np.float32) / 255.0
        out = ximgproc.guidedFilter(guide, hard, 4, 1e-3)
    except (ImportError, AttributeError, cv2.error):
        out = cv2.GaussianBlur(hard, (0, 0), 2.0)
    # the guided filter may bleed far from the edge: only let it move the band near the edge
    band = cv2.dilate(hard, np.ones((9, 9), np.uint8)) - cv2.erode(hard, np.ones((9, 9), np.uint8))
    return np.where(band > 0, np.clip(out, 0.0, 1.0), hard).astype(np.float32)


def _keep_touching(hard: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Only the connected parts of ``hard`` that overlap ``head`` (drops other people, blobs)."""
    import cv2

    n, labels = cv2.connectedComponents(hard, connectivity=8)
    if n <= 2:
        return hard
    keep = np.unique(labels[(head > 0) & (hard > 0)])
    keep = keep[keep > 0]
    return np.isin(labels, keep).astype(np.uint8)


def _fill_holes(hard: np.ndarray) -> np.ndarray:
    """Background regions not connected to the frame's border become person."""
    import cv2

    bg = (1 - hard).astype(np.uint8)
    n, labels = cv2.connectedComponents(bg, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (labels > 0) & ~np.isin(labels, border)
    return (hard | holes).astype(np.uint8)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def _i32(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64)).astype(np.int32).reshape(-1, 2)


def _ipt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))
