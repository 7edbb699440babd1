"""The render graph's torch definition: avatar + motion -> one 512x512 RGB frame.

Exported to ``onnx/render.onnx`` by :mod:`vcam.graphs.export_render`; never run at run time.

Per frame, on the face-space field grid (2 px per cell over the moving window):

1. expression backward map: the smooth basis fields (smile, brows, gaze, ...) weighted by
   the motion give a forward displacement ``E``; the mouth and eyes move their knots (lip
   edges, chin, lids) and map each column piecewise-linearly back to the photo. The source
   point of face-space point ``f`` is ``f - E(f) + mouth(f) + eyes(f)``. The mouth interior
   (teeth on their jaws, tongue, dark cavity) is drawn where the lips part.
2. head pose: a rigid 3D rotation of the head (depth map, pivot, head weight), inverted by
   fixed-point iteration so the background stays put and nothing folds.
3. upsample the map to the window's full resolution, sample the photo through it, put the
   person over the background plate, and the mouth interior and closed lids over that.

Only the window of the frame that can move (``PATCH_W`` x ``PATCH_H``, placed per avatar) is
drawn; ``vcam.runtime.render.RenderStage`` copies it into the still photo.

Written for onnxruntime on a CPU, where a frame must take a few milliseconds:

* every ``grid_sample`` uses zero padding on coordinates clamped inside the sampled image
  (the same as border padding), the mode onnxruntime has a fast kernel for;
* the mouth's knots, the mouth interior and the lids are worked out in windows of the grid
  placed and sized every frame to the cells they can move or draw on (outside them they
  change nothing) and padded back, and the colours they draw are upsampled only in a window
  around them;
* the rest works on whole ``(GRID_H, GRID_W)`` maps, one channel per op, with the per-frame
  scalars folded first; what mixes channels is a small matrix product (expression fields,
  head rotation, colours);
* the head motion's inverse is refined on a grid twice as coarse (the refinement, a few
  pixels, is smooth);
* the compositing weights are pre-scaled to 0..255, so the full-resolution stage is four
  multiply-adds and a cast.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vcam.runtime.channels import INDEX
from vcam.avatar.rig_layout import (BASIS, CELL, FRAME, GRID_H, GRID_W, MAP_INDEX, MAPS, PARAM_INDEX, PATCH_H, PATCH_W,
                             basis_matrix)

#: How much faster than the jaw the lips part at small openings (see ``g_jaw``).
LIP_PART_BOOST = 0.6
#: Fixed-point iterations that invert the head motion.
HEAD_ITERATIONS = 1
#: Grid cells added round the cells a window must hold (see ``_Window``): the mouth's colour
#: next to the interior is blended in at its edge, and the head's motion can stretch that reach.
WINDOW_MARGIN = 4


def piecewise(b, knots_dst, knots_src):
    """Map coordinate ``b`` through a monotone piecewise-linear map.

    ``knots_dst`` (where the knots are now) -> ``knots_src`` (where they are in the photo),
    first and last knots equal in both; outside them the map is the identity.
    """
    return b + piecewise_delta(b, knots_dst, knots_src)[0]


def piecewise_delta(b, knots_dst, knots_src):
    """``(piecewise(b) - b, [b - knots_dst[i] for each segment])``.

    Segment ``i`` moves the points past its start by ``frac_i * (ds_i - dt_i)``, ``frac_i``
    the share of the segment behind ``b`` (0..1); summed by parts over the interior knots
    ``e_j = src_j - dst_j``: ``sum_j e_j * (frac_{j-1} - frac_j)``.
    """
    fracs, offsets = [], []
    for i in range(len(knots_dst) - 1):
        t0, t1 = knots_dst[i], knots_dst[i + 1]
        bt = b - t0
        fracs.append(torch.clamp(bt / torch.clamp(t1 - t0, min=1e-3), 0.0, 1.0))
        offsets.append(bt)
    delta = None
    for j in range(1, len(knots_dst) - 1):
        term = (knots_src[j] - knots_dst[j]) * (fracs[j - 1] - fracs[j])
        delta = term if delta is None else delta + term
    return delta, offsets


def _smooth01(x):
    x = torch.clamp(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _norm_grid(h: int, w: int) -> np.ndarray:
    """``(2, h * w)``: the centres of an ``h`` x ``w`` grid over the window in grid_sample units."""
    x = (np.arange(w, dtype=np.float64) + 0.5) * (2.0 / w) - 1.0
    y = (np.arange(h, dtype=np.float64) + 0.5) * (2.0 / h) - 1.0
    gx, gy = np.meshgrid(x, y)
    return np.stack([gx.reshape(-1), gy.reshape(-1)]).astype(np.float32)


def _to_grid(q):
    """``(2, GRID_H * GRID_W)`` grid_sample coordinates -> the ``(1, GRID_H, GRID_W, 2)`` grid."""
    return q.t().reshape(1, GRID_H, GRID_W, 2)


class _ArgMaxLast(torch.autograd.Function):
    """Index (int64) of the last maximum of ``v`` (n,): ONNX ArgMax with select_last_index."""

    @staticmethod
    def forward(ctx, v):
        return (v.shape[0] - 1) - torch.argmax(torch.flip(v, [0]))

    @staticmethod
    def symbolic(g, v):
        return g.op("ArgMax", v, axis_i=0, keepdims_i=0, select_last_index_i=1)


def _span(v, step: int = 1):
    """``(start, stop)`` (int64) of the nonzero entries of ``v`` (n,), which samples every
    ``step``-th index of a finer axis: the span there, widened to the unsampled neighbours;
    ``(0, 0)`` when there are none."""
    some = (torch.amax(v) > 0.0).to(torch.int64)
    return (torch.argmax(v) * step - (step - 1)) * some, (_ArgMaxLast.apply(v) * step + step) * some


def _any_rows(mask):
    """(W,) 1 where a column of ``mask`` (H, W) of 0/1 has a 1 (a product, not a strided max)."""
    return torch.clamp(torch.matmul(torch.ones(1, mask.shape[0]), mask)[0], 0.0, 1.0)


def _const(g, values):
    return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


def _as_1d(g, v):
    return g.op("Reshape", v, _const(g, [1]))


class _Slice(torch.autograd.Function):
    """``x`` cut to ``[start, stop)`` along each of ``axes``: one ONNX Slice. ``fixed``: the
    first axes' bounds as ints; ``bounds``: the others', int64 tensors."""

    @staticmethod
    def forward(ctx, x, axes: tuple[int, ...], fixed: tuple[int, ...], *bounds):
        with warnings.catch_warnings():  # exported by symbolic(), not traced
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            values = list(fixed) + [int(b) for b in bounds]
        for axis, start, stop in zip(axes, values[0::2], values[1::2]):
            x = x.narrow(axis, start, stop - start)
        return x.clone()

    @staticmethod
    def symbolic(g, x, axes: tuple[int, ...], fixed: tuple[int, ...], *bounds):
        values = [_const(g, [v]) for v in fixed] + [_as_1d(g, b) for b in bounds]
        starts = g.op("Concat", *values[0::2], axis_i=0)
        stops = g.op("Concat", *values[1::2], axis_i=0)
        return g.op("Slice", x, starts, stops, _const(g, list(axes)))


class _EveryRow(torch.autograd.Function):
    """``x[c0:c1, ::step]`` of a (C, H, W) tensor: one ONNX Slice (whole rows, not a Gather)."""

    @staticmethod
    def forward(ctx, x, c0: int, c1: int, step: int):
        return x[c0:c1, ::step].clone()

    @staticmethod
    def symbolic(g, x, c0: int, c1: int, step: int):
        return g.op("Slice", x, _const(g, [c0, 0]), _const(g, [c1, 2 ** 62]), _const(g, [0, 1]),
                    _const(g, [1, step]))


class _Paste(torch.autograd.Function):
    """Pad a (C, h, w) window at (r0, c0) with ``fill`` to (C, H, W): one ONNX Pad with
    computed pads."""

    @staticmethod
    def forward(ctx, x, r0, c0, r1, c1, fill: float, H: int, W: int):
        with warnings.catch_warnings():  # exported by symbolic(), not traced
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            r, c, r_end, c_end = int(r0), int(c0), int(r1), int(c1)
        return F.pad(x, (c, W - c_end, r, H - r_end), value=fill)

    @staticmethod
    def symbolic(g, x, r0, c0, r1, c1, fill: float, H: int, W: int):
        pads = g.op("Concat", _const(g, [0]), _as_1d(g, r0), _as_1d(g, c0), _const(g, [0]),
                    g.op("Sub", _const(g, [H]), _as_1d(g, r1)), g.op("Sub", _const(g, [W]), _as_1d(g, c1)), axis_i=0)
        return g.op("Pad", x, pads, g.op("Constant", value_t=torch.tensor(fill, dtype=torch.float32)),
                    mode_s="constant")


class _Window:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` (int64 tensors) of the field grid.

    The windows are placed and sized every frame to the cells a region can move or draw on
    (and ``WINDOW_MARGIN`` more): the regions change nothing outside them, so working there
    and padding back is exact, whatever the face's size in the frame.
    """

    def __init__(self, r0, r1, c0, c1) -> None:
        self.r0, self.r1, self.c0, self.c1 = r0, r1, c0, c1

    @staticmethod
    def _bounds(v, n, step: int = 1):
        start, stop = _span(v, step)
        start = torch.minimum(torch.clamp(start - WINDOW_MARGIN, min=0), n - 1)
        return start, torch.maximum(torch.minimum(stop + WINDOW_MARGIN, n), start + 1)

    @classmethod
    def around(cls, rows, cols, shape, row_step: int = 1) -> _Window:
        """The window holding the nonzero entries of ``rows`` (which samples every
        ``row_step``-th row) and ``cols``, in a grid of ``shape`` (ints or int64 tensors);
        a few cells if there are none."""
        n_rows, n_cols = (n if torch.is_tensor(n) else torch.full((), n, dtype=torch.int64) for n in shape)
        return cls(*cls._bounds(rows, n_rows, row_step), *cls._bounds(cols, n_cols))

    @classmethod
    def rows_of(cls, rows, n: int, row_step: int, width: int) -> _Window:
        """The band of rows (all ``width`` columns) holding the nonzero entries of ``rows``."""
        r0, r1 = cls._bounds(rows, torch.full((), n, dtype=torch.int64), row_step)
        c0 = r0 * 0  # (computed: the exporter keeps it)
        return cls(r0, r1, c0, c0 + width)

    def shifted(self, r0) -> _Window:
        """This window of a band whose first row is ``r0``, in the whole grid's rows."""
        return _Window(self.r0 + r0, self.r1 + r0, self.c0, self.c1)

    def crop(self, x, channels: tuple[int, int] | None = None):
        """``x`` (C, H, W) -> (C, h, w); ``channels``: only ``x[c0:c1]``."""
        if channels is None:
            return _Slice.apply(x, (1, 2), (), self.r0, self.r1, self.c0, self.c1)
        return _Slice.apply(x, (0, 1, 2), channels, self.r0, self.r1, self.c0, self.c1)

    def crop_rows(self, x, channels: tuple[int, int]):
        """``x[c0:c1]`` (C, H, W) -> (C, h, W): a band's rows."""
        return _Slice.apply(x, (0, 1), channels, self.r0, self.r1)

    def paste(self, x, fill: float = 0.0, scale: int = 1):
        """``x`` (C, h, w) -> (C, GH, GW), ``fill`` outside the window; with ``scale`` 2 the
        window upsampled, (C, 2h, 2w), into the full-resolution patch (C, PATCH_H, PATCH_W)."""
        return _Paste.apply(x, self.r0 * scale, self.c0 * scale, self.r1 * scale, self.c1 * scale, fill,
                            GRID_H * scale, GRID_W * scale)


