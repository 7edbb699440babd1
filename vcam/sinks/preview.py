"""Preview window: the live frames in a small Tk window, for checking the face without a
conferencing app.

Tk runs on a thread of its own (every Tk call happens there); :meth:`PreviewWindow.write`
only copies the frame into a preallocated PPM buffer and the Tk thread shows the newest
one. Closing the window hides the preview; vcam keeps running.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import numpy as np

from vcam.runtime.errors import DeviceError

log = logging.getLogger(__name__)


class PreviewWindow:
    """A ``width`` x ``height`` window showing ``(height, width, 3) uint8`` RGB frames.

    Raises ``DeviceError`` when no window can be opened (no display). A context manager;
    :meth:`close` is idempotent. :attr:`open` turns ``False`` when the user closes the window.
    """

    def __init__(self, *, width: int = 512, height: int = 512, title: str = "vcam preview") -> None:
        if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
            raise DeviceError("cannot open the preview window: no X display (DISPLAY is not set)")
        header = f"P6 {width} {height} 255\n".encode("ascii")
        self._ppm = bytearray(len(header) + width * height * 3)
        self._ppm[: len(header)] = header
        self._pixels = np.frombuffer(self._ppm, np.uint8, offset=len(header)).reshape(height, width, 3)
        self._lock = threading.Lock()
        self._fresh = False
        self._closed = False
        self.open = True
        self.frames_shown = 0
        self._title = title
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="vcam-preview", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            self._closed = True
            raise DeviceError(f"cannot open the preview window: {self._error}")

    def _run(self) -> None:
        try:
            import tkinter as tk

            root = tk.Tk()
            root.title(self._title)
            root.resizable(False, False)
            photo = tk.PhotoImage(width=self._pixels.shape[1], height=self._pixels.shape[0])
            tk.Label(root, image=photo, borderwidth=0).pack()
        except Exception as e:  # noqa: BLE001 - no display, no Tk: reported to the opener
            self._error = f"{type(e).__name__}: {e}"
            self._ready.set()
            return
        self._ready.set()

        def on_close() -> None:
            self.open = False
            root.destroy()

        root.protocol("WM_DELETE_WINDOW", on_close)

        def poll() -> None:
            if self._closed:
                root.destroy()
                return
            with self._lock:
                fresh, self._fresh = self._fresh, False
                if fresh:
                    photo.configure(data=bytes(self._ppm), format="PPM")
                    self.frames_shown += 1
            root.after(15, poll)

        root.after(15, poll)
        try:
            root.mainloop()
        finally:
            self.open = False
            # Tcl must be torn down on this thread: break the closures' cycles and collect
            # here, not later in whatever thread the garbage collector happens to run.
            import gc

            del on_close, poll, photo, root
            gc.collect()

    def write(self, frame: np.ndarray) -> None:
        """Show ``frame`` (copied) at the window's next refresh; dropped if the window was closed."""
        if not self.open:
            return
        with self._lock:
            np.copyto(self._pixels, frame)
            self._fresh = True

    def close(self) -> None:
        """Close the window. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._thread.join(2.0)

    def __enter__(self) -> PreviewWindow:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
