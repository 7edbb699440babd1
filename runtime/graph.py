"""OnnxGraph: one ONNX graph, its manifest entry, and I/O binding into preallocated buffers.

Per frame, :meth:`OnnxGraph.run` binds nothing new and allocates nothing: every input and
output is a numpy array made once by the caller (or by :meth:`output`), bound to the session
once, and onnxruntime writes the outputs straight into them.

On the CPU the session reads the bound input arrays themselves. On a GPU it cannot: onnxruntime
copies a host input to the device when it is *bound*, not when the graph runs, so changes made
to the array afterwards would never reach the graph (seen on an H200: the render graph drew a
black frame, the motion graph never heard the audio). There every input gets a device buffer,
made once and bound once, and :meth:`OnnxGraph.run` copies each changing input into it before
the run; inputs bound as ``constant`` (a portrait's tensors) are copied only when
:meth:`OnnxGraph.refresh_input` says they changed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam.resources import graph_dir as graph_folder
from vcam.runtime.errors import GraphError

log = logging.getLogger(__name__)


_DTYPES = {"float32": np.float32, "uint8": np.uint8, "int64": np.int64}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One graph input or output as the manifest states it."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def load_manifest(graph_dir: Path | None = None) -> dict:
    """Read ``onnx/manifest.json``: ``{graph_name: {"file", "inputs", "outputs", "meta"}}``.

    ``graph_dir=None`` is the packaged graphs (:func:`vcam.resources.graph_dir`)."""
    graph_dir = graph_dir or graph_folder()
    path = graph_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GraphError(f"graph manifest {path} is missing; run the export scripts (see README)") from None
    except json.JSONDecodeError as e:
        raise GraphError(f"graph manifest {path} is not valid JSON: {e}") from None


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers, best first (CUDA, then CPU)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def gpu_present() -> bool:
    """Whether an NVIDIA driver is visible (device nodes on Linux, the driver DLL on Windows)."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")
    if sys.platform == "win32":
        return os.path.exists(os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvcuda.dll"))
    return False


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _specs(entries: list[dict]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(e["name"], tuple(e["shape"]), e["dtype"]) for e in entries)


class OnnxGraph:
    """An onnxruntime session for one graph of the manifest, with I/O binding.

    Parameters
    ----------
    name:
        The graph's key in ``onnx/manifest.json`` (``"motion"``, ``"render"``).
    provider:
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when it loads, else the CPU with one warning).
    threads:
        Intra-op threads for the CPU provider (0: onnxruntime's default, one per core).
    copy_inputs:
        Give every input a buffer of the session's own, copied from the bound array before each
        run (constant inputs: when refreshed). ``None``: only where the session runs on a GPU,
        which needs it; ``True`` takes the same path on the CPU (for tests).

    Use :meth:`bind_input` once per input array and :meth:`output` to get the preallocated
    output arrays; then :meth:`run` per frame. A context manager; ``close()`` is idempotent.
    """

    def __init__(self, name: str, *, provider: str = "auto", threads: int = 0,
                 graph_dir: Path | None = None, copy_inputs: bool | None = None) -> None:
        import onnxruntime as ort

        graph_dir = graph_dir or graph_folder()
        manifest = load_manifest(graph_dir)
        if name not in manifest:
            raise GraphError(f"graph {name!r} is not in {graph_dir / 'manifest.json'} (has: {', '.join(manifest)})")
        entry = manifest[name]
        self.name = name
        self.path = graph_dir / entry["file"]
        self.inputs = _specs(entry["inputs"])
        self.outputs = _specs(entry["outputs"])
        self.meta: dict = entry.get("meta", {})
        if not self.path.is_file():
            raise GraphError(f"{name} graph file {self.path} is missing; run the export scripts (see README)")

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Idle onnxruntime threads sleep instead of spinning: the encoder and audio threads
        # share the cores (on 2 cores this made `vcam render` 28 % faster).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session, self.provider = self._open(ort, opts, provider)
        self._check_io()
        self._binding = self._session.io_binding()
        self._device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        # Inputs go through device buffers on a GPU; ``copy_inputs=True`` takes that path on the
        # CPU too (tests use it to check it on machines without a GPU).
        self._copy_inputs = self._device != "cpu" if copy_inputs is None else bool(copy_inputs)
        self._ort = ort
        self._outputs: dict[str, np.ndarray] = {}
        self._bound_inputs: set[str] = set()
        # name -> (host array, device OrtValue, constant); the others are copied before every run
        self._staged: dict[str, tuple[np.ndarray, object, bool]] = {}
        self._per_run: list[tuple[np.ndarray, object]] = []
        for spec in self.outputs:
            buf = np.zeros(spec.shape, dtype=_DTYPES[spec.dtype])
            self._outputs[spec.name] = buf
            self._binding.bind_output(spec.name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
        self._closed = False

    def _open(self, ort, opts, provider: str):
        path = os.fspath(self.path)
        want = provider.lower()
        if want not in ("auto", "cpu", "cuda"):
            raise GraphError(f"execution provider must be 'auto', 'cpu' or 'cuda', got {provider!r}")
        # "auto" tries CUDA only where an NVIDIA driver is present; elsewhere it is no failure.
        if want == "auto" and not gpu_present():
            want = "cpu"
        if want in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            try:
                ort.set_default_logger_severity(4)  # the failure is reported once, below
                sess = ort.InferenceSession(path, opts, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
                if sess.get_providers()[0] == "CUDAExecutionProvider":
                    return sess, "CUDAExecutionProvider"
                reason = "CUDA provider did not load (CUDA/cuDNN libraries missing?)"
            except Exception as e:  # noqa: BLE001 - any provider failure falls back to the CPU
                reason = f"{type(e).__name__}: {e}".splitlines()[0]
            finally:
                ort.set_default_logger_severity(3)
            if want == "cuda":
                raise GraphError(f"{self.name} graph: CUDA execution provider requested but {reason}")
            _warn_once(f"CUDA execution provider failed ({reason}); running on the CPU")
        elif want == "cuda":
            raise GraphError(f"{self.name} graph: CUDA execution provider requested but this onnxruntime has none")
        try:
            return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]), "CPUExecutionProvider"
        except Exception as e:  # noqa: BLE001 - report one line
            raise GraphError(f"{self.name} graph {self.path}: onnxruntime could not load it: {e}") from None

    def _check_io(self) -> None:
        got_in = {i.name: i for i in self._session.get_inputs()}
        got_out = {o.name: o for o in self._session.get_outputs()}
        for kind, specs, got in (("input", self.inputs, got_in), ("output", self.outputs, got_out)):
            names = {s.name for s in specs}
            if names != set(got):
                raise GraphError(f"{self.name} graph: manifest {kind}s {sorted(names)} but the file has {sorted(got)}")
            for s in specs:
                shape = tuple(got[s.name].shape)
                if shape != s.shape:
                    raise GraphError(f"{self.name} graph: {kind} {s.name!r} is {shape} in the file, manifest says {s.shape}")

    def spec(self, name: str) -> TensorSpec:
        """The manifest's spec of input or output ``name``."""
        for s in self.inputs + self.outputs:
            if s.name == name:
                return s
        raise GraphError(f"{self.name} graph has no tensor {name!r}")

    def bind_input(self, name: str, array: np.ndarray, *, constant: bool = False) -> None:
        """Bind ``array`` (C-contiguous, the manifest's shape and dtype) to input ``name``.

        The array is read at every :meth:`run`: update it in place (``array[...] = x``) between
        runs. Bind once; rebinding is only needed when a different array takes its place.
        ``constant``: the array changes rarely (a portrait's tensors); on a GPU it is copied to
        the device only here and at :meth:`refresh_input`, not before every run.
        """
        spec = self.spec(name)
        if array.shape != spec.shape or array.dtype != _DTYPES[spec.dtype]:
            raise GraphError(
                f"{self.name} graph: input {name!r} expects {spec.shape} {spec.dtype}, got {array.shape} {array.dtype}")
        if not array.flags.c_contiguous:
            raise GraphError(f"{self.name} graph: input {name!r} must be C-contiguous")
        if self._copy_inputs:
            device = self._ort.OrtValue.ortvalue_from_shape_and_type(array.shape, array.dtype, self._device, 0)
            device.update_inplace(array)
            self._binding.bind_ortvalue_input(name, device)
            self._staged[name] = (array, device, constant)
            self._per_run = [(a, d) for a, d, const in self._staged.values() if not const]
        else:
            self._binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        self._bound_inputs.add(name)

    def refresh_input(self, name: str) -> None:
        """The array bound to ``name`` as ``constant`` changed: copy it to the device (a no-op
        where the session reads the array itself)."""
        if name in self._staged:
            array, device, _ = self._staged[name]
            device.update_inplace(array)

    def output(self, name: str) -> np.ndarray:
        """The preallocated array that output ``name`` is written into at every :meth:`run`."""
        return self._outputs[name]

    def run(self) -> None:
        """Run the graph once on the bound inputs; outputs land in :meth:`output` arrays."""
        if len(self._bound_inputs) != len(self.inputs):
            missing = sorted({s.name for s in self.inputs} - self._bound_inputs)
            raise GraphError(f"{self.name} graph: inputs not bound: {missing}")
        for array, device in self._per_run:
            device.update_inplace(array)
        self._session.run_with_iobinding(self._binding)
        if self._device != "cpu":
            self._binding.synchronize_outputs()

    def close(self) -> None:
        """Release the session. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._binding = None
        self._session = None
        self._staged.clear()
        self._per_run = []

    def __enter__(self) -> OnnxGraph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
