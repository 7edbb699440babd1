"""Photo -> Avatar: enroll (cached by content hash) then build the rig."""

from __future__ import annotations

import os

from vcam.rig import Avatar, build_rig


def load_avatar(photo: str | os.PathLike, *, face_width_frac: float = 0.40, use_cache: bool = True) -> Avatar:
    """Enroll ``photo`` (or read its cached enrollment) and build the render graph's tensors.

    Raises ``runtime.errors.InputError`` naming the photo when it has no usable face.
    """
    from vcam.enroll import enroll

    portrait = enroll(photo, face_width_frac=face_width_frac, use_cache=use_cache)  # warns of several faces
    return build_rig(portrait.image, portrait.landmarks, portrait.person_mask, portrait.plate)
