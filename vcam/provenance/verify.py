"""``vcam verify``: was a picture or video made by vcam? The watermark, and Content Credentials.

One :class:`Verdict` per file. A file counts as made by vcam when its frames carry the
watermark, or when it holds an intact vcam C2PA manifest (the watermark survives
re-encoding, cropping and rescaling; the manifest only the untouched file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vcam.provenance.credentials import Credentials, read_credentials
from vcam.provenance.detect import Detection, detect
from vcam.provenance.media import read_luma


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``vcam verify`` found in ``path``."""

    path: Path
    kind: str                     # "image" or "video"
    frames: int                   # frames looked at
    detection: Detection
    credentials: Credentials | None

    @property
    def vcam_credentials(self) -> bool:
        """An intact manifest that vcam signed."""
        c = self.credentials
        return c is not None and c.intact and c.generator.startswith("vcam")

    @property
    def made_by_vcam(self) -> bool:
        return self.detection.found or self.vcam_credentials

    def line(self) -> str:
        """The one line ``vcam verify`` prints for this file."""
        d = self.detection
        if d.found:
            payload = str(d.payload) if d.payload else "unreadable"
            text = f"{self.path}: made by vcam (confidence {d.confidence:.2f}, payload {payload})"
        elif self.vcam_credentials:
            text = f"{self.path}: made by vcam (Content Credentials; no watermark found)"
        else:
            text = f"{self.path}: no vcam watermark found"
        c = self.credentials
        if c is not None:
            what = "AI-generated" if c.ai_generated else "no AI source type"
            state = "intact" if c.intact else f"does not match the file ({', '.join(c.failures)})"
            trust = "" if c.trusted else ", signer not on a trust list"
            text += f"; Content Credentials: {what}, by {c.generator or 'unknown'}, {state}{trust}"
        return text

    def to_json(self) -> dict:
        d = self.detection
        return {
            "file": str(self.path), "made_by_vcam": self.made_by_vcam, "kind": self.kind, "frames": self.frames,
            "watermark": {"found": d.found, "confidence": round(d.confidence, 4), "z": round(d.z, 2),
                          "scale": round(d.scale, 4),
                          "payload": None if d.payload is None else {
                              "format_version": d.payload.format_version,
                              "vcam_version": ".".join(map(str, d.payload.version))}},
            "content_credentials": None if self.credentials is None else self.credentials.to_json(),
        }


def verify_file(path: str | Path) -> Verdict:
    """Look for vcam's watermark and Content Credentials in ``path``.

    Raises ``InputError`` when the file is missing or neither a picture nor a video."""
    path = Path(path)
    image = read_luma(path)
    return Verdict(path, image.kind, image.frames, detect(image.luma), read_credentials(path))
