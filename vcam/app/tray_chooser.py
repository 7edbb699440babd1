"""The tray's *Open…*: a photo chooser that does not block the tray's loop, as a command line
(zenity or kdialog on Linux, osascript on macOS, else Tk's dialog in a child process:
``python -m vcam.app.tray_chooser --choose-photo [DIR]``) printing the chosen path."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PHOTO_PATTERNS = ("*.jpg", "*.jpeg", "*.png", "*.webp", "*.bmp", "*.tif", "*.tiff")


def _chooser_command(start_dir: str | None) -> list[str]:
    """The command line of a file chooser that prints the chosen path (exit status 0) or nothing."""
    title = "vcam: choose a portrait photo"
    start = (start_dir or str(Path.home())).rstrip(os.sep) + os.sep
    if sys.platform == "darwin" and shutil.which("osascript"):
        return ["osascript", "-e", f'POSIX path of (choose file with prompt "{title}" of type {{"public.image"}})']
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        if shutil.which("zenity"):
            return ["zenity", "--file-selection", f"--title={title}", f"--filename={start}",
                    "--file-filter=Images | " + " ".join(PHOTO_PATTERNS), "--file-filter=All files | *"]
        if shutil.which("kdialog"):
            return ["kdialog", "--title", title, "--getopenfilename", start,
                    " ".join(PHOTO_PATTERNS) + "|Images"]
    return [sys.executable, "-m", "vcam.app.tray_chooser", "--choose-photo", start]


# -- python -m vcam.app.tray_chooser --choose-photo [DIR]: Tk's file dialog in its own process --


def _choose_photo_main(argv: list[str]) -> int:
    """Print the photo chosen in a Tk file dialog; exit 1 when cancelled, 2 without Tk."""
    start = argv[0] if argv else str(Path.home())
    try:
        import tkinter
        from tkinter import filedialog
    except ImportError as e:
        print(f"no file dialog: tkinter is missing ({e}); install python3-tk, zenity or kdialog", file=sys.stderr)
        return 2
    try:
        root = tkinter.Tk()
    except tkinter.TclError as e:
        print(f"no file dialog: {e}", file=sys.stderr)
        return 2
    root.withdraw()
    path = filedialog.askopenfilename(
        parent=root, title="vcam: choose a portrait photo", initialdir=start,
        filetypes=[("Images", " ".join(PHOTO_PATTERNS)), ("All files", "*")])
    root.destroy()
    if not path:
        return 1
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--choose-photo"]:
        sys.exit(_choose_photo_main(sys.argv[2:]))
    print("usage: python -m vcam.app.tray_chooser --choose-photo [DIR]", file=sys.stderr)
    sys.exit(2)
