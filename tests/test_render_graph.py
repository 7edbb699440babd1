"""The render graph: ONNX equals its torch definition, and what it draws is right.

Frames are checked with MediaPipe's face mesh (the same measure the eval tools use): lips
that close on an open-mouth photo, eyes that close on a blink, a background that stays put.
"""

from __future__ import annotations

import numpy as np
import pytest

from vcam.runtime.channels import INDEX, N_MOTION
from vcam.avatar import landmarks as lm

torch = pytest.importorskip("torch")

@pytest.fixture(scope="module")
def avatars(sample_avatars):
    return sample_avatars


@pytest.fixture(scope="module")
def stage_factory():
    from vcam.runtime.render import RenderStage

    stages = []

    def make(avatar):
        stage = RenderStage(avatar, provider="cpu")
        stages.append(stage)
        return stage

    yield make
    for s in stages:
        s.close()


def motion(**channels) -> np.ndarray:
    m = np.zeros(N_MOTION, np.float32)
    for k, v in channels.items():
        m[INDEX[k]] = v
    return m


@pytest.fixture(scope="module")
def mesh():
    from vcam.avatar.enroll import _face_models

    with _face_models() as fm:
        yield lambda frame: _landmarks(fm, frame)


def _landmarks(fm, frame):
    found = fm.mesh(np.ascontiguousarray(frame), max_faces=1, min_detection=0.5)
    assert found, "no face found in the rendered frame"
    return found[0][:, :2] * 512


def _iod(L):
    return float(np.linalg.norm(L[468] - L[473]))


def lip_gap(L):
    """Inner-lip gap at the centre, in inter-ocular distances."""
    return float(np.linalg.norm(L[13] - L[14])) / _iod(L)


def eye_open(L):
    """Mean lid opening of both eyes, in inter-ocular distances."""
    return float(np.linalg.norm(L[159] - L[145]) + np.linalg.norm(L[386] - L[374])) / 2 / _iod(L)


