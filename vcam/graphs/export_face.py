"""Convert MediaPipe's face detector, face mesh and selfie segmentation (TFLite) to ONNX.

    python -m vcam.graphs.export_face [--tflite-dir DIR] [--out onnx]

Export time only (needs the ``tflite`` flatbuffer parser and ``onnx``; ``mediapipe==0.10.14``
only as the place the .tflite files come from, or give ``--tflite-dir``). Writes

    onnx/face_detect_short.onnx     face_detection_short_range.tflite        (1, 128, 128, 3)
    onnx/face_detect_full.onnx      face_detection_full_range_sparse.tflite  (1, 192, 192, 3)
    onnx/face_mesh.onnx             face_landmark_with_attention.tflite      (1, 192, 192, 3)
    onnx/selfie_segmentation.onnx   selfie_segmentation.tflite               (1, 256, 256, 3)
    onnx/NOTICE-mediapipe.txt

Each ONNX graph keeps its TFLite model's input and output names, shapes (NHWC) and dtype
(float32), so its raw tensors compare one to one with the TFLite interpreter's.

How: a direct TFLite -> ONNX op translator. Activations of rank 4 are carried in NCHW (the
layout ONNX's Conv, pools, Resize and DepthToSpace want); Reshape, StridedSlice and the graph's
inputs and outputs transpose to and from NHWC where the TFLite semantics need it. Constants are
folded at export: fp16 weights behind DEQUANTIZE become float32 initializers, and sparse weights
behind DENSIFY are decoded from TFLite's sparsity format (traversal order, block map, DENSE /
SPARSE_CSR dimension metadata). MediaPipe's custom TFLite ops are expressed in standard ONNX
ops (opset 17):

* ``Landmarks2TransformMatrix`` (v2): rotation from two landmarks, rotated bounding box of a
  landmark subset, 4x4 matrix shift(centre) . rot . scale(scale * box / out) . shift(-out / 2),
  built from elementwise ops (cos/sin of the angle as normalised vector components).
* ``TransformTensorBilinear`` (v2): sampling grid ``M @ (x + 0.5, y + 0.5) - 0.5`` over the output
  pixels, ``GridSample`` (bilinear, align_corners, zeros) and a mask that zeroes every output
  pixel whose sample point lies outside ``[0, W - 1] x [0, H - 1]``, as the op does.
* ``TransformLandmarks`` (v2): ``xy @ M[:2, :2]^T + M[:2, 3]``.
* ``Convolution2DTransposeBias``: ``ConvTranspose`` with the op's stride and padding.

One builtin op is rewritten for speed: a per-channel PRELU becomes
``relu(x) + (-alpha) * relu(-x)`` in 1x1 depthwise convolutions, the same values (every term is
exact or one product), which onnxruntime keeps in its blocked NCHWc layout (the mesh model runs
~35 % faster than with ONNX PRelu). The output is deterministic: the same input files give the
same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import struct
from pathlib import Path

import numpy as np

OPSET = 17
IR_VERSION = 8  # opset 17 needs IR 8; older onnxruntime releases read no newer IR
MEDIAPIPE_VERSION = "0.10.14"

#: ONNX file stem -> (folder under mediapipe/modules, tflite file, what it is)
MODELS = {
    "face_detect_short": ("face_detection", "face_detection_short_range.tflite",
                          "BlazeFace short-range face detector, 128x128"),
    "face_detect_full": ("face_detection", "face_detection_full_range_sparse.tflite",
                         "BlazeFace full-range face detector (sparse weights), 192x192"),
    "face_mesh": ("face_landmark", "face_landmark_with_attention.tflite",
                  "Face Mesh with attention (468 points + lips, eyes, irises), 192x192"),
    "selfie_segmentation": ("selfie_segmentation", "selfie_segmentation.tflite",
                            "Selfie segmentation, general model, 256x256"),
}

_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)
_AXIS_NHWC_TO_NCHW = (0, 2, 3, 1)  # NHWC axis a is NCHW axis _AXIS_NHWC_TO_NCHW[a]


def default_tflite_dir() -> Path:
    """``mediapipe/modules`` of the installed mediapipe wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mediapipe is not installed: give --tflite-dir with the four .tflite files")
    return Path(list(spec.submodule_search_locations)[0]) / "modules"


def find_tflite(tflite_dir: Path, folder: str, name: str) -> Path:
    for p in (tflite_dir / folder / name, tflite_dir / name):
        if p.is_file():
            return p
    raise FileNotFoundError(f"{name} not found under {tflite_dir}")


# --------------------------------------------------------------------------------------------
# TFLite reading


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _options(op, cls):
    table = op.BuiltinOptions()
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    return opt


def _index_vector(dm, which: str) -> np.ndarray:
    import tflite

    kind = getattr(dm, which + "Type")()
    table = getattr(dm, which)()
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


