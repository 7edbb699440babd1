"""Photo -> Avatar: enroll (cached by content hash) then build the rig."""

from __future__ import annotations

import os

from vcam.avatar.rig import Avatar, build_rig


def load_avatar(photo: str | os.PathLike, *, face_width_frac: float = 0.40, use_cache: bool = True,
                mouth_view: bool = False) -> Avatar:
    """Enroll ``photo`` (or read its cached enrollment) and build the render graph's tensors.

    ``mouth_view``: also measure (or read from the cache) how open a face tracker sees the drawn
    mouth (:mod:`vcam.avatar.mouth_view`; the live engine's voice delay uses it).
    Raises ``vcam.runtime.errors.InputError`` naming the photo when it has no usable face.
    """
    import dataclasses

    from vcam.avatar.enroll import enroll

    portrait = enroll(photo, face_width_frac=face_width_frac, use_cache=use_cache)  # warns of several faces
    avatar = build_rig(portrait.image, portrait.landmarks, portrait.person_mask, portrait.plate)
    if mouth_view:
        from vcam.avatar.mouth_view import mouth_view as measure

        key = f"{portrait.sha256}-{face_width_frac:g}" if use_cache else None
        avatar = dataclasses.replace(avatar, mouth_view=measure(avatar, key=key))
    return avatar