def test_onnx_equals_torch(avatars):
    import onnxruntime as ort

    from vcam.resources import graph_dir
    from vcam.graphs.render_model import RenderModel

    model = RenderModel().eval()
    sess = ort.InferenceSession(str(graph_dir() / "render.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    av = avatars["astronaut"]
    for _ in range(3):
        m = np.zeros((1, N_MOTION), np.float32)
        m[0, :37] = rng.random(37) * 0.8
        m[0, 37:40] = rng.normal(0, 6, 3)
        m[0, 40:42] = rng.normal(0, 3, 2)
        m[0, 42] = rng.normal(0, 0.02)
        feeds = dict(motion=m, image=av.image, plate=av.plate, rig_basis=av.rig_basis,
                     rig_maps=av.rig_maps, rig_params=av.rig_params)
        got = sess.run(None, feeds)[0].astype(np.int16)
        with torch.no_grad():
            want = model(*(torch.from_numpy(feeds[k]) for k in ("motion", "image", "plate", "rig_basis",
                                                                 "rig_maps", "rig_params"))).numpy().astype(np.int16)
        diff = np.abs(got - want)
        assert got.shape == (448, 320, 3)
        assert diff.mean() < 0.05 and np.percentile(diff, 99.9) <= 2


def test_windows_hold_everything_the_regions_draw(avatars, monkeypatch):
    """The mouth, the lids and their colours are worked out in windows of the grid sized to
    what they draw: for wide motions (jaw wide open, lids shut, head turned and rolled), on a
    big face too, wider windows draw the same."""
    from conftest import SAMPLE_PHOTOS
    from vcam.avatar.enroll import enroll
    from vcam.graphs import render_model as rm
    from vcam.avatar.rig import build_rig

    close_up = enroll(SAMPLE_PHOTOS["astronaut"], face_width_frac=0.7)
    avatars = dict(avatars, close_up=build_rig(close_up.image, close_up.landmarks, close_up.person_mask,
                                               close_up.plate))
    model = rm.RenderModel().eval()
    motions = [motion(jawOpen=1.0, mouthLowerDownLeft=1.0, mouthLowerDownRight=1.0, mouthUpperUpLeft=1.0,
                      mouthUpperUpRight=1.0, headRoll=20.0, headZ=0.1),
               motion(eyeBlinkLeft=1.0, eyeBlinkRight=1.0, jawOpen=0.5, headYaw=-20.0, headRoll=-20.0),
               motion(eyeWideLeft=1.0, eyeWideRight=1.0, mouthSmileLeft=1.0, mouthSmileRight=1.0, jawOpen=0.6,
                      headYaw=20.0, headPitch=-10.0)]

    def render(av, m):
        tensors = (torch.from_numpy(getattr(av, k)) for k in ("image", "plate", "rig_basis", "rig_maps", "rig_params"))
        with torch.no_grad():
            return model(torch.from_numpy(m[None]), *tensors).numpy()

    windowed = {name: [render(av, m) for m in motions] for name, av in avatars.items()}
    monkeypatch.setattr(rm, "WINDOW_MARGIN", 3 * rm.WINDOW_MARGIN)
    for name, av in avatars.items():
        for m, want in zip(motions, windowed[name]):
            diff = np.abs(render(av, m).astype(int) - want)
            assert diff.mean() < 0.01 and diff.max() <= 8, (name, diff.mean(), diff.max())


def test_rest_pose_reproduces_the_photo(avatars, stage_factory, sample_portraits):
    stage = stage_factory(avatars["painting"])
    frame = stage.render(motion()).astype(np.float32)
    photo = sample_portraits["painting"].image.astype(np.float32)
    assert np.abs(frame - photo).mean() < 1.5


@pytest.mark.parametrize("name", ["astronaut", "painting", "beard_bw"])
def test_lips_close_at_rest_and_open_on_jaw(name, avatars, stage_factory, mesh):
    stage = stage_factory(avatars[name])
    closed = lip_gap(mesh(stage.render(motion()).copy()))
    opened = lip_gap(mesh(stage.render(motion(jawOpen=0.7)).copy()))
    assert closed < 0.04, f"{name}: lips should meet at rest, gap {closed:.3f} IOD"
    assert opened > closed + 0.12, f"{name}: jawOpen 0.7 should open the mouth ({closed:.3f} -> {opened:.3f})"


def test_bilabial_closure_overrides_an_open_photo(avatars, stage_factory, mesh):
    stage = stage_factory(avatars["astronaut"])
    # ARKit's mouthClose presses the lips shut even with the jaw partly open.
    gap = lip_gap(mesh(stage.render(motion(jawOpen=0.3, mouthClose=0.3)).copy()))
    assert gap < 0.04


@pytest.mark.parametrize("name", ["painting", "astronaut"])
def test_blink_closes_both_eyes(name, avatars, stage_factory, mesh):
    stage = stage_factory(avatars[name])
    rest = eye_open(mesh(stage.render(motion()).copy()))
    shut = eye_open(mesh(stage.render(motion(eyeBlinkLeft=1.0, eyeBlinkRight=1.0)).copy()))
    assert shut < 0.45 * rest, f"{name}: blink {rest:.3f} -> {shut:.3f}"


def test_head_turn_moves_the_face_not_the_background(avatars, stage_factory, mesh):
    stage = stage_factory(avatars["astronaut"])
    rest = stage.render(motion()).copy()
    turned = stage.render(motion(headYaw=10.0, headPitch=4.0, headRoll=3.0)).copy()
    nose_rest, nose_turned = mesh(rest)[lm.NOSE_TIP], mesh(turned)[lm.NOSE_TIP]
    assert np.linalg.norm(nose_turned - nose_rest) > 6.0
    # Background corners and the shoulders at the bottom stay exactly put.
    for sl in (np.s_[:40, :40], np.s_[:40, -40:], np.s_[-30:, :], np.s_[200:300, :20]):
        assert np.abs(rest[sl].astype(int) - turned[sl].astype(int)).max() <= 1


def test_gaze_moves_the_iris(avatars, stage_factory, mesh):
    stage = stage_factory(avatars["painting"])
    rest = mesh(stage.render(motion()).copy())
    # The subject looks to their left: image right for both eyes.
    look = mesh(stage.render(motion(eyeLookOutLeft=0.8, eyeLookInRight=0.8)).copy())
    assert look[468, 0] - rest[468, 0] > 1.0
    assert look[473, 0] - rest[473, 0] > 1.0


def test_smile_lifts_the_mouth_corners(avatars, stage_factory, mesh):
    stage = stage_factory(avatars["beard_bw"])
    rest = mesh(stage.render(motion()).copy())
    smile = mesh(stage.render(motion(mouthSmileLeft=1.0, mouthSmileRight=1.0)).copy())
    lift = ((rest[61, 1] - smile[61, 1]) + (rest[291, 1] - smile[291, 1])) / 2
    assert lift > 2.0


def test_brows_rise_when_surprised(avatars, stage_factory, mesh):
    stage = stage_factory(avatars["painting"])
    rest = mesh(stage.render(motion()).copy())
    up = mesh(stage.render(motion(browInnerUp=1.0, browOuterUpLeft=1.0, browOuterUpRight=1.0)).copy())
    rise = float(np.mean(rest[list(lm.RIGHT_BROW + lm.LEFT_BROW), 1] - up[list(lm.RIGHT_BROW + lm.LEFT_BROW), 1]))
    assert rise > 2.0


def test_render_stage_swaps_avatar_in_place(avatars, stage_factory):
    stage = stage_factory(avatars["painting"])
    frame = stage.render(motion())
    a = frame.copy()
    stage.set_avatar(avatars["astronaut"])
    b = stage.render(motion())
    assert b is frame  # the same preallocated output buffer
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_render_allocates_nothing_per_frame(avatars, stage_factory):
    grown = _bytes_grown_over_100_frames(stage_factory(avatars["painting"]), motion(jawOpen=0.3, headYaw=4.0))
    assert grown < 16 * 1024, f"{grown} bytes allocated over 100 frames"


def _bytes_grown_over_100_frames(stage, m) -> int:
    import tracemalloc

    for _ in range(5):
        stage.render(m)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(100):
        m[INDEX["jawOpen"]] = (i % 10) / 10
        stage.render(m)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(d.size_diff for d in after.compare_to(before, "filename") if d.size_diff > 0)


def test_device_buffers_follow_every_change(avatars):
    """On a GPU each input goes through a buffer of the session's own (onnxruntime copies a
    host input when it is bound, so later changes would never reach the graph: a black frame).
    ``copy_inputs=True`` takes that path on the CPU: frames equal the plain path's, follow the
    motion frame by frame, and follow a portrait swapped in."""
    from vcam.runtime.render import RenderStage

    moves = [motion(jawOpen=0.5), motion(jawOpen=0.1, headYaw=5.0), motion(eyeBlinkLeft=1.0, eyeBlinkRight=1.0)]
    with RenderStage(avatars["painting"], provider="cpu") as plain, \
            RenderStage(avatars["painting"], provider="cpu", copy_inputs=True) as staged:
        for m in moves:
            assert np.array_equal(staged.render(m), plain.render(m))
        plain.set_avatar(avatars["beard_bw"])
        staged.set_avatar(avatars["beard_bw"])
        for m in moves:
            assert np.array_equal(staged.render(m), plain.render(m))
        assert staged.frame.mean() > 20  # a face, not a black window


def test_device_buffers_allocate_nothing_per_frame(avatars):
    from vcam.runtime.render import RenderStage

    with RenderStage(avatars["painting"], provider="cpu", copy_inputs=True) as stage:
        grown = _bytes_grown_over_100_frames(stage, motion(jawOpen=0.3))
    assert grown < 16 * 1024, f"{grown} bytes allocated over 100 frames"