def densify(values: np.ndarray, shape: list[int], sparsity) -> np.ndarray:
    """Dense tensor of ``shape`` from TFLite's sparse encoding (values in traversal order)."""
    traversal = [int(v) for v in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(v) for v in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    levels = []
    for i in range(sparsity.DimMetadataLength()):
        dm = sparsity.DimMetadata(i)
        if dm.Format() == 0:  # DENSE
            levels.append(("dense", int(dm.DenseSize()), None, None))
        else:  # SPARSE_CSR
            levels.append(("csr", 0, _index_vector(dm, "ArraySegments"), _index_vector(dm, "ArrayIndices")))
    rank = len(shape)
    block_size = []
    for k in range(len(block_map)):
        block_size.append(levels[traversal[rank + k]][1])
    out = np.zeros(int(np.prod(shape)), values.dtype)
    strides = np.cumprod([1] + shape[::-1])[:-1][::-1]
    ptr = 0
    idx = [0] * len(traversal)

    def emit():
        nonlocal ptr
        orig = [0] * rank
        for i in range(rank):
            orig[traversal[i]] = idx[i]
        for i in range(rank, len(traversal)):
            b = traversal[i] - rank
            d = block_map[b]
            orig[d] = orig[d] * block_size[b] + idx[i]
        out[int(np.dot(orig, strides))] = values[ptr]
        ptr += 1

    def walk(level: int, prev: int):
        if level == len(traversal):
            emit()
            return
        kind, size, seg, ind = levels[level]
        if kind == "dense":
            for i in range(size):
                idx[level] = i
                walk(level + 1, prev * size + i)
        elif prev + 1 < len(seg):
            for i in range(int(seg[prev]), int(seg[prev + 1])):
                idx[level] = int(ind[i])
                walk(level + 1, i)

    walk(0, 0)
    assert ptr == len(values), (ptr, len(values))
    return out.reshape(shape)


# --------------------------------------------------------------------------------------------
# The translator


class Converter:
    """One TFLite subgraph -> one ONNX graph (see the module docstring)."""

    def __init__(self, buf: bytes, graph_name: str):
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator

        self.tfl = tflite
        self.buf = buf
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        assert self.model.SubgraphsLength() == 1
        self.sg = self.model.Subgraphs(0)
        self.graph_name = graph_name
        self.op_names = _enum_names(BuiltinOperator)
        self.nodes = []
        self.inits = {}
        self.names: dict[int, str] = {}  # tflite tensor -> onnx value (dynamic tensors)
        self.layout: dict[int, str] = {}  # "nchw" for rank-4 activations, "plain" otherwise
        self.consts: dict[int, np.ndarray] = {}
        self.cache: dict[tuple, str] = {}
        self.uid = 0
        for i in range(self.sg.TensorsLength()):
            arr = self._buffer(i)
            if arr is not None:
                self.consts[i] = arr

    # ---- tensors
    def tensor(self, i: int):
        return self.sg.Tensors(i)

    def shape(self, i: int) -> list[int]:
        t = self.tensor(i)
        return [int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def tname(self, i: int) -> str:
        return self.tensor(i).Name().decode()

    def _buffer(self, i: int) -> np.ndarray | None:
        t = self.tensor(i)
        b = self.model.Buffers(t.Buffer())
        if b is None:
            return None
        if b.Offset() > 1:  # data stored after the flatbuffer
            raw = self.buf[b.Offset(): b.Offset() + b.Size()]
        elif b.DataLength():
            raw = b.DataAsNumpy().tobytes()
        else:
            return None
        dtypes = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8, 7: np.int16}
        if t.Type() not in dtypes:
            raise NotImplementedError(f"tensor {self.tname(i)}: TFLite type {t.Type()}")
        dtype = dtypes[t.Type()]
        arr = np.frombuffer(raw, dtype).copy()
        if t.Sparsity() is not None:
            return arr  # flat values; DENSIFY decodes them
        return arr.reshape(self.shape(i)) if self.shape(i) else arr.reshape(())

    def fresh(self, hint: str) -> str:
        self.uid += 1
        name = f"{hint}__{self.uid}"
        return name

    def init(self, arr: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.inits[name] = np.ascontiguousarray(arr)
        return name

    def cinit(self, arr: np.ndarray, hint: str = "const") -> str:
        """An initializer, shared between identical small constants."""
        arr = np.asarray(arr)
        key = ("c", arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key is not None and key in self.cache:
            return self.cache[key]
        name = self.init(arr, hint)
        if key is not None:
            self.cache[key] = name
        return name

    def node(self, op_type: str, inputs: list[str], n_out: int = 1, hint: str | None = None,
             outputs: list[str] | None = None, **attrs) -> list[str] | str:
        from onnx import helper

        if outputs is None:
            outputs = [self.fresh(hint or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.fresh("n_" + op_type), **attrs))
        return outputs if len(outputs) > 1 else outputs[0]

    def value(self, i: int, want: str) -> str:
        """ONNX value for tflite tensor ``i`` in layout ``want`` ("nchw" only for rank 4)."""
        shape = self.shape(i)
        if len(shape) != 4:
            want = "plain"
        if i in self.consts:
            arr = self.consts[i].astype(np.float32) if self.consts[i].dtype == np.float16 else self.consts[i]
            if want == "nchw":
                arr = arr.transpose(_NHWC_TO_NCHW)
            return self.cinit(arr, self.tname(i).replace("/", "_"))
        have = self.layout[i]
        if have == want:
            return self.names[i]
        key = ("t", i, want)
        if key not in self.cache:
            perm = _NHWC_TO_NCHW if want == "nchw" else _NCHW_TO_NHWC
            self.cache[key] = self.node("Transpose", [self.names[i]], perm=list(perm), hint=self.tname(i) + "_" + want)
        return self.cache[key]

    def bcast(self, i: int, want: str) -> str:
        """Tensor ``i`` as an operand broadcast (numpy rules, NHWC) against a result in ``want``."""
        shape = self.shape(i)
        if want == "nchw" and len(shape) < 4 and i in self.consts:
            arr = self.consts[i].astype(np.float32) if self.consts[i].dtype == np.float16 else self.consts[i]
            arr = arr.reshape([1] * (4 - arr.ndim) + list(arr.shape)).transpose(_NHWC_TO_NCHW)
            return self.cinit(arr, self.tname(i).replace("/", "_"))
        if want == "nchw" and len(shape) < 4:
            raise NotImplementedError(f"dynamic rank-{len(shape)} operand against a rank-4 tensor")
        return self.value(i, want)

    def set_out(self, i: int, name: str, layout: str):
        self.names[i] = name
        self.layout[i] = layout if len(self.shape(i)) == 4 else "plain"

    def activation(self, x: str, fused: int, hint: str) -> str:
        if fused == 0:
            return x
        if fused == 1:
            return self.node("Relu", [x], hint=hint)
        if fused == 2:
            return self.node("Clip", [x, self.cinit(np.float32(-1)), self.cinit(np.float32(1))], hint=hint)
        if fused == 3:
            return self.node("Clip", [x, self.cinit(np.float32(0)), self.cinit(np.float32(6))], hint=hint)
        if fused == 4:
            return self.node("Tanh", [x], hint=hint)
        raise NotImplementedError(f"fused activation {fused}")

    @staticmethod
    def same_pads(in_size: int, k: int, stride: int, dilation: int, out_size: int) -> tuple[int, int]:
        eff = (k - 1) * dilation + 1
        total = max((out_size - 1) * stride + eff - in_size, 0)
        return total // 2, total - total // 2

    def spatial_pads(self, padding: int, x: int, out: int, kh: int, kw: int, sh: int, sw: int,
                     dh: int = 1, dw: int = 1) -> list[int]:
        if padding == 1:  # VALID
            return [0, 0, 0, 0]
        ish, osh = self.shape(x), self.shape(out)
        top, bottom = self.same_pads(ish[1], kh, sh, dh, osh[1])
        left, right = self.same_pads(ish[2], kw, sw, dw, osh[2])
        return [top, left, bottom, right]

    # ---- the run
    def convert(self):
        from onnx import TensorProto, helper, numpy_helper

        sg = self.sg
        graph_inputs = []
        for k in range(sg.InputsLength()):
            i = sg.Inputs(k)
            name = self.tname(i)
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(i)))
            self.names[i] = name
            self.layout[i] = "nhwc" if len(self.shape(i)) == 4 else "plain"
        for j in range(sg.OperatorsLength()):
            self.convert_op(sg.Operators(j), j)
        graph_outputs = []
        for k in range(sg.OutputsLength()):
            i = sg.Outputs(k)
            name = self.tname(i)
            v = self.value(i, "nhwc")
            self.nodes.append(helper.make_node("Identity", [v], [name], name=self.fresh("n_out")))
            graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(i)))
        inits = [numpy_helper.from_array(a, n) for n, a in self.inits.items()]
        graph = helper.make_graph(self.nodes, self.graph_name, graph_inputs, graph_outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="vcam.graphs.export_face")
        model.ir_version = IR_VERSION
        return model

    def convert_op(self, op, j: int):
        oc = self.model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        kind = self.op_names[code]
        ins = [op.Inputs(k) for k in range(op.InputsLength())]
        outs = [op.Outputs(k) for k in range(op.OutputsLength())]
        if kind == "CUSTOM":
            custom = oc.CustomCode().decode()
            getattr(self, "op_custom_" + custom)(op, ins, outs, oc.Version())
            return
        getattr(self, "op_" + kind.lower())(op, ins, outs)

    # ---- folded constant ops
    def op_dequantize(self, op, ins, outs):
        if ins[0] not in self.consts:
            x = self.value(ins[0], "nchw")
            self.set_out(outs[0], self.node("Cast", [x], to=1, hint=self.tname(outs[0])), "nchw")
            return
        src = self.consts[ins[0]]
        if src.dtype != np.float16:
            raise NotImplementedError(f"DEQUANTIZE of {src.dtype}")
        self.consts[outs[0]] = src.astype(np.float32).reshape(self.shape(outs[0]))

    def op_densify(self, op, ins, outs):
        t = self.tensor(ins[0])
        self.consts[outs[0]] = densify(self.consts[ins[0]], self.shape(ins[0]), t.Sparsity())

    # ---- convolutions and pools
    def op_conv_2d(self, op, ins, outs):
        o = _options(op, self.tfl.Conv2DOptions)
        w = self.consts[ins[1]].astype(np.float32)  # (O, kh, kw, I)
        x = self.value(ins[0], "nchw")
        args = [x, self.init(w.transpose(0, 3, 1, 2), self.tname(ins[1]).replace("/", "_"))]
        if len(ins) > 2 and ins[2] >= 0:
            args.append(self.init(self.consts[ins[2]].astype(np.float32).reshape(-1), "bias"))
        dh, dw = o.DilationHFactor(), o.DilationWFactor()
        pads = self.spatial_pads(o.Padding(), ins[0], outs[0], w.shape[1], w.shape[2], o.StrideH(), o.StrideW(), dh, dw)
        y = self.node("Conv", args, kernel_shape=[w.shape[1], w.shape[2]], strides=[o.StrideH(), o.StrideW()],
                      dilations=[dh, dw], pads=pads, group=1, hint=self.tname(outs[0]))
        self.set_out(outs[0], self.activation(y, o.FusedActivationFunction(), self.tname(outs[0])), "nchw")

    def op_depthwise_conv_2d(self, op, ins, outs):
        o = _options(op, self.tfl.DepthwiseConv2DOptions)
        w = self.consts[ins[1]].astype(np.float32)  # (1, kh, kw, C * M)
        cin = self.shape(ins[0])[3]
        x = self.value(ins[0], "nchw")
        args = [x, self.init(w.transpose(3, 0, 1, 2), self.tname(ins[1]).replace("/", "_"))]
        if len(ins) > 2 and ins[2] >= 0:
            args.append(self.init(self.consts[ins[2]].astype(np.float32).reshape(-1), "bias"))
        dh, dw = o.DilationHFactor(), o.DilationWFactor()
        pads = self.spatial_pads(o.Padding(), ins[0], outs[0], w.shape[1], w.shape[2], o.StrideH(), o.StrideW(), dh, dw)
        y = self.node("Conv", args, kernel_shape=[w.shape[1], w.shape[2]], strides=[o.StrideH(), o.StrideW()],
                      dilations=[dh, dw], pads=pads, group=cin, hint=self.tname(outs[0]))
        self.set_out(outs[0], self.activation(y, o.FusedActivationFunction(), self.tname(outs[0])), "nchw")

    def _pool(self, op, ins, outs, onnx_op: str, **extra):
        o = _options(op, self.tfl.Pool2DOptions)
        kh, kw = o.FilterHeight(), o.FilterWidth()
        pads = self.spatial_pads(o.Padding(), ins[0], outs[0], kh, kw, o.StrideH(), o.StrideW())
        y = self.node(onnx_op, [self.value(ins[0], "nchw")], kernel_shape=[kh, kw], strides=[o.StrideH(), o.StrideW()],
                      pads=pads, hint=self.tname(outs[0]), **extra)
        self.set_out(outs[0], self.activation(y, o.FusedActivationFunction(), self.tname(outs[0])), "nchw")

    def op_max_pool_2d(self, op, ins, outs):
        self._pool(op, ins, outs, "MaxPool")

    def op_average_pool_2d(self, op, ins, outs):
        self._pool(op, ins, outs, "AveragePool", count_include_pad=0)

    # ---- elementwise
    def _binary(self, op, ins, outs, onnx_op: str, opt_cls):
        rank = len(self.shape(outs[0]))
        want = "nchw" if rank == 4 else "plain"
        a, b = self.bcast(ins[0], want), self.bcast(ins[1], want)
        y = self.node(onnx_op, [a, b], hint=self.tname(outs[0]))
        fused = _options(op, opt_cls).FusedActivationFunction() if op.BuiltinOptions() is not None else 0
        self.set_out(outs[0], self.activation(y, fused, self.tname(outs[0])), want)

    def op_add(self, op, ins, outs):
        self._binary(op, ins, outs, "Add", self.tfl.AddOptions)

    def op_mul(self, op, ins, outs):
        self._binary(op, ins, outs, "Mul", self.tfl.MulOptions)

    def op_sub(self, op, ins, outs):
        self._binary(op, ins, outs, "Sub", self.tfl.SubOptions)

    def _unary(self, ins, outs, onnx_op: str, **attrs):
        want = "nchw" if len(self.shape(ins[0])) == 4 else "plain"
        y = self.node(onnx_op, [self.value(ins[0], want)], hint=self.tname(outs[0]), **attrs)
        self.set_out(outs[0], y, want)

    def op_relu(self, op, ins, outs):
        self._unary(ins, outs, "Relu")

    def op_logistic(self, op, ins, outs):
        self._unary(ins, outs, "Sigmoid")

    def op_tanh(self, op, ins, outs):
        self._unary(ins, outs, "Tanh")

    def op_hard_swish(self, op, ins, outs):
        self._unary(ins, outs, "HardSwish")

    def op_relu6(self, op, ins, outs):
        want = "nchw" if len(self.shape(ins[0])) == 4 else "plain"
        y = self.activation(self.value(ins[0], want), 3, self.tname(outs[0]))
        self.set_out(outs[0], y, want)

    def op_prelu(self, op, ins, outs):
        rank = len(self.shape(outs[0]))
        want = "nchw" if rank == 4 else "plain"
        x = self.value(ins[0], want)
        hint = self.tname(outs[0])
        alpha = self.consts.get(ins[1])
        c = self.shape(ins[0])[-1]
        if rank == 4 and alpha is not None and alpha.size == c:
            # relu(x) + (-alpha) * relu(-x) as 1x1 depthwise convolutions (weights 1, -1, -alpha)
            # with fused Relu and a fused sum: the same values as PRelu (each term is exact or one
            # product), but onnxruntime keeps all of it in its blocked NCHWc layout, where a PRelu
            # forces reorders around it (the mesh runs ~35 % faster).
            a = alpha.astype(np.float32).reshape(c, 1, 1, 1)

            def dw(v, w, name):
                return self.node("Conv", [v, w], group=c, kernel_shape=[1, 1], hint=hint + name)

            pos = self.node("Relu", [dw(x, self.cinit(np.ones((c, 1, 1, 1), np.float32), "one"), "_x")])
            neg = self.node("Relu", [dw(x, self.cinit(np.full((c, 1, 1, 1), -1.0, np.float32), "minus_one"), "_negx")])
            y = self.node("Add", [dw(neg, self.init(-a, "neg_alpha"), "_neg"), pos], hint=hint)
        else:
            y = self.node("PRelu", [x, self.bcast(ins[1], want)], hint=hint)
        self.set_out(outs[0], y, want)

    # ---- shape ops
    def op_pad(self, op, ins, outs):
        p = self.consts[ins[1]].astype(np.int64)  # (rank, 2)
        rank = p.shape[0]
        want = "nchw" if rank == 4 else "plain"
        if want == "nchw":
            p = p[list(_NHWC_TO_NCHW)]
        pads = np.concatenate([p[:, 0], p[:, 1]]).astype(np.int64)
        y = self.node("Pad", [self.value(ins[0], want), self.cinit(pads, "pads"), self.cinit(np.float32(0))],
                      mode="constant", hint=self.tname(outs[0]))
        self.set_out(outs[0], y, want)

    def op_reshape(self, op, ins, outs):
        x = self.value(ins[0], "nhwc")
        shape = np.array(self.shape(outs[0]), np.int64)
        y = self.node("Reshape", [x, self.cinit(shape, "shape")], hint=self.tname(outs[0]))
        self.set_out(outs[0], y, "nhwc" if len(shape) == 4 else "plain")

    def op_concatenation(self, op, ins, outs):
        o = _options(op, self.tfl.ConcatenationOptions)
        rank = len(self.shape(outs[0]))
        axis = o.Axis() % rank
        want = "nchw" if rank == 4 else "plain"
        if want == "nchw":
            axis = _AXIS_NHWC_TO_NCHW[axis]
        y = self.node("Concat", [self.value(i, want) for i in ins], axis=axis, hint=self.tname(outs[0]))
        self.set_out(outs[0], self.activation(y, o.FusedActivationFunction(), self.tname(outs[0])), want)

    def op_resize_bilinear(self, op, ins, outs):
        o = _options(op, self.tfl.ResizeBilinearOptions)
        if o.AlignCorners():
            mode = "align_corners"
        elif o.HalfPixelCenters():
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        n, h, w, c = self.shape(outs[0])
        sizes = self.cinit(np.array([n, c, h, w], np.int64), "sizes")
        y = self.node("Resize", [self.value(ins[0], "nchw"), "", "", sizes], mode="linear",
                      coordinate_transformation_mode=mode, hint=self.tname(outs[0]))
        self.set_out(outs[0], y, "nchw")

    def op_depth_to_space(self, op, ins, outs):
        o = _options(op, self.tfl.DepthToSpaceOptions)
        y = self.node("DepthToSpace", [self.value(ins[0], "nchw")], blocksize=o.BlockSize(), mode="DCR",
                      hint=self.tname(outs[0]))
        self.set_out(outs[0], y, "nchw")

    def op_strided_slice(self, op, ins, outs):
        o = _options(op, self.tfl.StridedSliceOptions)
        if o.EllipsisMask() or o.NewAxisMask() or o.ShrinkAxisMask() or o.Offset():
            raise NotImplementedError("STRIDED_SLICE with ellipsis/new-axis/shrink/offset")
        shape = self.shape(ins[0])
        begin, end, strides = (self.consts[k].astype(np.int64) for k in ins[1:4])
        starts, ends = [], []
        for a in range(len(shape)):
            s = 0 if (o.BeginMask() >> a) & 1 else int(begin[a])
            e = shape[a] if (o.EndMask() >> a) & 1 else int(end[a])
            if strides[a] < 0:
                s = shape[a] - 1 if (o.BeginMask() >> a) & 1 else s
                e = -shape[a] - 1 if (o.EndMask() >> a) & 1 else e
            starts.append(s)
            ends.append(e)
        axes = list(range(len(shape)))
        want = "nchw" if len(shape) == 4 else "plain"
        if want == "nchw":
            axes = [_AXIS_NHWC_TO_NCHW[a] for a in axes]
        y = self.node("Slice", [self.value(ins[0], want), self.cinit(np.array(starts, np.int64), "starts"),
                                self.cinit(np.array(ends, np.int64), "ends"), self.cinit(np.array(axes, np.int64), "axes"),
                                self.cinit(strides, "steps")], hint=self.tname(outs[0]))
        self.set_out(outs[0], y, want)

    # ---- MediaPipe's custom ops
    def _scalar(self, v: float) -> str:
        return self.cinit(np.array(v, np.float32).reshape(1, 1, 1))

    def op_custom_Landmarks2TransformMatrix(self, op, ins, outs, version: int):
        from flatbuffers import flexbuffers

        if version != 2:
            raise NotImplementedError(f"Landmarks2TransformMatrix v{version}")
        p = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))
        lm = self.value(ins[0], "plain")  # (1, N, 3)
        hint = self.tname(outs[0])
        xy = self.node("Slice", [lm, self.cinit(np.array([0], np.int64)), self.cinit(np.array([2], np.int64)),
                                 self.cinit(np.array([2], np.int64))], hint=hint + "_xy")  # (1, N, 2)

        def comp(v: str, k: int) -> str:  # (1, M, 2) -> (1, M, 1)
            return self.node("Slice", [v, self.cinit(np.array([k], np.int64)), self.cinit(np.array([k + 1], np.int64)),
                                       self.cinit(np.array([2], np.int64))], hint=hint + "_c")

        def mul(a, b):
            return self.node("Mul", [a, b], hint=hint + "_m")

        def add(a, b):
            return self.node("Add", [a, b], hint=hint + "_a")

        def sub(a, b):
            return self.node("Sub", [a, b], hint=hint + "_s")

        left = self.node("Gather", [xy, self.cinit(np.array([p["left_rotation_idx"]], np.int64))], axis=1)
        right = self.node("Gather", [xy, self.cinit(np.array([p["right_rotation_idx"]], np.int64))], axis=1)
        d = sub(right, left)
        dx, dy = comp(d, 0), comp(d, 1)
        norm = self.node("Sqrt", [add(mul(dx, dx), mul(dy, dy))])
        cos_t, sin_t = self.node("Div", [dx, norm]), self.node("Div", [dy, norm])  # theta = atan2(dy, dx)
        # rotation r = target - theta
        tgt = float(p.get("target_rotation_radians", 0.0))
        ct, st = math.cos(tgt), math.sin(tgt)
        cos_r = add(mul(cos_t, self._scalar(ct)), mul(sin_t, self._scalar(st)))
        sin_r = sub(mul(cos_t, self._scalar(st)), mul(sin_t, self._scalar(ct)))
        subset = np.array(p["subset_idxs"], np.int64).reshape(-1)
        pts = self.node("Gather", [xy, self.cinit(subset, "subset")], axis=1)  # (1, K, 2)
        px, py = comp(pts, 0), comp(pts, 1)
        rx = sub(mul(cos_r, px), mul(sin_r, py))
        ry = add(mul(sin_r, px), mul(cos_r, py))
        maxx, minx = self.node("ReduceMax", [rx], axes=[1], keepdims=1), self.node("ReduceMin", [rx], axes=[1], keepdims=1)
        maxy, miny = self.node("ReduceMax", [ry], axes=[1], keepdims=1), self.node("ReduceMin", [ry], axes=[1], keepdims=1)
        cw, ch = sub(maxx, minx), sub(maxy, miny)
        half = self._scalar(0.5)
        mx, my = mul(add(minx, maxx), half), mul(add(miny, maxy), half)
        # centre back through rotation by -r
        crop_x = add(mul(cos_r, mx), mul(sin_r, my))
        crop_y = sub(mul(cos_r, my), mul(sin_r, mx))
        ow, oh = float(p["output_width"]), float(p["output_height"])
        sx = mul(cw, self._scalar(float(p["scale_x"]) / ow))
        sy = mul(ch, self._scalar(float(p["scale_y"]) / oh))
        # T = shift(crop) . rot(-r) . scale(sx, sy) . shift(-ow/2, -oh/2); rot(-r) = [[c, s], [-s, c]]
        m00, m01 = mul(cos_r, sx), mul(sin_r, sy)
        m10 = self.node("Neg", [mul(sin_r, sx)])
        m11 = mul(cos_r, sy)
        m03 = add(add(mul(m00, self._scalar(-ow / 2)), mul(m01, self._scalar(-oh / 2))), crop_x)
        m13 = add(add(mul(m10, self._scalar(-ow / 2)), mul(m11, self._scalar(-oh / 2))), crop_y)
        zero, one = self._scalar(0.0), self._scalar(1.0)
        elems = [m00, m01, zero, m03, m10, m11, zero, m13, zero, zero, one, zero, zero, zero, zero, one]
        flat = self.node("Concat", elems, axis=2, hint=hint + "_flat")
        y = self.node("Reshape", [flat, self.cinit(np.array([1, 4, 4], np.int64))], hint=hint)
        self.set_out(outs[0], y, "plain")

    def op_custom_TransformTensorBilinear(self, op, ins, outs, version: int):
        if version != 2:
            raise NotImplementedError(f"TransformTensorBilinear v{version}")
        _, h, w, _ = self.shape(ins[0])
        _, oh, ow, _ = self.shape(outs[0])
        hint = self.tname(outs[0])
        feat = self.value(ins[0], "nchw")
        m = self.node("Reshape", [self.value(ins[1], "plain"), self.cinit(np.array([16], np.int64))])

        def el(k):
            return self.node("Gather", [m, self.cinit(np.array(k, np.int64))], axis=0)  # scalar

        a, b, tx, c, d, ty = el(0), el(1), el(3), el(4), el(5), el(7)
        half = self.cinit(np.float32(0.5))
        # v2 samples at pixel centres: t += m0 * 0.5 + m1 * 0.5 - 0.5
        tx = self.node("Sub", [self.node("Add", [tx, self.node("Mul", [self.node("Add", [a, b]), half])]), half])
        ty = self.node("Sub", [self.node("Add", [ty, self.node("Mul", [self.node("Add", [c, d]), half])]), half])
        gx0, gy0 = np.meshgrid(np.arange(ow, dtype=np.float32), np.arange(oh, dtype=np.float32))
        gxc, gyc = self.cinit(gx0, "grid_x"), self.cinit(gy0, "grid_y")
        sx = self.node("Add", [self.node("Add", [self.node("Mul", [a, gxc]), self.node("Mul", [b, gyc])]), tx])
        sy = self.node("Add", [self.node("Add", [self.node("Mul", [c, gxc]), self.node("Mul", [d, gyc])]), ty])
        zero = self.cinit(np.float32(0))
        inside = self.node("And", [
            self.node("And", [self.node("GreaterOrEqual", [sx, zero]),
                              self.node("LessOrEqual", [sx, self.cinit(np.float32(w - 1))])]),
            self.node("And", [self.node("GreaterOrEqual", [sy, zero]),
                              self.node("LessOrEqual", [sy, self.cinit(np.float32(h - 1))])])])
        mask = self.node("Cast", [inside], to=1)  # (oh, ow)
        nx = self.node("Sub", [self.node("Mul", [sx, self.cinit(np.float32(2.0 / (w - 1)))]), self.cinit(np.float32(1))])
        ny = self.node("Sub", [self.node("Mul", [sy, self.cinit(np.float32(2.0 / (h - 1)))]), self.cinit(np.float32(1))])
        ax = self.cinit(np.array([0, 3], np.int64))
        grid = self.node("Concat", [self.node("Unsqueeze", [nx, ax]), self.node("Unsqueeze", [ny, ax])], axis=3)
        sampled = self.node("GridSample", [feat, grid], mode="bilinear", padding_mode="zeros", align_corners=1,
                            hint=hint + "_gs")
        y = self.node("Mul", [sampled, mask], hint=hint)
        self.set_out(outs[0], y, "nchw")

    def op_custom_TransformLandmarks(self, op, ins, outs, version: int):
        if version != 2:
            raise NotImplementedError(f"TransformLandmarks v{version}")
        if self.shape(ins[0])[-1] != 2:
            raise NotImplementedError("TransformLandmarks with 3D landmarks")
        hint = self.tname(outs[0])
        lm = self.value(ins[0], "plain")  # (1, N, 2)
        m = self.value(ins[1], "plain")  # (1, 4, 4)

        def sl(v, starts, ends, axes):
            return self.node("Slice", [v, self.cinit(np.array(starts, np.int64)), self.cinit(np.array(ends, np.int64)),
                                       self.cinit(np.array(axes, np.int64))])

        rot = sl(m, [0, 0], [2, 2], [1, 2])  # (1, 2, 2)
        t = self.node("Transpose", [sl(m, [0, 3], [2, 4], [1, 2])], perm=[0, 2, 1])  # (1, 1, 2)
        y = self.node("Add", [self.node("MatMul", [lm, self.node("Transpose", [rot], perm=[0, 2, 1])]), t], hint=hint)
        self.set_out(outs[0], y, "plain")

    def op_custom_Convolution2DTransposeBias(self, op, ins, outs, version: int):
        padding, stride_w, stride_h = struct.unpack("<3i", bytes(op.CustomOptionsAsNumpy())[:12])
        w = self.consts[ins[1]].astype(np.float32)  # (O, kh, kw, I)
        _, kh, kw, _ = w.shape
        _, ih, iw, _ = self.shape(ins[0])
        ph = pw = 0
        if padding == 1:  # kTfLitePaddingSame
            ph = max(0, kh - (ih - 1) % stride_h - 1)
            pw = max(0, kw - (iw - 1) % stride_w - 1)
        bias = self.consts[ins[2]].astype(np.float32).reshape(-1)
        y = self.node("ConvTranspose", [self.value(ins[0], "nchw"), self.init(w.transpose(3, 0, 1, 2), "deconv_w"),
                                        self.init(bias, "deconv_b")],
                      kernel_shape=[kh, kw], strides=[stride_h, stride_w], pads=[ph, pw, 0, 0],
                      hint=self.tname(outs[0]))
        self.set_out(outs[0], y, "nchw")


