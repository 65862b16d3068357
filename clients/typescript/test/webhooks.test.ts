import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  InvalidKeyError,
  MalformedHeadersError,
  SignatureMismatchError,
  TimestampInFutureError,
  TimestampTooOldError,
  WebhookVerificationError,
  sign,
  signEd25519,
  verify,
  type WebhookErrorCode,
  type WebhookHeaders,
} from "../src/webhooks.js";

interface Vector {
  name: string;
  secrets: string[];
  signing_keys: string[];
  msg_id: string;
  timestamp: number;
  body: string;
  signature: string;
  now: number;
  tolerance_seconds: number;
  valid: boolean;
  error: WebhookErrorCode | null;
}

// Compiled to dist-test/test/, three levels below clients/.
const vectors = (
  JSON.parse(readFileSync(new URL("../../../testdata/webhooks.json", import.meta.url), "utf8")) as {
    vectors: Vector[];
  }
).vectors;

const errorClasses: Record<WebhookErrorCode, new (...args: never[]) => WebhookVerificationError> = {
  signature_mismatch: SignatureMismatchError,
  timestamp_too_old: TimestampTooOldError,
  timestamp_in_future: TimestampInFutureError,
  malformed: MalformedHeadersError,
};

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PRIVATE_KEY = "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PUBLIC_KEY = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
const TS = 1700000000;

const at = (unix: number): Date => new Date(unix * 1000);

function deliveryHeaders(id: string, timestamp: string, signature: string): Record<string, string> {
  return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature };
}

async function rejectsWith(
  promise: Promise<unknown>,
  errorClass: new (...args: never[]) => Error,
): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof errorClass, `want ${errorClass.name}, got ${String(e)}`);
    return true;
  });
}

describe("shared vectors", () => {
  test("are loaded", () => assert.ok(vectors.length > 0));

  for (const v of vectors) {
    test(v.name, async () => {
      const record = deliveryHeaders(v.msg_id, String(v.timestamp), v.signature);
      const opts = { toleranceSeconds: v.tolerance_seconds, now: at(v.now) };
      // The same outcome whether the headers come as fetch Headers or a plain object.
      for (const headers of [record, new Headers(record)] satisfies WebhookHeaders[]) {
        const result = verify(encoderUtf8(v.body), headers, v.secrets, opts);
        if (v.valid) {
          await result;
        } else {
          const errorClass = errorClasses[v.error as WebhookErrorCode];
          await assert.rejects(result, (e: unknown) => {
            assert.ok(e instanceof errorClass, `want ${errorClass.name}, got ${String(e)}`);
            assert.equal((e as WebhookVerificationError).code, v.error);
            return true;
          });
        }
      }
    });
  }
});

function encoderUtf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

// Signing is deterministic, so each key of a valid vector must reproduce one
// of the header's entries exactly.
describe("sign reproduces the vectors", () => {
  for (const v of vectors.filter((v) => v.valid)) {
    test(v.name, async () => {
      const entries = v.signature.split(" ");
      for (const key of v.signing_keys) {
        const signer = key.startsWith("whsk_") ? signEd25519 : sign;
        const got = await signer(key, v.msg_id, v.timestamp, v.body);
        assert.ok(entries.includes(got), `${got} not in ${v.signature}`);
      }
    });
  }
});

