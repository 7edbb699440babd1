"""Write tests/data/face_reference.npz: real MediaPipe's face detections, meshes and selfie masks
on the reference images, for tests/test_face_onnx.py (which then needs no MediaPipe).

    python tests/data/make_face_reference.py

Needs ``mediapipe==0.10.14`` (the legacy ``mp.solutions`` API). The reference images are the
bundled portraits (vcam/assets), the photos under ../shared/media/images when present, and
variants made from them by :func:`reference_inputs`: decoded with Pillow, turned and scaled with
face_onnx's own warp (deterministic, no OpenCV version in the loop), the rest in numpy, so the
test builds the same pixels; each image's SHA-256 is stored to prove it.

Per image ``k`` the npz holds
    ``sha_k``          sha256 of the RGB pixels (hex, as a 0-d unicode array)
    ``shape_k``        (H, W)
    ``det_short_k``    (n, 17) float32: xmin, ymin, width, height, 6 keypoints (x, y), score;
                       FaceDetection(model_selection=0, min_detection_confidence=0.5) (the
                       legacy solution filters at 0.5 short-range / 0.6 full-range whatever
                       confidence it is given)
    ``det_full_k``     the same, full-range model
    ``mesh_k``         (n, 478, 3) float32 normalised landmarks: FaceMesh(static_image_mode=True,
                       max_num_faces=5, refine_landmarks=True, min_detection_confidence=0.3)
    ``mesh1_k``        the same with max_num_faces=1
    ``seg_k``          float16 segmentation_mask[::4, ::4] (general model)
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
OUT = HERE / "face_reference.npz"
SEG_STRIDE = 4
MESH_FACES = 5
MESH_MIN_DETECTION = 0.3


def shared_media() -> Path:
    return REPO.parent / "shared" / "media" / "images"


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), np.uint8))


def _warp(rgb: np.ndarray, rotation: float, out_w: int, out_h: int) -> np.ndarray:
    """The whole of ``rgb`` turned by ``rotation`` (radians) about its centre and scaled into
    ``(out_h, out_w)``, bilinear, edges repeated: face_onnx's warp with its pure-Python
    homography, so the pixels do not depend on the OpenCV installed."""
    from vcam.avatar import face_onnx as F

    h, w = rgb.shape[:2]
    angle = float(np.float32(np.float32(rotation) * np.float32(180.0))) / np.pi
    src = F._rect_points(w / 2.0, h / 2.0, w, h, angle)
    dst = np.array([[0, out_h], [0, 0], [out_w, 0], [out_w, out_h]], np.float32)
    xy, alpha = F._warp_maps(F._invert3(F._perspective_transform(src, dst)), out_w, out_h)
    return F._remap(rgb, xy, alpha, True)


def _rotate(rgb: np.ndarray, deg: float) -> np.ndarray:
    """``rgb`` turned by ``deg`` about its centre, same size, edges repeated."""
    h, w = rgb.shape[:2]
    return _warp(rgb, np.deg2rad(deg), w, h)


def _downscale(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """``rgb`` scaled (bilinear) so that its long side is ``long_side`` pixels."""
    h, w = rgb.shape[:2]
    s = long_side / max(h, w)
    return _warp(rgb, 0.0, round(w * s), round(h * s))


def _side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    h = max(a.shape[0], b.shape[0])

    def pad(x):
        top = (h - x.shape[0]) // 2
        return np.pad(x, ((top, h - x.shape[0] - top), (0, 0), (0, 0)), constant_values=128)

    return np.ascontiguousarray(np.concatenate([pad(a), pad(b)], axis=1))


def _no_face(h: int = 360, w: int = 480) -> np.ndarray:
    """A gradient with a few flat shapes: nothing face-like."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    img[40:140, 60:200] = (200, 40, 40)
    img[200:320, 300:440] = (30, 160, 60)
    img[220:260, 40:260] = (240, 240, 240)
    return np.ascontiguousarray(img.astype(np.uint8))


