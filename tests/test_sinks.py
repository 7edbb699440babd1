"""Frame sinks: MP4 (H.264 + AAC, all-or-nothing), Y4M, PNG, the RGB->I420 converter, open_sink."""

from __future__ import annotations

import io
import sys
import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest

from vcam.runtime.errors import InputError
from vcam.sinks import _parse, open_sink
from vcam.sinks.mp4 import Mp4Sink
from vcam.sinks.png import PngSink
from vcam.sinks.y4m import Y4mSink
from vcam.sinks.yuv import I420Converter

FRAME_BYTES = 512 * 512 * 3 // 2


def frames(n: int, size: int = 512) -> list[np.ndarray]:
    """``n`` distinct ``(size, size, 3) uint8`` frames: a gradient that moves."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    out = []
    for i in range(n):
        f = np.empty((size, size, 3), np.uint8)
        f[..., 0] = np.roll(ramp, 7 * i)[None, :]
        f[..., 1] = ramp[:, None]
        f[..., 2] = (40 + 5 * i) % 256
        out.append(f)
    return out


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- MP4 --


def test_mp4_has_every_frame_and_the_audio(tmp_path):
    path = tmp_path / "out.mp4"
    with Mp4Sink(path, fps=25, audio=tone(1.5), audio_rate=16000) as sink:
        for f in frames(30):
            sink.write(f)
    assert leftovers(tmp_path) == ["out.mp4"]  # no temporary file left

    with av.open(str(path)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert (video.width, video.height) == (512, 512)
        assert video.average_rate == 25
        assert audio.codec_context.name == "aac" and audio.rate == 48000 and audio.channels == 1
        assert float(c.duration / av.time_base) == pytest.approx(1.5, abs=0.1)  # audio is longer
        decoded = list(c.decode(video=0))
    assert len(decoded) == 30
    assert [f.pts * f.time_base for f in decoded] == [Fraction(i, 25) for i in range(30)]
    # Each frame shows what was written at its index (the converter's buffer is reused).
    blue = [f.to_ndarray(format="rgb24")[..., 2].mean() for f in decoded]
    assert np.allclose(blue, [(40 + 5 * i) % 256 for i in range(30)], atol=3)


def test_mp4_colours_survive(tmp_path):
    path = tmp_path / "solid.mp4"
    solid = np.empty((512, 512, 3), np.uint8)
    solid[:] = (200, 100, 50)
    with Mp4Sink(path, fps=25) as sink:
        for _ in range(3):
            sink.write(solid)
    with av.open(str(path)) as c:
        assert not c.streams.audio
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(rgb - solid).max() <= 4


def test_mp4_key_frames_every_30_seconds(tmp_path):
    """A still background is coded afresh at each key frame (it pumps): one every 30 s."""
    from vcam.sinks.mp4 import KEYFRAME_S

    path = tmp_path / "long.mp4"
    still = np.full((512, 512, 3), 120, np.uint8)
    with Mp4Sink(path, fps=2) as sink:
        for i in range(2 * 70):  # 70 s of a still background with a small thing moving on it
            f = still.copy()
            f[200:220, 100 + i:120 + i] = 30
            sink.write(f)
    with av.open(str(path)) as c:
        keys = [i for i, p in enumerate(c.demux(video=0)) if p.size and p.is_keyframe]
    assert KEYFRAME_S == 30 and keys == [0, 60, 120]


def test_mp4_exception_in_with_block_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="render failed"):
        with Mp4Sink(path, fps=25, audio=tone(1.0), audio_rate=16000) as sink:
            for f in frames(5):
                sink.write(f)
            raise RuntimeError("render failed")
    assert leftovers(tmp_path) == []


def test_mp4_interrupt_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    with pytest.raises(KeyboardInterrupt):
        with Mp4Sink(path, fps=25) as sink:
            sink.write(frames(1)[0])
            raise KeyboardInterrupt
    assert leftovers(tmp_path) == ["out.mp4"]
    assert path.read_bytes() == b"previous render"


def test_mp4_replaces_existing_file_on_success(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    with Mp4Sink(path, fps=25) as sink:
        sink.write(frames(1)[0])
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_mp4_abort_close_idempotent(tmp_path):
    path = tmp_path / "out.mp4"
    sink = Mp4Sink(path, fps=25)
    sink.write(frames(1)[0])
    sink.abort()
    sink.abort()
    sink.close()  # after abort: nothing to do
    assert leftovers(tmp_path) == []

    sink = Mp4Sink(path, fps=25)
    sink.write(frames(1)[0])
    sink.close()
    sink.close()
    assert path.exists()
    with pytest.raises(ValueError, match="closed"):
        sink.write(frames(1)[0])


def test_mp4_no_frames_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        with Mp4Sink(tmp_path / "out.mp4", fps=25):
            pass
    assert leftovers(tmp_path) == []


def test_mp4_rejects_bad_frames(tmp_path):
    with Mp4Sink(tmp_path / "out.mp4", fps=25) as sink:
        with pytest.raises(ValueError, match=r"unexpected frame shape: got \(256, 256, 3\)"):
            sink.write(np.zeros((256, 256, 3), np.uint8))
        with pytest.raises(TypeError, match="uint8"):
            sink.write(np.zeros((512, 512, 3), np.float32))
        sink.write(frames(1)[0])


def test_mp4_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Mp4Sink(tmp_path / "no" / "out.mp4", fps=25)


def test_mp4_audio_must_be_mono_float32(tmp_path):
    with pytest.raises(ValueError, match="float32 mono"):
        Mp4Sink(tmp_path / "out.mp4", fps=25, audio=np.zeros((100, 2), np.float32))
    assert leftovers(tmp_path) == []


# -- Y4M --


def test_y4m_header_and_frames(tmp_path):
    path = tmp_path / "out.y4m"
    with Y4mSink(path, fps=30) as sink:
        for f in frames(4):
            sink.write(f)
    data = path.read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W512 H512 F30:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED"
    assert len(rest) == 4 * (len(b"FRAME\n") + FRAME_BYTES)
    assert rest.count(b"FRAME\n") >= 4 and rest.startswith(b"FRAME\n")

    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
    assert len(decoded) == 4
    assert (decoded[0].width, decoded[0].height, decoded[0].format.name) == (512, 512, "yuv420p")
    rgb = decoded[2].to_ndarray(format="rgb24").astype(int)
    assert np.abs(rgb - frames(4)[2]).mean() < 3


def test_y4m_to_stdout(monkeypatch):
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    with open_sink("-", fps=25) as sink:
        sink.write(frames(1)[0])
    assert not out.closed  # stdout is flushed, never closed
    assert out.getvalue().startswith(b"YUV4MPEG2 W512 H512 F25:1")
    assert len(out.getvalue().partition(b"\n")[2]) == len(b"FRAME\n") + FRAME_BYTES


# -- PNG --


def test_png_numbered_files(tmp_path):
    from PIL import Image

    directory = tmp_path / "frames"
    with open_sink(f"png:{directory}", fps=25) as sink:
        for f in frames(3):
            sink.write(f)
    assert leftovers(directory) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert np.array_equal(np.asarray(Image.open(directory / "frame_000001.png")), frames(3)[1])
    assert isinstance(sink, PngSink)


# -- RGB -> I420 --


@pytest.mark.parametrize(
    ("rgb", "yuv"),
    [
        ((0, 0, 0), (16, 128, 128)),
        ((255, 255, 255), (235, 128, 128)),
        ((255, 0, 0), (81, 90, 240)),
        ((0, 255, 0), (145, 54, 34)),
        ((0, 0, 255), (41, 240, 110)),
    ],
)
def test_i420_bt601_limited(rgb, yuv):
    conv = I420Converter(8, 4)
    frame = np.empty((4, 8, 3), np.uint8)
    frame[:] = rgb
    conv.convert(frame)
    assert (conv.y[0, 0], conv.u[0, 0], conv.v[0, 0]) == yuv
    assert conv.y.shape == (4, 8) and conv.u.shape == (2, 4) and conv.v.shape == (2, 4)


def test_i420_chroma_is_2x2_mean():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[0, 0] = (255, 0, 0)  # one red pixel in four: a quarter of red's chroma offset
    conv = I420Converter(2, 2)
    conv.convert(frame)
    assert conv.v[0, 0] == round(128 + (240 - 128) / 4)


def test_i420_convert_allocates_nothing():
    conv = I420Converter(512, 512)
    frame = frames(1)[0]
    conv.convert(frame)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            out = conv.convert(frame)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert out is conv.buffer
    assert grown < 4096


def test_i420_needs_even_size():
    with pytest.raises(ValueError, match="even"):
        I420Converter(511, 512)


# -- open_sink --


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("mp4:out/a.mp4", ("mp4", "out/a.mp4")),
        ("mp4:a.video", ("mp4", "a.video")),
        ("a.MP4", ("mp4", "a.MP4")),
        ("y4m:/tmp/fifo", ("y4m", "/tmp/fifo")),
        ("b.y4m", ("y4m", "b.y4m")),
        ("-", ("y4m", "-")),
        ("png:frames", ("png", "frames")),
        ("C:/videos/a.mp4", ("mp4", "C:/videos/a.mp4")),
    ],
)
def test_open_sink_specs(spec, parsed):
    assert _parse(spec) == parsed


@pytest.mark.parametrize("spec", ["out.avi", "webm:x", "mp4:", "camera"])
def test_open_sink_unknown(spec):
    with pytest.raises(InputError):
        _parse(spec)


def test_open_sink_mp4_with_audio(tmp_path):
    path = tmp_path / "a.mp4"
    with open_sink(str(path), fps=25, audio=tone(0.5), audio_rate=16000, crf=30, preset="ultrafast") as sink:
        assert isinstance(sink, Mp4Sink)
        for f in frames(5):
            sink.write(f)
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1


def test_open_sink_y4m_ignores_audio(tmp_path):
    with open_sink(f"y4m:{tmp_path / 'a.y4m'}", fps=25, audio=tone(0.5)) as sink:
        assert isinstance(sink, Y4mSink)
