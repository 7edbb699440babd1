"""vcam.app.progress: a bar on a terminal, nothing otherwise."""

from __future__ import annotations

import io

from vcam.app.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal():
    stream = io.StringIO()
    with Progress("render", stream=stream) as p:
        for i in range(10):
            p(i + 1, 10)
    assert stream.getvalue() == ""
    assert p.done == 10


def test_bar_on_a_terminal():
    stream = Tty()
    with Progress("render", stream=stream, min_interval_s=0) as p:
        p.update(0)  # total not known yet
        for i in range(50):
            p(i + 1, 50)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("render [" + "#" * 24 + "] 50/50 frames")
    assert "fps" in last and "ETA 0:00" in last


def test_redraws_are_throttled():
    stream = Tty()
    with Progress("x", stream=stream, total=1000, min_interval_s=60) as p:
        for _ in range(999):
            p.advance()
    assert stream.getvalue().count("\r") == 2  # the first update, and the final state at close


def test_close_is_idempotent_and_quiet_if_nothing_drawn():
    stream = Tty()
    p = Progress("x", stream=stream)
    p.close()
    p.close()
    assert stream.getvalue() == ""