def convert(path: Path, graph_name: str):
    """The ONNX ModelProto for one .tflite file."""
    import onnx

    model = Converter(path.read_bytes(), graph_name).convert()
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    # every output's inferred shape must be the TFLite shape
    want = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    got = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.output}
    assert want == got, (want, got)
    return model


NOTICE = """\
The ONNX files listed below are MediaPipe models converted to ONNX.

MediaPipe
Copyright Google LLC
Licensed under the Apache License, Version 2.0 (the "License"); you may not use these files
except in compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the
License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
either express or implied. See the License for the specific language governing permissions
and limitations under the License.

Changes: the TFLite models shipped in the mediapipe {version} Python wheel (mediapipe/modules/)
were converted to ONNX (opset {opset}) by vcam/graphs/export_face.py: the same weights (fp16
weights widened to float32, sparse weights decoded to dense), activations in NCHW inside the
graph, MediaPipe's custom TFLite ops (Landmarks2TransformMatrix, TransformTensorBilinear,
TransformLandmarks, Convolution2DTransposeBias) re-expressed in standard ONNX ops, and PReLU
written as an equivalent pair of depthwise convolutions. The models' inputs and outputs are
unchanged.

{table}
"""


def write_notice(out_dir: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{onnx_name.ljust(width)}  <- mediapipe/modules/{folder}/{tfl}\n"
                      f"{' ' * width}     {what}\n{' ' * width}     source sha256 {digest}"
                      for onnx_name, folder, tfl, what, digest in rows)
    path = out_dir / "NOTICE-mediapipe.txt"
    path.write_text(NOTICE.format(version=MEDIAPIPE_VERSION, opset=OPSET, table=table))
    return path


