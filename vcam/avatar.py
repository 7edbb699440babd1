"""Photo -> Avatar: enroll (cached by content hash) then build the rig."""

from __future__ import annotations

import logging
import os

from vcam.rig import Avatar, build_rig

log = logging.getLogger(__name__)


def load_avatar(photo: str | os.PathLike, *, face_width_frac: float = 0.40, use_cache: bool = True) -> Avatar:
    """Enroll ``photo`` (or read its cached enrollment) and build the render graph's tensors.

    Raises ``runtime.errors.InputError`` naming the photo when it has no usable face.
    """
    from vcam.enroll import enroll

    portrait = enroll(photo, face_width_frac=face_width_frac, use_cache=use_cache)
    if portrait.n_faces > 1:
        log.warning("%d faces in %s; animating the largest", portrait.n_faces, photo)
    return build_rig(portrait.image, portrait.landmarks, portrait.person_mask, portrait.plate)
