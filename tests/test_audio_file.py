"""vcam.runtime.audio_file: any common audio file -> (n,) float32 mono at 16 kHz, or one clear InputError."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from vcam.runtime.errors import InputError
from vcam.runtime.audio_file import check_audio, load_audio, resample

TONE_HZ = 440.0


def write_tone(
    path: Path,
    codec: str,
    rate: int,
    *,
    seconds: float = 1.0,
    left: float = 0.9,
    right: float = 0.9,
) -> None:
    """A stereo 440 Hz tone with per-channel amplitudes, encoded with PyAV."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tone = np.sin(2 * np.pi * TONE_HZ * t).astype(np.float32)
    pcm = np.stack([left * tone, right * tone])  # (2, n) planar
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[:, start : start + 1024]), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    """Mono 16-bit WAV from ``(n,) float32`` samples, with the standard library."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def peak_hz(pcm: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[np.argmax(spectrum)])


FORMATS = [
    ("tone.wav", "pcm_s16le", 8000),
    ("tone.wav", "pcm_s16le", 44100),
    ("tone.wav", "pcm_s16le", 48000),
    ("tone.flac", "flac", 44100),
    ("tone.flac", "flac", 8000),
    ("tone.mp3", "libmp3lame", 44100),
    ("tone.mp3", "libmp3lame", 8000),
    ("tone.ogg", "libopus", 48000),
    ("tone.ogg", "flac", 44100),
    ("tone.m4a", "aac", 48000),
]


@pytest.mark.parametrize(("name", "codec", "rate"), FORMATS, ids=[f"{n}-{c}-{r}" for n, c, r in FORMATS])
def test_formats_and_rates_become_16k_mono(tmp_path, name, codec, rate):
    path = tmp_path / name
    write_tone(path, codec, rate, seconds=1.0)

    pcm = load_audio(path)

    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(pcm.size - 16000) <= 0.06 * 16000  # codec padding/priming is a few ms at most
    assert np.abs(pcm).max() <= 1.0
    assert 0.75 <= np.abs(pcm[2000:-2000]).max() <= 1.0  # in-phase stereo averages to the same tone
    assert abs(peak_hz(pcm) - TONE_HZ) < 5


def test_channels_are_averaged_not_summed(tmp_path):
    path = tmp_path / "left_only.wav"
    write_tone(path, "pcm_s16le", 48000, left=0.8, right=0.0)
    pcm = load_audio(path)
    assert np.abs(pcm[1000:-1000]).max() == pytest.approx(0.4, abs=0.02)


def test_full_scale_stereo_does_not_clip(tmp_path):
    path = tmp_path / "loud.wav"
    write_tone(path, "pcm_s16le", 16000, left=1.0, right=1.0)
    pcm = load_audio(path)
    assert np.abs(pcm).max() == pytest.approx(1.0, abs=0.01)
    # A sine spends ~3 % of its time above 0.999; one scaled by sqrt(2) and clipped, ~40 %.
    assert np.mean(np.abs(pcm) > 0.999) < 0.1


def test_other_rate_on_request(tmp_path):
    path = tmp_path / "tone.wav"
    write_tone(path, "pcm_s16le", 44100, seconds=0.5)
    pcm = load_audio(path, rate=48000)
    assert abs(pcm.size - 24000) <= 200
    assert abs(peak_hz(pcm, 48000) - TONE_HZ) < 5


def test_resample_keeps_duration_and_pitch():
    t = np.arange(16000) / 16000
    pcm = (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    out = resample(pcm, 16000, 48000)
    assert out.dtype == np.float32 and abs(out.size - 48000) <= 100
    assert abs(peak_hz(out, 48000) - TONE_HZ) < 5
    assert resample(pcm, 16000, 16000) is not pcm


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(InputError, match=f"^audio not found: {path}$"):
        load_audio(path)
    with pytest.raises(InputError, match="audio not found"):
        check_audio(path)


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_audio(tmp_path)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "speech.wav"
    path.write_text("this is not a recording\n")
    for fn in (load_audio, check_audio):
        with pytest.raises(InputError, match=f"cannot read audio from {path}: .*give a wav"):
            fn(path)


def test_image_has_no_audio_stream(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 100, 50)).save(path)
    for fn in (load_audio, check_audio):
        with pytest.raises(InputError, match=f"^{path} has no audio stream"):
            fn(path)


def test_video_without_sound_has_no_audio_stream(tmp_path):
    from vcam.sinks.mp4 import Mp4Sink

    path = tmp_path / "silent.mp4"
    with Mp4Sink(path, fps=25, width=64, height=64) as sink:
        sink.write(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="has no audio stream"):
        load_audio(path)


@pytest.mark.parametrize("seconds", [0.0, 0.05])
def test_empty_or_too_short(tmp_path, seconds):
    path = tmp_path / "short.wav"
    write_wav(path, np.full(int(seconds * 16000), 0.1, np.float32))
    check_audio(path)  # headers are fine; only decoding finds it empty
    with pytest.raises(InputError, match=f"^audio file {path} is empty"):
        load_audio(path)


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "junk.mp3"
    path.write_bytes(b"\x00\xff" * 1000)
    with pytest.raises(InputError) as info:
        load_audio(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
