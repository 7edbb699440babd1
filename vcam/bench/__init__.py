"""``vcam bench``: speed, latency, lip-sync, expression and provenance figures. Imported only by
``vcam bench`` (never by the live or render path)."""