test("Standard Webhooks example", async () => {
  const body = '{"test": 2432232314}';
  const sig = await sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
  assert.equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  assert.equal(await sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", at(1614265330), encoderUtf8(body)), sig);
});

test("sign and verify with the real clock", async () => {
  const now = new Date();
  const body = '{"hello":"world"}';
  const header = [await sign(SECRET, "msg_1", now, body), await signEd25519(PRIVATE_KEY, "msg_1", now, body)];
  const headers = deliveryHeaders("msg_1", String(Math.floor(now.getTime() / 1000)), header.join(" "));
  await verify(body, headers, SECRET);
  await verify(body, headers, [PUBLIC_KEY]);
  await verify(encoderUtf8(body), new Headers(headers), [SECRET, PUBLIC_KEY]);
});

describe("headers", () => {
  test("names are case-insensitive in plain objects", async () => {
    const sig = await sign(SECRET, "msg_1", TS, "{}");
    const headers = { "Webhook-Id": "msg_1", "WEBHOOK-TIMESTAMP": [String(TS)], "webhook-Signature": sig };
    await verify("{}", headers, SECRET, { now: at(TS) });
  });

  test("a timestamp with leading zeros is signed in canonical form", async () => {
    const sig = await sign(SECRET, "msg_1", TS, "{}");
    await verify("{}", deliveryHeaders("msg_1", `000${TS}`, sig), SECRET, { now: at(TS) });
  });

  const malformed: Record<string, Record<string, string>> = {
    "missing id": { "webhook-timestamp": String(TS), "webhook-signature": "v1,AAAA" },
    "missing timestamp": { "webhook-id": "msg_1", "webhook-signature": "v1,AAAA" },
    "missing signature": { "webhook-id": "msg_1", "webhook-timestamp": String(TS) },
    "fractional timestamp": deliveryHeaders("msg_1", `${TS}.0`, "v1,AAAA"),
    "signed timestamp": deliveryHeaders("msg_1", `+${TS}`, "v1,AAAA"),
    "spaced timestamp": deliveryHeaders("msg_1", ` ${TS}`, "v1,AAAA"),
    "exponent timestamp": deliveryHeaders("msg_1", "17e8", "v1,AAAA"),
    "hex timestamp": deliveryHeaders("msg_1", "0x6553f100", "v1,AAAA"),
    "timestamp past int64": deliveryHeaders("msg_1", "9223372036854775808", "v1,AAAA"),
    "newline in signature": deliveryHeaders("msg_1", String(TS), "v1,AAAA\n"),
  };
  for (const [name, headers] of Object.entries(malformed)) {
    test(`malformed: ${name}`, () => rejectsWith(verify("{}", headers, SECRET, { now: at(TS) }), MalformedHeadersError));
  }

  test("the largest int64 timestamp is in the future", () =>
    rejectsWith(
      verify("{}", deliveryHeaders("msg_1", "9223372036854775807", "v1,AAAA"), SECRET, { now: at(TS) }),
      TimestampInFutureError,
    ));
});

test("tolerance", async () => {
  const headers = deliveryHeaders("msg_1", String(TS), await sign(SECRET, "msg_1", TS, ""));
  await rejectsWith(verify("", headers, SECRET, { now: at(TS + 301) }), TimestampTooOldError);
  await verify("", headers, SECRET, { now: at(TS + 3600), toleranceSeconds: 3600 });
  await verify("", headers, SECRET, { now: at(TS), toleranceSeconds: -3600 });
  await verify("", headers, SECRET, { now: at(TS + 1), toleranceSeconds: 1.5 });
  await rejectsWith(verify("", headers, SECRET, { now: at(TS + 2), toleranceSeconds: 1.5 }), TimestampTooOldError);
  // A fraction of a second on the clock does not count.
  await verify("", headers, SECRET, { now: new Date((TS + 300) * 1000 + 999) });
  await rejectsWith(verify("", headers, SECRET, { toleranceSeconds: Number.NaN }), TypeError);
  await rejectsWith(verify("", headers, SECRET, { now: new Date(Number.NaN) }), TypeError);
});

test("error classes", () => {
  for (const [code, errorClass] of Object.entries(errorClasses)) {
    const e = new (errorClass as unknown as new () => WebhookVerificationError)();
    assert.ok(e instanceof WebhookVerificationError && e instanceof Error);
    assert.equal(e.code, code);
    assert.equal(e.name, errorClass.name);
  }
});

describe("unusable keys", () => {
  const bad = {
    empty: "",
    "prefix only": "whsec_",
    "not base64": "whsec_not-base64!",
    unpadded: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
    "newline inside": "whsec_MfKQ9r8GKYqrTwjU\nPD8ILPZIo2LaLaSw",
    "plain text secret": "my webhook secret",
    "private key": PRIVATE_KEY,
    "short public key": "whpk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
    "public key not base64": "whpk_??",
  };
  for (const [name, key] of Object.entries(bad)) {
    test(name, async () => {
      const headers = deliveryHeaders("msg_1", String(TS), await sign(SECRET, "msg_1", TS, ""));
      await assert.rejects(verify("", headers, [SECRET, key], { now: at(TS) }), (e: unknown) => {
        assert.ok(e instanceof InvalidKeyError, String(e));
        if (key.length > "whsec_".length) assert.ok(!e.message.includes(key), "error reveals the key");
        return true;
      });
    });
  }
  test("no keys", () => rejectsWith(verify("", {}, []), InvalidKeyError));
});

describe("sign rejects bad input", () => {
  const cases: Record<string, () => Promise<string>> = {
    "sign with private key": () => sign(PRIVATE_KEY, "m", TS, ""),
    "sign with public key": () => sign(PUBLIC_KEY, "m", TS, ""),
    "signEd25519 with HMAC secret": () => signEd25519(SECRET, "m", TS, ""),
    "signEd25519 with public key": () => signEd25519(PUBLIC_KEY, "m", TS, ""),
    "empty id": () => sign(SECRET, "", TS, ""),
    "before 1970": () => sign(SECRET, "m", -1, ""),
    "fractional seconds": () => sign(SECRET, "m", 1.5, ""),
    "milliseconds past the safe range": () => sign(SECRET, "m", 2 ** 60, ""),
    "invalid Date": () => sign(SECRET, "m", new Date(Number.NaN), ""),
  };
  for (const [name, call] of Object.entries(cases)) {
    test(name, () => assert.rejects(call()));
  }
});