def reference_inputs() -> dict[str, np.ndarray]:
    """``{name: (H, W, 3) uint8 RGB}``: the reference images (shared media ones when present)."""
    assets = REPO / "vcam" / "assets"
    base: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    sources = [("astronaut", assets / "photo_astronaut_eileen_collins.png"),
               ("lincoln", assets / "photo_abraham_lincoln_beard_bw.jpg"),
               ("jefferson", assets / "painting_thomas_jefferson_rembrandt_peale.jpg")]
    media = shared_media()
    if media.is_dir():
        for p in sorted(media.iterdir()):
            if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
                sources.append(("shared_" + p.stem, p))
    for name, path in sources:
        if not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:  # the shared copies of the bundled portraits
            continue
        seen.add(digest)
        base[name] = _read(path)
    out = dict(base)
    out["astronaut_rot15"] = _rotate(base["astronaut"], 15.0)
    out["lincoln_rot-15"] = _rotate(base["lincoln"], -15.0)
    out["lincoln_320"] = _downscale(base["lincoln"], 320)
    out["astronaut_320"] = _downscale(base["astronaut"], 320)
    out["astronaut_mirror"] = np.ascontiguousarray(base["astronaut"][:, ::-1])
    out["jefferson_mirror"] = np.ascontiguousarray(base["jefferson"][:, ::-1])
    out["pair_lincoln_jefferson"] = _side_by_side(base["lincoln"], base["jefferson"])
    out["pair_astronaut_320"] = _side_by_side(out["astronaut_320"], np.ascontiguousarray(out["astronaut_320"][:, ::-1]))
    out["no_face"] = _no_face()
    return out


def pixels_sha(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def detections_array(dets) -> np.ndarray:
    rows = []
    for d in dets or []:
        b = d.location_data.relative_bounding_box
        kp = [(p.x, p.y) for p in d.location_data.relative_keypoints]
        rows.append([b.xmin, b.ymin, b.width, b.height, *np.ravel(kp), d.score[0]])
    return np.array(rows, np.float32).reshape(-1, 17)


def main() -> int:
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")
    import mediapipe as mp

    assert mp.__version__ == "0.10.14", mp.__version__
    data: dict[str, np.ndarray] = {"mediapipe_version": np.array(mp.__version__)}
    for name, rgb in reference_inputs().items():
        data[f"sha_{name}"] = np.array(pixels_sha(rgb))
        data[f"shape_{name}"] = np.array(rgb.shape[:2], np.int32)
        for key, model in (("det_short", 0), ("det_full", 1)):
            with mp.solutions.face_detection.FaceDetection(model_selection=model, min_detection_confidence=0.5) as fd:
                data[f"{key}_{name}"] = detections_array(fd.process(rgb).detections)
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=MESH_FACES, refine_landmarks=True,
                                             min_detection_confidence=MESH_MIN_DETECTION) as fm:
            faces = fm.process(rgb).multi_face_landmarks or []
        data[f"mesh_{name}"] = np.array([[(p.x, p.y, p.z) for p in f.landmark] for f in faces],
                                        np.float32).reshape(-1, 478, 3)
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                             min_detection_confidence=MESH_MIN_DETECTION) as fm:
            faces = fm.process(rgb).multi_face_landmarks or []
        data[f"mesh1_{name}"] = np.array([[(p.x, p.y, p.z) for p in f.landmark] for f in faces],
                                         np.float32).reshape(-1, 478, 3)
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as ss:
            mask = ss.process(rgb).segmentation_mask
        data[f"seg_{name}"] = np.asarray(mask, np.float32)[::SEG_STRIDE, ::SEG_STRIDE].astype(np.float16)
        print(f"{name:24s} {rgb.shape[1]}x{rgb.shape[0]}  short {len(data[f'det_short_{name}'])}"
              f"  full {len(data[f'det_full_{name}'])}  meshes {len(data[f'mesh_{name}'])}", file=sys.stderr)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