class RenderModel(nn.Module):
    """``forward(motion, image, plate, rig_basis, rig_maps, rig_params) -> patch``.

    motion ``(1, 43)``, image ``(1, 3, 512, 512)`` RGB in 0..1, plate
    ``(1, 3, PATCH_H, PATCH_W)``, rig_basis ``(NB, 2*GRID_H*GRID_W)``, rig_maps
    ``(1, NM, GRID_H, GRID_W)``, rig_params ``(1, NP)`` (all float32) -> patch
    ``(PATCH_H, PATCH_W, 3) uint8``, the moving window of the frame.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("basis_mat", torch.from_numpy(basis_matrix()))  # (43, NB)
        # The field grid in grid_sample units over the window, and its first and last cell
        # centres (sampling clamped to them is border padding).
        grid = _norm_grid(GRID_H, GRID_W)
        self.register_buffer("grid_n", torch.from_numpy(grid))
        self.register_buffer("grid_lo", torch.from_numpy(grid.min(axis=1, keepdims=True)))
        self.register_buffer("grid_hi", torch.from_numpy(grid.max(axis=1, keepdims=True)))
        head = _norm_grid(GRID_H // 2, GRID_W // 2)  # the head inverse's coarse grid
        self.register_buffer("head_grid", torch.from_numpy(head))
        self.register_buffer("head_lo", torch.from_numpy(head.min(axis=1, keepdims=True)))
        self.register_buffer("head_hi", torch.from_numpy(head.max(axis=1, keepdims=True)))
        # The grid cells' centres in frame px relative to the window's corner (the rig's gx, gy
        # maps less (patch_x0, patch_y0)), and in grid_sample units over the frame.
        cells = (grid + 1.0) * (np.array([[PATCH_W], [PATCH_H]], np.float32) / 2.0) - 0.5
        self.register_buffer("cells_px", torch.from_numpy(cells.astype(np.float32)))
        self.register_buffer("cells_frame", torch.from_numpy(((cells + 0.5) * (2.0 / FRAME) - 1.0).astype(np.float32)))
        # Head displacement, frame px -> grid_sample units over the window.
        self.register_buffer("px_to_grid", torch.tensor([[2.0 / PATCH_W], [2.0 / PATCH_H]]))
        # |displacement| / 1.5 px from grid_sample units: weights of the squared components.
        self.register_buffer("moved_w", torch.tensor([[(PATCH_W / 2.0 / 1.5) ** 2, (PATCH_H / 2.0 / 1.5) ** 2]]))

    def forward(self, motion, image, plate, rig_basis, rig_maps, rig_params):
        GH, GW = GRID_H, GRID_W
        maps = rig_maps.reshape(len(MAPS), GH, GW)  # reshapes, not copies
        prm = rig_params.reshape(-1)
        mo = motion.reshape(-1)

        def m(name):
            return maps[MAP_INDEX[name]]  # (GH, GW)

        def par(name):
            return prm[PARAM_INDEX[name]]

        def ch(name):
            return mo[INDEX[name]]

        def chs(*names):
            return torch.clamp(mo[[INDEX[n] for n in names]], 0.0, 1.0)

        def rgb_of(name):  # a colour of the rig, (3, 1, 1)
            return torch.clamp(prm[PARAM_INDEX[name + "_r"]:PARAM_INDEX[name + "_b"] + 1], 0.0, 1.0).reshape(3, 1, 1)

        # --- 1. expression --------------------------------------------------------------
        coef = torch.matmul(motion, self.basis_mat)  # (1, NB)
        disp = torch.matmul(coef, rig_basis).reshape(2, GH * GW)  # forward displacement, frame px
        # The vertical axes of the mouth and the eyes (rows), and each region's coordinate along
        # its axis after the smooth expression moved the point.
        axes = prm[PARAM_INDEX["m_eyx"]:PARAM_INDEX["l_eyy"] + 1].reshape(3, 2)
        proj = torch.matmul(axes, disp).reshape(3, GH, GW)

        # Mouth: knots along the mouth's vertical axis. The knots are evaluated at the grid
        # point, the coordinate after the smooth expression moved it (knots vary slowly
        # across columns, the coordinate along the axis does not).
        uf = par("upper_frac")
        jaw_px = par("jaw_px")
        jaw, close = chs("jawOpen", "mouthClose").unbind(0)
        up_up = 0.5 * (ch("mouthUpperUpLeft") + ch("mouthUpperUpRight")) * par("lip_up_px")
        lo_dn = 0.5 * (ch("mouthLowerDownLeft") + ch("mouthLowerDownRight")) * par("lip_down_px")
        # The lips part faster than the jaw drops at first (soft lips, the upper lip lifts): the
        # gap follows a gently concave curve of the opening, x (1 + k (1 - x)), so the small
        # openings of consonants and quick syllables read as open lips, not a seam.
        part = torch.relu(jaw - close)
        g_jaw = part * (1.0 + LIP_PART_BOOST * (1.0 - part)) * 0.95 * jaw_px
        g_jaw_raw = jaw * 0.95 * jaw_px

        def mouth_knots(sa, sul, sll, sch, sb, prof, jawt):
            """Where the knots are now: upper lip edge, lower lip edge, chin."""
            src_gap = sll - sul
            line = sul + uf * src_gap
            tul = torch.maximum(line - (uf * g_jaw + up_up) * prof, sa + 1.0)
            tll = line + ((1.0 - uf) * g_jaw + lo_dn) * prof
            chin_shift = ((1.0 - uf) * (g_jaw_raw - par("src_gap_px"))) * jawt
            tch = torch.minimum(torch.maximum(sch + chin_shift, tll + 2.0), sb - 2.0)
            tll = torch.minimum(tll, tch - 1.0)
            tul = torch.minimum(tul, tll)
            return tul, tll, tch, line, src_gap

        # The knots move points only between the top and bottom knots, in the columns the jaw
        # or the lips reach: a band of rows, placed from every 4th row of the grid.
        first, stop = MAP_INDEX["mb"], MAP_INDEX["mU"] + 1  # mb, mSa, ..., mJaw, mU
        assert [MAPS[i] for i in range(first, stop)] == ["mb", "mSa", "mSul", "mSll", "mSch", "mSb", "mProf",
                                                          "mJaw", "mU"]
        step = 4
        coarse = _EveryRow.apply(maps, first, stop - 1, step)
        cb = coarse[0] - _EveryRow.apply(proj, 0, 1, step)[0]
        moving = ((cb - coarse[1] > -1.0) & (coarse[5] - cb > -1.0)
                  & ((coarse[7] > 0.0) | (coarse[6] > 0.0) | (coarse[3] - coarse[2] > 0.0))).to(torch.float32)
        band = _Window.rows_of(moving.amax(dim=1), GH, step, GW)
        band_maps = band.crop_rows(maps, (first, stop))  # (9, rows, GW)
        band_proj = band.crop_rows(proj, (0, 1))
        mb, sa, sul, sll, sch, sb, prof, jawt, _ = band_maps.unbind(0)
        mb = mb - band_proj[0]
        tul, tll, tch, line, src_gap = mouth_knots(sa, sul, sll, sch, sb, prof, jawt)
        d_mouth, (_, d_top, _, _) = piecewise_delta(mb, (sa, tul, tll, tch, sb), (sa, sul, sll, sch, sb))
        d_mouth = band.paste(d_mouth.unsqueeze(0))

        # Source point in grid_sample units over the frame, clamped to the pixel centres (the
        # lids, added below, move points inside the face).
        origin = prm[PARAM_INDEX["patch_x0"]:PARAM_INDEX["patch_y0"] + 1].reshape(2, 1)
        to_src = torch.cat([axes[0:1].t(), -torch.eye(2)], dim=1) * (2.0 / FRAME)  # (2, 3)
        src = torch.addmm(self.cells_frame + origin * (2.0 / FRAME), to_src,
                          torch.cat([d_mouth.reshape(1, -1), disp]))
        src = torch.clamp(src, 1.0 / FRAME - 1.0, 1.0 - 1.0 / FRAME)

        # Mouth interior, drawn where the lips part: only there (and on the seam along the
        # upper lip, where the photo's open lips are pressed shut) is it not transparent.
        drawn = ((d_top > -1.0) & (tll - mb > -1.0) & (torch.maximum(tll - tul, src_gap) > 0.0)).to(torch.float32)
        in_band = _Window.around(drawn.amax(dim=1), drawn.amax(dim=0), (band.r1 - band.r0, GW))
        mb, sa, sul, sll, sch, sb, prof, jawt, mu = in_band.crop(band_maps).unbind(0)
        mb = mb - in_band.crop(band_proj)[0]
        tul, tll, _, line, src_gap = mouth_knots(sa, sul, sll, sch, sb, prof, jawt)
        d_top, d_bot, gap_here = mb - tul, tll - mb, tll - tul
        inner = torch.clamp(torch.minimum(d_top, d_bot) * (1.0 / 1.5), 0.0, 1.0)
        # Where the photo's open lips are pressed shut, a dark seam hides the skipped gap.
        seam = (torch.clamp((src_gap - gap_here) * 0.5, 0.0, 1.0)
                * torch.clamp(1.0 - torch.abs(d_top), 0.0, 1.0))
        inner = torch.maximum(inner, 0.4 * seam)
        upper_edge = line + (0.10 * jaw_px) * prof  # upper incisors, fixed to the skull
        # Lower incisors, on the jaw, mostly behind the lower lip: their tips show at most
        # 5% of the jaw's travel above its edge (more when the lip is pulled down).
        lower_edge = torch.maximum(line + ((1.0 - uf) * g_jaw_raw - 0.05 * jaw_px) * prof,
                                   tll - (0.05 * jaw_px + lo_dn) * prof)
        mu2 = mu * mu
        w_up = torch.clamp(upper_edge - mb + 0.5, 0.0, 1.0)
        # Only the lower incisors and canines show; towards the corners the lip hides them.
        w_lo = torch.clamp(mb - lower_edge + 0.5, 0.0, 1.0) * torch.clamp((0.5 - mu2) * 5.0, 0.0, 1.0)
        tongue_depth = 0.45 * torch.sqrt(torch.clamp(1.0 - mu2 * (1.0 / 0.64), 0.0, 1.0))
        w_tg = (torch.clamp((gap_here * tongue_depth - d_bot) * 0.5, 0.0, 1.0)
                * (gap_here > 2.0).to(torch.float32))
        t = mu * (1.0 / 0.36)
        seams = torch.exp(-(((t - torch.round(t)) * (1.0 / 0.11)) ** 2))
        # Teeth are lit from the front: full colour on the front incisors, darker towards the
        # corners (the arch turns away) and in the upper lip's shadow, thin dark gaps between
        # teeth; the lower teeth sit deeper, under the upper lip's and the jaw's shadow.
        teeth_shade = (1.0 - 0.28 * seams) * torch.clamp(1.0 - 0.45 * mu2, 0.4, 1.0)
        up_shade = teeth_shade * (0.84 + 0.16 * _smooth01(d_top * (1.0 / 2.5))) * (
            1.0 - 0.06 * _smooth01((mb - upper_edge) * 0.25 + 1.0))
        lo_shade = teeth_shade * (0.62 + 0.23 * _smooth01(d_bot * (1.0 / 3.0)))
        depth_shade = torch.clamp(1.0 - 0.6 * mu2, 0.3, 1.0)
        # Its colour: the cavity, the tongue over it, the lower teeth over that and the upper
        # teeth on top.
        keep = (1.0 - w_up) * (1.0 - w_lo)
        colour = 255.0 * (rgb_of("teeth") * (w_lo * lo_shade * (1.0 - w_up) + w_up * up_shade)
                          + rgb_of("cavity") * ((1.0 - w_tg) * keep) + rgb_of("tongue") * (w_tg * depth_shade * keep))
        win = in_band.shifted(band.r0)
        mouth_inner, mouth_colour = win.paste(inner.unsqueeze(0)), win.paste(colour)

        # Eyes (both in one window, right then left): lids close over the eye; the lid that
        # covers it takes the lid skin's colour. Only where an eye is open (lower lid below
        # the upper) and between its knots do they move or cover anything; the window is
        # placed from every 4th row of the grid.
        first = MAP_INDEX["rb"]  # rb, rSt, rSue, rSle, rSbt, lb, lSt, lSue, lSle, lSbt
        assert [MAPS[i] for i in range(first, first + 10)] == [p + n for p in "rl"
                                                               for n in ("b", "St", "Sue", "Sle", "Sbt")]
        coarse = _EveryRow.apply(maps, first, first + 10, step).reshape(2, 5, GH // step, GW)
        eb = coarse[:, 0] - _EveryRow.apply(proj, 1, 3, step)
        drawn = ((coarse[:, 3] - coarse[:, 2] > 0.0) & (eb - coarse[:, 1] > -2.0)
                 & (coarse[:, 4] - eb > -1.0)).to(torch.float32)
        drawn = torch.maximum(drawn[0], drawn[1])
        win = _Window.around(drawn.amax(dim=1), _any_rows(drawn), (GH, GW), row_step=step)
        eye = win.crop(maps, (first, first + 10))

        def pair(k):  # map k of both eyes: (2, h, w)
            return eye[k::5]

        eb = pair(0) - win.crop(proj, (1, 3))
        st, sue, sle, sbt = pair(1), pair(2), pair(3), pair(4)
        blink = chs("eyeBlinkRight", "eyeBlinkLeft").reshape(2, 1, 1)
        wide = chs("eyeWideRight", "eyeWideLeft").reshape(2, 1, 1)
        squint = chs("eyeSquintRight", "eyeSquintLeft").reshape(2, 1, 1)
        gap = sle - sue
        tle = sle - (0.05 * blink + 0.30 * squint * (1.0 - blink)) * gap
        tue = torch.maximum(sue + (0.95 * blink - 0.25 * wide * (1.0 - blink)) * gap, st + 1.0)
        tue = torch.minimum(tue, tle)
        d_eye, (_, b_tue, _) = piecewise_delta(eb, (st, tue, tle, sbt), (st, sue, sle, sbt))
        closing = torch.clamp((tue - sue) / torch.clamp(gap, min=1.0), 0.0, 1.0)
        reach = 0.9 * (sue - st) + 1.0  # the cover fades in over the lid skin above
        cover = (closing * _smooth01((eb - sue) / reach + 1.0)
                 * torch.clamp(0.5 - b_tue, 0.0, 1.0))
        # The lash line: 3.5 px wide, centred 1 px up on the closed lid, dark; the lid darkens
        # towards it over 6 px. Thinner and paler, a shut eye on a dark-browed photo (Lincoln)
        # still read as half open to a face tracker.
        lash = closing * torch.clamp(1.0 - torch.abs(b_tue + 1.0) * (1.0 / 1.75), 0.0, 1.0)
        shade = 0.65 + 0.35 * _smooth01(b_tue * (-1.0 / 6.0))
        shade = shade + lash * (0.15 - shade)  # the lid's colour times this
        alpha = 0.85 * torch.maximum(cover, lash)
        eye_axes = axes[1:3] * (2.0 / FRAME)
        eyes_src = win.paste(eye_axes[0].reshape(2, 1, 1) * d_eye[0] + eye_axes[1].reshape(2, 1, 1) * d_eye[1])
        eyes_inner = win.paste(torch.maximum(alpha[0:1], alpha[1:2]))
        # The lids' colour premultiplied (nothing outside what they cover), negative: it shares
        # the channels of the mouth's colour, which is positive and only round the mouth.
        eyes_colour = win.paste(rgb_of("rlid") * (-255.0 * alpha[0] * shade[0])
                                + rgb_of("llid") * (-255.0 * alpha[1] * shade[1]))

        # The stack: source, 255 * (1 - inner), the mouth's inner (the share of its colour),
        # colours, 1 - person.
        # A frown darkens the creases between the brows and the brow ridge's shadow: the
        # person's own light is taken down there (nothing is painted over it).
        frowning = 0.5 * (ch("browDownLeft") + ch("browDownRight"))
        lit = 255.0 - 255.0 * torch.clamp(frowning, 0.0, 1.0) * m("frown").reshape(1, GH, GW)
        stack = torch.cat([src.reshape(2, GH, GW) + eyes_src, lit * (1.0 - torch.maximum(mouth_inner, eyes_inner)),
                           mouth_inner, mouth_colour + eyes_colour,
                           1.0 - m("alpha").reshape(1, GH, GW)]).reshape(1, 8, GH, GW)

        # --- 2. head pose -----------------------------------------------------------------
        # The forward head motion is affine in (x, y, depth): fwd - grid = A @ (x, y, z) + c.
        ang = mo[INDEX["headYaw"]:INDEX["headRoll"] + 1] * (math.pi / 180.0)
        cos, sin = torch.cos(ang), torch.sin(ang)
        cy, cp, cr = cos[0], cos[1], cos[2]
        sy, sp, sr = sin[0], sin[1], sin[2]
        scale = 1.0 + ch("headZ")
        # x1 = cy x + sy z; z1 = cy z - sy x; y2 = cp y - sp z1; x3 = cr x1 - sr y2; y3 = sr x1 + cr y2
        rot = torch.stack([cr * cy - sr * sp * sy, -sr * cp, cr * sy + sr * sp * cy,
                           sr * cy + cr * sp * sy, cr * cp, sr * sy - cr * sp * cy]).reshape(2, 3)
        a = scale * rot - torch.eye(2, 3)
        pivot = prm[PARAM_INDEX["pivot_x"]:PARAM_INDEX["pivot_y"] + 1].reshape(2, 1)
        shift = mo[INDEX["headX"]:INDEX["headY"] + 1].reshape(2, 1) - torch.matmul(a[:, 0:2], pivot - origin)
        xyz = torch.cat([self.cells_px, m("depth").reshape(1, -1)])  # (3, GH*GW), relative to the window
        head_disp = (torch.addmm(shift * self.px_to_grid, a * self.px_to_grid, xyz)
                     * m("head").reshape(1, -1))  # forward displacement, grid_sample units
        # Inverted by fixed-point iteration: the point that moves onto grid point x is
        # x - head_disp(x - head_disp(x - ...)). Only the change over the iterations,
        # inv - head_disp(x), a few pixels and smooth, is worked out on a grid twice as coarse.
        coarse = F.avg_pool2d(head_disp.reshape(1, 2, GH, GW), 2)  # (1, 2, GH/2, GW/2)
        inv = coarse.reshape(2, -1)
        for _ in range(HEAD_ITERATIONS):
            q = torch.minimum(torch.maximum(self.head_grid - inv, self.head_lo), self.head_hi)
            inv = F.grid_sample(coarse, q.t().reshape(1, GH // 2, GW // 2, 2), mode="bilinear",
                                padding_mode="zeros", align_corners=False).reshape(2, -1)
        change = F.interpolate((inv.reshape(1, 2, GH // 2, GW // 2) - coarse), scale_factor=2, mode="bilinear",
                               align_corners=False)
        inv = head_disp + change.reshape(2, GH * GW)
        q = self.grid_n - inv
        q = torch.minimum(torch.maximum(q, self.grid_lo), self.grid_hi)
        warped = F.grid_sample(stack, _to_grid(q), mode="bilinear", padding_mode="zeros",
                               align_corners=False)  # (1, 8, GH, GW)

        # The plate shows where the head moved 1.5 px or more, and, once it moved at all
        # (0.1 px), wherever the point sampled is background (nothing of the person, alpha
        # < 0.005): there the plate is the photo itself (it differs only under the person), so
        # the background is never dragged along by the head. Where nothing moved, the frame is
        # the photo itself.
        shift = torch.sqrt(torch.matmul(self.moved_w, inv * inv) + 1e-6 / 2.25)  # px / 1.5
        moved = torch.clamp(shift, 0.0, 1.0)
        stirred = torch.clamp(shift * 15.0 - 0.02, 0.0, 1.0)
        k_person = warped[:, 2:3]  # 255 * (1 - inner)
        background = warped[:, 7:8]  # 1 - person
        bare = torch.clamp((background - 0.995) * 200.0, 0.0, 1.0) * stirred.reshape(1, 1, GH, GW)
        k_plate = k_person * torch.maximum(moved.reshape(1, 1, GH, GW), bare) * background
        k_photo = k_person - k_plate

        # --- 3. full resolution -------------------------------------------------------------
        def up(x):
            return F.interpolate(x, scale_factor=CELL, mode="bilinear", align_corners=False)

        src_full = up(warped[:, 0:2]).permute(0, 2, 3, 1)
        rgb = F.grid_sample(image, src_full, mode="bilinear", padding_mode="zeros", align_corners=False)
        # The drawn colour (+0.5 rounds the final cast) is upsampled only around where
        # something is drawn: the mouth's interior, 255 * inner * colour, and the lids'.
        warped = warped.reshape(8, GH, GW)
        inked = (warped[2] < 254.99).to(torch.float32)
        win = _Window.around(inked.amax(dim=1), _any_rows(inked), (GH, GW))
        drawn = up(win.crop(warped, (3, 7)).unsqueeze(0))[0]  # mouth's inner, 255 * colours (3)
        paint = win.paste(drawn[0:1] * drawn[1:4] - torch.clamp(drawn[1:4], max=0.0) + 0.5, 0.5, scale=CELL)
        out = up(k_photo) * rgb + up(k_plate) * plate + paint.reshape(1, 3, PATCH_H, PATCH_W)
        return out.reshape(3, PATCH_H, PATCH_W).to(torch.uint8).permute(1, 2, 0)


def example_inputs(n_basis: int = len(BASIS)) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the graph's static shapes (for export and tests)."""
    from vcam.runtime.channels import N_MOTION
    from vcam.avatar.rig_layout import PARAMS

    return (torch.zeros(1, N_MOTION), torch.zeros(1, 3, FRAME, FRAME), torch.zeros(1, 3, PATCH_H, PATCH_W),
            torch.zeros(n_basis, 2 * GRID_H * GRID_W), torch.zeros(1, len(MAPS), GRID_H, GRID_W),
            torch.zeros(1, len(PARAMS)))


__all__ = ["RenderModel", "example_inputs", "piecewise"]
