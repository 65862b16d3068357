# Run from the repository root:
#   pip install -e clients/python[test]
#   pytest clients/python
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Type

import pytest

from loft import webhooks
from loft.webhooks import (
    MalformedHeaders,
    SignatureMismatch,
    TimestampInFuture,
    TimestampTooOld,
    WebhookVerificationError,
    sign,
    sign_ed25519,
    verify,
)

VECTORS_PATH = Path(__file__).resolve().parents[2] / "testdata" / "webhooks.json"
VECTORS: List[Dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]

ERRORS: Dict[str, Type[WebhookVerificationError]] = {
    "signature_mismatch": SignatureMismatch,
    "timestamp_too_old": TimestampTooOld,
    "timestamp_in_future": TimestampInFuture,
    "malformed": MalformedHeaders,
}

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PRIVATE_KEY = "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PUBLIC_KEY = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
TS = 1700000000


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=timezone.utc)


def delivery_headers(msg_id: str, timestamp: str, signature: str) -> Dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}


def test_vectors_loaded() -> None:
    assert len(VECTORS) > 0


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: Dict[str, Any]) -> None:
    headers = delivery_headers(vector["msg_id"], str(vector["timestamp"]), vector["signature"])
    kwargs = dict(
        keys=vector["secrets"],
        tolerance=timedelta(seconds=vector["tolerance_seconds"]),
        now=at(vector["now"]),
    )
    body = vector["body"].encode("utf-8")
    if vector["valid"]:
        verify(body, headers, **kwargs)
    else:
        with pytest.raises(ERRORS[vector["error"]]) as info:
            verify(body, headers, **kwargs)
        assert info.value.code == vector["error"]


# Signing is deterministic, so each key of a valid vector must reproduce one of
# the header's entries exactly.
@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["valid"]], ids=[v["name"] for v in VECTORS if v["valid"]]
)
def test_sign_reproduces_vector(vector: Dict[str, Any]) -> None:
    entries = vector["signature"].split()
    for key in vector["signing_keys"]:
        signer = sign_ed25519 if key.startswith("whsk_") else sign
        assert signer(key, vector["msg_id"], vector["timestamp"], vector["body"].encode()) in entries


def test_standard_webhooks_example() -> None:
    body = b'{"test": 2432232314}'
    signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    # A datetime and a str body sign the same as unix seconds and bytes.
    assert sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", at(1614265330), body.decode()) == signature


def test_sign_and_verify_with_real_clock() -> None:
    now = datetime.now(timezone.utc)
    body = b'{"hello":"world"}'
    header = " ".join([sign(SECRET, "msg_1", now, body), sign_ed25519(PRIVATE_KEY, "msg_1", now, body)])
    headers = delivery_headers("msg_1", str(int(now.timestamp())), header)
    verify(body, headers, SECRET)
    verify(body, headers, PUBLIC_KEY)
    verify(bytearray(body), headers, [PUBLIC_KEY])


def test_header_names_are_case_insensitive() -> None:
    signature = sign(SECRET, "msg_1", TS, b"{}")
    headers = {"Webhook-Id": "msg_1", "WEBHOOK-TIMESTAMP": str(TS), "webhook-Signature": signature}
    verify(b"{}", headers, SECRET, now=at(TS))


def test_timestamp_with_leading_zeros_is_signed_in_canonical_form() -> None:
    signature = sign(SECRET, "msg_1", TS, b"{}")
    verify(b"{}", delivery_headers("msg_1", f"000{TS}", signature), SECRET, now=at(TS))


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-timestamp": str(TS), "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": str(TS)},
        delivery_headers("msg_1", f"{TS}.0", "v1,AAAA"),
        delivery_headers("msg_1", f"+{TS}", "v1,AAAA"),
        delivery_headers("msg_1", f" {TS}", "v1,AAAA"),
        delivery_headers("msg_1", f"{TS}\n", "v1,AAAA"),
        delivery_headers("msg_1", "1_700_000_000", "v1,AAAA"),
        delivery_headers("msg_1", "١٧٠٠٠٠٠٠٠٠", "v1,AAAA"),  # Arabic-Indic digits
        delivery_headers("msg_1", "9223372036854775808", "v1,AAAA"),
        delivery_headers("msg_1", str(TS), "v1,AAAA\n"),
    ],
)
def test_malformed_headers(headers: Dict[str, str]) -> None:
    with pytest.raises(MalformedHeaders):
        verify(b"{}", headers, SECRET, now=at(TS))


def test_largest_timestamp_is_in_future() -> None:
    with pytest.raises(TimestampInFuture):
        verify(b"{}", delivery_headers("msg_1", str(2**63 - 1), "v1,AAAA"), SECRET, now=at(TS))


def test_tolerance() -> None:
    signature = sign(SECRET, "msg_1", TS, b"")
    headers = delivery_headers("msg_1", str(TS), signature)
    with pytest.raises(TimestampTooOld):
        verify(b"", headers, SECRET, now=at(TS + 301))
    verify(b"", headers, SECRET, now=at(TS + 3600), tolerance=timedelta(hours=1))
    verify(b"", headers, SECRET, now=at(TS), tolerance=timedelta(hours=-1))
    verify(b"", headers, SECRET, now=at(TS + 1), tolerance=timedelta(seconds=1.5))
    with pytest.raises(TimestampTooOld):
        verify(b"", headers, SECRET, now=at(TS + 2), tolerance=timedelta(seconds=1.5))
    # A fraction of a second on the clock does not count.
    verify(b"", headers, SECRET, now=at(TS + 300) + timedelta(milliseconds=999))


def test_errors_share_a_base_class() -> None:
    for error in ERRORS.values():
        assert issubclass(error, WebhookVerificationError)
        assert issubclass(error, Exception)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "whsec_",
        "whsec_not-base64!",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
        "whsec_MfKQ9r8GKYqrTwjU\nPD8ILPZIo2LaLaSw",
        "my webhook secret",
        PRIVATE_KEY,
        "whpk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
        "whpk_??",
    ],
)
def test_unusable_keys_raise_value_error(key: str) -> None:
    headers = delivery_headers("msg_1", str(TS), sign(SECRET, "msg_1", TS, b""))
    with pytest.raises(ValueError) as info:
        verify(b"", headers, [SECRET, key], now=at(TS))
    if len(key) > len("whsec_"):
        assert key not in str(info.value)


def test_no_keys() -> None:
    with pytest.raises(ValueError):
        verify(b"", delivery_headers("msg_1", str(TS), "v1,AAAA"), [])


@pytest.mark.parametrize(
    "call",
    [
        lambda: sign(PRIVATE_KEY, "m", TS, b""),
        lambda: sign(PUBLIC_KEY, "m", TS, b""),
        lambda: sign_ed25519(SECRET, "m", TS, b""),
        lambda: sign_ed25519(PUBLIC_KEY, "m", TS, b""),
        lambda: sign(SECRET, "", TS, b""),
        lambda: sign(SECRET, "m", -1, b""),
        lambda: sign(SECRET, "m", datetime(2024, 1, 1), b""),  # naive
        lambda: sign(SECRET, "m", True, b""),
        lambda: sign(SECRET, "m", 1.5, b""),  # type: ignore[arg-type]
    ],
)
def test_sign_rejects_bad_input(call: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        call()


def test_public_names() -> None:
    for name in webhooks.__all__:
        assert hasattr(webhooks, name)
