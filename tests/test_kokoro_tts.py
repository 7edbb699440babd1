"""Kokoro-82M speech for the lip model's training data: IPA symbols and their times become visemes."""

from __future__ import annotations

import numpy as np
import pytest

kt = pytest.importorskip("vcam.graphs.kokoro_tts")
lipdata = pytest.importorskip("vcam.graphs.lipdata")
from vcam.graphs.motion_model import VISEMES  # noqa: E402


@pytest.mark.parametrize("symbol, viseme", [("p", "PBM"), ("m", "PBM"), ("f", "FV"), ("u", "U"), ("w", "U"),
                                            ("ɔ", "O"), ("æ", "A"), ("ɑ", "A"), ("ʌ", "A"), ("ə", "E"),
                                            ("ɛ", "E"), ("i", "I"), ("ɪ", "I"), ("t", "C"), ("ʃ", "C"),
                                            ("ɹ", "C"), (".", "sil"), (",", "sil")])
def test_ipa_symbols_map_to_visemes(symbol, viseme):
    assert kt.ipa_viseme(symbol) == viseme


def test_stress_length_and_spaces_join_their_neighbours():
    # "bˈiː mˈæp." with boundaries: every frame is given to a real phoneme or to silence
    symbols = "bˈiː mˈæp."
    durations = np.array([4, 2, 1, 3, 2, 2, 2, 1, 5, 3, 6, 4])  # boundary, 10 symbols, boundary
    segs = kt.symbol_segments(symbols, durations)
    assert segs[0] == ("sil", 0, 4) and segs[-1][0] == "sil" and segs[-1][2] == durations.sum()
    assert all(a < b for _, a, b in segs) and all(segs[i][2] == segs[i + 1][1] for i in range(len(segs) - 1))
    names = [v for v, _, _ in segs]
    assert set(names) <= set(VISEMES)
    frames = {v: sum(b - a for n, a, b in segs if n == v) for v in set(names)}
    assert frames["PBM"] == 2 + 1 + 2 + 3  # b, the space's second half, m, p
    assert frames["I"] == 1 + 3 + 2 + 1  # ˈ and ː join i, so does the space's first half
    assert frames["A"] == 1 + 5  # ˈ joins æ
    assert frames["sil"] == 4 + 6 + 4  # boundaries and the full stop


def test_a_sounds_last_phoneme_gives_its_quiet_tail_to_the_pause():
    sr = kt.SAMPLE_RATE
    audio = np.zeros(sr, np.float32)
    audio[: sr // 2] = 0.3 * np.sin(np.arange(sr // 2) * 0.1)  # sound for 0.5 s, then silence
    segs = kt.trim_pauses(audio, [("A", 0.0, 0.9), ("sil", 0.9, 1.0)])
    assert segs[0][0] == "A" and 0.5 <= segs[0][2] <= 0.53
    assert segs[1] == ("sil", segs[0][2], 0.9) and segs[2] == ("sil", 0.9, 1.0)
    # a phoneme followed by another keeps its time
    assert kt.trim_pauses(audio, [("A", 0.0, 0.9), ("C", 0.9, 1.0)])[0] == ("A", 0.0, 0.9)


@pytest.fixture(scope="module")
def kokoro():
    try:
        return kt.Kokoro(threads=2)
    except RuntimeError as e:
        pytest.skip(str(e))


def test_kokoro_speaks_with_phoneme_times_that_match_the_sound(kokoro):
    pcm, segs, ipa = kokoro.synth("Bob made a map. Papa saw a big apple.", "en-us", {"jf_alpha": 1.0, "jm_kumo": 0.5})
    sr = kt.SAMPLE_RATE
    assert pcm.dtype == np.float32 and pcm.ndim == 1 and len(pcm) > 1.5 * sr
    assert "." in ipa and "m" in ipa
    assert segs[0][1] == 0.0 and abs(segs[-1][2] - len(pcm) / sr) < 1e-6
    assert all(segs[i][2] == pytest.approx(segs[i + 1][1]) for i in range(len(segs) - 1))

    def level(a, b):
        return float(np.sqrt(np.mean(pcm[int(a * sr):int(b * sr)] ** 2)) + 1e-9)

    vowels = [level(a, b) for v, a, b in segs if v == "A" and b - a >= 0.04]
    pauses = [level(a, b) for v, a, b in segs if v == "sil" and b - a >= 0.04]
    closures = [level(a, b) for v, a, b in segs if v == "PBM" and b - a >= 0.04]
    assert len(vowels) >= 4 and len(pauses) >= 2 and len(closures) >= 4
    assert np.median(vowels) > 10 * max(pauses[0], pauses[-1])  # the lead-in and the tail are quiet
    assert np.median(vowels) > 2 * np.median(closures)  # lips shut: quieter than open vowels


def test_kokoro_utterances_are_labelled_in_two_augmentations(kokoro):
    rng = np.random.default_rng(3)
    utts = lipdata.make_kokoro_utterances(kokoro, rng, pool=[])
    assert len(utts) == 2 and utts[0].meta is utts[1].meta and utts[0].meta["voice"].startswith("kokoro-")
    for u in utts:
        assert u.feats.shape == (len(u.labels), 64)
        assert u.labels[0] == u.labels[-1] == VISEMES.index("sil")
        assert len(set(u.labels.tolist())) >= 4


def _conv_model(taps: int, dilation: int, pads: list[int], weights: np.ndarray, w_zero: int):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["xf"], ["x", "xs", "xz"], name="quant"),
         helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], name="conv", kernel_shape=[taps],
                          dilations=[dilation], pads=pads)],
        "g", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, [1, weights.shape[1], None])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array(w_zero, np.uint8), "wz")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("taps, dilation, pads", [(1, 1, [0, 0]), (3, 1, [1, 1]), (7, 3, [9, 9]), (5, 2, [0, 3])])
def test_int8_convolutions_rewritten_as_matrix_products_give_the_same_integers(taps, dilation, pads):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(taps * 10 + dilation)
    # weights within 64 of 128: no pair of products can saturate 16 bits, so this holds on any CPU
    weights = rng.integers(64, 193, (6, 5, taps), dtype=np.uint8)
    plain = _conv_model(taps, dilation, pads, weights, 121)
    fast = _conv_model(taps, dilation, pads, weights, 121)
    assert kt.conv_integer_as_matmul(fast) == 1
    assert [n.op_type for n in fast.graph.node].count("MatMulInteger") == 1
    assert "w" not in {i.name for i in fast.graph.initializer}  # the uint8 weights are gone
    xf = rng.standard_normal((1, 5, 40)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"xf": xf})[0]  # noqa: E731
    a, b = run(plain), run(fast)
    assert a.dtype == b.dtype == np.int32 and a.shape == b.shape and np.array_equal(a, b)


def test_fast_convolutions_give_kokoro_the_same_audio_to_the_bit():
    if not kt.has_vnni():
        pytest.skip("the rewrite is used only on CPUs with VNNI")
    try:
        plain, fast = kt.Kokoro(fast_convolutions=False), kt.Kokoro(fast_convolutions=True)
    except RuntimeError as e:
        pytest.skip(str(e))
    a = plain.synth("Maybe we should move the meeting.", "en-us", {"jf_alpha": 1.0}, 1.1)
    b = fast.synth("Maybe we should move the meeting.", "en-us", {"jf_alpha": 1.0}, 1.1)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
