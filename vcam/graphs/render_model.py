"""The render graph's torch definition: avatar + motion -> one 512x512 RGB frame.

Exported to ``onnx/render.onnx`` by :mod:`vcam.graphs.export_render`; never run at run time.

Per frame, on a 256x256 face-space grid:

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
drawn; ``runtime.render.RenderStage`` copies it into the still photo.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from runtime.channels import INDEX
from vcam.rig_layout import BASIS, CELL, FRAME, GRID_H, GRID_W, MAPS, PARAM_INDEX, PATCH_H, PATCH_W, basis_matrix

#: Fixed-point iterations that invert the head motion.
HEAD_ITERATIONS = 1


def piecewise(b, knots_dst, knots_src):
    """Map coordinate ``b`` through a monotone piecewise-linear map.

    ``knots_dst`` (where the knots are now) -> ``knots_src`` (where they are in the photo),
    first and last knots equal in both; outside them the map is the identity.
    """
    out = b
    for i in range(len(knots_dst) - 1):
        t0, t1 = knots_dst[i], knots_dst[i + 1]
        s0, s1 = knots_src[i], knots_src[i + 1]
        width = t1 - t0
        frac = torch.clamp((b - t0) / torch.clamp(width, min=1e-3), 0.0, 1.0)
        out = out + frac * (s1 - s0) - torch.clamp(torch.minimum(b - t0, width), min=0.0)
    return out


def _smooth01(x):
    x = torch.clamp(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


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

    @staticmethod
    def _norm_frame(p):
        """Frame pixels (1, 2, H, W) -> grid_sample coordinates over the frame (1, H, W, 2)."""
        return ((p + 0.5) * (2.0 / FRAME) - 1.0).permute(0, 2, 3, 1)

    @staticmethod
    def _norm_grid(p, origin):
        """Frame pixels (1, 2, H, W) -> grid_sample coordinates over the window's grid."""
        size = torch.tensor([PATCH_W, PATCH_H], dtype=p.dtype).reshape(1, 2, 1, 1)
        return ((p - origin + 0.5) * 2.0 / size - 1.0).permute(0, 2, 3, 1)

    def forward(self, motion, image, plate, rig_basis, rig_maps, rig_params):
        maps = dict(zip(MAPS, torch.split(rig_maps, 1, dim=1)))

        def par(name):
            return rig_params[:, PARAM_INDEX[name]].reshape(1, 1, 1, 1)

        def ch(name):
            return motion[:, INDEX[name]].reshape(1, 1, 1, 1)

        grid = torch.cat([maps["gx"], maps["gy"]], dim=1)  # (1, 2, GH, GW) frame pixels
        origin = torch.cat([par("patch_x0"), par("patch_y0")], dim=1)
        # --- 1. expression --------------------------------------------------------------
        coef = torch.matmul(motion, self.basis_mat)  # (1, NB)
        disp = torch.matmul(coef, rig_basis).reshape(1, 2, GRID_H, GRID_W)

        # Mouth: knots along the mouth's vertical axis. The knots are evaluated at the grid
        # point, the coordinate after the smooth expression moved it (knots vary slowly
        # across columns, the coordinate along the axis does not).
        m_ey = torch.cat([par("m_eyx"), par("m_eyy")], dim=1)
        mb = maps["mb"] - (disp * m_ey).sum(dim=1, keepdim=True)
        sa, sul, sll = maps["mSa"], maps["mSul"], maps["mSll"]
        sch, sb, prof, jawt, mu = maps["mSch"], maps["mSb"], maps["mProf"], maps["mJaw"], maps["mU"]
        uf = par("upper_frac")
        jaw_px = par("jaw_px")
        jaw = torch.clamp(ch("jawOpen"), 0.0, 1.0)
        close = torch.clamp(ch("mouthClose"), 0.0, 1.0)
        up_up = 0.5 * (ch("mouthUpperUpLeft") + ch("mouthUpperUpRight")) * par("lip_up_px")
        lo_dn = 0.5 * (ch("mouthLowerDownLeft") + ch("mouthLowerDownRight")) * par("lip_down_px")
        g_jaw = torch.relu(jaw - close) * 0.95 * jaw_px
        src_gap = sll - sul
        line = sul + uf * src_gap
        tul = torch.maximum(line - (uf * g_jaw + up_up) * prof, sa + 1.0)
        tll = line + ((1.0 - uf) * g_jaw + lo_dn) * prof
        chin_shift = (1.0 - uf) * (jaw * 0.95 * jaw_px - par("src_gap_px")) * jawt
        tch = torch.minimum(torch.maximum(sch + chin_shift, tll + 2.0), sb - 2.0)
        tll = torch.minimum(tll, tch - 1.0)
        tul = torch.minimum(tul, tll)
        mb_src = piecewise(mb, (sa, tul, tll, tch, sb), (sa, sul, sll, sch, sb))
        disp_mouth = (mb_src - mb) * m_ey

        # Mouth interior, drawn where the lips part.
        d_top, d_bot = mb - tul, tll - mb
        gap_here = tll - tul
        inner = torch.clamp(torch.minimum(d_top, d_bot) / 1.5, 0.0, 1.0)
        # Where the photo's open lips are pressed shut, a dark seam hides the skipped gap.
        seam = (torch.clamp(src_gap - gap_here, 0.0, 2.0) / 2.0) * torch.clamp(1.0 - torch.abs(d_top), 0.0, 1.0)
        inner = torch.maximum(inner, 0.4 * seam)
        g_jaw_raw = jaw * 0.95 * jaw_px
        upper_edge = line + 0.02 * jaw_px * prof  # upper incisors, fixed to the skull
        lower_edge = line + ((1.0 - uf) * g_jaw_raw - 0.05 * jaw_px) * prof  # lower incisors, on the jaw
        w_up = torch.clamp((upper_edge - mb) / 1.0 + 0.5, 0.0, 1.0)
        w_lo = torch.clamp((mb - lower_edge) / 1.0 + 0.5, 0.0, 1.0)
        tongue_top = tll - 0.45 * gap_here * torch.sqrt(torch.clamp(1.0 - (mu / 0.8) ** 2, 0.0, 1.0))
        w_tg = torch.clamp((mb - tongue_top) / 2.0, 0.0, 1.0) * (gap_here > 2.0).float()
        t = mu / 0.36
        seams = torch.exp(-(((t - torch.round(t)) / 0.11) ** 2))
        teeth_shade = (1.0 - 0.35 * seams) * torch.clamp(1.0 - 0.75 * mu * mu, 0.25, 1.0)
        up_shade = teeth_shade * (0.55 + 0.35 * _smooth01(d_top / 3.0)) * (
            1.0 - 0.25 * _smooth01((mb - upper_edge + 4.0) / 4.0))
        lo_shade = teeth_shade * (0.50 + 0.25 * _smooth01(d_bot / 3.0))
        teeth = torch.cat([par("teeth_r"), par("teeth_g"), par("teeth_b")], dim=1)
        cavity = torch.cat([par("cavity_r"), par("cavity_g"), par("cavity_b")], dim=1)
        tongue = torch.cat([par("tongue_r"), par("tongue_g"), par("tongue_b")], dim=1)
        depth_shade = torch.clamp(1.0 - 0.6 * mu * mu, 0.3, 1.0)
        colour = cavity + w_tg * (tongue * depth_shade - cavity)
        colour = colour + w_lo * (teeth * lo_shade - colour)
        colour = colour + w_up * (teeth * up_shade - colour)

        # Eyes: lids close over the eye; the lid that covers it takes the lid skin's colour.
        disp_eyes = torch.zeros_like(disp)
        for side, p in (("Right", "r"), ("Left", "l")):
            st, sue, sle, sbt = (maps[p + k] for k in ("St", "Sue", "Sle", "Sbt"))
            e_ey = torch.cat([par(p + "_eyx"), par(p + "_eyy")], dim=1)
            eb = maps[p + "b"] - (disp * e_ey).sum(dim=1, keepdim=True)
            blink = torch.clamp(ch("eyeBlink" + side), 0.0, 1.0)
            wide = torch.clamp(ch("eyeWide" + side), 0.0, 1.0)
            squint = torch.clamp(ch("eyeSquint" + side), 0.0, 1.0)
            gap = sle - sue
            tle = sle - (0.05 * blink + 0.30 * squint * (1.0 - blink)) * gap
            tue = torch.maximum(sue + 0.95 * blink * gap - 0.25 * wide * (1.0 - blink) * gap, st + 1.0)
            tue = torch.minimum(tue, tle)
            eb_src = piecewise(eb, (st, tue, tle, sbt), (st, sue, sle, sbt))
            closing = torch.clamp((tue - sue) / torch.clamp(gap, min=1.0), 0.0, 1.0)
            reach = 0.9 * (sue - st) + 1.0  # the cover fades in over the lid skin above
            cover = (closing * _smooth01((eb - sue + reach) / reach)
                     * torch.clamp(tue - eb + 0.5, 0.0, 1.0))
            lash = closing * torch.clamp(1.0 - torch.abs(eb - tue) / 1.5, 0.0, 1.0)
            lid = torch.cat([par(p + "lid_r"), par(p + "lid_g"), par(p + "lid_b")], dim=1)
            lid_shaded = lid * (0.80 + 0.20 * _smooth01((tue - eb) / 4.0))
            lid_shaded = lid_shaded + lash * (0.3 * lid - lid_shaded)
            alpha = 0.85 * torch.maximum(cover, lash)
            colour = torch.where(alpha > 0.0, lid_shaded, colour)
            inner = torch.maximum(inner, alpha)
            disp_eyes = disp_eyes + (eb_src - eb) * e_ey

        src = grid - disp + disp_mouth + disp_eyes  # (1, 2, G, G) photo pixels
        stack = torch.cat([src, inner, colour, maps["alpha"]], dim=1)  # (1, 7, GH, GW)

        # --- 2. head pose -----------------------------------------------------------------
        deg = math.pi / 180.0
        yaw, pitch, roll = ch("headYaw") * deg, ch("headPitch") * deg, ch("headRoll") * deg
        scale = 1.0 + ch("headZ")
        px, py = par("pivot_x"), par("pivot_y")
        x = grid[:, 0:1] - px
        y = grid[:, 1:2] - py
        z = maps["depth"]
        x1 = x * torch.cos(yaw) + z * torch.sin(yaw)
        z1 = z * torch.cos(yaw) - x * torch.sin(yaw)
        y2 = y * torch.cos(pitch) - z1 * torch.sin(pitch)
        x3 = x1 * torch.cos(roll) - y2 * torch.sin(roll)
        y3 = x1 * torch.sin(roll) + y2 * torch.cos(roll)
        fwd = torch.cat([px + scale * x3 + ch("headX"), py + scale * y3 + ch("headY")], dim=1)
        head_disp = maps["head"] * (fwd - grid)  # forward displacement, (1, 2, GH, GW)
        q = grid - head_disp
        for _ in range(HEAD_ITERATIONS):
            q = grid - F.grid_sample(head_disp, self._norm_grid(q, origin), mode="bilinear",
                                     padding_mode="border", align_corners=False)
        warped_stack = F.grid_sample(stack, self._norm_grid(q, origin), mode="bilinear", padding_mode="border",
                                     align_corners=False)

        # Background shows through only where the head moved: a still frame is the photo itself.
        moved = torch.clamp(torch.sqrt(((grid - q) ** 2).sum(dim=1, keepdim=True) + 1e-6) / 1.5, 0.0, 1.0)
        person = 1.0 - moved * (1.0 - warped_stack[:, 6:7])

        # --- 3. full resolution -------------------------------------------------------------
        full = F.interpolate(torch.cat([warped_stack[:, 0:6], person], dim=1), scale_factor=CELL, mode="bilinear",
                             align_corners=False)
        src_full, inner_full, colour_full, alpha = full[:, 0:2], full[:, 2:3], full[:, 3:6], full[:, 6:7]
        rgb = F.grid_sample(image, self._norm_frame(src_full), mode="bilinear", padding_mode="border",
                            align_corners=False)
        out = plate + alpha * (rgb - plate)
        out = out + inner_full * (colour_full - out)
        frame = torch.clamp(out * 255.0 + 0.5, 0.0, 255.0).to(torch.uint8)
        return frame[0].permute(1, 2, 0)


def example_inputs(n_basis: int = len(BASIS)) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the graph's static shapes (for export and tests)."""
    from runtime.channels import N_MOTION
    from vcam.rig_layout import PARAMS

    return (torch.zeros(1, N_MOTION), torch.zeros(1, 3, FRAME, FRAME), torch.zeros(1, 3, PATCH_H, PATCH_W),
            torch.zeros(n_basis, 2 * GRID_H * GRID_W), torch.zeros(1, len(MAPS), GRID_H, GRID_W),
            torch.zeros(1, len(PARAMS)))


__all__ = ["RenderModel", "example_inputs", "piecewise"]
