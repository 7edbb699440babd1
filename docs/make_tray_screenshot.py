"""Make docs/tray.png: the tray icon with its menu open, on a private X display.

    .venv/bin/python docs/make_tray_screenshot.py [OUT.png]

Starts Xvfb on a free display, ``trayer`` as the system tray (an XEmbed tray host), and
:class:`vcam.app.tray.TrayIcon` on pystray's ``gtk`` backend in a child process, fed a made-up
status (happy 75 %, 30 fps, mic) instead of a running daemon. Then it clicks the icon
with xdotool, opens the *Emotion* submenu from the keyboard, grabs the screen with Pillow and
crops it to the tray and the menus. Nothing on your own display is touched.

Needs (Debian 12): ``apt-get install xvfb trayer xdotool gir1.2-gtk-3.0`` plus PyGObject and
pystray in the venv (``pip install pystray 'PyGObject<3.51'``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZE = (720, 480)
BACKGROUND = (58, 66, 82)  # a plain desktop colour: everything else on screen is tray and menu
PANEL = (30, 33, 41)  # the panel bar across the top, drawn on the root window; trayer sits on it
PANEL_H = 28
PAD = 16


def child() -> None:
    """The tray with a made-up status (runs until killed)."""
    sys.path.insert(0, str(REPO))
    from vcam.assets import ASSETS_DIR
    from vcam.app.commands import CommandInbox
    from vcam.app.tray import TrayIcon

    photos = [str(ASSETS_DIR / n) for n in ("photo_astronaut_eileen_collins.png",
                                             "painting_thomas_jefferson_rembrandt_peale.jpg",
                                             "photo_abraham_lincoln_beard_bw.jpg")]
    status = {"emotion": "happy", "intensity": 0.75, "paused": False, "photo": photos[0],
              "audio": {"source": "mic", "state": "listening"}, "fps": 30.0,
              "latency_ms": {"p50": 41.0, "p95": 58.0}, "dropped": 0,
              "outputs": {"camera": {"state": "open"}, "preview": {"state": "running"}}}
    tray = TrayIcon(CommandInbox(), lambda: status, photos_fn=lambda: photos, backend="gtk")
    import threading

    threading.Thread(target=lambda: tray.wait_running(20) and print("ready", flush=True), daemon=True).start()
    tray.run()


def main(out: Path) -> None:
    for tool in ("Xvfb", "trayer", "xdotool"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install xvfb trayer xdotool)")
    procs: list[subprocess.Popen] = []
    try:
        read_fd, write_fd = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SIZE[0]}x{SIZE[1]}x24",
                                 "-nolisten", "tcp"], pass_fds=(write_fd,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(xvfb)
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            display = f":{f.readline().strip()}"
        env = {**os.environ, "DISPLAY": display, "GDK_BACKEND": "x11", "GTK_THEME": "Adwaita",
               "NO_AT_BRIDGE": "1", "PYSTRAY_BACKEND": "gtk"}
        env.pop("WAYLAND_DISPLAY", None)
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)

        import Xlib.display

        d = Xlib.display.Display(display)  # the desktop: a plain colour under a panel bar
        screen = d.screen()
        root = screen.root

        def pixel(rgb: tuple[int, int, int]) -> int:
            return screen.default_colormap.alloc_color(*(c * 257 for c in rgb)).pixel

        pixmap = root.create_pixmap(SIZE[0], SIZE[1], screen.root_depth)
        gc = root.create_gc(foreground=pixel(BACKGROUND))
        pixmap.fill_rectangle(gc, 0, 0, SIZE[0], SIZE[1])
        gc.change(foreground=pixel(PANEL))
        pixmap.fill_rectangle(gc, 0, 0, SIZE[0], PANEL_H)
        root.change_attributes(background_pixmap=pixmap)
        root.clear_area()
        d.sync()

        procs.append(subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", str(PANEL_H),
             "--transparent", "true", "--alpha", "0", "--tint", "0x%02X%02X%02X" % PANEL, "--padding", "6",
             "--SetDockType", "true", "--expand", "false", "--margin", "12"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.8)
        tray = subprocess.Popen([sys.executable, __file__, "--child"], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(tray)
        if tray.stdout.readline().strip() != "ready":
            sys.exit("the tray did not start")
        time.sleep(1.0)  # embedding, first paint

        def xdotool(*args: str) -> str:
            return subprocess.run(["xdotool", *args], env=env, check=True, capture_output=True, text=True).stdout

        window = xdotool("search", "--onlyvisible", "--class", "trayer").split()[0]
        geometry = dict(line.split("=", 1) for line in xdotool("getwindowgeometry", "--shell", window).split())
        x = int(geometry["X"]) + int(geometry["WIDTH"]) // 2
        y = int(geometry["Y"]) + int(geometry["HEIGHT"]) // 2
        xdotool("mousemove", str(x), str(y))
        time.sleep(0.3)
        xdotool("click", "1")
        time.sleep(0.8)
        xdotool("key", "Down")  # Emotion (the status line is disabled)
        time.sleep(0.3)
        xdotool("key", "Right")  # its submenu
        time.sleep(0.3)
        xdotool("key", "Down")  # to Happy, the checked one
        time.sleep(0.8)

        from PIL import Image, ImageChops, ImageGrab

        shot = ImageGrab.grab(xdisplay=display).convert("RGB")
        below = shot.crop((0, PANEL_H, shot.width, shot.height))  # the menus: what differs from the desktop
        diff = ImageChops.difference(below, Image.new("RGB", below.size, BACKGROUND)).convert("L")
        box = diff.point(lambda v: 255 if v > 8 else 0).getbbox()
        if box is None:
            sys.exit("no menu on screen")
        # from the menus' left to the screen's right edge (the panel's corner), panel to menus' bottom
        box = (max(0, box[0] - PAD), 0, shot.width, min(shot.height, PANEL_H + box[3] + PAD))
        crop = shot.crop(box)
        out.parent.mkdir(parents=True, exist_ok=True)
        crop.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
        print(f"{out}: {crop.width}x{crop.height}, {out.stat().st_size // 1024} KB")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "tray.png")
