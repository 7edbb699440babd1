"""Enroll: one photo -> :class:`Portrait`, once per photo, cached by the photo's content hash.

Steps: read and decode the photo (:mod:`vcam.avatar.photo_io`); find faces with MediaPipe face
detection on a copy no larger than 1280 px, keep the largest, fit the 478-point face mesh
around it; frame head and shoulders into 512x512 with one scale-and-shift warp from the
full-resolution photo (:mod:`vcam.avatar.framing`); fit the mesh again on the frame; person mask
and background plate (:mod:`vcam.avatar.matting`).

The face models are MediaPipe's (face detection, the attention face mesh, selfie
segmentation), converted to ONNX once (:mod:`vcam.graphs.export_face`), shipped in ``onnx/``
and run by onnxruntime through :class:`vcam.avatar.face_onnx.FaceModels`, loaded only on a
cache miss; nothing is downloaded.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam.runtime.errors import ConfigError, InputError
from vcam.avatar import cache, framing, matting, photo_io
from vcam.avatar import landmarks as L

log = logging.getLogger(__name__)

#: Bump when enrollment's output changes, so stale cache files are not used.
ENROLL_VERSION = 8
FRAME = framing.FRAME
#: Long side of the copy faces are searched in.
DETECT_MAX = 1280
#: Faces turned further than this (degrees of yaw) are refused.
MAX_YAW_DEG = 50.0
_MESH_CROP = 384


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare fields explicitly, not with ==
class Portrait:
    """One enrolled photo, framed head-and-shoulders into 512x512.

    image:       (512, 512, 3) uint8 RGB, the framed photo.
    landmarks:   (478, 3) float32 MediaPipe face mesh with irises: x, y in pixels of the frame
                 ((0, 0) = top-left corner of the top-left pixel); z in the same pixel scale
                 (MediaPipe z * 512), smaller = nearer the camera.
    person_mask: (512, 512) float32 0..1, person (head, hair, neck, shoulders) = 1,
                 background = 0, soft edge.
    plate:       (512, 512, 3) uint8 RGB, the background with the person filled in smoothly.
    valid:       (512, 512) float32, 1 where the frame came from the photo, 0 where framing
                 padded past the photo's border (mirrored and blurred there).
    n_faces:     faces found in the photo (the largest is the one animated).
    source:      the photo's path as given.
    sha256:      hex SHA-256 of the photo file's bytes.
    """

    image: np.ndarray
    landmarks: np.ndarray
    person_mask: np.ndarray
    plate: np.ndarray
    valid: np.ndarray
    n_faces: int
    source: str
    sha256: str


_ARRAYS = ("image", "landmarks", "person_mask", "plate", "valid")


def enroll(photo: str | os.PathLike, *, face_width_frac: float = 0.40, use_cache: bool = True) -> Portrait:
    """Enroll ``photo`` (any image Pillow reads); see :class:`Portrait`.

    ``face_width_frac``: the face oval's width as a fraction of the frame's.
    ``use_cache``: read and write ``<cache>/avatars/`` (see :mod:`vcam.avatar.cache`).
    Raises InputError (missing file, not an image, no face, face turned too far) and
    ConfigError (face_width_frac out of range).
    """
    if not (0.1 <= float(face_width_frac) <= 0.8):
        raise ConfigError(f"face_width_frac must be between 0.1 and 0.8, got {face_width_frac}")
    face_width_frac = float(face_width_frac)
    source = os.fspath(photo)
    data = photo_io.read_bytes(source)
    sha = photo_io.sha256_hex(data)
    path = _cache_path(sha, face_width_frac) if use_cache else None
    if path is not None:
        hit = _load_cached(path, source, sha)
        if hit is not None:
            if hit.n_faces > 1:
                log.warning("%d faces in %s; animating the largest", hit.n_faces, source)
            return hit
    t0 = time.perf_counter()
    portrait = _enroll_uncached(data, source, sha, face_width_frac)
    log.info("enrolled %s in %.2f s (%d face(s))", source, time.perf_counter() - t0, portrait.n_faces)
    if path is not None:
        cache.save_npz_atomic(path, n_faces=np.int32(portrait.n_faces),
                              **{k: getattr(portrait, k) for k in _ARRAYS})
    return portrait


def _cache_path(sha: str, face_width_frac: float) -> Path | None:
    try:
        return cache.cache_dir("avatars") / f"{sha}-{ENROLL_VERSION}-{face_width_frac:g}.npz"
    except OSError as e:
        log.warning("no avatar cache (%s); enrolling without it", e)
        return None


def _load_cached(path: Path, source: str, sha: str) -> Portrait | None:
    z = cache.load_npz(path)
    if z is None:
        return None
    try:
        p = Portrait(source=source, sha256=sha, n_faces=int(z["n_faces"]), **{k: z[k] for k in _ARRAYS})
    except KeyError:
        return None
    ok = (p.image.shape == (FRAME, FRAME, 3) and p.image.dtype == np.uint8
          and p.landmarks.shape == (L.N_LANDMARKS, 3) and p.plate.shape == (FRAME, FRAME, 3)
          and p.person_mask.shape == (FRAME, FRAME) and p.valid.shape == (FRAME, FRAME))
    return p if ok else None


# --------------------------------------------------------------------------- the work


def _enroll_uncached(data: bytes, source: str, sha: str, face_width_frac: float) -> Portrait:
    with _face_models() as faces:  # one set of face-model sessions for the whole photo
        return _enroll_with(faces, data, source, sha, face_width_frac)


def _enroll_with(faces, data: bytes, source: str, sha: str, face_width_frac: float) -> Portrait:
    import cv2

    ph = photo_io.decode(data, source)
    rgb = ph.rgb
    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        raise InputError(f"photo too small: {source} ({w}x{h} pixels)")
    # faces are searched in a copy no larger than DETECT_MAX
    k = min(1.0, DETECT_MAX / max(h, w))
    small = rgb if k >= 1.0 else cv2.resize(rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    turns, boxes = _upright_turns(faces, small)
    if not boxes:
        raise InputError(f"no face found in {source}: use a photo where the whole face, forehead to chin, "
                         f"is clearly visible")
    if turns:
        log.info("%s is turned by %d degrees: the face is animated upright", source, 90 * turns)
        small = np.ascontiguousarray(np.rot90(small, turns))
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
        h, w = rgb.shape[:2]
        if ph.alpha is not None:
            ph = photo_io.Photo(rgb=rgb, alpha=np.ascontiguousarray(np.rot90(ph.alpha, turns)))
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    lm_small = _mesh_around(faces, small, boxes[0])
    if lm_small is None:
        raise InputError(f"no face found in {source}: use a photo where the whole face, forehead to chin, "
                         f"is clearly visible")
    if len(boxes) > 1:
        log.warning("%d faces in %s; animating the largest", len(boxes), source)
    lm_src = lm_small.copy()
    sx, sy = w / small.shape[1], h / small.shape[0]
    lm_src[:, 0] *= sx
    lm_src[:, 1] *= sy
    lm_src[:, 2] *= sx
    yaw = estimate_yaw_deg(lm_src)
    if abs(yaw) > MAX_YAW_DEG:
        raise InputError(f"the face in {source} is turned too far to the side (about {abs(yaw):.0f} degrees): "
                         f"use a more frontal photo")

    edge = _cut_edge(lm_src, w, h)
    if edge:
        raise InputError(f"the face in {source} is cut off by the photo's {edge} edge: use a photo that shows "
                         f"the whole face, brows to chin")

    m = framing.framing_affine(lm_src, face_width_frac, FRAME, photo_wh=(w, h))
    image, valid, alpha = framing.frame_photo(rgb, m, FRAME, ph.alpha)
    first = framing.transform_landmarks(lm_src, m)
    lm = _refit_on_frame(faces, image, first)
    seg = _segment(faces, image) if alpha is None else None
    if valid.min() < 0.5:  # the frame reaches past the photo: fill that, then segment again
        rough = matting.person_mask(None if seg is None else seg * valid, lm, image, alpha) * valid
        image = matting.fill_padding(image, valid, rough, lm)
        seg = _segment(faces, image) if alpha is None else None
    mask = matting.person_mask(seg, lm, image, alpha)
    plate = matting.clean_plate(image, mask)
    return Portrait(image=image, landmarks=lm, person_mask=mask, plate=plate, valid=valid,
                    n_faces=len(boxes), source=source, sha256=sha)


def estimate_yaw_deg(lm: np.ndarray) -> float:
    """Head yaw in degrees from the mesh's own 3D points ((478, 3), z in x's pixel scale).

    Averages the left-minus-right vectors of symmetric landmark pairs (cheeks, eye corners,
    mouth corners, jaw); the yaw is that vector's angle out of the image plane. Roll does not
    affect it. 0 = frontal.
    """
    pairs = ((234, 454), (33, 263), (133, 362), (61, 291), (127, 356), (93, 323), (132, 361), (58, 288))
    v = np.zeros(3)
    for r, l in pairs:
        d = lm[l].astype(np.float64) - lm[r].astype(np.float64)
        v += d / max(np.linalg.norm(d), 1e-9)
    return float(math.degrees(math.atan2(v[2], math.hypot(v[0], v[1]))))


def _face_models():
    """MediaPipe's face models as ONNX graphs (:class:`vcam.avatar.face_onnx.FaceModels`), from
    the packaged ``onnx/`` folder; a context manager."""
    from vcam.avatar.face_onnx import FaceModels
    from vcam.resources import graph_dir

    return FaceModels(graph_dir())


#: Quarter turns are tried when no upright face in the photo as it is scores this much.
UPRIGHT_SCORE = 0.8
#: A face counts as upright when its mouth lies within this angle of straight below its eyes.
UPRIGHT_DEG = 50.0
#: How much better a turned copy's upright face must score than one in the photo as it is.
UPRIGHT_MARGIN = 0.1


def _upright_turns(faces, img: np.ndarray) -> tuple[int, list]:
    """``(k, boxes)``: the photo turned by ``k`` quarter turns (``np.rot90``) shows its face
    upright, and ``boxes`` are the faces found in that turned copy.

    Photos without orientation tags are sometimes sideways or upside down. The detector
    still finds such faces, sideways ones with their mouth beside the eyes, upside-down ones
    with a lower score (it reads them as upright faces, and the mesh then lays the mouth on
    the forehead). So when no upright face scores ``UPRIGHT_SCORE``, the other three turns
    are tried, and a turn is taken when its best upright face scores at least that and
    clearly more than the photo as it is.
    """
    def best_upright(boxes):
        return max((b[4] for b in boxes if abs(b[5]) < UPRIGHT_DEG), default=0.0)

    boxes = _detect_faces(faces, img)
    chosen = (0, boxes, best_upright(boxes))
    if chosen[2] >= UPRIGHT_SCORE:
        return 0, boxes
    # A turn must beat an upright-looking face in the photo as it is by a clear margin (a
    # drawn face scores low whichever way up it is).
    # A small face the detector misses upright it sometimes "finds" sideways, weakly: a
    # turned copy counts only with a sure face (UPRIGHT_SCORE).
    bar = max(chosen[2] + (UPRIGHT_MARGIN if chosen[2] > 0.0 else 0.0), UPRIGHT_SCORE)
    for k in (1, 2, 3):
        turned = _detect_faces(faces, np.ascontiguousarray(np.rot90(img, k)))
        score = best_upright(turned)
        if score > bar:
            chosen, bar = (k, turned, score), score
    return chosen[0], chosen[1]


def _cut_edge(lm: np.ndarray, w: int, h: int) -> str | None:
    """The photo edge (``"top"``, ...) that cuts through the face's features, or None.

    Brows, eyes, nose and mouth must lie inside the photo; the chin may reach a little past
    its bottom (a tenth of the face's height), as in tight crops. A forehead cut off above
    the brows is fine.
    """
    feats = lm[list(L.RIGHT_BROW + L.LEFT_BROW + L.LIPS_OUTER_UPPER + L.LIPS_OUTER_LOWER)
               + [L.RIGHT_EYE_OUTER, L.LEFT_EYE_OUTER, L.NOSE_TIP], :2]
    face_h = float(np.linalg.norm(lm[L.CHIN, :2] - (lm[L.RIGHT_EYE_OUTER, :2] + lm[L.LEFT_EYE_OUTER, :2]) / 2))
    chin = lm[L.CHIN, :2]
    if feats[:, 1].min() < 0:
        return "top"
    if feats[:, 1].max() > h or chin[1] > h + 0.1 * face_h:
        return "bottom"
    if feats[:, 0].min() < 0:
        return "left"
    if feats[:, 0].max() > w:
        return "right"
    return None


def _detect_faces(faces, img: np.ndarray) -> list[tuple[float, float, float, float, float, float]]:
    """Faces ``(x0, y0, x1, y1, score, tilt_deg)`` in ``img``'s pixels, both detector ranges
    merged; ``tilt_deg`` is the angle of the eyes-to-mouth direction from straight down."""
    h, w = img.shape[:2]
    found: list[tuple[float, float, float, float, float, float]] = []
    for full_range in (True, False):  # full range (small faces), then short range (close-ups)
        for d in faces.detect(img, full_range=full_range):  # MediaPipe's own thresholds: 0.6 full, 0.5 short
            bx, by, bw, bh = d.box
            kp = d.keypoints  # right eye, left eye, nose tip, mouth, ears
            down = ((kp[3, 0] - (kp[0, 0] + kp[1, 0]) / 2) * w, (kp[3, 1] - (kp[0, 1] + kp[1, 1]) / 2) * h)
            tilt = math.degrees(math.atan2(down[0], down[1]))
            box = (bx * w, by * h, (bx + bw) * w, (by + bh) * h, float(d.score), tilt)
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            same = [i for i, o in enumerate(found) if _iou(box, o) >= 0.3]
            if not same:
                found.append(box)
            elif box[4] > found[same[0]][4]:  # the same face: keep its box, take the surer score and tilt
                found[same[0]] = found[same[0]][:4] + box[4:]
    return found


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _run_mesh(faces, img: np.ndarray) -> list[np.ndarray]:
    """All face meshes in ``img``: (478, 3) float32 each, x, y, z in ``img``'s pixels."""
    h, w = img.shape[:2]
    out = []
    for a in faces.mesh(np.ascontiguousarray(img), max_faces=5, min_detection=0.3):
        if a.shape[0] != L.N_LANDMARKS:
            continue
        out.append(a * np.array([w, h, w], np.float32))
    return out


def _mesh_around(faces, img: np.ndarray, box) -> np.ndarray | None:
    """The face mesh of the face in ``box``, fitted in a square crop around it; ``img`` pixels."""
    import cv2

    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = 2.2 * max(box[2] - box[0], box[3] - box[1])
    s = _MESH_CROP / side
    m = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
    # continuous coords: u' = s (u - c) + crop/2, as a pixel-centre affine
    m[:, 2] = s * (0.5 - np.array([cx, cy])) + _MESH_CROP / 2.0 - 0.5
    crop = framing.warp(img, m, (_MESH_CROP, _MESH_CROP), border=cv2.BORDER_REPLICATE)
    meshes = _run_mesh(faces, crop)
    if not meshes:  # the crop confused it: try the whole picture
        return _closest(_run_mesh(faces, img), np.array([cx, cy]), side)
    best = _closest(meshes, np.array([_MESH_CROP / 2.0] * 2), _MESH_CROP)
    if best is None:
        return None
    return framing.transform_landmarks(best, cv2.invertAffineTransform(m))


def _closest(meshes: list[np.ndarray], centre: np.ndarray, scale: float) -> np.ndarray | None:
    """The mesh whose nose is nearest ``centre``, if within half of ``scale``."""
    best, best_d = None, 0.5 * scale
    for a in meshes:
        d = float(np.linalg.norm(a[L.NOSE_TIP, :2] - centre))
        if d < best_d:
            best, best_d = a, d
    return best


def _refit_on_frame(faces, image: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The mesh fitted on the framed image, or ``first`` (the first pass, moved) if that fails."""
    width = framing.face_width(first)
    best = None
    best_err = 0.08 * width
    for a in _run_mesh(faces, image):
        err = float(np.median(np.linalg.norm(a[:, :2] - first[:, :2], axis=1)))
        if err < best_err:
            best, best_err = a, err
    if best is None:
        log.debug("mesh refit on the frame failed; using the first pass")
        return first.astype(np.float32)
    return best.astype(np.float32)


def _segment(faces, image: np.ndarray) -> np.ndarray | None:
    """(S, S) float32 person confidence from MediaPipe selfie segmentation (general model)."""
    seg = faces.segment(np.ascontiguousarray(image))
    return None if seg is None else np.asarray(seg, np.float32)
