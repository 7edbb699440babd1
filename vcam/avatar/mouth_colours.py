"""The mouth interior's colours (teeth, cavity, tongue) for the rig, from the photo's own light.

Where the photo shows its teeth, those teeth; where it does not, teeth lighter than the
cheeks, white balanced to the photo (a grey photo's teeth grey, a sepia one's sepia, a
painting's in its palette). The cavity and tongue come from the lips' colour, in shade.
Pure numpy + OpenCV, once per photo.
"""

from __future__ import annotations

import numpy as np

from vcam.avatar import landmarks as lm
from vcam.avatar.rig_layout import PARAM_INDEX

#: Natural teeth against the cheeks, CIELAB L*: real talking-face videos read +16..+22 in the
#: brightest quarter of an open mouth; the drawn teeth are shaded 0.8..1 at the front.
TEETH_OVER_SKIN_L = 22.0
#: How much of the skin's warmth (CIELAB a*, b*) teeth keep: white balanced to the photo, so
#: a sepia photo's teeth are sepia, a warm painting's warm, and a grey photo's grey.
TEETH_SKIN_TINT = 0.3


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3) float32`` RGB 0..1 -> CIELAB (L* 0..100)."""
    import cv2

    rgb = np.asarray(rgb, np.float32)
    return cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(rgb.shape)


def _rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB ``(3,)`` -> RGB ``(3,) float32`` 0..1."""
    import cv2

    return np.clip(cv2.cvtColor(np.asarray(lab, np.float32).reshape(1, 1, 3), cv2.COLOR_LAB2RGB).reshape(3), 0.0, 1.0)


def natural_teeth(img: np.ndarray, L: np.ndarray, grey: bool) -> np.ndarray:
    """``(3,) float32`` RGB 0..1: the colour of teeth the photo does not show.

    Lighter than the cheeks by :data:`TEETH_OVER_SKIN_L` (L* 76 to 94: teeth read light on
    every skin), with a share of the skin's own warmth, so the photo's white balance and palette carry over.
    """
    cheeks = []
    size = img.shape[0]
    r = max(2, int(0.04 * float(np.linalg.norm(L[lm.RIGHT_EYE_OUTER, :2] - L[lm.LEFT_EYE_OUTER, :2]))))
    for i in lm.CHEEKS:
        x, y = (int(round(float(v))) for v in L[i, :2])
        patch = img[max(0, y - r):min(size, y + r + 1), max(0, x - r):min(size, x + r + 1)]
        if patch.size:
            cheeks.append(patch.reshape(-1, 3))
    skin = np.concatenate(cheeks).mean(axis=0) if cheeks else np.array([0.75, 0.6, 0.5], np.float32)
    s_lab = to_lab(skin)
    t_lab = np.array([np.clip(s_lab[0] + TEETH_OVER_SKIN_L, 76.0, 94.0),
                      TEETH_SKIN_TINT * s_lab[1], TEETH_SKIN_TINT * s_lab[2] + (0.0 if grey else 3.0)], np.float32)
    return _rgb(t_lab)


def mouth_colours(image: np.ndarray, L: np.ndarray, params: np.ndarray, gap_c: float) -> np.ndarray:
    """Teeth, cavity and tongue colours from the photo (greyscale photos stay grey), written
    into ``params`` (the rig's ``(len(PARAMS),) float32``) as ``teeth_r`` ... ``tongue_b``.

    ``image`` ``(512, 512, 3) uint8`` RGB, ``L`` ``(478, 3) float32`` landmarks in frame
    pixels, ``gap_c`` the photo's lip gap at the mouth's centre (px). Returns the photo with an open mouth's inside painted a dark lip colour: the render
    graph draws every mouth interior itself, and where lips that were apart are pressed
    together, the few pixels sampled across the seam then read as the lips' dark line
    instead of the photo's teeth.
    """
    img = image.astype(np.float32) / 255.0
    import cv2

    lip_mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lip_mask, [np.round(np.concatenate([L[list(lm.LIPS_OUTER_UPPER), :2],
                                                     L[list(lm.LIPS_OUTER_LOWER), :2][::-1]])).astype(np.int32)], 1)
    gap_mask = np.zeros_like(lip_mask)
    cv2.fillPoly(gap_mask, [np.round(np.concatenate([L[list(lm.LIPS_INNER_UPPER), :2],
                                                     L[list(lm.LIPS_INNER_LOWER), :2][::-1]])).astype(np.int32)], 1)
    lip_mask &= 1 - gap_mask
    lip = img[lip_mask > 0].mean(axis=0) if lip_mask.any() else np.array([0.6, 0.35, 0.33], np.float32)
    # Greyscale is judged on the face, not the frame: a drawn face on a white page is colour.
    face_mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(face_mask, cv2.convexHull(np.round(L[:, :2]).astype(np.int32)), 1)
    face_px = img[face_mask > 0] if face_mask.any() else img.reshape(-1, 3)
    sat = float(np.mean(face_px.max(axis=1) - face_px.min(axis=1)))
    grey = sat < 0.04
    teeth = natural_teeth(img, L, grey)
    if gap_c >= 3.0 and gap_mask.any():
        # The photo shows its teeth: those teeth, as bright as they are there.
        px = img[gap_mask > 0]
        lum = px.mean(axis=1)
        bright = px[lum >= np.quantile(lum, 0.75)]
        if bright.size and bright.mean() > 0.45:
            teeth = bright.mean(axis=0)
    cavity = lip * np.array([0.24, 0.13, 0.13], np.float32)
    tongue = lip * np.array([0.58, 0.38, 0.38], np.float32)  # in the mouth's shade
    if grey:
        teeth, cavity, tongue = (np.full(3, float(c.mean()), np.float32) for c in (teeth, cavity, tongue))
    for name, c in (("teeth", teeth), ("cavity", cavity), ("tongue", tongue)):
        for k, ch in enumerate("rgb"):
            params[PARAM_INDEX[f"{name}_{ch}"]] = float(c[k])
    if gap_c < 1.5 or not gap_mask.any():
        return image
    seam = lip * 0.75
    if grey:
        seam = np.full(3, float(seam.mean()), np.float32)
    inside = gap_mask > 0
    sealed = image.copy()
    sealed[inside] = np.clip(seam * 255.0, 0, 255).astype(np.uint8)
    return sealed
