"""MediaPipe's face detector, face mesh and selfie segmentation, run through onnxruntime.

The same models as ``mediapipe==0.10.14``'s legacy solutions (``mp.solutions.face_detection``,
``face_mesh`` with ``refine_landmarks=True`` and ``static_image_mode=True``,
``selfie_segmentation`` with ``model_selection=0``), converted to ONNX once by
:mod:`vcam.graphs.export_face`, and the graph code around them re-implemented here: image-to-
tensor warps (bit for bit, see :func:`warp_rect`), SSD anchors, box decoding, weighted non-max
suppression, detection-to-ROI, ROI association, landmark refinement and projection, and the
mask resize, in float32 where MediaPipe computes in float. Results match MediaPipe's to float
precision (boxes ~1e-7, mesh points ~0.002 px; see ``tests/test_face_onnx.py``).

Imports numpy and onnxruntime; OpenCV (cv2) only if installed, for speed (cv2.remap,
cv2.resize, cv2.getPerspectiveTransform), with the same steps in numpy when it is not. Usage::

    with FaceModels(onnx_dir) as fm:
        faces = fm.detect(rgb, full_range=True)   # list[FaceDetection]
        meshes = fm.mesh(rgb)                     # list of (478, 3) float32
        mask = fm.segment(rgb)                    # (H, W) float32 in [0, 1]

``rgb`` is always an ``(H, W, 3) uint8`` RGB image.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: ONNX files under the folder given to :class:`FaceModels`.
DETECT_SHORT = "face_detect_short.onnx"
DETECT_FULL = "face_detect_full.onnx"
MESH = "face_mesh.onnx"
SEGMENTATION = "selfie_segmentation.onnx"

N_MESH = 478
MESH_SIZE = 192
SEG_SIZE = 256
#: Face-presence score a mesh needs (MediaPipe's min_tracking_confidence default).
MESH_PRESENCE = 0.5


@dataclass(frozen=True, eq=False)  # holds an array: compare fields explicitly
class FaceDetection:
    """One detected face, all coordinates relative to the image (x / width, y / height).

    box:       (xmin, ymin, width, height) floats.
    keypoints: (6, 2) float32 (x, y): right eye, left eye, nose tip, mouth centre, right ear
               tragion, left ear tragion (the subject's right and left).
    score:     detector confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float


# --------------------------------------------------------------------------------------------
# Detector configuration (MediaPipe's face_detection_*_range graphs)


@dataclass(frozen=True)
class _DetectorSpec:
    file: str
    size: int  # square input, pixels
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    num_boxes: int
    #: The score threshold in MediaPipe's graph for this model. mediapipe 0.10.14's
    #: ``FaceDetection(min_detection_confidence=...)`` does not reach it: the legacy solution
    #: always filters at this value, whatever confidence it is given.
    graph_min_score: float


_SHORT = _DetectorSpec(DETECT_SHORT, 128, (8, 16, 16, 16), 1.0, 896, 0.5)
_FULL = _DetectorSpec(DETECT_FULL, 192, (4,), 0.0, 2304, 0.6)
_NMS_IOU = 0.3
_SCORE_CLIP = 100.0


def ssd_anchors(spec: _DetectorSpec) -> np.ndarray:
    """(num_boxes, 2) float32 anchor centres (x, y), relative; the anchors are fixed-size (1 x 1).

    MediaPipe's SsdAnchorsCalculator with one aspect ratio (1.0): layers with the same stride
    share a grid, each contributing one anchor per cell, plus one more when an interpolated
    scale is configured.
    """
    out = []
    layer = 0
    strides = spec.strides
    while layer < len(strides):
        per_cell = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 1 + (1 if spec.interpolated_scale_aspect_ratio > 0.0 else 0)
            last += 1
        fm = int(math.ceil(spec.size / strides[layer]))
        ys, xs = np.meshgrid(np.arange(fm), np.arange(fm), indexing="ij")
        fmf = np.float32(fm)
        centres = np.stack([(xs.astype(np.float32) + np.float32(0.5)) / fmf,
                            (ys.astype(np.float32) + np.float32(0.5)) / fmf], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = last
    anchors = np.concatenate(out).astype(np.float32)
    assert anchors.shape[0] == spec.num_boxes
    return anchors


# --------------------------------------------------------------------------------------------
# Image -> tensor: MediaPipe's ImageToTensorCalculator on CPU, reproduced bit for bit.
#
# MediaPipe warps the rotated ROI into the model input with the OpenCV it is built with
# (cv::boxPoints, cv::getPerspectiveTransform (LU), cv::warpPerspective INTER_LINEAR on 8-bit:
# source coordinates rounded to 1/32 px, fixed-point bilinear weights). Newer OpenCV releases
# interpolate differently in warpPerspective (up to 3 grey levels apart), which moves detections
# by more than the models' own float error. So the ROI geometry and the sampling maps are
# computed here in numpy, the same way, and the fixed-point bilinear remap runs in cv2.remap
# (unchanged across OpenCV releases; checked on a probe at first use) or in numpy without it.

_F32 = np.float32
_INTER_BITS = 5
_INTER_TAB = 1 << _INTER_BITS
_COEF_BITS = 15


def _rect_points(cx, cy, w, h, angle_deg) -> np.ndarray:
    """(4, 2) float32 corners of a rotated rectangle, as cv::RotatedRect::points orders and
    rounds them (bottom-left, top-left, top-right, bottom-right for angle 0)."""
    cx, cy, w, h, angle = _F32(cx), _F32(cy), _F32(w), _F32(h), _F32(angle_deg)
    rad = float(angle) * math.pi / 180.0
    b = _F32(math.cos(rad)) * _F32(0.5)
    a = _F32(math.sin(rad)) * _F32(0.5)
    p0 = (cx - a * h - b * w, cy + b * h - a * w)
    p1 = (cx + a * h - b * w, cy - b * h - a * w)
    p2 = (_F32(2) * cx - p0[0], _F32(2) * cy - p0[1])
    p3 = (_F32(2) * cx - p1[0], _F32(2) * cy - p1[1])
    return np.array([p0, p1, p2, p3], np.float32)


def _homography(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """3x3 (row-major, 9 floats) homography taking the 4 float32 ``src`` points to ``dst``, as
    MediaPipe gets it (cv::getPerspectiveTransform, LU): OpenCV's own when installed (bit for
    bit what MediaPipe computes), else :func:`_perspective_transform` (equal to ~1e-16)."""
    try:
        import cv2

        return [float(v) for v in cv2.getPerspectiveTransform(src, dst, solveMethod=cv2.DECOMP_LU).ravel()]
    except Exception:  # no OpenCV, or one without solveMethod
        return _perspective_transform(src, dst)


def _perspective_transform(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """:func:`_homography` in plain Python: the 8x8 system of cv::getPerspectiveTransform
    solved by Gaussian elimination with partial pivoting in the order of OpenCV's scalar LU
    (OpenCV's vectorised build rounds a few last bits differently: on rotated crops about one
    pixel in 300,000 then differs by one grey level)."""
    a = [[0.0] * 8 for _ in range(8)]
    b = [0.0] * 8
    for i in range(4):
        sx, sy = src[i]
        dx, dy = dst[i]
        a[i][0] = a[i + 4][3] = float(sx)
        a[i][1] = a[i + 4][4] = float(sy)
        a[i][2] = a[i + 4][5] = 1.0
        a[i][6] = float(-sx * dx)  # float products, as in C++ with Point2f
        a[i][7] = float(-sy * dx)
        a[i + 4][6] = float(-sx * dy)
        a[i + 4][7] = float(-sy * dy)
        b[i] = float(dx)
        b[i + 4] = float(dy)
    m = 8
    for i in range(m):
        k = i
        for j in range(i + 1, m):
            if abs(a[j][i]) > abs(a[k][i]):
                k = j
        if abs(a[k][i]) < 2.220446049250313e-16 * 100:
            raise ValueError("degenerate ROI")
        if k != i:
            a[i][i:], a[k][i:] = a[k][i:], a[i][i:]
            b[i], b[k] = b[k], b[i]
        d = -1.0 / a[i][i]
        for j in range(i + 1, m):
            alpha = a[j][i] * d
            for q in range(i + 1, m):
                a[j][q] += alpha * a[i][q]
            b[j] += alpha * b[i]
        a[i][i] = -d
    for i in range(m - 1, -1, -1):
        s = b[i]
        for q in range(i + 1, m):
            s -= a[i][q] * b[q]
        b[i] = s * a[i][i]
    return b + [1.0]


def _invert3(s: list[float]) -> list[float]:
    """Inverse of a 3x3 matrix by cofactors (cv::invert with DECOMP_LU for 3x3 doubles)."""
    def e(r, c):
        return s[r * 3 + c]

    d = (e(0, 0) * (e(1, 1) * e(2, 2) - e(1, 2) * e(2, 1)) - e(0, 1) * (e(1, 0) * e(2, 2) - e(1, 2) * e(2, 0))
         + e(0, 2) * (e(1, 0) * e(2, 1) - e(1, 1) * e(2, 0)))
    if d == 0.0:
        raise ValueError("singular ROI transform")
    d = 1.0 / d
    return [(e(1, 1) * e(2, 2) - e(1, 2) * e(2, 1)) * d, (e(0, 2) * e(2, 1) - e(0, 1) * e(2, 2)) * d,
            (e(0, 1) * e(1, 2) - e(0, 2) * e(1, 1)) * d, (e(1, 2) * e(2, 0) - e(1, 0) * e(2, 2)) * d,
            (e(0, 0) * e(2, 2) - e(0, 2) * e(2, 0)) * d, (e(0, 2) * e(1, 0) - e(0, 0) * e(1, 2)) * d,
            (e(1, 0) * e(2, 1) - e(1, 1) * e(2, 0)) * d, (e(0, 1) * e(2, 0) - e(0, 0) * e(2, 1)) * d,
            (e(0, 0) * e(1, 1) - e(0, 1) * e(1, 0)) * d]


def _bilinear_table() -> np.ndarray:
    """(1024, 4) int32 fixed-point bilinear weights (sum 32768) for the 32x32 sub-pixel
    positions, rounded and sum-corrected as OpenCV's remap table is (including where its
    correction step lands)."""
    one = np.float32(1.0)
    tab1 = []
    for i in range(_INTER_TAB):
        x = np.float32(i) * (one / np.float32(_INTER_TAB))
        tab1 += [one - x, x]
    flat = np.zeros(_INTER_TAB * _INTER_TAB * 4 + 8, np.int64)
    for i in range(_INTER_TAB):
        for j in range(_INTER_TAB):
            base = (i * _INTER_TAB + j) * 4
            total = 0
            for k1 in range(2):
                for k2 in range(2):
                    v = np.float32(tab1[i * 2 + k1] * tab1[j * 2 + k2])
                    q = max(-32768, min(32767, int(np.rint(np.float32(v * np.float32(1 << _COEF_BITS))))))
                    flat[base + k1 * 2 + k2] = q
                    total += q
            if total != 1 << _COEF_BITS:
                diff = total - (1 << _COEF_BITS)
                lo = hi = 3
                for k in (3, 4, 5, 6):  # OpenCV's search window: the cell's last weight and 3 past it
                    if flat[base + k] < flat[base + lo]:
                        lo = k
                    elif flat[base + k] > flat[base + hi]:
                        hi = k
                if diff < 0:
                    flat[base + hi] = np.int16(flat[base + hi] - diff)
                else:
                    flat[base + lo] = np.int16(flat[base + lo] - diff)
    return flat[:_INTER_TAB * _INTER_TAB * 4].reshape(-1, 4).astype(np.int32)


_TABLE: list[np.ndarray] = []


def _warp_maps(minv: list[float], out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point sampling maps of a perspective warp (output pixel -> source pixel ``minv``):
    ``xy`` (out_h, out_w, 2) int16 integer source pixel, ``alpha`` (out_h, out_w) uint16
    sub-pixel cell (y * 32 + x in 1/32 px), computed as OpenCV's warpPerspective does: double
    sums per 64-pixel tile, rounded to nearest even."""
    m = minv
    bh = min(16, out_h)
    bw = min(1024 // bh, out_w)  # OpenCV walks the output in tiles: a tile's first x enters the sums
    xs = np.arange(out_w)
    tx = ((xs // bw) * bw).astype(np.float64)[None, :]
    x1 = (xs % bw).astype(np.float64)[None, :]
    yy = np.arange(out_h, dtype=np.float64)[:, None]
    w = m[6] * tx + m[7] * yy
    w += m[8]
    w += m[6] * x1
    zero = w == 0
    with np.errstate(divide="ignore"):
        np.divide(_INTER_TAB, w, out=w)
    if zero.any():
        w[zero] = 0.0
    lim = 2.0 ** 31
    xy = np.empty((out_h, out_w, 2), np.int16)
    cells = []
    for k, (a, b, c) in enumerate(((m[0], m[1], m[2]), (m[3], m[4], m[5]))):
        f = a * tx + b * yy
        f += c
        f += a * x1
        f *= w
        np.maximum(f, -lim, out=f)
        np.minimum(f, lim - 1, out=f)
        i = np.rint(f, out=f).astype(np.int64)
        xy[..., k] = np.minimum(np.maximum(i >> _INTER_BITS, -32768), 32767)
        cells.append(i & (_INTER_TAB - 1))
    alpha = ((cells[1] << _INTER_BITS) + cells[0]).astype(np.uint16)
    return xy, alpha


def _remap_numpy(src: np.ndarray, xy: np.ndarray, alpha: np.ndarray, replicate: bool) -> np.ndarray:
    """OpenCV's fixed-point bilinear remap (8-bit, 2x2 taps, 15-bit weights), in numpy."""
    if not _TABLE:
        _TABLE.append(_bilinear_table())
    sh, sw, cn = src.shape
    out_h, out_w = alpha.shape
    sx = xy[..., 0].reshape(-1).astype(np.int32)
    sy = xy[..., 1].reshape(-1).astype(np.int32)
    wt = np.take(_TABLE[0], alpha.reshape(-1).astype(np.int32), axis=0)
    flat = src.reshape(-1, cn)
    acc = np.zeros((sx.size, cn), np.int32)
    # the four neighbours (x, y), (x+1, y), (x, y+1), (x+1, y+1), each clamped to the image
    for k, (dx, dy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        px, py = sx + dx, sy + dy
        cx_ = np.minimum(np.maximum(px, 0), sw - 1)
        cy_ = np.minimum(np.maximum(py, 0), sh - 1)
        weight = wt[:, k]
        if not replicate:  # outside the image counts as zero
            weight = np.where((px == cx_) & (py == cy_), weight, 0)
        acc += np.take(flat, cy_ * sw + cx_, axis=0) * weight[:, None]
    out = np.clip((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS, 0, 255).astype(np.uint8)
    return out.reshape(out_h, out_w, cn)


def _remap_cv2(src: np.ndarray, xy: np.ndarray, alpha: np.ndarray, replicate: bool) -> np.ndarray:
    import cv2

    return cv2.remap(src, xy, alpha, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT, borderValue=0)


_REMAP: list = []


def _remap(src: np.ndarray, xy: np.ndarray, alpha: np.ndarray, replicate: bool) -> np.ndarray:
    """The remap step: OpenCV's cv2.remap with these fixed-point maps when it is installed and
    gives the same pixels as :func:`_remap_numpy` on a probe (it is ~20x faster), else numpy."""
    if not _REMAP:
        impl = _remap_numpy
        try:
            rng = np.random.default_rng(7)
            probe = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
            pxy = np.stack([rng.integers(-3, 33, (9, 40)), rng.integers(-3, 25, (9, 40))], -1).astype(np.int16)
            palpha = rng.integers(0, _INTER_TAB * _INTER_TAB, (9, 40)).astype(np.uint16)
            if all(np.array_equal(_remap_cv2(probe, pxy, palpha, r), _remap_numpy(probe, pxy, palpha, r))
                   for r in (False, True)):
                impl = _remap_cv2
        except Exception:  # no OpenCV, or one that behaves otherwise
            impl = _remap_numpy
        _REMAP.append(impl)
    return _REMAP[0](np.ascontiguousarray(src), xy, alpha, replicate)


def warp_rect(rgb: np.ndarray, cx, cy, w, h, rotation, out_w: int, out_h: int, replicate: bool) -> np.ndarray:
    """The rotated rectangle of ``rgb`` (centre and size in pixels, rotation in radians, all
    float32 as MediaPipe holds them) warped into ``(out_h, out_w, 3) uint8``, corners onto
    corners, as MediaPipe's ImageToTensorCalculator does on CPU."""
    angle = float(_F32(_F32(rotation) * _F32(180.0))) / math.pi
    src = _rect_points(cx, cy, w, h, angle)
    dst = np.array([[0, out_h], [0, 0], [out_w, 0], [out_w, out_h]], np.float32)
    xy, alpha = _warp_maps(_invert3(_homography(src, dst)), out_w, out_h)
    return _remap(rgb, xy, alpha, replicate)


def _to_tensor(u8: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(1, H, W, 3) float32 with 0..255 mapped onto lo..hi (float32 scale and offset)."""
    scale = (_F32(hi) - _F32(lo)) / _F32(255.0)
    offset = _F32(lo)
    return (u8.astype(np.float32) * scale + offset)[None]


def _resize_linear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """(out_h, out_w) float32 bilinear resize of a (H, W) float32 map, pixel centres aligned, as
    MediaPipe resizes its mask (cv::resize INTER_LINEAR); cv2.resize when OpenCV is installed
    (releases differ from each other by ~1e-5 here), else the same in numpy."""
    try:
        import cv2
    except ImportError:
        return _resize_linear_numpy(img, out_w, out_h)
    return cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def _resize_linear_numpy(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """:func:`_resize_linear` in numpy: columns clamp their weights at the edges, rows repeat
    the edge row, float32 arithmetic in OpenCV's order."""
    h, w = img.shape
    if (h, w) == (out_h, out_w):
        return img.copy()

    def taps(n_out, n_in, clamp):
        scale = 1.0 / (n_out / n_in)
        f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
        i0 = np.floor(f).astype(np.int64)
        frac = (f - i0.astype(np.float32)).astype(np.float32)
        if clamp:
            low = i0 < 0
            frac[low], i0[low] = 0, 0
            high = i0 >= n_in - 1
            frac[high], i0[high] = 0, n_in - 1
        return i0, np.minimum(i0 + 1, n_in - 1), (np.float32(1) - frac).astype(np.float32), frac

    x0, x1, ax0, ax1 = taps(out_w, w, True)
    y0, y1, by0, by1 = taps(out_h, h, False)
    y0, y1 = np.clip(y0, 0, h - 1), np.clip(y1, 0, h - 1)
    rows = img[:, x0] * ax0 + img[:, x1] * ax1  # (h, out_w) float32
    return (rows[y0] * by0[:, None] + rows[y1] * by1[:, None]).astype(np.float32)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"empty image {rgb.shape}")
    return np.ascontiguousarray(rgb)


# --------------------------------------------------------------------------------------------
# Detections (TensorsToDetections, WEIGHTED NonMaxSuppression, DetectionProjection), in
# float32 like MediaPipe


def _overlap(a, b) -> float:
    """IoU of two (xmin, ymin, width, height) float32 rectangles; 0 when they do not touch."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    if ax1 < a[0] or ay1 < a[1] or bx1 < b[0] or by1 < b[1]:
        return 0.0
    if bx1 < a[0] or ax1 < b[0] or by1 < a[1] or ay1 < b[1]:
        return 0.0
    inter = (min(ax1, bx1) - max(a[0], b[0])) * (min(ay1, by1) - max(a[1], b[1]))
    norm = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / norm) if norm > 0 else 0.0


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray):
    """MediaPipe's WEIGHTED non-max suppression: boxes overlapping the best remaining one by
    IoU > 0.3 are averaged into it, weighted by score; it keeps the best one's score.

    boxes (N, 4) xmin, ymin, width, height; kps (N, 6, 2); scores (N,), all float32. Returns
    a list of (box (4,), kps (6, 2), score), best score first.
    """
    order = sorted(range(len(scores)), key=lambda k: -float(scores[k]))
    out = []
    while order:
        top = order[0]
        cand = [k for k in order if _overlap(boxes[k], boxes[top]) > _NMS_IOU]
        rest = [k for k in order if k not in cand]
        box, kp = boxes[top].copy(), kps[top].copy()
        if cand:
            total = _F32(0)
            corners = np.zeros(4, np.float32)  # weighted xmin, ymin, xmax, ymax
            acc_kp = np.zeros((6, 2), np.float32)
            for k in cand:  # float sums in candidate order, as MediaPipe accumulates
                sc = scores[k]
                b = boxes[k]
                total = _F32(total + sc)
                corners = (corners + np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], np.float32) * sc).astype(np.float32)
                acc_kp = (acc_kp + kps[k] * sc).astype(np.float32)
            xmin, ymin = corners[0] / total, corners[1] / total
            box = np.array([xmin, ymin, corners[2] / total - xmin, corners[3] / total - ymin], np.float32)
            kp = (acc_kp / total).astype(np.float32)
        out.append((box, kp, float(scores[top])))
        if len(rest) == len(order):
            break
        order = rest
    return out


# --------------------------------------------------------------------------------------------
# Face mesh ROIs and landmarks


def _normalize_radians(a) -> np.float32:
    return _F32(float(a) - 2 * math.pi * math.floor((float(a) + math.pi) / (2 * math.pi)))


@dataclass(frozen=True)
class _Roi:
    """A rotated rectangle: centre and size relative to the image, rotation in radians
    (float32 values, as MediaPipe's NormalizedRect holds them)."""

    xc: np.float32
    yc: np.float32
    w: np.float32
    h: np.float32
    rotation: np.float32

    def rect(self) -> tuple:
        """(xmin, ymin, width, height) float32, as AssociationNormRectCalculator builds it."""
        return (_F32(float(self.xc) - float(self.w) / 2.0), _F32(float(self.yc) - float(self.h) / 2.0), self.w, self.h)

    def iou(self, o: _Roi) -> float:
        return _overlap(self.rect(), o.rect())


def _roi_from_detection(d: FaceDetection, width: int, height: int) -> _Roi:
    """FaceDetectionFrontDetectionToRoi: box centre, rotation from the eyes, a square of the
    long side (in pixels) scaled by 1.5."""
    xmin, ymin, bw, bh = (_F32(v) for v in d.box)
    two, W, H = _F32(2), _F32(width), _F32(height)
    kp = d.keypoints.astype(np.float32)
    x0, y0 = kp[0, 0] * W, kp[0, 1] * H
    x1, y1 = kp[1, 0] * W, kp[1, 1] * H
    rotation = _normalize_radians(_F32(0) - np.arctan2(-(y1 - y0), x1 - x0))
    long_side = max(bw * W, bh * H)
    scale = _F32(1.5)
    return _Roi(xmin + bw / two, ymin + bh / two, long_side / W * scale, long_side / H * scale, rotation)


def _associate(rois: list[_Roi], min_iou: float = 0.5) -> list[_Roi]:
    """AssociationNormRectCalculator: a later ROI replaces earlier ones it overlaps (IoU > 0.5)
    and goes to the end of the list."""
    out: list[_Roi] = []
    for r in rois:
        out = [o for o in out if not r.iou(o) > min_iou]
        out.append(r)
    return out


#: LandmarksRefinementCalculator maps of the attention model (face_landmark_with_attention).
_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409, 78, 95, 88, 178,
         87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415, 76, 77, 90, 180, 85, 16, 315, 404,
         320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408, 62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183,
         42, 41, 38, 12, 268, 271, 272, 407)
_LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24, 23, 22, 26,
             112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223,
             222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66,
             107, 55, 193)
_RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339, 254, 253,
              252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449, 450, 451, 452, 453, 464, 342,
              445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
              383, 300, 293, 334, 296, 336, 285, 417)
_LEFT_IRIS = (468, 469, 470, 471, 472)
_RIGHT_IRIS = (473, 474, 475, 476, 477)
#: Iris z is the mean z of these eye-contour points (the first 16 of each eye map).
_LEFT_IRIS_Z = _LEFT_EYE[:16]
_RIGHT_IRIS_Z = _RIGHT_EYE[:16]


def refine_landmarks(mesh: np.ndarray, lips: np.ndarray, left_eye: np.ndarray, right_eye: np.ndarray,
                     left_iris: np.ndarray, right_iris: np.ndarray) -> np.ndarray:
    """(478, 3) float32 from the attention model's outputs, each already divided by the crop
    size: mesh (468, 3); lips (80, 2), eyes (71, 2), irises (5, 2) replace x, y of their points;
    iris z is the mean z of its eye's contour."""
    out = np.zeros((N_MESH, 3), np.float32)
    out[:468] = mesh
    out[list(_LIPS), :2] = lips
    out[list(_LEFT_EYE), :2] = left_eye
    out[list(_RIGHT_EYE), :2] = right_eye
    out[list(_LEFT_IRIS), :2] = left_iris
    out[list(_LEFT_IRIS), 2] = np.float32(out[list(_LEFT_IRIS_Z), 2].astype(np.float64).mean())
    out[list(_RIGHT_IRIS), :2] = right_iris
    out[list(_RIGHT_IRIS), 2] = np.float32(out[list(_RIGHT_IRIS_Z), 2].astype(np.float64).mean())
    return out


def _project(lm: np.ndarray, roi: _Roi) -> np.ndarray:
    """LandmarkProjectionCalculator (NORM_RECT): crop-relative -> image-relative, float32; z
    scales like x."""
    c, s = np.cos(roi.rotation), np.sin(roi.rotation)
    x = lm[:, 0] - _F32(0.5)
    y = lm[:, 1] - _F32(0.5)
    out = np.empty_like(lm, dtype=np.float32)
    out[:, 0] = (c * x - s * y) * roi.w + roi.xc
    out[:, 1] = (s * x + c * y) * roi.h + roi.yc
    out[:, 2] = lm[:, 2] * roi.w
    return out


# --------------------------------------------------------------------------------------------


class FaceModels:
    """The four face models in ``onnx_dir``, loaded on first use (onnxruntime, CPU, 2 threads).

    A context manager; :meth:`close` is idempotent and drops the sessions (a later call loads
    them again). Thread-safe: sessions are created under a lock and onnxruntime runs are.
    """

    def __init__(self, onnx_dir: Path, provider: str = "cpu"):
        self.onnx_dir = Path(onnx_dir)
        if provider not in ("cpu", "cuda"):
            raise ValueError(f"provider must be 'cpu' or 'cuda', not {provider!r}")
        self.provider = provider
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()
        self._anchors = {spec.file: ssd_anchors(spec) for spec in (_SHORT, _FULL)}

    def __enter__(self) -> FaceModels:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()

    def _session(self, file: str):
        sess = self._sessions.get(file)
        if sess is not None:
            return sess
        with self._lock:
            sess = self._sessions.get(file)
            if sess is None:
                import onnxruntime as ort

                path = self.onnx_dir / file
                if not path.is_file():
                    from vcam.runtime.errors import GraphError

                    raise GraphError(f"face model {path} is missing: the installation is incomplete "
                                     f"(reinstall vcam; in a checkout, python -m vcam.graphs.export_face writes it)")
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 2
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3
                # Four sessions take turns: threads spinning after one run would slow the next.
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                providers = ["CPUExecutionProvider"]
                if self.provider == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                    providers.insert(0, "CUDAExecutionProvider")
                sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
                self._sessions[file] = sess
        return sess

    def _run(self, file: str, x: np.ndarray) -> dict[str, np.ndarray]:
        sess = self._session(file)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))

    # ---- detection
    def detect(self, rgb: np.ndarray, *, full_range: bool, min_score: float | None = None) -> list[FaceDetection]:
        """Faces in ``rgb`` ((H, W, 3) uint8 RGB), best score first.

        ``full_range`` picks the full-range model (192x192, small faces; MediaPipe's
        ``model_selection=1``) over the short-range one (128x128, close-ups; ``model_selection=0``).

        ``min_score`` None (the default) reproduces ``mp.solutions.face_detection`` exactly: its
        graphs filter at 0.5 (short range) and 0.6 (full range) and ignore the
        ``min_detection_confidence`` they are given. A number filters at that score instead
        (before the weighted non-max suppression, as the graph does), so weaker boxes also
        take part in the averaging.
        """
        rgb = _check_rgb(rgb)
        spec = _FULL if full_range else _SHORT
        return self._detect(rgb, spec, spec.graph_min_score if min_score is None else float(min_score))

    def _detect(self, rgb: np.ndarray, spec: _DetectorSpec, min_score: float) -> list[FaceDetection]:
        height, width = rgb.shape[:2]
        size = spec.size
        # The whole image, letterboxed into the square input (keep_aspect_ratio, zero border).
        side = _F32(width) if _F32(height) / _F32(width) < _F32(1) else _F32(height)
        cx, cy = _F32(0.5) * _F32(width), _F32(0.5) * _F32(height)
        crop = warp_rect(rgb, cx, cy, side, side, 0.0, size, size, replicate=False)
        out = self._run(spec.file, _to_tensor(crop, -1.0, 1.0))
        raw_boxes, raw_scores = (out[k] for k in sorted(out, key=lambda k: -out[k].shape[-1]))
        raw = raw_boxes.reshape(spec.num_boxes, 16)
        logits = np.clip(raw_scores.reshape(spec.num_boxes), -_SCORE_CLIP, _SCORE_CLIP).astype(np.float32)
        with np.errstate(over="ignore"):
            scores = (_F32(1) / (_F32(1) + np.exp(-logits))).astype(np.float32)
        keep = np.flatnonzero(~(scores < _F32(min_score)))
        if keep.size == 0:
            return []
        anchors = self._anchors[spec.file][keep]
        raw, scores = raw[keep], scores[keep]
        s, two = _F32(size), _F32(2)
        xc = raw[:, 0] / s + anchors[:, 0]  # anchors are 1x1: w, h scale by one
        yc = raw[:, 1] / s + anchors[:, 1]
        w = raw[:, 2] / s
        h = raw[:, 3] / s
        xmin, ymin = xc - w / two, yc - h / two
        boxes = np.stack([xmin, ymin, (xc + w / two) - xmin, (yc + h / two) - ymin], 1).astype(np.float32)
        kps = (raw[:, 4:16].reshape(-1, 6, 2) / s + anchors[:, None, :]).astype(np.float32)
        ok = ~((boxes[:, 2] < 0) | (boxes[:, 3] < 0) | np.isnan(boxes[:, 2]) | np.isnan(boxes[:, 3]))
        boxes, kps, scores = boxes[ok], kps[ok], scores[ok]
        # Letterboxed tensor space -> image space (DetectionProjectionCalculator with the
        # ROI's sub-rect-to-rect matrix; no rotation).
        gx, gy = _F32(1) / _F32(width), _F32(1) / _F32(height)
        m0, m5 = side * gx, side * gy
        m3 = (_F32(-0.5) * side + cx) * gx
        m7 = (_F32(-0.5) * side + cy) * gy
        found = []
        for box, kp, score in _weighted_nms(boxes, kps, scores):
            xs = np.array([box[0], box[0] + box[2]], np.float32) * m0 + m3
            ys = np.array([box[1], box[1] + box[3]], np.float32) * m5 + m7
            left, top = xs.min(), ys.min()
            kp = np.stack([kp[:, 0] * m0 + m3, kp[:, 1] * m5 + m7], 1).astype(np.float32)
            found.append(FaceDetection((float(left), float(top), float(xs.max() - left), float(ys.max() - top)), kp, score))
        return found

    # ---- mesh
    def mesh(self, rgb: np.ndarray, *, max_faces: int = 5, min_detection: float = 0.3) -> list[np.ndarray]:
        """Face meshes in ``rgb`` ((H, W, 3) uint8 RGB): each ``(478, 3) float32``, x / W, y / H,
        z in x's scale (MediaPipe's normalised landmarks), in MediaPipe's order.

        MediaPipe's static-image face mesh with refined landmarks: short-range detection
        (``min_detection``), at most ``max_faces`` faces, a rotated square ROI per face (merged
        when they overlap), the attention mesh model on a 192x192 crop, faces whose presence
        score is not above 0.5 dropped.
        """
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        dets = self._detect(rgb, _SHORT, min_detection)[:max(0, max_faces)]
        rois = _associate([_roi_from_detection(d, width, height) for d in dets])
        W, H = _F32(width), _F32(height)
        s = _F32(MESH_SIZE)
        meshes = []
        for roi in rois:
            crop = warp_rect(rgb, roi.xc * W, roi.yc * H, roi.w * W, roi.h * H, roi.rotation, MESH_SIZE, MESH_SIZE,
                             replicate=True)
            out = self._run(MESH, _to_tensor(crop, 0.0, 1.0))
            flag = float(out["conv_faceflag"].reshape(-1)[0])
            presence = 1.0 / (1.0 + math.exp(-flag)) if flag > -80 else 0.0
            if not presence > MESH_PRESENCE:
                continue
            lm = refine_landmarks(out["output_mesh_identity"].reshape(468, 3) / s,
                                  out["output_lips"].reshape(80, 2) / s,
                                  out["output_left_eye"].reshape(71, 2) / s,
                                  out["output_right_eye"].reshape(71, 2) / s,
                                  out["output_left_iris"].reshape(5, 2) / s,
                                  out["output_right_iris"].reshape(5, 2) / s)
            meshes.append(_project(lm, roi))
        return meshes

    # ---- segmentation
    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 person confidence in [0, 1] for ``rgb`` ((H, W, 3) uint8 RGB), like
        MediaPipe's ``segmentation_mask`` (general model: the image stretched to 256x256, the
        mask resized back bilinearly)."""
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        crop = warp_rect(rgb, _F32(0.5) * _F32(width), _F32(0.5) * _F32(height), _F32(width), _F32(height), 0.0,
                         SEG_SIZE, SEG_SIZE, replicate=False)
        out = self._run(SEGMENTATION, _to_tensor(crop, 0.0, 1.0))
        small = next(iter(out.values())).reshape(SEG_SIZE, SEG_SIZE).astype(np.float32)
        return _resize_linear(small, width, height)
