"""The visible "AI" badge as the settings ask for it (the drawing is ``vcam.runtime.badge``)."""

from __future__ import annotations

from vcam.runtime.badge import Badge


def make_badge(settings) -> Badge | None:
    """The badge for ``settings.provenance`` (``vcam.app.settings.Settings``), or ``None`` when off."""
    prov = settings.provenance
    return Badge.make(prov.badge_corner) if prov.badge else None
