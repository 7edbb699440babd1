"""How open a face tracker sees the drawn mouth, per portrait: a curve over the mouth's openness.

The engine measures how long after a voice starts the drawn mouth is half open
(:class:`vcam.runtime.mouth_rise.MouthRiseMeter`), and the virtual microphone waits that much longer.
"Half open" must be what a viewer sees, and a small opening is not seen: the lips' inner edges
first separate by a pixel or two, which a face tracker reads as closed. How much opening goes
unseen depends on the portrait (MediaPipe's face mesh on the render graph's frames, jaw
swept open: on the bundled painting the gap it reads stays under 0.06 of the eye distance
until the openness passes 0.4, on the bearded photo until 0.5, on the astronaut, whose photo
shows teeth, it grows from the start). Without it the meter put the half-open moment 20-30 ms
too early and the voice came that much early.

So, once per portrait (cached by the photo's hash, the framing and the render graph), the
render graph draws the mouth at ``KNOTS`` openings, the face mesh (as ``../shared/eval``:
inner-lip gap 13-14 over the eye corners 33-263) reads each, and the result is a
``(2, KNOTS) float32`` curve: row 0 the openness (:func:`vcam.runtime.mouth_rise.openness`), row 1
the seen gap scaled to 0..1 and made non-decreasing. A portrait the mesh cannot read in the
drawn frames (a cartoon, a face turned far) gets ``None``: the openness is used as it is.
"""

from __future__ import annotations

import hashlib
import logging
import numpy as np

log = logging.getLogger(__name__)

VERSION = 1
"""Bump when the curve's meaning changes, so cached curves are made again."""
KNOTS = 11
MIN_RANGE = 0.03
"""A seen gap that grows less than this over the sweep (eye distances) is not a curve."""


def sweep_openness() -> tuple[np.ndarray, np.ndarray]:
    """``(motion (KNOTS, 43) float32, openness (KNOTS,) float32)``: the jaw from closed to wide open."""
    from vcam.runtime.channels import INDEX, N_MOTION
    from vcam.runtime.mouth_rise import openness

    motion = np.zeros((KNOTS, N_MOTION), np.float32)
    motion[:, INDEX["jawOpen"]] = np.linspace(0.0, 1.0, KNOTS, dtype=np.float32)
    return motion, np.array([openness(m) for m in motion], np.float32)


def seen_gaps(avatar, motion: np.ndarray) -> np.ndarray:
    """The face mesh's inner-lip gap on the render graph's frame of each motion row, ``(K,)
    float64`` (NaN where it finds no face)."""
    from vcam.runtime.render import RenderStage
    from vcam.avatar.enroll import _face_models

    gaps = np.full(motion.shape[0], np.nan)
    with RenderStage(avatar, provider="cpu") as stage, _face_models() as faces:
        for i, m in enumerate(motion):
            found = faces.mesh(stage.render(m), max_faces=1, min_detection=0.3)
            if not found:
                continue
            p = found[0][:, :2]
            gaps[i] = float(np.linalg.norm(p[13] - p[14]) / max(np.linalg.norm(p[33] - p[263]), 1e-6))
    return gaps


def curve_from(openness: np.ndarray, gaps: np.ndarray) -> np.ndarray | None:
    """The ``(2, K) float32`` curve from a sweep's openness and seen gaps, or ``None`` when the
    gaps do not make one (a missing face at either end, or no growth)."""
    if np.isnan(gaps[0]) or np.isnan(gaps[-1]) or np.isnan(gaps).sum() > 2:
        return None
    g = gaps.copy()
    ok = ~np.isnan(g)
    g[~ok] = np.interp(openness[~ok], openness[ok], g[ok])
    g = np.maximum.accumulate(g)
    span = float(g[-1] - g[0])
    if span < MIN_RANGE:
        return None
    return np.stack([openness, (g - g[0]) / span]).astype(np.float32)


def mouth_view(avatar, *, key: str | None = None) -> np.ndarray | None:
    """The portrait's curve (see the module doc), read from the cache when ``key`` (the photo's
    hash and framing) was seen with this render graph, else measured (about a second) and cached."""
    from vcam.avatar import cache

    path = None
    if key is not None:
        try:
            path = cache.cache_dir("mouth_view") / f"{key}-{VERSION}-{_graph_tag()}.npz"
        except OSError as e:
            log.warning("no cache for the mouth's view (%s)", e)
    if path is not None:
        z = cache.load_npz(path)
        if z is not None and "curve" in z:
            c = z["curve"]
            return c if c.shape == (2, KNOTS) else None
    motion, op = sweep_openness()
    try:
        gaps = seen_gaps(avatar, motion)
    except Exception as e:  # noqa: BLE001 - an extra for the voice's timing: never worth failing for
        log.warning("could not measure how the drawn mouth is seen (%s: %s); its openness is used as is",
                    type(e).__name__, e)
        return None
    curve = curve_from(op, gaps)
    if curve is None:
        log.info("the face mesh cannot read the drawn mouth of this portrait; its openness is used as is")
    if path is not None:
        cache.save_npz_atomic(path, curve=curve if curve is not None else np.zeros((0, 0), np.float32))
    return curve


def _graph_tag() -> str:
    from vcam.runtime.errors import GraphError
    from vcam.runtime.graph import load_manifest

    try:
        sha = load_manifest()["render"]["sha256"]
    except (GraphError, KeyError, TypeError):
        sha = "unknown"
    return hashlib.sha256(str(sha).encode()).hexdigest()[:12]
