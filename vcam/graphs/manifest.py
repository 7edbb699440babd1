"""Write one graph's entry into ``onnx/manifest.json`` (used by the export scripts)."""

from __future__ import annotations

import json
from pathlib import Path

#: Where the export scripts write: the repository's top-level ``onnx/`` folder.
GRAPH_DIR = Path(__file__).resolve().parents[2] / "onnx"


def tensor_entry(name: str, shape, dtype: str) -> dict:
    """One manifest tensor: name, static shape, dtype name ('float32', 'uint8', 'int64')."""
    return {"name": name, "shape": [int(s) for s in shape], "dtype": dtype}


def write_entry(graph: str, file: str, inputs: list[dict], outputs: list[dict], meta: dict | None = None,
                graph_dir: Path = GRAPH_DIR) -> None:
    """Merge ``graph``'s entry into the manifest, keeping the other graphs' entries."""
    import hashlib

    path = graph_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    digest = hashlib.sha256((graph_dir / file).read_bytes()).hexdigest()
    manifest[graph] = {"file": file, "sha256": digest, "inputs": inputs, "outputs": outputs, "meta": meta or {}}
    path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