def export(out_dir: Path, tflite_dir: Path | None = None) -> list[Path]:
    import onnx

    tflite_dir = tflite_dir or default_tflite_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    for stem, (folder, name, what) in MODELS.items():
        src = find_tflite(tflite_dir, folder, name)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        model = convert(src, stem)
        model.doc_string = f"{what}: MediaPipe's {name} (mediapipe {MEDIAPIPE_VERSION}) converted to ONNX"
        onnx.helper.set_model_props(model, {
            "source": f"mediapipe/modules/{folder}/{name}", "source_sha256": digest,
            "license": "Apache-2.0 (MediaPipe, Copyright Google LLC); see NOTICE-mediapipe.txt",
            "converter": "vcam/graphs/export_face.py"})
        dst = out_dir / f"{stem}.onnx"
        onnx.save(model, str(dst))
        written.append(dst)
        rows.append((dst.name, folder, name, what, digest))
    written.append(write_notice(out_dir, rows))
    return written


def main(argv: list[str] | None = None) -> int:
    from vcam.graphs import manifest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite-dir", type=Path, default=None,
                    help="folder with the .tflite files (default: the installed mediapipe wheel's modules/)")
    ap.add_argument("--out", type=Path, default=manifest.GRAPH_DIR)
    a = ap.parse_args(argv)
    for path in export(a.out, a.tflite_dir):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
