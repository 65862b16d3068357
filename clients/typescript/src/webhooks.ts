/**
 * Sign and verify Loft's webhook deliveries, per Standard Webhooks
 * (https://www.standardwebhooks.com).
 *
 * A delivery carries three headers: `webhook-id` (the event id, stable across
 * retries), `webhook-timestamp` (unix seconds of the attempt) and
 * `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` and
 * `v1a,<base64 Ed25519>` signatures of `"{id}.{timestamp}.{body}"`. A message
 * is authentic when any of its signatures matches any of the keys.
 *
 * Keys are strings:
 * - `whsec_<base64>`: an HMAC secret (signs and verifies v1); the key is the
 *   decoded bytes. The same base64 without the prefix is accepted too.
 * - `whsk_<base64>`: an Ed25519 private key, the 32-byte seed (signs v1a).
 * - `whpk_<base64>`: an Ed25519 public key, 32 bytes (verifies v1a).
 *
 * Only WebCrypto (`crypto.subtle`) is used, so this runs in browsers and in
 * Node.js 20 or later. The rules are pinned by the shared test vectors in
 * `clients/testdata`, which every Loft client and the server pass byte for byte.
 *
 * @module
 */

export const HEADER_ID = "webhook-id";
export const HEADER_TIMESTAMP = "webhook-timestamp";
export const HEADER_SIGNATURE = "webhook-signature";
/** Set by Loft on deliveries; not covered by the signature. */
export const HEADER_EVENT_TYPE = "x-loft-event-type";

export const DEFAULT_TOLERANCE_SECONDS = 300;

export type WebhookBody = Uint8Array | string;

/** A fetch `Headers`, or a plain object such as Node's `IncomingHttpHeaders`. */
export type WebhookHeaders = Headers | Record<string, string | readonly string[] | undefined>;

export interface VerifyOptions {
  /** How far the timestamp may lie from now, either way (default 300; negative counts as 0). */
  toleranceSeconds?: number;
  /** The clock to compare the timestamp with (default: the current time). */
  now?: Date;
}

export type WebhookErrorCode =
  | "signature_mismatch"
  | "timestamp_too_old"
  | "timestamp_in_future"
  | "malformed";

/** A delivery failed verification; `code` names the reason. */
export class WebhookVerificationError extends Error {
  readonly code: WebhookErrorCode;

  constructor(code: WebhookErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** No signature in the header matches any of the keys. */
export class SignatureMismatchError extends WebhookVerificationError {
  constructor(message = "no signature matches") {
    super("signature_mismatch", message);
  }
}

/** The timestamp lies further in the past than the tolerance. */
export class TimestampTooOldError extends WebhookVerificationError {
  constructor(message = "timestamp too old") {
    super("timestamp_too_old", message);
  }
}

/** The timestamp lies further in the future than the tolerance. */
export class TimestampInFutureError extends WebhookVerificationError {
  constructor(message = "timestamp in the future") {
    super("timestamp_in_future", message);
  }
}

/** A signature header is missing or cannot be parsed. */
export class MalformedHeadersError extends WebhookVerificationError {
  constructor(message: string) {
    super("malformed", message);
  }
}

/** A key or secret cannot be used: a configuration error, never the fault of a request. */
export class InvalidKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

const SECRET_PREFIX = "whsec_";
const PRIVATE_KEY_PREFIX = "whsk_";
const PUBLIC_KEY_PREFIX = "whpk_";
const INT64_MAX = 9223372036854775807n;
// Padded standard base64 only: atob alone also takes unpadded input and
// whitespace, which other implementations reject.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DIGITS = /^[0-9]+$/;
// PKCS #8 wrapping of a raw Ed25519 seed (RFC 8410), the one private-key form
// WebCrypto imports without the public key alongside.
const PKCS8_ED25519_PREFIX = [
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const encoder = new TextEncoder();

function decodeBase64(value: string): Uint8Array | undefined {
  if (value === "" || !BASE64.test(value)) return undefined;
  const binary = atob(value);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function hmacKey(secret: string): Uint8Array {
  if (secret.startsWith(PRIVATE_KEY_PREFIX) || secret.startsWith(PUBLIC_KEY_PREFIX)) {
    throw new InvalidKeyError("an Ed25519 key is not an HMAC secret");
  }
  const key = decodeBase64(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret);
  if (key === undefined) {
    throw new InvalidKeyError("an HMAC secret must be whsec_ followed by standard base64");
  }
  return key;
}

function bodyBytes(body: WebhookBody): Uint8Array {
  return typeof body === "string" ? encoder.encode(body) : body;
}

function content(msgId: string, timestamp: string, body: Uint8Array): Uint8Array {
  const prefix = encoder.encode(`${msgId}.${timestamp}.`);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix);
  out.set(body, prefix.length);
  return out;
}

function signingInput(msgId: string, timestamp: number | Date, body: WebhookBody): Uint8Array {
  if (msgId === "") throw new TypeError("empty message id");
  let seconds: number;
  if (timestamp instanceof Date) {
    seconds = Math.floor(timestamp.getTime() / 1000);
    if (Number.isNaN(seconds)) throw new TypeError("invalid Date");
  } else {
    if (!Number.isSafeInteger(timestamp)) throw new TypeError("timestamp must be whole unix seconds");
    seconds = timestamp;
  }
  if (seconds < 0) throw new RangeError("timestamp before 1970");
  return content(msgId, String(seconds), bodyBytes(body));
}

async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, data));
}

