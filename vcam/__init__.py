"""vcam: a real-time talking portrait that shows up as a webcam (the app: CLI, daemon, sinks)."""

__version__ = "0.2.0"
