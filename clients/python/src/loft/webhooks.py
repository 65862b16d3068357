"""Sign and verify Loft's webhook deliveries, per Standard Webhooks.

A delivery carries three headers: ``webhook-id`` (the event id, stable across
retries), ``webhook-timestamp`` (unix seconds of the attempt) and
``webhook-signature``, a space-separated list of ``v1,<base64 HMAC-SHA256>``
and ``v1a,<base64 Ed25519>`` signatures of ``"{id}.{timestamp}.{body}"``. A
message is authentic when any of its signatures matches any of the keys.

Keys are strings:

- ``whsec_<base64>``: an HMAC secret (signs and verifies v1); the key is the
  decoded bytes. The same base64 without the prefix is accepted too.
- ``whsk_<base64>``: an Ed25519 private key, the 32-byte seed (signs v1a).
- ``whpk_<base64>``: an Ed25519 public key, 32 bytes (verifies v1a).

The rules are pinned by the shared test vectors in ``clients/testdata``, which
every Loft client and the server pass byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timedelta, timezone
from typing import ClassVar, List, Mapping, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MalformedHeaders",
    "SignatureMismatch",
    "TimestampInFuture",
    "TimestampTooOld",
    "WebhookVerificationError",
    "sign",
    "sign_ed25519",
    "verify",
]

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

DEFAULT_TOLERANCE = timedelta(minutes=5)

Body = Union[bytes, bytearray, memoryview, str]
Timestamp = Union[int, datetime]

_SECRET_PREFIX = "whsec_"
_PRIVATE_KEY_PREFIX = "whsk_"
_PUBLIC_KEY_PREFIX = "whpk_"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INT64_MAX = 2**63 - 1
# Padded standard base64 only: base64.b64decode alone would also take input
# that other implementations reject.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_DIGITS = re.compile(r"[0-9]+")


class WebhookVerificationError(Exception):
    """A delivery failed verification; ``code`` names the reason."""

    code: ClassVar[str] = "verification_failed"


class SignatureMismatch(WebhookVerificationError):
    """No signature in the header matches any of the keys."""

    code = "signature_mismatch"


class TimestampTooOld(WebhookVerificationError):
    """The timestamp lies further in the past than the tolerance."""

    code = "timestamp_too_old"


class TimestampInFuture(WebhookVerificationError):
    """The timestamp lies further in the future than the tolerance."""

    code = "timestamp_in_future"


class MalformedHeaders(WebhookVerificationError):
    """A signature header is missing or cannot be parsed."""

    code = "malformed"


def _b64decode(value: str) -> Optional[bytes]:
    if not value or _BASE64.fullmatch(value) is None:
        return None
    return base64.b64decode(value)


def _hmac_key(secret: str) -> bytes:
    if secret.startswith((_PRIVATE_KEY_PREFIX, _PUBLIC_KEY_PREFIX)):
        raise ValueError("an Ed25519 key is not an HMAC secret")
    if secret.startswith(_SECRET_PREFIX):
        secret = secret[len(_SECRET_PREFIX) :]
    key = _b64decode(secret)
    if key is None:
        raise ValueError("an HMAC secret must be whsec_ followed by standard base64")
    return key


def _body_bytes(body: Body) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _unix_seconds(value: Timestamp) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware datetime")
        return (value - _EPOCH) // timedelta(seconds=1)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("timestamp must be unix seconds (int) or an aware datetime")
    return value


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode("utf-8") + body


def _signing_input(msg_id: str, timestamp: Timestamp, body: Body) -> bytes:
    if not msg_id:
        raise ValueError("empty message id")
    seconds = _unix_seconds(timestamp)
    if seconds < 0:
        raise ValueError("timestamp before 1970")
    return _content(msg_id, seconds, _body_bytes(body))


def sign(secret: str, msg_id: str, timestamp: Timestamp, body: Body) -> str:
    """Return the ``v1,<base64>`` HMAC-SHA256 signature of a message.

    ``timestamp`` is unix seconds or an aware datetime; the
    ``webhook-timestamp`` header must carry the same whole second. To sign
    with several secrets (rotation), join the results with a space.
    """
    key = _hmac_key(secret)
    digest = hmac.new(key, _signing_input(msg_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_ed25519(private_key: str, msg_id: str, timestamp: Timestamp, body: Body) -> str:
    """Return the ``v1a,<base64>`` Ed25519 signature of a message made with a
    ``whsk_`` private key."""
    seed = None
    if private_key.startswith(_PRIVATE_KEY_PREFIX):
        seed = _b64decode(private_key[len(_PRIVATE_KEY_PREFIX) :])
    if seed is None or len(seed) != 32:
        raise ValueError("an Ed25519 private key is whsk_ followed by the base64 of a 32-byte seed")
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signature = key.sign(_signing_input(msg_id, timestamp, body))
    return "v1a," + base64.b64encode(signature).decode("ascii")


def _parse_keys(keys: Union[str, Sequence[str]]) -> Tuple[List[bytes], List[Ed25519PublicKey]]:
    if isinstance(keys, str):
        keys = [keys]
    if not keys:
        raise ValueError("no keys given")
    hmac_keys: List[bytes] = []
    public_keys: List[Ed25519PublicKey] = []
    for index, key in enumerate(keys):
        if key.startswith(_PUBLIC_KEY_PREFIX):
            raw = _b64decode(key[len(_PUBLIC_KEY_PREFIX) :])
            if raw is None or len(raw) != 32:
                raise ValueError(
                    f"key {index}: an Ed25519 public key is whpk_ followed by the base64 of 32 bytes"
                )
            public_keys.append(Ed25519PublicKey.from_public_bytes(raw))
        elif key.startswith(_PRIVATE_KEY_PREFIX):
            raise ValueError(
                f"key {index}: whsk_ is a private signing key; verify with its whpk_ public key"
            )
        else:
            try:
                hmac_keys.append(_hmac_key(key))
            except ValueError as e:
                raise ValueError(f"key {index}: {e}") from None
    return hmac_keys, public_keys


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def _parse_signatures(header: str) -> List[Tuple[str, bytes]]:
    signatures: List[Tuple[str, bytes]] = []
    entries = [e for e in header.split(" ") if e]
    if not entries:
        raise MalformedHeaders(f"empty {HEADER_SIGNATURE} header")
    for entry in entries:
        version, comma, payload = entry.partition(",")
        if not comma or not version or not payload:
            raise MalformedHeaders(f"{HEADER_SIGNATURE} entry is not version,signature")
        # Entries of other versions are skipped unread: a future sender may
        # add them beside v1.
        if version not in ("v1", "v1a"):
            continue
        signature = _b64decode(payload)
        if signature is None:
            raise MalformedHeaders(f"{version} signature is not base64")
        signatures.append((version, signature))
    return signatures


def verify(
    body: Body,
    headers: Mapping[str, str],
    keys: Union[str, Sequence[str]],
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: Optional[datetime] = None,
) -> None:
    """Verify a delivery's signature headers against its raw body.

    ``keys`` holds ``whsec_`` HMAC secrets (or their unprefixed base64) and
    ``whpk_`` Ed25519 public keys; one matching signature is enough. Header
    names are matched case-insensitively. ``now`` (an aware datetime) replaces
    the clock. Returns ``None`` on success; raises ``MalformedHeaders``,
    ``TimestampTooOld``, ``TimestampInFuture`` or ``SignatureMismatch`` (in
    that order of checking), all ``WebhookVerificationError``. A key that cannot
    be used raises ``ValueError``.
    """
    hmac_keys, public_keys = _parse_keys(keys)

    msg_id = _header(headers, HEADER_ID)
    raw_timestamp = _header(headers, HEADER_TIMESTAMP)
    raw_signatures = _header(headers, HEADER_SIGNATURE)
    for name, value in (
        (HEADER_ID, msg_id),
        (HEADER_TIMESTAMP, raw_timestamp),
        (HEADER_SIGNATURE, raw_signatures),
    ):
        if not value:
            raise MalformedHeaders(f"missing {name} header")
    if _DIGITS.fullmatch(raw_timestamp) is None or int(raw_timestamp) > _INT64_MAX:
        raise MalformedHeaders(f"{HEADER_TIMESTAMP} is not unix seconds")
    timestamp = int(raw_timestamp)
    signatures = _parse_signatures(raw_signatures)

    now_seconds = max(_unix_seconds(now if now is not None else datetime.now(timezone.utc)), 0)
    tolerance_seconds = max(tolerance.total_seconds(), 0)
    if now_seconds - timestamp > tolerance_seconds:
        raise TimestampTooOld("timestamp too old")
    if timestamp - now_seconds > tolerance_seconds:
        raise TimestampInFuture("timestamp in the future")

    try:
        content = _content(msg_id, timestamp, _body_bytes(body))
    except UnicodeEncodeError:
        raise MalformedHeaders(f"{HEADER_ID} is not text") from None
    for key in hmac_keys:
        expected = hmac.new(key, content, hashlib.sha256).digest()
        for version, signature in signatures:
            if version == "v1" and hmac.compare_digest(expected, signature):
                return
    for public_key in public_keys:
        for version, signature in signatures:
            if version != "v1a" or len(signature) != 64:
                continue
            try:
                public_key.verify(signature, content)
                return
            except InvalidSignature:
                pass
    raise SignatureMismatch("no signature matches")
