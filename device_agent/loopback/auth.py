"""ADB RSA authentication, the daemon's side: what the loopback phone checks (the host's keys: ``adb/keys.py``).

Daemon side (AOSP adb_auth.h / adbd_auth): send ``AUTH(TOKEN, 0, 20 random bytes)``; the
host answers ``AUTH(SIGNATURE, 0, sig)`` where ``sig`` is RSA PKCS#1 v1.5 over the token
treated as an already hashed SHA-1 digest; unknown keys end in ``AUTH(RSAPUBLICKEY, 0,
"<base64 android key> user@host\\0")``, which a phone shows to its user for approval.
The Android public key format (adb_shell auth/keygen.py, AOSP libcrypto_utils) is
``<LL256s256sL>``: modulus size in words (64), n0inv, n little-endian, rr, e.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

_ANDROID_KEY = struct.Struct("<LL256s256sL")
# DER prefix of DigestInfo for SHA-1 (RFC 8017, section 9.2 note 1).
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


@dataclass(frozen=True)
class RsaPublicKey:
    """An RSA public key as the daemon stores it (``adb_keys`` line)."""

    n: int
    e: int
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        return hashlib.md5(self.n.to_bytes(256, "big")).hexdigest()


def parse_android_pubkey(text: str | bytes) -> RsaPublicKey:
    """Parse ``"<base64> user@host"`` (as sent in AUTH RSAPUBLICKEY or stored in adb_keys)."""
    if isinstance(text, bytes):
        text = text.rstrip(b"\0").decode("ascii", "replace")
    parts = text.strip().split(None, 1)
    if not parts:
        raise ValueError("empty public key")
    raw = base64.b64decode(parts[0])
    if len(raw) != _ANDROID_KEY.size:
        raise ValueError(f"android public key has {len(raw)} bytes, expected {_ANDROID_KEY.size}")
    words, _n0inv, n_le, _rr, e = _ANDROID_KEY.unpack(raw)
    if words != 64:
        raise ValueError(f"unsupported modulus size {words * 32} bits")
    return RsaPublicKey(n=int.from_bytes(n_le, "little"), e=e, comment=parts[1] if len(parts) > 1 else "")


def verify_token_signature(key: RsaPublicKey, token: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the PKCS#1 v1.5 signature of ``token`` as a SHA-1 digest."""
    k = (key.n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    em = pow(int.from_bytes(signature, "big"), key.e, key.n).to_bytes(k, "big")
    suffix = _SHA1_DIGEST_INFO + token
    pad = k - 3 - len(suffix)
    return pad >= 8 and em == b"\x00\x01" + b"\xff" * pad + b"\x00" + suffix


def new_token() -> bytes:
    """20 random bytes for ``AUTH(TOKEN)``."""
    return os.urandom(20)