/**
 * Returns the `v1,<base64>` HMAC-SHA256 signature of a message, as it goes in
 * the `webhook-signature` header. `timestamp` is unix seconds or a Date; the
 * `webhook-timestamp` header must carry the same whole second. To sign with
 * several secrets (rotation), join the results with a space.
 */
export async function sign(
  secret: string,
  msgId: string,
  timestamp: number | Date,
  body: WebhookBody,
): Promise<string> {
  const key = hmacKey(secret);
  return "v1," + encodeBase64(await hmacSha256(key, signingInput(msgId, timestamp, body)));
}

/** Returns the `v1a,<base64>` Ed25519 signature of a message made with a `whsk_` private key. */
export async function signEd25519(
  privateKey: string,
  msgId: string,
  timestamp: number | Date,
  body: WebhookBody,
): Promise<string> {
  const seed = privateKey.startsWith(PRIVATE_KEY_PREFIX)
    ? decodeBase64(privateKey.slice(PRIVATE_KEY_PREFIX.length))
    : undefined;
  if (seed === undefined || seed.length !== 32) {
    throw new InvalidKeyError("an Ed25519 private key is whsk_ followed by the base64 of a 32-byte seed");
  }
  const input = signingInput(msgId, timestamp, body);
  const pkcs8 = new Uint8Array([...PKCS8_ED25519_PREFIX, ...seed]);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  return "v1a," + encodeBase64(new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, input)));
}

interface ParsedKeys {
  hmacKeys: Uint8Array[];
  publicKeys: Uint8Array[];
}

function parseKeys(keys: string | readonly string[]): ParsedKeys {
  const list = typeof keys === "string" ? [keys] : keys;
  if (list.length === 0) throw new InvalidKeyError("no keys given");
  const parsed: ParsedKeys = { hmacKeys: [], publicKeys: [] };
  list.forEach((key, index) => {
    if (key.startsWith(PUBLIC_KEY_PREFIX)) {
      const raw = decodeBase64(key.slice(PUBLIC_KEY_PREFIX.length));
      if (raw === undefined || raw.length !== 32) {
        throw new InvalidKeyError(`key ${index}: an Ed25519 public key is whpk_ followed by the base64 of 32 bytes`);
      }
      parsed.publicKeys.push(raw);
    } else if (key.startsWith(PRIVATE_KEY_PREFIX)) {
      throw new InvalidKeyError(`key ${index}: whsk_ is a private signing key; verify with its whpk_ public key`);
    } else {
      try {
        parsed.hmacKeys.push(hmacKey(key));
      } catch (e) {
        throw new InvalidKeyError(`key ${index}: ${(e as Error).message}`);
      }
    }
  });
  return parsed;
}

function header(headers: WebhookHeaders, name: string): string {
  if (typeof headers.get === "function") return (headers as Headers).get(name) ?? "";
  const record = headers as Record<string, string | readonly string[] | undefined>;
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() !== name) continue;
    const value = record[key];
    return (typeof value === "string" ? value : value?.[0]) ?? "";
  }
  return "";
}

