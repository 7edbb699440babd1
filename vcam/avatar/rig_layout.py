"""The layout of an avatar's rig tensors: channel names of ``rig_maps`` and ``rig_params``.

Shared by the rig builder (:mod:`vcam.avatar.rig`, numpy) and the render graph's torch definition
(:mod:`vcam.graphs.render_model`); the exported ONNX graph reads them by index.

``rig_basis``: ``(len(BASIS), 2 * GRID_H * GRID_W) float32``, each row one smooth forward
displacement field (x plane then y plane) over the face-space grid (grid cell ``(i, j)`` is
the 512-frame point ``(patch_x0 + 2j + 0.5, patch_y0 + 2i + 0.5)``); all lengths in
512-frame pixels.
``rig_maps``: ``(1, len(MAPS), GRID_H, GRID_W) float32``, the region and head maps below.
``rig_params``: ``(1, len(PARAMS)) float32`` scalars.
"""

from __future__ import annotations

from vcam.runtime.channels import INDEX

FRAME = 512
#: The window of the frame that moves (head, face, neck): everything outside it is the still
#: photo. Placed per avatar (``patch_x0``, ``patch_y0``); enroll centres every face, so a
#: fixed size covers the head and hair.
PATCH_W, PATCH_H = 320, 448
#: The face-space field grid covers the window at 2 px per cell; the window's pixels are made
#: from it by upsampling.
CELL = 2
GRID_W, GRID_H = PATCH_W // CELL, PATCH_H // CELL

#: Smooth displacement fields (forward, px per unit coefficient), two channels (x, y) each.
BASIS: tuple[str, ...] = (
    "smileL", "smileR", "frownL", "frownR", "stretchL", "stretchR", "pucker", "funnel", "press",
    "cheekL", "cheekR", "browDownL", "browDownR", "browInnerUp", "browOuterUpL", "browOuterUpR",
    "gazeRx", "gazeRy", "gazeLx", "gazeLy",
)

#: How each basis coefficient is made from the motion vector: {basis: {motion channel: weight}}.
BASIS_FROM_MOTION: dict[str, dict[str, float]] = {
    "smileL": {"mouthSmileLeft": 1.0},
    "smileR": {"mouthSmileRight": 1.0},
    "frownL": {"mouthFrownLeft": 1.0},
    "frownR": {"mouthFrownRight": 1.0},
    "stretchL": {"mouthStretchLeft": 1.0},
    "stretchR": {"mouthStretchRight": 1.0},
    "pucker": {"mouthPucker": 1.0},
    "funnel": {"mouthFunnel": 1.0},
    "press": {"mouthPressLeft": 0.5, "mouthPressRight": 0.5},
    "cheekL": {"cheekSquintLeft": 1.0, "mouthSmileLeft": 0.4},
    "cheekR": {"cheekSquintRight": 1.0, "mouthSmileRight": 0.4},
    "browDownL": {"browDownLeft": 1.0},
    "browDownR": {"browDownRight": 1.0},
    "browInnerUp": {"browInnerUp": 1.0},
    "browOuterUpL": {"browOuterUpLeft": 1.0},
    "browOuterUpR": {"browOuterUpRight": 1.0},
    # Gaze in image directions: +x = image right, +y = image down. The subject's right eye
    # is on the image's left, so looking "in" (toward the nose) moves its iris to image right.
    "gazeRx": {"eyeLookInRight": 1.0, "eyeLookOutRight": -1.0},
    "gazeRy": {"eyeLookDownRight": 1.0, "eyeLookUpRight": -1.0},
    "gazeLx": {"eyeLookOutLeft": 1.0, "eyeLookInLeft": -1.0},
    "gazeLy": {"eyeLookDownLeft": 1.0, "eyeLookUpLeft": -1.0},
}

#: Per-region maps. Mouth (m*) and eyes (r*: subject's right eye = image left, l*: left eye):
#: ``*b`` is each grid point's coordinate along the region's vertical axis; ``*S*`` are the
#: source knots along that axis for the grid point's column (top, upper edge, lower edge,
#: lower knot, bottom); ``mProf`` the mouth-opening profile (0 outside the mouth), ``mJaw``
#: the jaw taper (1 at the chin centre, 0 past the jaw angles), ``mU`` the position across
#: the mouth (-1 .. 1 between the inner corners).
REGION_MAPS: tuple[str, ...] = (
    "mb", "mSa", "mSul", "mSll", "mSch", "mSb", "mProf", "mJaw", "mU",
    "rb", "rSt", "rSue", "rSle", "rSbt",
    "lb", "lSt", "lSue", "lSle", "lSbt",
)

#: Head maps: ``head`` weight (1 on the head, 0 on body and background), ``depth`` toward
#: the camera from the rotation pivot, px; ``alpha`` the person mask.
HEAD_MAPS: tuple[str, ...] = ("head", "depth", "alpha")
#: ``frown``: 0..1, how much a lowered brow darkens the skin (the creases between the brows
#: and the brow ridge's shadow over the inner upper lids), so a frown reads without eyebrows.
SHADE_MAPS: tuple[str, ...] = ("frown",)

#: ``gx``, ``gy``: the frame coordinates of each grid cell.
MAPS: tuple[str, ...] = ("gx", "gy") + REGION_MAPS + HEAD_MAPS + SHADE_MAPS
MAP_INDEX: dict[str, int] = {n: i for i, n in enumerate(MAPS)}

PARAMS: tuple[str, ...] = (
    "patch_x0", "patch_y0",          # top-left corner of the moving window in the frame, px
    "pivot_x", "pivot_y",            # head rotation pivot in the frame, px
    "m_eyx", "m_eyy",                # mouth vertical axis (unit vector)
    "r_eyx", "r_eyy", "l_eyx", "l_eyy",  # eyes' vertical axes
    "jaw_px",                        # lip gap at jawOpen = 1, px
    "lip_up_px", "lip_down_px",      # extra gap from mouthUpperUp / mouthLowerDown = 1, px
    "src_gap_px",                    # the photo's own lip gap at the centre, px
    "upper_frac",                    # share of the opening taken by the upper lip
    "teeth_r", "teeth_g", "teeth_b",
    "cavity_r", "cavity_g", "cavity_b",
    "tongue_r", "tongue_g", "tongue_b",
    "rlid_r", "rlid_g", "rlid_b", "llid_r", "llid_g", "llid_b",  # closed-lid skin colour per eye
)
PARAM_INDEX: dict[str, int] = {n: i for i, n in enumerate(PARAMS)}


def basis_matrix():
    """``(N_MOTION, len(BASIS)) float32``: basis coefficients = motion @ this matrix."""
    import numpy as np

    from vcam.runtime.channels import N_MOTION

    m = np.zeros((N_MOTION, len(BASIS)), np.float32)
    for j, b in enumerate(BASIS):
        for ch, w in BASIS_FROM_MOTION[b].items():
            m[INDEX[ch], j] = w
    return m
