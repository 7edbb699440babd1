"""The motion vector: names, order and units of every channel.

One motion vector is ``(1, N_MOTION) float32``; the motion graph writes it, the render graph
reads it, ``--motion-out`` writes it as CSV columns.

Blendshapes follow Apple ARKit names and are in ``0..1``. As in ARKit, *Left*/*Right* mean the
subject's own left/right (the subject's left eye is on the image's right side).
Head pose in degrees: ``headYaw`` positive turns the face toward the image's right (the
subject's left), ``headPitch`` positive looks up, ``headRoll`` positive tilts the head
clockwise on screen (its top toward the image's right);
``headX``/``headY`` translation in pixels of the 512x512 output (+x right, +y down);
``headZ`` relative scale change (0.02 = head 2 % larger, i.e. closer).
"""

from __future__ import annotations

BLENDSHAPES: tuple[str, ...] = (
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeWideLeft",
    "eyeWideRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "cheekSquintLeft",
    "cheekSquintRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
)

POSE: tuple[str, ...] = ("headYaw", "headPitch", "headRoll", "headX", "headY", "headZ")

MOTION: tuple[str, ...] = BLENDSHAPES + POSE
N_BLENDSHAPES = len(BLENDSHAPES)
N_MOTION = len(MOTION)
INDEX: dict[str, int] = {name: i for i, name in enumerate(MOTION)}

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised")
