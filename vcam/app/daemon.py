"""The live webcam daemon behind ``vcam run``: portrait + audio source + engine + outputs +
controls (control socket, hotkeys, tray), wired together and torn down in order.

Threads: the engine draws frames (``vcam-engine``); each output writes on its own thread;
the audio device calls back on PortAudio's; the control socket, hotkeys and tray post
:mod:`vcam.app.commands` to one inbox, which the controller loop drains and applies (enrolling
a new photo happens there, so the camera never stops). The main thread runs the tray when
there is one (macOS requires it), else the controller loop.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcam.runtime.errors import DeviceError, VcamError
from vcam.app import commands as cmd
from vcam.app.commands import CommandInbox
from vcam.sinks.live import LiveOutput, open_output

log = logging.getLogger(__name__)

AUTO_SOURCES = ("mic", "system")
"""Sources that may be missing at start (no microphone yet, sound server not up): vcam waits."""
AUDIO_RETRY_S = 2.0
CAPTURE_RATE = 48000
"""Live capture rate: the virtual microphone carries the voice at full band; the engine
resamples to the 16 kHz its features take."""
RISE_SLEW_MS_PER_S = 10.0
"""How fast the microphone's delay follows a new figure for the mouth's rise (each step of a few
ms waits for a pause in the voice: vcam.runtime.voice_delay)."""


@dataclass(frozen=True)
class LiveOptions:
    """What ``vcam run`` was asked for (settings already merged with command-line options)."""

    photo: Path
    audio: str
    outputs: tuple[str, ...]
    fps: int
    emotion: str
    intensity: float
    fade_s: float
    provider: str = "auto"
    threads: int = 0
    face_width_frac: float = 0.40
    motion_scale: float = 1.0
    camera_device: str = ""
    camera_retry_s: float = 5.0
    camera_backend: str | None = None
    tray: bool = True
    hotkeys: bool = True
    hotkey_bindings: Any = None  # vcam.app.settings.HotkeysConfig; None: the defaults
    control: bool = True
    control_address: str | None = None
    seed: int | None = None
    badge: bool = True
    badge_corner: str = "bottom-right"
    mic: bool = False  # `vcam run` sets it from [mic] enabled (on by default there)
    mic_name: str = "vcam_mic"
    mic_description: str = "vcam microphone"
    mic_device: str = ""
    av_offset_ms: float = 0.0


class Daemon:
    """The running live webcam. ``with Daemon(opts) as d: d.run()``; :meth:`close` is idempotent.

    The constructor loads the portrait and graphs and opens the outputs, the audio source
    and the controls; errors there (no face in the photo, an unknown audio device, a
    second daemon) raise ``VcamError`` before anything runs. :meth:`run` blocks until
    :meth:`stop`, a ``Quit`` command, SIGINT or SIGTERM.
    """

    def __init__(self, opts: LiveOptions) -> None:
        self.opts = opts
        self.inbox = CommandInbox()
        self._stop = threading.Event()
        self._closed = False
        self._started_ns = time.monotonic_ns()
        self._outputs: dict[str, LiveOutput] = {}
        self._audio = None
        self._control = None
        self._hotkeys = None
        self._tray = None
        self._mic = None
        self._rise_ms: float | None = None  # the mouth's rise as the microphone's delay has it
        self._rise_at = 0.0
        self.engine = None
        self.photo = Path(opts.photo)
        self._audio_wanted: str | None = None
        self._av_offset_ms = float(opts.av_offset_ms)
        self._feedback_check_at = 0.0
        self._audio_retry_at = time.monotonic() + AUDIO_RETRY_S
        self.last_error: str | None = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- setup --

    def _open(self) -> None:
        from vcam.runtime.badge import Badge
        from vcam.runtime.emotion import load_emotion_presets
        from vcam.runtime.engine import LiveEngine
        from vcam.avatar.build import load_avatar
        from vcam.app.recent import remember_photo

        opts = self.opts
        if opts.control:  # first: a second daemon is refused before any model loads
            from vcam.app.control import ControlServer

            self._control = ControlServer(self.inbox, self.status, address=opts.control_address)
        avatar = load_avatar(self.photo, face_width_frac=opts.face_width_frac, mouth_view=True)
        remember_photo(self.photo)
        self.engine = LiveEngine(avatar, fps=opts.fps, presets=load_emotion_presets(), emotion=opts.emotion,
                                 intensity=opts.intensity, fade_s=opts.fade_s, provider=opts.provider,
                                 threads=opts.threads, seed=opts.seed,
                                 badge=Badge.make(opts.badge_corner) if opts.badge else None,
                                 motion_scale=opts.motion_scale)
        for spec in dict.fromkeys(opts.outputs):
            self._add_output(spec)
        if opts.mic:
            self._start_mic()  # a name owned by another running vcam is refused here
        try:
            self._open_audio(opts.audio)
        except DeviceError as e:
            if opts.audio not in AUTO_SOURCES:
                raise  # a device asked for by name that is not there: most likely a typo
            self._audio_wanted = opts.audio  # mic/system not there yet: idle and retry
            self._report(f"{e}; the face idles and vcam retries every {AUDIO_RETRY_S:.0f} s")
        if opts.hotkeys:
            self._start_hotkeys()

    def _add_output(self, spec: str) -> None:
        out = open_output(spec, self.opts)
        self._outputs[spec] = out
        self.engine.add_output(out.slot)

    def _remove_output(self, spec: str) -> None:
        out = self._outputs.pop(spec, None)
        if out is not None:
            self.engine.remove_output(out.slot)
            time.sleep(2.0 / self.opts.fps)  # let the engine drop it before closing
            out.close()

    def _open_audio(self, spec: str) -> None:
        from vcam.runtime.audio_in import AudioSource

        source = AudioSource(spec, rate=CAPTURE_RATE)
        try:
            source.start()
        except BaseException:
            source.close()
            raise
        old, self._audio = self._audio, source
        self._audio_wanted = None
        self.engine.set_audio(source.ring)
        if self._mic is not None:
            self._mic.set_ring(source.ring)
            self._guard_feedback()
        if old is not None:
            time.sleep(2.0 / self.opts.fps)
            old.close()

    def _start_mic(self) -> None:
        """Publish the virtual microphone. Another running vcam owning its name raises
        ``DeviceError``; a platform that cannot give one now (no sound server, no module
        support, no virtual cable) only warns: the camera runs, the microphone keeps trying."""
        from vcam.sinks.mic_devices import MicUnavailable
        from vcam.sinks.virtual_mic import VirtualMicrophone

        opts = self.opts
        try:
            mic = VirtualMicrophone(name=opts.mic_name, description=opts.mic_description, device=opts.mic_device,
                                    offset_ms=self._av_offset_ms,
                                    avoid=None if opts.audio in AUTO_SOURCES else opts.audio)
        except MicUnavailable as e:  # a platform without any way to make one
            self._report(str(e))
            return
        mic.set_video_latency_ms(self._video_latency_ms())
        mic.start()
        if self._audio is not None:
            mic.set_ring(self._audio.ring)
        self._mic = mic
        self._guard_feedback()

    def _guard_feedback(self) -> None:
        """Keep the microphone silent while the audio source is the microphone itself (Linux: a
        machine without a real input makes vcam's source the default one, and 'system' on a
        machine without speakers may capture its feed): it would hear itself, an echo without end."""
        import sys

        mic, audio = self._mic, self._audio
        own = getattr(mic.device, "sources", None) if mic is not None else None
        if not own or audio is None or not sys.platform.startswith("linux"):
            return
        from vcam.runtime.audio_in import pulse_info

        device = audio.status().get("device")
        if audio.spec == "mic":
            device = (pulse_info() or {}).get("default_source", device)
        loop = device in own
        was_muted = not mic.delay.enabled
        mic.delay.enabled = not loop
        if loop and not was_muted:
            self._report(f"the audio source is vcam's own microphone ({device}): it would hear itself, so the "
                         "microphone stays silent; pick a real input (`vcam ctl audio NAME`, `vcam devices`) "
                         "or make one the default input")

    def _stop_mic(self) -> None:
        mic, self._mic = self._mic, None
        if mic is not None:
            mic.close()

    def _video_latency_ms(self) -> float:
        """How long after a voice starts arriving the face shows it: the engine's measured
        audio->frame latency (p50; before any frame, its estimate) plus the mouth's rise, how long
        after a voice onset the drawn mouth is seen half open (measured on the speech being
        animated: :class:`vcam.runtime.mouth_rise.MouthRiseMeter`; it includes the wait for the next
        frame). The rise is followed at most ``RISE_SLEW_MS_PER_S``, so that a new figure
        moves the voice in small steps, each taken in a pause, never as a jump mid-word."""
        engine = self.engine
        measured = (engine.status().get("latency_ms") or {}).get("p50")
        if measured is None:
            measured = engine.lookahead_ms + 1000.0 / self.opts.fps
        now = time.monotonic()
        want = engine.mouth_rise_ms
        if self._rise_ms is None:
            self._rise_ms = want
        else:
            step = RISE_SLEW_MS_PER_S * min(now - self._rise_at, 1.0)
            self._rise_ms += min(max(want - self._rise_ms, -step), step)
        self._rise_at = now
        return float(measured) + self._rise_ms

    @property
    def mic_label(self) -> str | None:
        """What call apps list as vcam's microphone, ``None`` while there is none."""
        if self._mic is None or self._mic.state != "running":
            return None
        return self._mic.status()["device"]

    def pick_line(self) -> str | None:
        """What to choose in the call app, said once at start (``None`` without a microphone)."""
        import sys

        mic = self.mic_label
        if mic is None:
            return None
        cam = "vcam" if sys.platform.startswith("linux") else "OBS Virtual Camera"
        what = f'the camera "{cam}" and ' if "camera" in self._outputs else ""
        return (f'in the call app pick {what}the microphone "{mic}": it carries the voice in step with the lips '
                f"(delay {self._mic.delay.delay_ms:.0f} ms; `vcam ctl status`)")

    def _start_hotkeys(self) -> None:
        from vcam.app.hotkeys import HotkeyListener
        from vcam.app.settings import load_settings

        try:
            config = self.opts.hotkey_bindings or load_settings(None).hotkeys
            self._hotkeys = HotkeyListener(config, self.inbox)
            self._hotkeys.start()
        except VcamError as e:
            log.warning("hotkeys off: %s", e)

    # -- commands --

    def apply(self, command: cmd.Command) -> None:
        """Carry out one command (the controller thread)."""
        engine = self.engine
        if isinstance(command, cmd.SetEmotion):
            engine.set_emotion(command.name, command.intensity)
        elif isinstance(command, cmd.SetIntensity):
            engine.set_intensity(command.intensity)
        elif isinstance(command, cmd.SetMotionScale):
            engine.set_motion_scale(command.scale)
        elif isinstance(command, cmd.SetPaused):
            engine.set_paused(command.paused)
        elif isinstance(command, cmd.SetPhoto):
            self._swap_photo(Path(command.path))
        elif isinstance(command, cmd.SetAudio):
            try:
                self._open_audio(command.source)
            except VcamError as e:
                self._report(f"audio source {command.source!r} not switched: {e}")
        elif isinstance(command, cmd.SetPreview):
            shown = "preview" in self._outputs and getattr(self._outputs["preview"].sink, "open", True)
            want = (not shown) if command.shown is None else command.shown
            if "preview" in self._outputs and not (want and shown):
                self._remove_output("preview")
            if want and "preview" not in self._outputs:
                try:
                    self._add_output("preview")
                except VcamError as e:
                    self._report(str(e))
        elif isinstance(command, cmd.SetMic):
            want = (self._mic is None) if command.on is None else command.on
            if want and self._mic is None:
                try:
                    self._start_mic()
                except VcamError as e:
                    self._report(f"microphone not started: {e}")
            elif not want and self._mic is not None:
                self._stop_mic()
        elif isinstance(command, cmd.SetAvOffset):
            self._av_offset_ms = float(command.ms)
            if self._mic is not None:
                self._mic.set_offset_ms(command.ms)
        elif isinstance(command, cmd.Quit):
            self.stop()

    def _swap_photo(self, photo: Path) -> None:
        from vcam.avatar.build import load_avatar
        from vcam.app.recent import remember_photo

        try:
            avatar = load_avatar(photo, face_width_frac=self.opts.face_width_frac, mouth_view=True)
        except VcamError as e:
            self._report(f"photo not changed: {e}")
            return
        self.engine.set_avatar(avatar)
        self.photo = photo
        remember_photo(photo)
        self.last_error = None
        log.info("portrait %s", photo)

    def _report(self, message: str) -> None:
        self.last_error = message
        log.warning("%s", message)

    # -- running --

    def status(self) -> dict[str, Any]:
        """JSON-safe: the engine's figures plus audio, outputs, photo, last error."""
        s = self.engine.status() if self.engine is not None else {}
        s["photo"] = str(self.photo)
        if self._audio is not None:
            s["audio"] = self._audio.status()
        else:
            s["audio"] = {"source": self._audio_wanted, "state": "waiting", "error": self.last_error}
        s["outputs"] = {spec: out.status() for spec, out in list(self._outputs.items())}
        mic = self._mic
        s["mic"] = mic.status() if mic is not None else {"state": "off", "offset_ms": self._av_offset_ms}
        s["hotkeys"] = None if self._hotkeys is None else {"active": self._hotkeys.active,
                                                            "reason": self._hotkeys.reason}
        s["commands_dropped"] = self.inbox.dropped
        s["last_error"] = self.last_error
        return s

    def run(self) -> None:
        """Run until stopped. Installs SIGINT/SIGTERM handlers when called on the main thread."""
        is_main = threading.current_thread() is threading.main_thread()
        previous = {}
        if is_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        self.engine.start()
        try:
            tray = self._make_tray() if (self.opts.tray and is_main) else None
            if tray is not None:
                controller = threading.Thread(target=self._control_loop, name="vcam-controller", daemon=True)
                controller.start()
                try:
                    tray.run()
                except VcamError as e:
                    log.warning("no tray icon: %s", e)
                    self._control_loop()
                finally:
                    self._stop.set()
                    controller.join(5.0)
            else:
                self._control_loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _make_tray(self):
        try:
            from vcam.app.recent import recent_photos
            from vcam.app.tray import TrayIcon
        except ImportError as e:
            log.warning("no tray icon: %s", e)
            return None
        ok, reason = TrayIcon.available()
        if not ok:
            log.info("no tray icon: %s", reason)
            return None
        self._tray = TrayIcon(self.inbox, self.status, photos_fn=recent_photos)
        return self._tray

    def _retry_audio(self) -> None:
        """Try again to open a mic/system source that was missing at start."""
        now = time.monotonic()
        if self._audio_wanted is None or now < self._audio_retry_at:
            return
        self._audio_retry_at = now + AUDIO_RETRY_S
        try:
            self._open_audio(self._audio_wanted)
        except DeviceError as e:
            self.last_error = str(e)
            return
        log.warning("audio source %s is open", self._audio.status().get("device"))
        self.last_error = None

    def _control_loop(self) -> None:
        while not self._stop.is_set():
            self.inbox.wait(0.2)
            self._retry_audio()
            if self._mic is not None:
                self._mic.set_video_latency_ms(self._video_latency_ms())
                if time.monotonic() >= self._feedback_check_at:
                    self._feedback_check_at = time.monotonic() + 2.0
                    self._guard_feedback()
            for command in self.inbox.drain():
                try:
                    self.apply(command)
                except Exception as e:  # noqa: BLE001 - a bad command must not stop the camera
                    log.exception("command %s failed", command)
                    self.last_error = f"{type(command).__name__}: {e}"
        if self._tray is not None:
            self._tray.stop()

    def stop(self) -> None:
        """Ask :meth:`run` to return (any thread, signal handlers included)."""
        self._stop.set()
        if self._tray is not None:
            self._tray.stop()

    def close(self) -> None:
        """Stop everything and release the devices: controls, engine, audio, outputs. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for part in (self._tray, self._hotkeys, self._control):
            if part is not None:
                try:
                    part.close()
                except Exception as e:  # noqa: BLE001
                    log.warning("closing %s: %s", type(part).__name__, e)
        if self.engine is not None:
            self.engine.close()
        if self._mic is not None:
            try:
                self._mic.close()
            except Exception as e:  # noqa: BLE001
                log.warning("closing the microphone: %s", e)
        if self._audio is not None:
            self._audio.close()
        for out in list(self._outputs.values()):
            out.close()
        self._outputs.clear()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