interface Signature {
  version: string;
  sig: Uint8Array;
}

function parseSignatures(value: string): Signature[] {
  const entries = value.split(" ").filter((e) => e !== "");
  if (entries.length === 0) throw new MalformedHeadersError(`empty ${HEADER_SIGNATURE} header`);
  const signatures: Signature[] = [];
  for (const entry of entries) {
    const comma = entry.indexOf(",");
    const version = comma < 0 ? "" : entry.slice(0, comma);
    const payload = comma < 0 ? "" : entry.slice(comma + 1);
    if (version === "" || payload === "") {
      throw new MalformedHeadersError(`${HEADER_SIGNATURE} entry is not version,signature`);
    }
    // Entries of other versions are skipped unread: a future sender may add
    // them beside v1.
    if (version !== "v1" && version !== "v1a") continue;
    const sig = decodeBase64(payload);
    if (sig === undefined) throw new MalformedHeadersError(`${version} signature is not base64`);
    signatures.push({ version, sig });
  }
  return signatures;
}

/** Compares every byte, without an early exit, so timing reveals nothing of `a`. */
function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/**
 * Verifies a delivery's signature headers against its raw body.
 *
 * `keys` holds `whsec_` HMAC secrets (or their unprefixed base64) and `whpk_`
 * Ed25519 public keys; one matching signature is enough. Header names are
 * matched case-insensitively. Resolves when the delivery is authentic; rejects
 * with a {@link MalformedHeadersError}, {@link TimestampTooOldError},
 * {@link TimestampInFutureError} or {@link SignatureMismatchError} (in that
 * order of checking), all {@link WebhookVerificationError}s, or with an
 * {@link InvalidKeyError} for a key that cannot be used.
 */
export async function verify(
  body: WebhookBody,
  headers: WebhookHeaders,
  keys: string | readonly string[],
  opts: VerifyOptions = {},
): Promise<void> {
  const { hmacKeys, publicKeys } = parseKeys(keys);
  const toleranceSeconds = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!Number.isFinite(toleranceSeconds)) throw new TypeError("toleranceSeconds must be a finite number");
  const nowMs = (opts.now ?? new Date()).getTime();
  if (Number.isNaN(nowMs)) throw new TypeError("invalid Date in now");

  const msgId = header(headers, HEADER_ID);
  const rawTimestamp = header(headers, HEADER_TIMESTAMP);
  const rawSignatures = header(headers, HEADER_SIGNATURE);
  for (const [name, value] of [
    [HEADER_ID, msgId],
    [HEADER_TIMESTAMP, rawTimestamp],
    [HEADER_SIGNATURE, rawSignatures],
  ] as const) {
    if (value === "") throw new MalformedHeadersError(`missing ${name} header`);
  }
  if (!DIGITS.test(rawTimestamp) || BigInt(rawTimestamp) > INT64_MAX) {
    throw new MalformedHeadersError(`${HEADER_TIMESTAMP} is not unix seconds`);
  }
  const canonicalTimestamp = BigInt(rawTimestamp).toString();
  // Past 2^53 this loses precision, but such a timestamp is far outside any
  // tolerance either way.
  const timestamp = Number(canonicalTimestamp);
  const signatures = parseSignatures(rawSignatures);

  const now = Math.max(Math.floor(nowMs / 1000), 0);
  const tolerance = Math.max(toleranceSeconds, 0);
  if (now - timestamp > tolerance) throw new TimestampTooOldError();
  if (timestamp - now > tolerance) throw new TimestampInFutureError();

  const signed = content(msgId, canonicalTimestamp, bodyBytes(body));
  for (const key of hmacKeys) {
    const expected = await hmacSha256(key, signed);
    for (const { version, sig } of signatures) {
      if (version === "v1" && timingSafeEqual(expected, sig)) return;
    }
  }
  for (const raw of publicKeys) {
    const key = await crypto.subtle
      .importKey("raw", raw, { name: "Ed25519" }, false, ["verify"])
      .catch(() => {
        throw new InvalidKeyError("an Ed25519 public key is not a valid curve point");
      });
    for (const { version, sig } of signatures) {
      if (version !== "v1a" || sig.length !== 64) continue;
      if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig, signed)) return;
    }
  }
  throw new SignatureMismatchError();
}
