"""Enroll: photo -> Portrait (framing, landmarks, person mask, plate, cache, errors)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcam.runtime.errors import ConfigError, InputError
from vcam.avatar import cache, framing
from vcam.avatar import landmarks as L
from vcam.avatar.enroll import ENROLL_VERSION, Portrait, enroll, estimate_yaw_deg

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "vcam" / "assets"
JEFFERSON = ASSETS / "painting_thomas_jefferson_rembrandt_peale.jpg"
LINCOLN = ASSETS / "photo_abraham_lincoln_beard_bw.jpg"
ASTRONAUT = ASSETS / "photo_astronaut_eileen_collins.png"
COFFEE = Path("/work/shared/media/images/hard_no_face_coffee.png")
SAMPLES = [JEFFERSON, LINCOLN, ASTRONAUT]

EYE_TARGET = np.array([256.0, 0.40 * 512])


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def refs() -> dict[str, Portrait]:
    """Each sample enrolled once, without the cache."""
    return {p.name: enroll(p, use_cache=False) for p in SAMPLES}


def _oval_mask(lm: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros((512, 512), np.uint8)
    cv2.fillConvexPoly(m, np.round(lm[list(L.FACE_OVAL), :2]).astype(np.int32), 1)
    return m.astype(bool)


def _check_portrait(p: Portrait, *, frac: float = 0.40) -> None:
    assert p.image.shape == (512, 512, 3) and p.image.dtype == np.uint8
    assert p.plate.shape == (512, 512, 3) and p.plate.dtype == np.uint8
    assert p.landmarks.shape == (478, 3) and p.landmarks.dtype == np.float32
    assert p.person_mask.shape == (512, 512) and p.person_mask.dtype == np.float32
    assert p.valid.shape == (512, 512) and p.valid.dtype == np.float32
    assert 0.0 <= p.person_mask.min() and p.person_mask.max() <= 1.0
    assert set(np.unique(p.valid)) <= {0.0, 1.0}
    assert np.isfinite(p.landmarks).all()
    # Framed as asked, or (a photo with too little margin) zoomed in and shifted within limits.
    eyes = framing.eye_midpoint(p.landmarks)
    assert abs(eyes[0] - EYE_TARGET[0]) < framing.MAX_SHIFT_X_FRAC * 512 + 4.0, eyes
    assert -framing.MAX_SHIFT_UP_FRAC * 512 - 4.0 < eyes[1] - EYE_TARGET[1] < framing.MAX_SHIFT_DOWN_FRAC * 512 + 4.0, eyes
    width = framing.face_width(p.landmarks) / 512
    assert 0.95 < width / frac < framing.MAX_ZOOM_IN * 1.05, width
    if abs(width / frac - 1.0) > 0.05 or np.abs(eyes - EYE_TARGET).max() > 4.0:
        assert p.valid.mean() > 0.97, "adapted framing should stay (nearly) within the photo"
    face = _oval_mask(p.landmarks)
    assert p.person_mask[face].mean() > 0.97
    for corner in (p.person_mask[:24, :24], p.person_mask[:24, -24:]):
        assert corner.mean() < 0.05
    # the plate has no face: it differs from the image there
    diff = np.abs(p.plate.astype(np.int16) - p.image.astype(np.int16)).mean(axis=2)
    assert diff[face].mean() > 8.0
    # ...and keeps the background away from the person
    far = cv_dilate(p.person_mask > 0.05, 40) == 0
    if far.any():
        assert diff[far].mean() < 2.0
    # z: the nose tip is nearer the camera than the cheeks
    assert p.landmarks[L.NOSE_TIP, 2] < p.landmarks[[234, 454], 2].mean()


def cv_dilate(mask: np.ndarray, r: int) -> np.ndarray:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k)


@pytest.mark.parametrize("photo", SAMPLES, ids=lambda p: p.stem)
def test_sample_portraits(photo, refs):
    p = refs[photo.name]
    _check_portrait(p)
    assert p.n_faces == 1
    assert p.source == str(photo)
    assert p.sha256 == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert abs(estimate_yaw_deg(p.landmarks)) < 30


def test_painting_is_padded_where_the_frame_leaves_the_photo(refs):
    p = refs[JEFFERSON.name]
    assert p.valid.min() == 0.0 and p.valid.mean() > 0.6
    # above the head the padding continues the dark background, not a mirrored white-hair twin
    pad = p.valid[:40] == 0
    assert pad.any()
    assert p.image[:40][pad].mean() < 110


def test_exif_rotation_gives_same_framing(tmp_path, refs):
    im = Image.open(ASTRONAUT).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.png"
    im.save(path, exif=exif.tobytes())
    p = enroll(path)
    ref = refs[ASTRONAUT.name]
    assert np.abs(p.landmarks[:, :2] - ref.landmarks[:, :2]).max() < 1.0
    assert np.abs(p.image.astype(int) - ref.image.astype(int)).mean() < 1.0


def test_greyscale_photo(tmp_path):
    path = tmp_path / "grey.png"
    Image.open(ASTRONAUT).convert("L").save(path)
    p = enroll(path)
    _check_portrait(p)
    assert np.array_equal(p.image[..., 0], p.image[..., 1])


def test_16bit_greyscale_png(tmp_path):
    path = tmp_path / "g16.png"
    g = np.asarray(Image.open(LINCOLN).convert("L")).astype(np.uint16) * 257
    Image.fromarray(g).save(path)
    p = enroll(path)
    _check_portrait(p)
    assert p.image.mean() > 60  # not clipped to white or black


def test_rgba_cutout_uses_alpha(tmp_path):
    import cv2

    rgba = np.asarray(Image.open(ASTRONAUT).convert("RGBA")).copy()
    alpha = np.zeros((512, 512), np.uint8)  # a rough cut-out: head and upper body
    cv2.ellipse(alpha, (225, 105), (85, 100), 0, 0, 360, 255, -1)
    cv2.fillPoly(alpha, [np.array([[150, 170], [300, 170], [380, 511], [20, 511]], np.int32)], 255)
    rgba[..., 3] = alpha
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    p = enroll(path)
    _check_portrait(p)
    # transparent pixels were composited over neutral grey and are background in the mask
    background = p.person_mask < 0.01
    assert background.mean() > 0.2
    assert np.median(np.abs(p.image[background].astype(int) - 128)) <= 2
    # the mask follows the cut-out: what is clearly not grey is person
    coloured = np.abs(p.image.astype(int) - 128).max(axis=2) > 40
    assert p.person_mask[coloured].mean() > 0.95


def test_huge_photo_is_downscaled_not_refused(tmp_path, refs):
    path = tmp_path / "huge.jpg"
    Image.open(ASTRONAUT).convert("RGB").resize((5000, 5000), Image.Resampling.BICUBIC).save(path, quality=90)
    t = time.perf_counter()
    p = enroll(path)
    assert time.perf_counter() - t < 5.0
    _check_portrait(p)
    ref = refs[ASTRONAUT.name]
    assert np.abs(p.landmarks[:, :2] - ref.landmarks[:, :2]).mean() < 2.0


def test_tiny_photo(tmp_path):
    path = tmp_path / "tiny.png"
    Image.open(ASTRONAUT).convert("RGB").resize((250, 250), Image.Resampling.LANCZOS).save(path)
    _check_portrait(enroll(path))


@pytest.mark.parametrize("fmt", ["webp", "bmp", "tiff", "gif"])
def test_other_formats(tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    Image.open(ASTRONAUT).convert("RGB").save(path)
    _check_portrait(enroll(path))


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.open(ASTRONAUT).convert("CMYK").save(path)
    _check_portrait(enroll(path))


def test_small_drawn_head_gets_no_twin_below(tmp_path):
    """A small head in a big plain picture: the frame reaches past the photo's bottom, and
    the padding there continues the white page, not a mirrored copy of the head."""
    import cv2

    img = np.full((512, 512, 3), 255, np.uint8)
    cv2.ellipse(img, (256, 255), (147, 172), 0, 0, 360, (248, 220, 192), -1, cv2.LINE_AA)
    cv2.ellipse(img, (256, 255), (147, 172), 0, 0, 360, (0, 0, 0), 4, cv2.LINE_AA)
    for x in (200, 310):
        cv2.circle(img, (x, 220), 20, (0, 0, 0), -1, cv2.LINE_AA)
    path = tmp_path / "drawn.png"
    Image.fromarray(img).save(path)
    p = enroll(path, face_width_frac=0.25)  # too small a face for the page even zoomed in
    pad = p.valid == 0
    below = np.zeros_like(pad)
    below[int(p.landmarks[L.CHIN, 1]) + 40:] = True
    assert (pad & below).sum() > 1000, "the frame should reach past the drawing's bottom"
    assert p.image[pad & below].min() > 200, "a ghost of the head shows under the chin"


def test_two_faces_largest_is_animated(tmp_path, caplog, refs):
    canvas = Image.new("RGB", (900, 512), (200, 200, 200))
    canvas.paste(Image.open(ASTRONAUT).convert("RGB"), (0, 0))
    canvas.paste(Image.open(LINCOLN).convert("RGB").resize((258, 318)), (600, 100))
    path = tmp_path / "two.png"
    canvas.save(path)
    with caplog.at_level(logging.WARNING, logger="vcam.avatar.enroll"):
        p = enroll(path)
    assert p.n_faces == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"2 faces in {path}; animating the largest"]
    ref = refs[ASTRONAUT.name]  # the astronaut is the larger face
    assert np.abs(p.landmarks[:, :2] - ref.landmarks[:, :2]).mean() < 2.0


def test_other_face_width(tmp_path):
    p = enroll(ASTRONAUT, face_width_frac=0.30)
    _check_portrait(p, frac=0.30)
    assert (tmp_path / "cache" / "avatars" / f"{p.sha256}-{ENROLL_VERSION}-0.3.npz").is_file()


def test_bad_face_width_frac():
    with pytest.raises(ConfigError, match="face_width_frac"):
        enroll(ASTRONAUT, face_width_frac=2.0)


@pytest.mark.skipif(not COFFEE.is_file(), reason="shared media not present")
def test_coffee_has_no_face():
    with pytest.raises(InputError, match="no face found in") as e:
        enroll(COFFEE)
    assert str(COFFEE) in str(e.value)


def test_noise_has_no_face(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path)
    with pytest.raises(InputError, match=r"^no face found in .*noise\.png: use a photo"):
        enroll(path)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    with pytest.raises(InputError, match=r"^not an image: .*notes\.png \("):
        enroll(path)


def test_missing_photo(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as e:
        enroll(path)
    assert str(e.value) == f"photo not found: {path}"


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_sideways_and_upside_down_photos_are_turned_upright(tmp_path, refs, turns):
    """A photo saved turned (no orientation tag) animates the face upright, as the upright
    photo does (upside down, the face mesh alone would put the mouth on the forehead)."""
    path = tmp_path / f"turned{turns}.png"
    Image.fromarray(np.rot90(np.asarray(Image.open(JEFFERSON).convert("RGB")), turns)).save(path)
    p = enroll(path)
    ref = refs[JEFFERSON.name]
    assert np.abs(p.landmarks[:, :2] - ref.landmarks[:, :2]).mean() < 3.0
    assert p.landmarks[L.CHIN, 1] > p.landmarks[L.NOSE_TIP, 1] > p.landmarks[L.RIGHT_EYE_OUTER, 1]


def test_tiny_face_is_not_found_sideways_either(tmp_path):
    """A face too small for the detector upright is sometimes "found" weakly in a turned
    copy: that must not make vcam animate it lying on its side."""
    canvas = Image.new("RGB", (4000, 3000), (150, 160, 170))
    canvas.paste(Image.open(JEFFERSON).convert("RGB").resize((200, 200)), (1900, 1400))
    path = tmp_path / "tiny_face.jpg"
    canvas.save(path, quality=90)
    try:
        p = enroll(path)
    except InputError as e:
        assert "no face found" in str(e)
        return
    # found: then upright, eyes level and above the mouth
    assert abs(p.landmarks[L.RIGHT_EYE_OUTER, 1] - p.landmarks[L.LEFT_EYE_OUTER, 1]) < 20
    assert p.landmarks[L.CHIN, 1] > p.landmarks[L.NOSE_TIP, 1] > p.landmarks[L.RIGHT_EYE_OUTER, 1]


@pytest.mark.parametrize("keep, edge", [((0.33, 1.0, 0.0, 1.0), "top"), ((0.0, 0.55, 0.0, 1.0), "bottom")])
def test_face_cut_off_by_the_edge_is_refused(tmp_path, keep, edge):
    """Cut through the brows (or above the mouth): one line naming the edge, no portrait."""
    img = np.asarray(Image.open(JEFFERSON).convert("RGB"))
    h, w = img.shape[:2]
    y0, y1, x0, x1 = keep
    path = tmp_path / f"cut_{edge}.png"
    Image.fromarray(img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]).save(path)
    with pytest.raises(InputError) as e:
        enroll(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert f"cut off by the photo's {edge} edge" in msg or "no face found" in msg


def test_forehead_cropped_above_the_brows_still_animates(tmp_path, refs):
    ref = refs[JEFFERSON.name]
    img = np.asarray(Image.open(JEFFERSON).convert("RGB"))
    import vcam.avatar.enroll as E

    with E._face_models() as faces:
        lm = E._mesh_around(faces, img, E._detect_faces(faces, img)[0])
    brow_y = float(np.min(lm[list(L.RIGHT_BROW + L.LEFT_BROW), 1]))
    # the photo's top moved down to just above the brows: the forehead is cut off
    path = tmp_path / "tight.png"
    Image.fromarray(img[max(0, int(brow_y) - 12):]).save(path)
    p = enroll(path)

    def normalized(q):  # framing may zoom in and shift for the cut photo: compare the face itself
        return (q.landmarks[:, :2] - framing.eye_midpoint(q.landmarks)) / framing.face_width(q.landmarks)

    assert np.abs(normalized(p) - normalized(ref)).mean() < 0.02


def test_profile_is_refused(monkeypatch):
    import vcam.avatar.enroll as E

    monkeypatch.setattr(E, "MAX_YAW_DEG", 5.0)  # Jefferson turns ~15 degrees: "too far" now
    with pytest.raises(InputError, match="turned too far.*more frontal photo"):
        enroll(JEFFERSON, use_cache=False)


def test_yaw_estimate_follows_rotation(refs):
    lm = refs[LINCOLN.name].landmarks.astype(np.float64)
    c = lm.mean(axis=0)
    base = estimate_yaw_deg(lm)
    for deg in (20.0, 60.0):
        a = np.radians(deg)
        ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        b = np.radians(20.0)  # roll must not matter
        rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
        turned = (lm - c) @ ry.T @ rz.T + c
        assert abs(abs(estimate_yaw_deg(turned) - base) - deg) < 2.0


def test_cache_hit_is_equal_and_fast(tmp_path):
    first = enroll(LINCOLN)
    files = list((tmp_path / "cache" / "avatars").glob("*.npz"))
    assert [f.name for f in files] == [f"{first.sha256}-{ENROLL_VERSION}-0.4.npz"]
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        again = enroll(LINCOLN)
        best = min(best, time.perf_counter() - t)
    assert best < 0.05, best
    for name in ("image", "landmarks", "person_mask", "plate", "valid"):
        a, b = getattr(first, name), getattr(again, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert again.n_faces == first.n_faces and again.sha256 == first.sha256


def test_cache_keyed_by_content_not_path(tmp_path):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(LINCOLN.read_bytes())
    enroll(LINCOLN)
    p = enroll(copy)
    assert p.source == str(copy)
    assert len(list((tmp_path / "cache" / "avatars").glob("*.npz"))) == 1


def test_damaged_cache_is_recomputed(tmp_path):
    p = enroll(ASTRONAUT)
    path = tmp_path / "cache" / "avatars" / f"{p.sha256}-{ENROLL_VERSION}-0.4.npz"
    path.write_bytes(b"garbage")
    again = enroll(ASTRONAUT)
    assert np.array_equal(again.image, p.image)
    assert cache.load_npz(path) is not None  # rewritten


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG layout is Linux's")
def test_cache_root_follows_xdg_and_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "vcam"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_root() == tmp_path / ".cache" / "vcam"
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "mine"))
    assert cache.cache_root() == tmp_path / "mine"


def test_import_has_no_side_effects():
    code = ("import sys, vcam.avatar.enroll, vcam.avatar.cache, vcam.avatar.framing, vcam.avatar.matting, vcam.avatar.photo_io; "
            "assert 'onnxruntime' not in sys.modules and 'cv2' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
