"""Provenance: the invisible watermark in every frame, the "AI" badge, ``vcam verify`` and
Content Credentials, with real parts: frames from the real render graph, real ffmpeg
transformations of a real ``vcam render``, c2pa-python reading what vcam signed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vcam.runtime.watermark import (TILE, Payload, current_payload, decode_payload, encode_payload, key_tiles, luma,
                               mark_frame, mark_pattern, payload_shifts, shifts_word)
from vcam.assets import ASSETS_DIR

REPO = Path(__file__).resolve().parents[1]
SPEECH = ASSETS_DIR / "en_ljspeech_LJ001-0001.wav"
PHOTOS = sorted(p for p in ASSETS_DIR.iterdir() if p.suffix in (".jpg", ".png"))
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")


def _vcam(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcam", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300, stdin=subprocess.DEVNULL)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True, timeout=300)


def _still(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(ASSETS_DIR / name) as im:
        return np.asarray(im.convert("RGB").resize((512, 512)))


# --------------------------------------------------------------------------- the mark itself


def test_payload_round_trips_and_its_crc_catches_a_flipped_bit():
    p = Payload(1, (0, 1, 0))
    word = encode_payload(p)
    assert word < 1 << 26 and decode_payload(word) == p
    for bit in range(26):
        assert decode_payload(word ^ (1 << bit)) is None, bit
    shift_b, shift_c = payload_shifts(word)
    assert shifts_word(shift_b, shift_c) == word
    assert current_payload().format_version == 1
    with pytest.raises(ValueError, match="minor 64"):
        encode_payload(Payload(1, (0, 64, 0)))


def test_keys_are_fixed_band_limited_and_nearly_orthogonal():
    keys = key_tiles()
    assert keys.shape == (3, TILE, TILE)
    assert np.allclose(keys.mean(axis=(1, 2)), 0, atol=1e-9) and np.allclose(keys.std(axis=(1, 2)), 1)
    # The same keys on every machine and numpy: SHAKE-256, not a numpy generator.
    assert round(float(keys[0, 0, 0]), 6) == round(float(key_tiles.__wrapped__()[0, 0, 0]), 6)
    f = np.fft.fftfreq(TILE) * TILE
    radius = np.hypot(f[:, None], f[None, :])
    power = np.abs(np.fft.fft2(keys[0])) ** 2
    assert power[(radius < 4) | (radius > 22)].sum() < 1e-9 * power.sum()
    # The detector correlates at every cyclic shift: another key must stay far below a key's
    # own peak (1) at all of them.
    spectra = np.fft.fft2(keys)
    for a in range(3):
        for b in range(a + 1, 3):
            cross = np.fft.ifft2(spectra[a] * spectra[b].conj()).real / keys[a].size
            assert np.abs(cross).max() < 0.15


@pytest.mark.parametrize("name", [p.name for p in PHOTOS])
def test_the_mark_is_invisible_by_psnr(name):
    still = _still(name)
    marked = mark_frame(still)
    mse = np.mean((marked.astype(float) - still) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 42.0


def test_flat_areas_get_a_faint_mark_and_the_moving_face_none():
    flat = np.full((512, 512, 3), 128, np.uint8)
    mark = mark_pattern(flat).astype(float)
    assert np.sqrt(np.mean(mark**2)) < 0.9  # levels (0.85: 49.5 dB on flat grey): below what shows as grain
    quiet = np.zeros((512, 512))
    quiet[200:300, 150:350] = 1.0
    mark = mark_pattern(_still("photo_astronaut_eileen_collins.png"), quiet=quiet)
    assert not mark[200:300, 150:350].any() and mark.any()


def _transforms(frame: np.ndarray) -> dict[str, np.ndarray]:
    from PIL import Image

    img = Image.fromarray(frame)
    small = np.asarray(img.resize((360, 360), Image.BICUBIC))
    box = np.zeros((360, 640, 3), np.uint8)
    box[:, 140:500] = small
    return {
        "as is": frame,
        "360 lines": small,
        "letterboxed 16:9": box,
        "cropped 20 %": frame[40:450, 70:480],
        "upscaled 1.5x": np.asarray(img.resize((768, 768), Image.BICUBIC)),
        "JPEG q75": np.asarray(_jpeg(img, 75)),
    }


def _jpeg(img, quality: int):
    import io

    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@pytest.mark.parametrize("name", [p.name for p in PHOTOS])
def test_a_marked_picture_is_found_after_rescaling_cropping_and_letterboxing(name):
    from vcam.provenance.detect import detect

    still = _still(name)
    for what, picture in _transforms(mark_frame(still)).items():
        d = detect(luma(picture))
        assert d.found and d.payload == current_payload(), f"{name}, {what}: z {d.z:.1f}, payload {d.payload}"
    for what, picture in _transforms(still).items():
        d = detect(luma(picture))
        assert not d.found and d.confidence < 0.99, f"unmarked {name}, {what}: z {d.z:.1f}"


# --------------------------------------------------------------------------- every rendered frame


def test_every_rendered_frame_is_marked_and_badged(sample_avatars):
    from vcam.runtime.badge import HEIGHT, MARGIN, WIDTH, Badge
    from vcam.runtime.channels import INDEX, N_MOTION
    from vcam.runtime.render import RenderStage
    from vcam.provenance.detect import detect

    m = np.zeros(N_MOTION, np.float32)
    with RenderStage(sample_avatars["painting"], provider="cpu", badge=Badge.make("bottom-right")) as stage, \
            RenderStage(sample_avatars["painting"], provider="cpu") as bare:
        for jaw in (0.0, 0.6):
            m[INDEX["jawOpen"]] = jaw
            frame = stage.render(m)
            d = detect(luma(frame))
            assert d.found and d.payload == current_payload(), f"jawOpen {jaw}: z {d.z:.1f}"
        plain = bare.render(m)
        y0, x0 = 512 - MARGIN - HEIGHT, 512 - MARGIN - WIDTH
        badge = luma(frame[y0:y0 + HEIGHT, x0:x0 + WIDTH])
        under = luma(plain[y0:y0 + HEIGHT, x0:x0 + WIDTH])
        assert badge.max() > 200 and badge.max() > under.max() + 60  # white letters
        assert np.median(badge) < max(np.median(under), 40.0)  # on a darkened label (or what is dark already)
        assert np.array_equal(frame[:400], plain[:400])  # nothing else differs


def test_the_graph_draws_the_mark_as_part_of_the_portrait(sample_avatars, monkeypatch):
    """The mark is in the portrait's tensors: a rendered frame differs from the same frame
    rendered unmarked by exactly the mark the still carries, inside the moving window and
    out (no seam at its edge); with the head turned, the mark is still found."""
    import vcam.runtime.render as render_module
    from vcam.runtime.channels import INDEX, N_MOTION
    from vcam.runtime.render import RenderStage
    from vcam.provenance.detect import detect

    avatar = sample_avatars["astronaut"]
    rest = np.zeros(N_MOTION, np.float32)
    with RenderStage(avatar, provider="cpu") as stage:
        mark = stage.frame.astype(int) - avatar.still  # the still, marked once
        marked = stage.render(rest).astype(int)
        turned = np.zeros(N_MOTION, np.float32)
        turned[INDEX["headRoll"]] = 3.0
        turned[INDEX["headYaw"]] = 6.0
        d = detect(luma(stage.render(turned)))
    monkeypatch.setattr(render_module, "mark_pattern", lambda still, payload=None, quiet=None:
                        np.zeros(still.shape[:2], np.int16))
    with RenderStage(avatar, provider="cpu") as bare:
        plain = bare.render(rest).astype(int)
    assert np.abs(mark).max() > 0
    # Rounding (the graph's float colour against the integer still), and at most 4 levels on a
    # few pixels of the window's edges, where the graph clamps its sampling (onnxruntime 1.31
    # gives 3 there, 1.32 4 on nine values of the bottom edge row).
    off = np.abs((marked - plain) - mark)
    assert off.max() <= 4 and (off > 1).mean() < 1e-3
    assert d.found and d.payload == current_payload(), d


def test_a_badge_that_the_moving_window_covers_is_drawn_on_every_frame(sample_avatars):
    from vcam.runtime.badge import Badge
    from vcam.runtime.channels import INDEX, N_MOTION
    from vcam.runtime.render import RenderStage

    avatar = sample_avatars["painting"]
    x0, y0 = avatar.patch_origin
    badge = Badge.make("top-left")
    badge.origin = (x0 + 100, y0 + 20)  # inside the window, over the hair
    m = np.zeros(N_MOTION, np.float32)
    with RenderStage(avatar, provider="cpu", badge=badge) as stage:
        for yaw in (0.0, 8.0, -8.0):
            m[INDEX["headYaw"]] = yaw
            frame = stage.render(m)
            bx, by = badge.origin
            assert luma(frame[by:by + 20, bx:bx + 34]).max() > 200, yaw


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A 4 s ``vcam render`` of the sample portrait (signed MP4) and its own user config."""
    from vcam.runtime.audio_file import load_audio, write_wav

    d = tmp_path_factory.mktemp("provenance")
    speech = d / "speech.wav"
    write_wav(speech, load_audio(SPEECH)[:64000])
    out = d / "talk.mp4"
    r = _vcam("render", "--sample", "--audio", str(speech), "--out", str(out), "--provider", "cpu")
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
@needs_ffmpeg
def test_a_rendered_video_verifies_after_what_calls_and_uploads_do_to_it(rendered, tmp_path):
    variants = {
        "h264_400k.mp4": ["-c:v", "libx264", "-b:v", "400k", "-maxrate", "400k", "-bufsize", "800k"],
        "crf32.mp4": ["-c:v", "libx264", "-crf", "32"],
        "360p.mp4": ["-vf", "scale=-2:360", "-c:v", "libx264"],
        "letterbox.mp4": ["-vf", "scale=-2:720,pad=1280:720:(ow-iw)/2:0", "-c:v", "libx264"],
        "crop20.mkv": ["-vf", "crop=iw*0.8:ih*0.8:iw*0.15:ih*0.05", "-c:v", "libx264"],
        "crop20_rescaled.mp4": ["-vf", "crop=iw*0.8:ih*0.8,scale=512:512", "-c:v", "libx264"],
        "cut.webm": ["-vf", "select='not(between(t,1,2.5))',setpts=N/FRAME_RATE/TB", "-an", "-c:v", "libvpx-vp9",
                     "-b:v", "600k"],
        "copy.mov": ["-c:v", "libx264", "-crf", "23"],
        "frame.png": ["-vf", "select=eq(n\\,50)", "-frames:v", "1"],
        "frame.jpg": ["-vf", "select=eq(n\\,60)", "-frames:v", "1", "-q:v", "4"],
        "frame.webp": ["-vf", "select=eq(n\\,70)", "-frames:v", "1"],
    }
    files = []
    for name, args in variants.items():
        out = tmp_path / name
        _ffmpeg("-i", str(rendered), *args, str(out))
        files.append(str(out))
    r = _vcam("verify", *files)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(files)
    for line in lines:
        assert ": made by vcam (confidence " in line and f"vcam {'.'.join(map(str, current_payload().version))}" in line


