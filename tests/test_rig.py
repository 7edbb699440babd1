"""The rig: per-photo tensors of the right shapes, knots in order, colours from the photo."""

from __future__ import annotations

import numpy as np
import pytest

from vcam.avatar.rig_layout import BASIS, GRID_H, GRID_W, MAP_INDEX, MAPS, PARAM_INDEX, PARAMS, PATCH_H, PATCH_W

PHOTOS = ("painting", "astronaut", "beard_bw")


@pytest.fixture(scope="module")
def rigs(sample_portraits, sample_avatars):
    return {name: (sample_portraits[name], sample_avatars[name]) for name in PHOTOS}


def _map(avatar, name):
    return avatar.rig_maps[0, MAP_INDEX[name]]


@pytest.mark.parametrize("name", PHOTOS)
def test_shapes_and_dtypes(name, rigs):
    _, av = rigs[name]
    assert av.image.shape == (1, 3, 512, 512) and av.image.dtype == np.float32
    assert av.plate.shape == (1, 3, PATCH_H, PATCH_W)
    assert av.rig_basis.shape == (len(BASIS), 2 * GRID_H * GRID_W)
    assert av.rig_maps.shape == (1, len(MAPS), GRID_H, GRID_W)
    assert av.rig_params.shape == (1, len(PARAMS))
    assert av.still.shape == (512, 512, 3) and av.still.dtype == np.uint8
    for arr in (av.image, av.plate, av.rig_basis, av.rig_maps, av.rig_params):
        assert arr.flags.c_contiguous and np.isfinite(arr).all()
    x0, y0 = av.patch_origin
    assert 0 <= x0 <= 512 - PATCH_W and 0 <= y0 <= 512 - PATCH_H


@pytest.mark.parametrize("name", PHOTOS)
def test_the_moving_window_holds_the_face(name, rigs):
    portrait, av = rigs[name]
    x0, y0 = av.patch_origin
    face = portrait.landmarks[:468, :2]
    assert face[:, 0].min() > x0 + 20 and face[:, 0].max() < x0 + PATCH_W - 20
    assert face[:, 1].min() > y0 and face[:, 1].max() < y0 + PATCH_H - 20


@pytest.mark.parametrize("name", PHOTOS)
def test_mouth_knots_are_ordered(name, rigs):
    _, av = rigs[name]
    sa, sul, sll, sch, sb = (_map(av, k) for k in ("mSa", "mSul", "mSll", "mSch", "mSb"))
    assert (sa < sul).all() and (sul <= sll).all() and (sll < sch).all() and (sch < sb).all()
    prof = _map(av, "mProf")
    assert prof.max() == pytest.approx(1.0, abs=0.05) and prof.min() == 0.0


@pytest.mark.parametrize("name", PHOTOS)
def test_eye_knots_are_ordered(name, rigs):
    _, av = rigs[name]
    for p in "rl":
        st, sue, sle, sbt = (_map(av, p + k) for k in ("St", "Sue", "Sle", "Sbt"))
        assert (st < sue).all() and (sue <= sle).all() and (sle < sbt).all()
        assert (sle - sue).max() > 3.0  # an open eye in every sample photo


def test_open_mouth_photo_has_a_lip_gap(rigs):
    assert rigs["astronaut"][1].rig_params[0, PARAM_INDEX["src_gap_px"]] > 3.0
    assert rigs["painting"][1].rig_params[0, PARAM_INDEX["src_gap_px"]] == 0.0


@pytest.mark.parametrize("name", PHOTOS)
def test_head_weight_is_zero_at_the_window_edge(name, rigs):
    _, av = rigs[name]
    x0, y0 = av.patch_origin
    head = _map(av, "head")
    assert head.max() == pytest.approx(1.0, abs=1e-3)
    if x0 > 0:
        assert head[:, 0].max() < 1e-3
    if x0 + PATCH_W < 512:
        assert head[:, -1].max() < 1e-3
    assert head[-1, :].max() < 1e-3  # the shoulders at the bottom never move with the head


@pytest.mark.parametrize("name", PHOTOS)
def test_basis_fields_are_local_and_do_not_fold(name, rigs):
    _, av = rigs[name]
    fields = av.rig_basis.reshape(len(BASIS), 2, GRID_H, GRID_W)
    # Far corners of the window do not move.
    assert np.abs(fields[:, :, :8, :8]).max() < 0.05
    # Gradients (px per px; cells are 2 px) stay below 0.7 at full strength: no fold-over.
    # Gaze slides the iris under the lids: below 1 at the strongest gaze the motion makes (0.3).
    # A frown gathers the skin between the brows: it shears along the band's edges (about 1)
    # but the Jacobian's determinant stays well above 0 (skin bunches, never folds).
    for k, b in enumerate(BASIS):
        dx_dy, dx_dx = np.gradient(fields[k, 0], 2.0)
        dy_dy, dy_dx = np.gradient(fields[k, 1], 2.0)
        grad = max(np.abs(g).max() for g in (dx_dx, dx_dy, dy_dx, dy_dy))
        limit = 1.0 / 0.3 if b.startswith("gaze") else 1.05 if b.startswith("browDown") else 0.7
        assert grad < limit, f"{b}: gradient {grad:.2f}"
        if not b.startswith("gaze"):
            det = (1.0 + dx_dx) * (1.0 + dy_dy) - dx_dy * dy_dx
            assert det.min() > 0.2, f"{b}: the field squeezes skin to {det.min():.2f} of its area"


def test_mouth_colours_follow_the_photo(rigs):
    grey = rigs["beard_bw"][1].rig_params[0]
    for part in ("teeth", "cavity", "tongue"):
        rgb = [grey[PARAM_INDEX[f"{part}_{c}"]] for c in "rgb"]
        assert max(rgb) - min(rgb) < 1e-6, f"{part} should stay grey in a black-and-white photo"
    colour = rigs["astronaut"][1].rig_params[0]
    teeth = np.array([colour[PARAM_INDEX[f"teeth_{c}"]] for c in "rgb"])
    cavity = np.array([colour[PARAM_INDEX[f"cavity_{c}"]] for c in "rgb"])
    assert teeth.mean() > 0.5 > cavity.mean()
