"""Provenance: vcam's frames say they are synthetic.

``vcam.runtime.watermark`` marks every frame on the real-time path; here are the parts that read
and state it: the detector (:mod:`.detect`), reading pictures and videos (:mod:`.media`),
``vcam verify`` (:mod:`.verify`), the visible badge (:mod:`.badge`) and Content Credentials
(:mod:`.credentials`).
"""
