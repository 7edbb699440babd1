"""Typed errors. Every message names what was expected and what came."""

from __future__ import annotations


class VcamError(Exception):
    """Base of every error vcam reports to a user as one line."""


class ConfigError(VcamError):
    """A configuration key is missing, unknown or has a bad value; the message names the key."""


class InputError(VcamError):
    """A user-supplied file is missing, unreadable or unusable; the message names the file."""


class GraphError(VcamError):
    """An ONNX graph is missing, does not match its manifest, or failed to run."""


class DeviceError(VcamError):
    """An audio device, camera or execution provider could not be opened or was lost."""