@pytest.mark.slow
@needs_ffmpeg
def test_photos_and_camera_footage_vcam_did_not_make_are_not_flagged(tmp_path):
    """Unmarked media: the sample photos themselves, and two clips of "camera footage" made
    from them (a slow zoom and pan with sensor noise, H.264), are not vcam's."""
    files = [str(p) for p in PHOTOS]
    for i, photo in enumerate(PHOTOS[:2]):
        clip = tmp_path / f"camera{i}.mp4"
        _ffmpeg("-loop", "1", "-i", str(photo), "-t", "3", "-vf",
                "scale=1024:-2,zoompan=z='1+0.002*on':x='iw/2-(iw/zoom/2)+on':y='ih/2-(ih/zoom/2)':d=75:s=640x480,"
                "noise=alls=6:allf=t", "-r", "25", "-c:v", "libx264", "-crf", "23", str(clip))
        files.append(str(clip))
    r = _vcam("verify", *files)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("no vcam watermark found") == len(files), r.stdout


@pytest.mark.slow
def test_a_rendered_mp4_carries_content_credentials_that_edits_break(rendered, tmp_path):
    from vcam.provenance.credentials import AI_SOURCE_TYPE, credentials_dir, read_credentials

    creds = read_credentials(rendered)
    assert creds is not None and creds.ai_generated and creds.intact and creds.generator.startswith("vcam ")
    assert not creds.trusted  # a per-user key is on nobody's trust list
    # A second reader: c2pa-python's own JSON names the IPTC source type.
    import c2pa

    with c2pa.Reader(str(rendered)) as reader:
        assert AI_SOURCE_TYPE in reader.json()
    key = credentials_dir() / "c2pa-signer-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    edited = tmp_path / "edited.mp4"
    data = bytearray(rendered.read_bytes())
    # One byte of the pictures changed, three quarters into the media data: a few frames
    # damaged (a byte in the first key frame spoils every frame after it).
    box = data.find(b"mdat")
    at = box + int.from_bytes(data[box - 4:box], "big") * 3 // 4
    data[at] ^= 0xFF
    edited.write_bytes(bytes(data))
    broken = read_credentials(edited)
    assert broken is not None and not broken.intact and broken.failures
    r = _vcam("verify", "--json", str(rendered), str(edited))
    out = json.loads(r.stdout)
    assert [o["content_credentials"]["intact"] for o in out] == [True, False]
    assert all(o["made_by_vcam"] and o["watermark"]["found"] for o in out)  # the frames still say so


