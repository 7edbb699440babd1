"""The sound server (PulseAudio, or PipeWire's pulse server) through libpulse, with pulsectl.

Two ways in:

* one-off questions and actions (:func:`pulse_info`, :func:`pulse_sources`, :func:`load_module`,
  ...): each opens a short libpulse connection (about 2 ms), asks, and closes it. Used when
  vcam starts, opens or reopens a device, and by ``vcam devices``.
* :class:`PulseWatcher`: what the live path keeps an eye on (sources, the default sink, loaded
  modules), kept current by the server's change events on a thread of its own. Readers take
  its :attr:`~PulseWatcher.state`, an immutable snapshot, without asking the server anything:
  the supervisors of the audio input and the virtual microphone look at it ten times a
  second at no cost, where they used to run ``pactl`` twice every half second.

Every function answers ``None`` (or an empty result) when no server answers or libpulse is
missing, and never raises for that; :func:`load_module` raises :class:`PulseUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

from vcam.runtime.errors import DeviceError

log = logging.getLogger(__name__)

CLIENT_NAME = "vcam"
_RECONNECT_S = 0.5
_LISTEN_S = 0.25

#: libpulse's sample formats (pa_sample_format_t) as pactl names them.
_FORMATS = {0: "u8", 1: "aLaw", 2: "uLaw", 3: "s16le", 4: "s16be", 5: "float32le", 6: "float32be", 7: "s32le",
            8: "s32be", 9: "s24le", 10: "s24be", 11: "s24-32le", 12: "s24-32be"}


class PulseUnavailable(DeviceError):
    """No sound server answers, or libpulse (or pulsectl) is missing."""


@contextlib.contextmanager
def connect(name: str = CLIENT_NAME):
    """A ``pulsectl.Pulse`` connection, closed on exit; :class:`PulseUnavailable` when none can be made."""
    try:
        import pulsectl
    except (ImportError, OSError) as e:  # OSError: libpulse.so.0 missing
        raise PulseUnavailable(f"libpulse is not available ({e}); install PulseAudio or PipeWire's pulse "
                               "server (Debian/Ubuntu: pulseaudio or pipewire-pulse)") from None
    try:
        pulse = pulsectl.Pulse(name)
    except Exception as e:  # PulseError: no server
        raise PulseUnavailable(f"no PulseAudio/PipeWire server answers ({e})") from None
    try:
        yield pulse
    finally:
        pulse.close()


def _ask(fn, default=None):
    """``fn(pulse)`` on a fresh connection, or ``default`` when no server answers or it fails."""
    try:
        with connect() as pulse:
            return fn(pulse)
    except Exception as e:  # noqa: BLE001 - PulseUnavailable, PulseOperationFailed, a server gone mid-call
        log.debug("pulse: %s", e)
        return default


def _spec(s: Any) -> str:
    ss = s.sample_spec
    return f"{_FORMATS.get(ss.format, ss.format)} {ss.channels}ch {ss.rate}Hz"


def _source_row(s: Any) -> dict[str, Any]:
    return {"index": s.index, "name": s.name, "spec": _spec(s), "state": str(getattr(s.state, "_value", s.state)).upper(),
            "monitor": s.name.endswith(".monitor"), "description": s.description}


def pulse_info() -> dict[str, str] | None:
    """``{"server", "version", "default_sink", "default_source"}``, or ``None`` when no server answers."""
    def ask(pulse):
        si = pulse.server_info()
        return {"server": si.server_name, "version": si.server_version,
                "default_sink": si.default_sink_name or "", "default_source": si.default_source_name or ""}

    return _ask(ask)


def pulse_sources() -> list[dict[str, Any]] | None:
    """The sources: ``[{"index", "name", "spec", "state", "monitor", "description"}]``; ``None``
    when no server answers."""
    return _ask(lambda pulse: [_source_row(s) for s in pulse.source_list()])


def pulse_sinks() -> list[dict[str, Any]] | None:
    """``[{"index", "name", "description"}]`` of the sinks; ``None`` when no server answers."""
    return _ask(lambda pulse: [{"index": s.index, "name": s.name, "description": s.description}
                               for s in pulse.sink_list()])


def pulse_streams_of_pid(pid: int, kind: str = "source-outputs") -> list[tuple[int, int]]:
    """``[(stream index, device index)]`` of process ``pid``'s record streams (``kind``
    ``"source-outputs"``: the source each records from) or playback streams (``"sink-inputs"``:
    the sink each plays into)."""
    def ask(pulse):
        if kind == "source-outputs":
            rows = [(o.index, o.source, o.proplist) for o in pulse.source_output_list()]
        else:
            rows = [(i.index, i.sink, i.proplist) for i in pulse.sink_input_list()]
        return [(idx, dev) for idx, dev, props in rows if props.get("application.process.id") == str(pid)]

    if kind not in ("source-outputs", "sink-inputs"):
        raise ValueError(f"kind: expected 'source-outputs' or 'sink-inputs', got {kind!r}")
    return _ask(ask, [])


def move_stream(kind: str, index: int, device: str) -> bool:
    """Move a record stream (``"source-outputs"``) or playback stream (``"sink-inputs"``) to the
    source or sink named ``device``; whether it worked."""
    def ask(pulse):
        if kind == "source-outputs":
            target = pulse.get_source_by_name(device)
            pulse.source_output_move(index, target.index)
        else:
            target = pulse.get_sink_by_name(device)
            pulse.sink_input_move(index, target.index)
        return True

    return _ask(ask, False)


def pulse_modules() -> list[tuple[int, str, str]] | None:
    """``[(index, module name, argument)]`` of the loaded modules; ``None`` when no server answers."""
    return _ask(lambda pulse: [(m.index, m.name, m.argument or "") for m in pulse.module_list()])


def load_module(name: str, argument: str) -> int:
    """Load module ``name`` with ``argument`` (pactl's syntax); its index. :class:`PulseUnavailable`
    saying why when there is no server or the server refuses."""
    with connect() as pulse:
        try:
            return int(pulse.module_load(name, argument))
        except Exception as e:  # noqa: BLE001 - PulseError: the module is missing or refused its arguments
            raise PulseUnavailable(f"the sound server cannot load {name} ({e or 'failed'})") from None


def unload_module(index: int) -> None:
    """Unload module ``index``; errors are ignored (it may be gone, or the server with it)."""
    _ask(lambda pulse: pulse.module_unload(index))


# --------------------------------------------------------------------------- change events


@dataclass(frozen=True)
class PulseState:
    """What the live path needs of the server at one moment."""

    sources: dict[str, int]  # source name -> index (a recreated source gets a new index)
    default_sink: str
    modules: frozenset[int]  # indices of the loaded modules
    generation: int  # grows by one with every snapshot


class PulseWatcher:
    """Keeps :attr:`state` current from the server's change events, on its own thread.

    :attr:`state` is ``None`` while no server answers (it reconnects every 0.5 s, so a
    restarted server is seen within about a second). Use as a context manager, or
    :meth:`start` and :meth:`close` (idempotent).
    """

    def __init__(self) -> None:
        self.state: PulseState | None = None
        self.events = 0  # change events seen (status, tests)
        self._generation = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PulseWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout_s: float = 2.0) -> None:
        """Start watching; waits up to ``timeout_s`` for the first snapshot (or for "no server")."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="vcam-pulse-watch", daemon=True)
        self._thread.start()
        self._ready.wait(timeout_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _snapshot(self, pulse: Any) -> None:
        self._generation += 1
        self.state = PulseState(sources={s.name: s.index for s in pulse.source_list()},
                                default_sink=pulse.server_info().default_sink_name or "",
                                modules=frozenset(m.index for m in pulse.module_list()),
                                generation=self._generation)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(f"{CLIENT_NAME}-watch") as pulse:
                    import pulsectl  # connect() imported it

                    pulse.event_mask_set("source", "sink", "server", "module")
                    changed = [False]

                    def on_event(_ev: Any) -> None:
                        changed[0] = True
                        self.events += 1
                        raise pulsectl.PulseLoopStop

                    pulse.event_callback_set(on_event)
                    self._snapshot(pulse)
                    self._ready.set()
                    while not self._stop.is_set():
                        pulse.event_listen(timeout=_LISTEN_S)
                        if changed[0]:
                            changed[0] = False
                            self._snapshot(pulse)
            except Exception as e:  # noqa: BLE001 - no server, or it went away: unknown until it is back
                log.debug("pulse watcher: %s", e)
            self.state = None
            self._ready.set()
            self._stop.wait(_RECONNECT_S)
