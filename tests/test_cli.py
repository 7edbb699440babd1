"""The vcam command: arguments, exit status, one-line errors, nothing half-written.

Most tests replace ``vcam.app.render_job`` with a fake that does what the real one does at the
edges (decode the audio with ``load_audio``, write through ``Mp4Sink``), so the CLI's error
handling is tested without models. The end-to-end test at the bottom runs the real job once
``vcam.app.render_job`` exists.
"""

from __future__ import annotations

import sys
import types
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vcam.runtime.errors import InputError
from vcam import __version__, assets
from vcam.runtime.audio_file import load_audio
from vcam.app.cli import main
from vcam.sinks.mp4 import Mp4Sink


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("VCAM_CONFIG_DIR", str(tmp_path / "xdg" / "vcam"))


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "face.png"
    Image.new("RGB", (256, 256), (180, 140, 120)).save(path)
    return path


@pytest.fixture
def speech(tmp_path) -> Path:
    path = tmp_path / "speech.wav"
    t = np.arange(8000) / 16000
    write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t))
    return path


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((samples * 32767).astype("<i2").tobytes())


class FakeJob:
    """Stands in for ``vcam.app.render_job``: records the call, decodes audio, writes an MP4."""

    def __init__(self, *, fail_after: int | None = None, error: BaseException | None = None) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.fail_after = fail_after
        self.error = error

    def render_file(self, photo, audio, out, **kw) -> None:
        self.calls.append(((photo, audio, out), kw))
        pcm = load_audio(audio)
        fps = kw["fps"]
        n = max(1, pcm.size * fps // 16000)
        frame = np.zeros((512, 512, 3), np.uint8)
        with Mp4Sink(out, fps=fps, audio=pcm, audio_rate=16000, preset="ultrafast") as sink:
            for i in range(n):
                if self.fail_after is not None and i == self.fail_after:
                    raise self.error
                sink.write(frame)
                kw["progress"](i + 1, n)


@pytest.fixture
def job(monkeypatch) -> FakeJob:
    fake = FakeJob()
    module = types.ModuleType("vcam.app.render_job")
    module.render_file = lambda *a, **kw: fake.render_file(*a, **kw)
    monkeypatch.setitem(sys.modules, "vcam.app.render_job", module)
    return fake


def one_error_line(capsys, starts: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(starts), err
    return err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vcam {__version__}"


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2
    assert "usage: vcam" in capsys.readouterr().err


def test_render_success_uses_settings_defaults(job, photo, speech, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["render", "--photo", str(photo), "--audio", str(speech), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out.resolve()}\n"
    (args, kw), = job.calls
    assert args == (photo, speech, out)
    assert kw["emotion"] == "neutral" and kw["intensity"] == 0.8
    assert kw["fps"] == 25 and kw["seed"] == 0 and kw["provider"] == "auto"
    assert kw["motion_csv"] is None and kw["settings"].render.crf == 18
    with av.open(str(out)) as c:
        assert c.streams.video[0].frames == 12  # 0.5 s at 25 fps


def test_render_options_override_settings(job, photo, speech, tmp_path):
    config = tmp_path / "my.toml"
    config.write_text("[render]\nfps = 10\nseed = 3\n")
    argv = ["render", "--photo", str(photo), "--audio", str(speech), "--out", str(tmp_path / "o.mp4")]
    argv += ["--config", str(config), "--emotion", "happy", "--intensity", "0.5", "--seed", "7"]
    argv += ["--provider", "cpu", "--motion-out", str(tmp_path / "m.csv"), "--motion-scale", "1.5"]
    assert main(argv) == 0
    (_, kw), = job.calls
    assert kw["fps"] == 10  # from the config file
    assert kw["settings"].motion.scale == 1.5
    assert (kw["seed"], kw["emotion"], kw["intensity"], kw["provider"]) == (7, "happy", 0.5, "cpu")
    assert kw["motion_csv"] == tmp_path / "m.csv"


def test_render_sample_defaults(job, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["render", "--sample", "--fps", "5"]) == 0
    (args, _), = job.calls
    assert args == (assets.SAMPLE_PHOTO, assets.SAMPLE_AUDIO, Path("vcam-demo.mp4"))
    assert (tmp_path / "vcam-demo.mp4").is_file()
    assert capsys.readouterr().out == f"wrote {(tmp_path / 'vcam-demo.mp4').resolve()}\n"


def test_sample_assets_exist():
    assert assets.SAMPLE_PHOTO.is_file() and assets.SAMPLE_AUDIO.is_file()


@pytest.mark.parametrize(
    ("case", "starts"),
    [
        ("missing photo", "vcam: error: photo not found: "),
        ("missing audio", "vcam: error: audio not found: "),
        ("photo not an image", "vcam: error: not an image: "),
        ("audio not audio", "vcam: error: cannot read audio from "),
        ("audio has no sound", "vcam: error: "),
        ("empty audio", "vcam: error: audio file "),
        ("output not mp4", "vcam: error: output "),
        ("output dir missing", "vcam: error: cannot write output "),
        ("bad config", "vcam: error: config "),
    ],
)
def test_bad_inputs_one_line_exit_2_no_output(job, photo, speech, tmp_path, capsys, case, starts):
    out = tmp_path / "out.mp4"
    argv = {"photo": str(photo), "audio": str(speech), "out": str(out)}
    extra: list[str] = []
    if case == "missing photo":
        argv["photo"] = str(tmp_path / "nope.jpg")
    elif case == "missing audio":
        argv["audio"] = str(tmp_path / "nope.wav")
    elif case == "photo not an image":
        (tmp_path / "notes.jpg").write_text("not a picture")
        argv["photo"] = str(tmp_path / "notes.jpg")
    elif case == "audio not audio":
        (tmp_path / "notes.wav").write_text("not a recording")
        argv["audio"] = str(tmp_path / "notes.wav")
    elif case == "audio has no sound":
        argv["audio"] = str(photo)
    elif case == "empty audio":
        write_wav(tmp_path / "empty.wav", np.zeros(0))
        argv["audio"] = str(tmp_path / "empty.wav")
    elif case == "output not mp4":
        argv["out"] = str(tmp_path / "out.avi")
    elif case == "output dir missing":
        argv["out"] = str(tmp_path / "missing" / "out.mp4")
    elif case == "bad config":
        (tmp_path / "bad.toml").write_text('[render]\nfps = "fast"\n')
        extra = ["--config", str(tmp_path / "bad.toml")]
    before = set(tmp_path.iterdir())

    status = main(["render", *(x for k, v in argv.items() for x in (f"--{k}", v)), *extra])

    assert status == 2
    one_error_line(capsys, starts)
    assert set(tmp_path.iterdir()) == before  # no output, no temporary file


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "--photo", "p.png", "--audio", "a.wav"],  # no --out
        ["render", "--sample", "--intensity", "2"],
        ["render", "--sample", "--motion-scale", "2.5"],
        ["render", "--sample", "--fps", "fast"],
        ["render", "--sample", "--emotion", "bored"],
        ["render", "--sample", "--provider", "tpu"],
        ["paint"],
    ],
)
def test_usage_errors_exit_2(job, argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: vcam" in err and "Traceback" not in err
    assert job.calls == []


def test_error_during_render_leaves_nothing(job, photo, speech, tmp_path, capsys):
    job.fail_after, job.error = 3, InputError("render graph failed on frame 3")
    out = tmp_path / "out.mp4"
    before = set(tmp_path.iterdir())
    assert main(["render", "--photo", str(photo), "--audio", str(speech), "--out", str(out)]) == 2
    one_error_line(capsys, "vcam: error: render graph failed on frame 3")
    assert set(tmp_path.iterdir()) == before


def test_interrupt_exits_130_and_leaves_nothing(job, photo, speech, tmp_path, capsys):
    job.fail_after, job.error = 2, KeyboardInterrupt()
    out = tmp_path / "out.mp4"
    before = set(tmp_path.iterdir())
    assert main(["render", "--photo", str(photo), "--audio", str(speech), "--out", str(out)]) == 130
    one_error_line(capsys, "vcam: interrupted")
    assert set(tmp_path.iterdir()) == before


def test_bench_dispatch(monkeypatch, capsys):
    seen = []
    module = types.ModuleType("vcam.bench.stages")
    module.main = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "vcam.bench.stages", module)
    assert main(["bench", "--provider", "cpu", "--frames", "50", "--json"]) == 0
    (args,) = seen
    assert (args.provider, args.frames, args.json, args.photo, args.audio) == ("cpu", 50, True, None, None)
    assert args.settings.render.fps == 25


@pytest.mark.slow
def test_render_sample_end_to_end(tmp_path, monkeypatch, capsys):
    """The real job: --sample renders an MP4 of the speech's length."""
    pytest.importorskip("vcam.app.render_job", reason="vcam.app.render_job not written yet")
    monkeypatch.chdir(tmp_path)
    assert main(["render", "--sample"]) == 0
    out = tmp_path / "vcam-demo.mp4"
    assert capsys.readouterr().out == f"wrote {out.resolve()}\n"
    seconds = load_audio(assets.SAMPLE_AUDIO).size / 16000
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 512, 512)
        assert c.streams.audio[0].codec_context.name == "aac"
        assert abs(video.frames - seconds * 25) <= 2


def test_face_width_is_the_zoom_and_is_checked():
    from vcam.app.cli import _with_face_width, build_parser
    from vcam.app.settings import load_settings

    args = build_parser().parse_args(["render", "--sample", "--face-width", "0.6"])
    assert args.face_width == 0.6
    settings = _with_face_width(load_settings(None), args.face_width)
    assert settings.enroll.face_width_frac == 0.6
    assert _with_face_width(settings, None) is settings
    assert main(["run", "--face-width", "0.9"]) == 2
