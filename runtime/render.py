"""RenderStage: the render graph with one avatar bound, motion in, 512x512 frame out.

The graph draws the window of the frame that can move (head, face, neck); the stage keeps
the still photo in its output frame and copies the window into it after every run. Every
frame that leaves the stage carries vcam's invisible watermark (``vcam.runtime.watermark``): it is
added to the portrait's tensors and still once, when the portrait is set, so the graph draws
it as part of the face and background. The visible "AI" badge, when one is given, is drawn
over the still once, and over each frame only where the moving window covers it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from vcam.runtime.badge import Badge
from vcam.runtime.channels import INDEX, N_MOTION
from vcam.runtime.errors import GraphError
from vcam.runtime.graph import OnnxGraph
from vcam.runtime.watermark import apply_mark, box_mean, current_payload, luma, mark_pattern

AVATAR_INPUTS = ("image", "plate", "rig_basis", "rig_maps", "rig_params")

#: Expressions rendered once per portrait to find where the face moves (blendshape: value;
#: no head motion). Together they move every part of the face the blendshapes reach.
EXPRESSION_PROBES = (
    {"jawOpen": 1.0, "mouthFunnel": 0.5, "mouthUpperUpLeft": 1.0, "mouthUpperUpRight": 1.0,
     "mouthLowerDownLeft": 1.0, "mouthLowerDownRight": 1.0, "eyeWideLeft": 1.0, "eyeWideRight": 1.0,
     "browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0, "eyeLookUpLeft": 1.0,
     "eyeLookUpRight": 1.0},
    {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 1.0, "cheekSquintRight": 1.0,
     "mouthStretchLeft": 1.0, "mouthStretchRight": 1.0, "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0,
     "browDownLeft": 1.0, "browDownRight": 1.0, "eyeLookDownLeft": 1.0, "eyeLookDownRight": 1.0},
    {"mouthPucker": 1.0, "mouthFrownLeft": 1.0, "mouthFrownRight": 1.0, "mouthPressLeft": 1.0,
     "mouthPressRight": 1.0, "eyeLookInLeft": 1.0, "eyeLookOutRight": 1.0},
    {"mouthClose": 1.0, "eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0, "eyeSquintLeft": 1.0,
     "eyeSquintRight": 1.0},
)
#: Luma change (levels, averaged over 13x13 px) from which a pixel counts as fully moving.
MOVING_LEVELS = 3.0

#: Intra-op threads of the render graph when none are asked for. One: its kernels are small
#: or parallel over a few channels only, and waking onnxruntime's sleeping pool for each costs
#: more than it gains (2 cores, ``vcam bench``: 9.8 ms a frame on one thread, 10.3 on two).
DEFAULT_THREADS = 1


class AvatarTensors(Protocol):
    """What the render graph needs of a portrait (see ``vcam.avatar.rig.Avatar``); all float32."""

    image: np.ndarray       # (1, 3, 512, 512) the framed photo, RGB 0..1
    plate: np.ndarray       # (1, 3, PH, PW) background without the person under the window
    rig_basis: np.ndarray   # (NB, 2 * GH * GW) smooth expression fields
    rig_maps: np.ndarray    # (1, NM, GH, GW) mouth, eye and head maps
    rig_params: np.ndarray  # (1, NP) scalars
    still: np.ndarray       # (512, 512, 3) uint8 the framed photo
    # optional: mouth_view, (2, K) float32 or None, how open a face tracker sees the drawn mouth

    @property
    def patch_origin(self) -> tuple[int, int]: ...  # (x0, y0) of the window in the frame


class RenderStage:
    """The ONNX render graph, its avatar buffers and its output frame.

    The avatar tensors are copied once into buffers bound to the graph; :meth:`set_avatar`
    swaps a new portrait in between frames without reallocating. :meth:`render` writes the
    frame into one preallocated ``(512, 512, 3) uint8`` array and returns it.
    ``threads``: intra-op threads on the CPU, 0 for :data:`DEFAULT_THREADS`; ``provider`` and
    ``copy_inputs`` as :class:`vcam.runtime.graph.OnnxGraph` (on a GPU the portrait's tensors are
    copied to the device when they change, the motion vector before every frame).
    ``badge``: the visible "AI" label drawn on every frame, or ``None``. The invisible
    watermark is always added; it has no switch.
    A context manager; :meth:`close` is idempotent.
    """

    def __init__(self, avatar: AvatarTensors, *, provider: str = "auto", threads: int = 0,
                 graph_dir=None, copy_inputs: bool | None = None, badge: Badge | None = None) -> None:
        self._graph = OnnxGraph("render", provider=provider, threads=threads or DEFAULT_THREADS, graph_dir=graph_dir,
                                copy_inputs=copy_inputs)
        self._buffers: dict[str, np.ndarray] = {}
        for name in AVATAR_INPUTS:
            spec = self._graph.spec(name)
            buf = np.zeros(spec.shape, np.float32)
            self._buffers[name] = buf
            self._graph.bind_input(name, buf, constant=True)
        self._motion = np.zeros((1, N_MOTION), np.float32)
        self._graph.bind_input("motion", self._motion)
        self._patch = self._graph.output("patch")
        self._frame = np.zeros((512, 512, 3), np.uint8)
        self._payload = current_payload()
        self._badge = badge
        self._badge_per_frame = False
        self.set_avatar(avatar)  # also places self._window, the frame's view of the patch
        self._closed = False

    @property
    def provider(self) -> str:
        """The execution provider the graph runs on."""
        return self._graph.provider

    @property
    def frame(self) -> np.ndarray:
        """The output buffer ``(512, 512, 3) uint8`` RGB, overwritten by every :meth:`render`."""
        return self._frame

    def set_avatar(self, avatar: AvatarTensors) -> None:
        """Copy a portrait's tensors into the bound buffers (between frames)."""
        for name in AVATAR_INPUTS:
            src = getattr(avatar, name)
            dst = self._buffers[name]
            if src.shape != dst.shape:
                raise GraphError(f"render graph: avatar {name} is {src.shape}, the graph expects {dst.shape}; "
                                 "the avatar was made for another graph version (clear the cache)")
            np.copyto(dst, src, casting="same_kind")
            self._graph.refresh_input(name)
        if avatar.still.shape != self._frame.shape:
            raise GraphError(f"render graph: avatar still frame is {avatar.still.shape}, expected {self._frame.shape}")
        x0, y0 = avatar.patch_origin
        h, w = self._patch.shape[:2]
        if not (0 <= x0 <= 512 - w and 0 <= y0 <= 512 - h):
            raise GraphError(f"render graph: window origin {(x0, y0)} puts a {w}x{h} window outside the frame")
        # The mark goes into the portrait itself (image, background plate and still), so it
        # moves with the face as the face's own texture does and costs nothing per frame; it
        # follows the photo's texture and leaves out where the face moves (see watermark.py).
        quiet = np.zeros(self._frame.shape[:2])
        quiet[y0:y0 + h, x0:x0 + w] = self._moving_region()
        pattern = mark_pattern(avatar.still, self._payload, quiet)
        levels = pattern.astype(np.float32) * np.float32(1.0 / 255.0)
        for name, region in (("image", levels), ("plate", levels[y0:y0 + h, x0:x0 + w])):
            buf = self._buffers[name]
            np.clip(buf + region, 0.0, 1.0, out=buf)
            self._graph.refresh_input(name)
        apply_mark(avatar.still, pattern, out=self._frame)
        if self._badge is not None:
            self._badge.draw(self._frame)
        self._badge_per_frame = self._badge is not None and self._badge.overlaps(x0, y0, w, h)
        self._window = self._frame[y0:y0 + h, x0:x0 + w]

    def _moving_region(self) -> np.ndarray:
        """``(PATCH_H, PATCH_W) float64`` 0..1: where the window's pixels change under the
        :data:`EXPRESSION_PROBES` (renders the graph ``1 + len(EXPRESSION_PROBES)`` times)."""
        self._motion[:] = 0.0
        self._graph.run()
        rest = luma(self._patch)
        change = np.zeros(rest.shape, np.float32)
        for probe in EXPRESSION_PROBES:
            self._motion[:] = 0.0
            for name, value in probe.items():
                self._motion[0, INDEX[name]] = value
            self._graph.run()
            np.maximum(change, np.abs(luma(self._patch) - rest), out=change)
        self._motion[:] = 0.0
        return np.clip(box_mean(change.astype(np.float64), 6) / MOVING_LEVELS, 0.0, 1.0)

    def render(self, motion: np.ndarray) -> np.ndarray:
        """Render one frame for ``motion`` ``(43,) float32``; returns :attr:`frame`."""
        self._motion[0] = motion
        self._graph.run()
        np.copyto(self._window, self._patch)
        if self._badge_per_frame:
            self._badge.draw(self._frame)
        return self._frame

    def close(self) -> None:
        """Release the graph. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._graph.close()

    def __enter__(self) -> RenderStage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
