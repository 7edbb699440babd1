"""Export the render graph to ``onnx/render.onnx`` and record it in the manifest.

    python -m vcam.graphs.export_render

Needs the ``export`` extra (torch, onnx). The graph has no learned weights: it is defined
by :mod:`vcam.graphs.render_model`, so exporting is deterministic and takes seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vcam.graphs.manifest import GRAPH_DIR, tensor_entry, write_entry

INPUTS = ("motion", "image", "plate", "rig_basis", "rig_maps", "rig_params")
OPSET = 17


def export(out_dir: Path = GRAPH_DIR) -> Path:
    """Write ``render.onnx`` into ``out_dir`` and its manifest entry; returns the file."""
    import torch

    from vcam.graphs.render_model import RenderModel, example_inputs

    model = RenderModel().eval()
    args = example_inputs()
    path = out_dir / "render.onnx"
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=list(INPUTS), output_names=["patch"],
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    inputs = [tensor_entry(n, a.shape, "float32") for n, a in zip(INPUTS, args)]
    from vcam.avatar.rig_layout import BASIS, GRID_H, GRID_W, MAPS, PARAMS, PATCH_H, PATCH_W

    outputs = [tensor_entry("patch", (PATCH_H, PATCH_W, 3), "uint8")]
    write_entry("render", path.name, inputs, outputs,
                {"grid": [GRID_H, GRID_W], "patch": [PATCH_H, PATCH_W], "frame": 512, "basis": list(BASIS), "maps": list(MAPS), "params": list(PARAMS),
                 "opset": OPSET}, graph_dir=out_dir)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=GRAPH_DIR)
    args = parser.parse_args(argv)
    print(export(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