def test_the_signing_key_is_made_once_and_reused(tmp_path):
    from vcam.provenance.credentials import signing_identity

    first = signing_identity(tmp_path / "c")
    assert signing_identity(tmp_path / "c") == first
    assert b"BEGIN CERTIFICATE" in first[0] and first[0].count(b"BEGIN CERTIFICATE") == 2


def test_verify_bad_input_is_one_line_and_exit_2(tmp_path):
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(b"not a video at all")
    for target, says in ((tmp_path / "missing.mp4", "file not found"), (tmp_path, "it is a folder"),
                         (garbage, "cannot read")):
        r = _vcam("verify", str(target))
        assert r.returncode == 2, (target, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_verify_json_on_an_unmarked_picture(tmp_path):
    r = _vcam("verify", "--json", str(PHOTOS[0]))
    assert r.returncode == 1
    [out] = json.loads(r.stdout)
    assert out["made_by_vcam"] is False and out["watermark"]["found"] is False and out["kind"] == "image"
    assert out["content_credentials"] is None


# --------------------------------------------------------------------------- settings


def test_the_badge_follows_the_settings(tmp_path):
    from vcam.runtime.errors import ConfigError
    from vcam.provenance.badge import make_badge
    from vcam.app.settings import load_settings

    assert make_badge(load_settings()).origin == (512 - 10 - 34, 512 - 10 - 20)
    off = tmp_path / "off.toml"
    off.write_text("[provenance]\nbadge = false\n")
    assert make_badge(load_settings(off)) is None
    left = tmp_path / "left.toml"
    left.write_text('[provenance]\nbadge_corner = "top-left"\n')
    assert make_badge(load_settings(left)).origin == (10, 10)
    bad = tmp_path / "bad.toml"
    bad.write_text('[provenance]\nbadge_corner = "middle"\n')
    with pytest.raises(ConfigError, match=r"\[provenance\] badge_corner"):
        load_settings(bad)


# --------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
@needs_ffmpeg
def test_bench_provenance_finds_the_mark_in_every_variant_and_nothing_else(tmp_path):
    """``vcam bench --provenance`` on one portrait (and its flat illustration) and 5 s of speech:
    every video transformed as the issue lists carries the mark and its payload (the two
    transformations at once are reported, not required), none of the unmarked media does."""
    from vcam.bench import provenance as bench_provenance
    from vcam.runtime.audio_file import load_audio, write_wav

    speech = tmp_path / "speech.wav"
    write_wav(speech, load_audio(SPEECH)[:80000])  # 5 s: frame 100 and the cut (3-5 s) are in it
    result = bench_provenance.run([ASSETS_DIR / "painting_thomas_jefferson_rembrandt_peale.jpg"], speech)
    required = [r for r in result["rows"] if r["transform"] not in bench_provenance.STRESS]
    missed = [r for r in required if not (r["found"] and r["payload"])]
    assert not missed, missed
    assert len(result["rows"]) == 2 * (1 + len(bench_provenance.TRANSFORMS))
    assert result["negatives"] and not [n for n in result["negatives"] if n["found"]], result["negatives"]
    assert min(result["psnr"].values()) >= 42.0
    assert result["cost_ms"]["marking per frame"] == 0.0
    text = bench_provenance.table(result, "test machine")
    assert "| h264 crf 32 |" in text and "False positives: 0 of" in text


def test_candidate_periods_include_a_copy_scaled_to_fill_its_frame():
    """A 240-line or 360-line copy of vcam's 512 frame: the exact period is always looked at,
    whatever the autocorrelation's integer peaks say."""
    from vcam.runtime.watermark import TILE
    from vcam.provenance import detect as D

    r = np.random.default_rng(0).standard_normal((240, 427))
    periods = D.candidate_periods(r)
    assert any(abs(p - TILE * 240 / 512) < 1e-9 for p in periods)
    assert any(abs(p - TILE * 360 / 512) < 1e-9 for p in D.candidate_periods(np.random.default_rng(1).standard_normal((360, 360))))
