"""Export the motion graph to ``onnx/motion.onnx`` and write its manifest entry.

    python -m vcam.graphs.export_motion [--weights vcam/graphs/weights/lips.npz]

Static shapes, opset 17. Inputs ``mel (1, N_MELS, GRAPH_WINDOW)``, ``emotion (1, 37)``,
``state (1, STATE_SIZE)``, ``noise (1, NOISE_SIZE)``, ``dt (1, 1)``; outputs ``motion (1, 43)``,
``state_out (1, STATE_SIZE)``, all float32.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from vcam.runtime import features
from vcam.runtime.channels import N_BLENDSHAPES, N_MOTION
from vcam.graphs import manifest
from vcam.graphs.motion_model import (GRAPH_WINDOW, LOOKAHEAD_FRAMES, NOISE_SIZE, STATE_SIZE, VISEMES, LipNet,
                                      MotionGraph)

WEIGHTS = Path(__file__).resolve().parent / "weights" / "lips.npz"
OPSET = 17


def load_lipnet(path: Path = WEIGHTS) -> LipNet:
    """A :class:`LipNet` with the committed weights (``.npz`` of its state dict)."""
    net = LipNet()
    data = np.load(path)
    sd = {k: torch.from_numpy(np.asarray(data[k], np.float32)) for k in data.files}
    net.load_state_dict(sd)
    return net.eval()


def build_graph(weights: Path = WEIGHTS) -> MotionGraph:
    return MotionGraph(load_lipnet(weights)).eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    return (torch.full((1, features.N_MELS, GRAPH_WINDOW), features.FLOOR), torch.zeros(1, N_BLENDSHAPES),
            torch.zeros(1, STATE_SIZE), torch.full((1, NOISE_SIZE), 0.5), torch.full((1, 1), 0.04))


INPUT_NAMES = ("mel", "emotion", "state", "noise", "dt")
OUTPUT_NAMES = ("motion", "state_out")


def meta() -> dict:
    return {
        "sample_rate": features.SAMPLE_RATE, "hop": features.HOP, "win": features.WIN, "n_mels": features.N_MELS,
        "fmin": features.FMIN, "fmax": features.FMAX, "floor": features.FLOOR,
        "window_frames": GRAPH_WINDOW, "lookahead_frames": LOOKAHEAD_FRAMES,
        "lookahead_ms": LOOKAHEAD_FRAMES * 1000 * features.HOP // features.SAMPLE_RATE,
        "state_size": STATE_SIZE, "noise_size": NOISE_SIZE, "visemes": list(VISEMES),
        "features": "vcam.runtime.features log-mel relative to a tracked speech level, floor -3",
    }


def export(out_dir: Path = manifest.GRAPH_DIR, weights: Path = WEIGHTS) -> Path:
    assert features.N_MELS == 64
    graph = build_graph(weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "motion.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, example_inputs(), str(path), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    shapes = {"mel": (1, features.N_MELS, GRAPH_WINDOW), "emotion": (1, N_BLENDSHAPES), "state": (1, STATE_SIZE),
              "noise": (1, NOISE_SIZE), "dt": (1, 1), "motion": (1, N_MOTION), "state_out": (1, STATE_SIZE)}
    manifest.write_entry(
        "motion", path.name,
        [manifest.tensor_entry(n, shapes[n], "float32") for n in INPUT_NAMES],
        [manifest.tensor_entry(n, shapes[n], "float32") for n in OUTPUT_NAMES],
        meta(), graph_dir=out_dir)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--out", type=Path, default=manifest.GRAPH_DIR)
    a = ap.parse_args(argv)
    path = export(a.out, a.weights)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) and its manifest entry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
