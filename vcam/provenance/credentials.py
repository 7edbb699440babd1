"""Content Credentials (C2PA) on rendered MP4s: a signed manifest saying "made by an AI".

Each ``vcam render`` output carries a C2PA manifest with one ``c2pa.created`` action whose
``digitalSourceType`` is IPTC's ``trainedAlgorithmicMedia``, signed with a key that vcam
makes once per user in the user's config folder (``credentials/``, folder mode 0700, key
mode 0600). C2PA refuses a certificate that signs itself, so vcam makes a private root, issues
the signing certificate from it and throws the root's key away: the pair stands for "this
user's vcam", nothing more (no name, no machine). Readers report such a manifest as valid
but not *trusted*, as they do for any signer outside their trust lists.

The manifest binds the file's bytes by hash: a re-encoded or edited copy loses it (or fails
its check), which is why every frame also carries the watermark (``vcam.runtime.watermark``).
The C2PA work itself is c2pa-python's (the CAI's Rust library).
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vcam.runtime.errors import VcamError

#: IPTC digital source type for media made by a trained model.
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
KEY_FILE = "c2pa-signer-key.pem"
CHAIN_FILE = "c2pa-signer-chain.pem"
#: Lifetime of the certificates vcam makes.
CERT_DAYS = 3650


class CredentialsError(VcamError):
    """Content Credentials could not be made, written or read."""


def credentials_dir() -> Path:
    """``<user config folder>/vcam/credentials`` (beside ``config.toml``)."""
    from vcam.app.settings import user_config_path

    return user_config_path().parent / "credentials"


def signing_identity(folder: Path | None = None) -> tuple[bytes, bytes]:
    """``(certificate chain PEM, private key PEM)``, made on first use in ``folder``
    (default :func:`credentials_dir`); the key file is mode 0600."""
    folder = Path(folder) if folder is not None else credentials_dir()
    key_path, chain_path = folder / KEY_FILE, folder / CHAIN_FILE
    if key_path.is_file() and chain_path.is_file():
        return chain_path.read_bytes(), key_path.read_bytes()
    chain, key = _make_identity()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(key_path, key)
        _write_private(chain_path, chain, mode=0o644)
    except OSError as e:
        raise CredentialsError(f"cannot store the Content Credentials key in {folder}: {e.strerror or e}; "
                               "make that folder writable (or set VCAM_CONFIG_DIR)") from None
    return chain, key


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` created with ``mode`` (never readable by others first)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _make_identity() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=CERT_DAYS)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vcam user (self-issued)")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name("vcam local root")).issuer_name(name("vcam local root"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("vcam signer")).issuer_name(root.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = cert.public_bytes(pem) + root.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return chain, key_pem


def manifest_definition(title: str) -> dict:
    """The manifest vcam signs: generator, title and the AI ``created`` action."""
    from vcam import __version__

    agent = {"name": "vcam", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [{
            "label": "c2pa.actions",
            "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": AI_SOURCE_TYPE,
                                  "softwareAgent": agent}]},
        }],
    }


def sign_mp4(src: Path, dst: Path, *, title: str, folder: Path | None = None) -> None:
    """Write ``src`` (a finished MP4) to ``dst`` with a signed vcam manifest embedded."""
    import c2pa

    chain, key = signing_identity(folder)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
        with c2pa.Builder(manifest_definition(title)) as builder, open(src, "rb") as source, \
                open(dst, "w+b") as dest:
            builder.sign(signer, "video/mp4", source, dest)
    except c2pa.C2paError as e:
        raise CredentialsError(f"could not sign {title} with Content Credentials: {e}") from None


#: The validation code of a signer outside the reader's trust lists: every vcam user's own
#: key reads so. It says who may vouch for the signer, not whether the file was changed.
UNTRUSTED = "signingCredential.untrusted"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a file's C2PA manifest says: ``state`` (c2pa's "Valid", "Trusted" or "Invalid"),
    ``ai_generated`` (a ``created`` action with the trained-model source type), ``generator``
    (the claim generator's name and version), ``trusted`` (the signer is on the reader's
    trust list), ``failures`` (other validation failure codes: a file edited after signing
    reads ``assertion.bmffHash.mismatch`` or the like)."""

    state: str
    ai_generated: bool
    generator: str
    trusted: bool
    failures: tuple[str, ...]

    @property
    def intact(self) -> bool:
        """Whether the file still matches its manifest (bytes and signature)."""
        return not self.failures

    def to_json(self) -> dict:
        return {"state": self.state, "intact": self.intact, "trusted": self.trusted,
                "ai_generated": self.ai_generated, "generator": self.generator, "failures": list(self.failures)}


def read_credentials(path: Path) -> Credentials | None:
    """The C2PA manifest of ``path``, or ``None`` when it has none (or is no C2PA format)."""
    import c2pa

    try:
        reader = c2pa.Reader(str(path))
    except c2pa.C2paError:
        return None  # no manifest, or a format C2PA does not cover
    with reader:
        store = json.loads(reader.json())
        active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
        state = str(reader.get_validation_state())
        results = reader.get_validation_results() or {}
    codes = [f.get("code", "?") for f in (results.get("activeManifest") or {}).get("failure", [])]
    failures = tuple(c for c in codes if c != UNTRUSTED)
    ai = False
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                ai |= action.get("action") == "c2pa.created" and action.get("digitalSourceType") == AI_SOURCE_TYPE
    gen = active.get("claim_generator_info") or [{}]
    generator = " ".join(str(gen[0].get(k, "")) for k in ("name", "version")).strip()
    return Credentials(state, ai, generator, UNTRUSTED not in codes, failures)


def content_credentials(out: Path):
    """The ``sign`` step for ``vcam.sinks.mp4.Mp4Sink`` writing ``out``: signs with the
    user's key, the manifest titled with ``out``'s name."""
    title = Path(out).name

    def sign(src: Path, dst: Path) -> None:
        sign_mp4(src, dst, title=title)

    return sign
