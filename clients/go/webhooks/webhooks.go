// Package webhooks signs and verifies Loft's webhook deliveries, which follow
// the Standard Webhooks specification (https://www.standardwebhooks.com).
//
// A delivery carries three headers: webhook-id (the event id, stable across
// retries), webhook-timestamp (unix seconds of the attempt) and
// webhook-signature, a space-separated list of "v1,<base64 HMAC-SHA256>" and
// "v1a,<base64 Ed25519>" signatures of "{id}.{timestamp}.{body}". A message is
// authentic when any of its signatures matches any of the receiver's keys.
//
// Keys are strings:
//
//	whsec_<base64>   an HMAC secret (signs v1, verifies v1); the key is the decoded bytes
//	<base64>         the same secret without its prefix
//	whsk_<base64>    an Ed25519 private key, the 32-byte seed (signs v1a)
//	whpk_<base64>    an Ed25519 public key, 32 bytes (verifies v1a)
//
// The rules are pinned by the shared test vectors in clients/testdata, which
// every Loft client and the server pass byte for byte.
package webhooks

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of a signed delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	// HeaderEventType is set by Loft on deliveries; it is not signed.
	HeaderEventType = "X-Loft-Event-Type"
)

// DefaultTolerance is how far a message's timestamp may lie from the
// receiver's clock, in either direction, unless WithTolerance says otherwise.
const DefaultTolerance = 5 * time.Minute

const (
	prefixSecret     = "whsec_"
	prefixPrivateKey = "whsk_"
	prefixPublicKey  = "whpk_"
)

// Verification errors. Verify wraps them with detail; test with errors.Is.
var (
	ErrSignatureMismatch = errors.New("webhooks: no signature matches")
	ErrTimestampTooOld   = errors.New("webhooks: timestamp too old")
	ErrTimestampInFuture = errors.New("webhooks: timestamp in the future")
	ErrMalformed         = errors.New("webhooks: malformed webhook headers")
)

// ErrInvalidKey is returned for a key or secret that cannot be used; it is a
// configuration error, never the result of an incoming request.
var ErrInvalidKey = errors.New("webhooks: invalid key")

var b64 = base64.StdEncoding

// decodeBase64 accepts only padded standard base64. encoding/base64 on its own
// would also skip CR and LF, which other implementations reject.
func decodeBase64(s string) ([]byte, bool) {
	if s == "" || len(s)%4 != 0 {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		isAlpha := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
		if !isAlpha && !(c == '=' && i >= len(s)-2) {
			return nil, false
		}
	}
	out, err := b64.DecodeString(s)
	return out, err == nil
}

func parseHMACSecret(secret string) ([]byte, error) {
	switch {
	case strings.HasPrefix(secret, prefixPrivateKey), strings.HasPrefix(secret, prefixPublicKey):
		return nil, fmt.Errorf("%w: an Ed25519 key is not an HMAC secret", ErrInvalidKey)
	}
	key, ok := decodeBase64(strings.TrimPrefix(secret, prefixSecret))
	if !ok {
		return nil, fmt.Errorf("%w: an HMAC secret must be whsec_ followed by standard base64", ErrInvalidKey)
	}
	return key, nil
}

func parsePrivateKey(key string) (ed25519.PrivateKey, error) {
	if !strings.HasPrefix(key, prefixPrivateKey) {
		return nil, fmt.Errorf("%w: an Ed25519 private key starts with whsk_", ErrInvalidKey)
	}
	seed, ok := decodeBase64(strings.TrimPrefix(key, prefixPrivateKey))
	if !ok || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: an Ed25519 private key is whsk_ followed by the base64 of a 32-byte seed", ErrInvalidKey)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func signedContent(msgID string, ts int64, body []byte) []byte {
	t := strconv.FormatInt(ts, 10)
	c := make([]byte, 0, len(msgID)+len(t)+len(body)+2)
	c = append(c, msgID...)
	c = append(c, '.')
	c = append(c, t...)
	c = append(c, '.')
	return append(c, body...)
}

func signingInput(msgID string, ts time.Time, body []byte) ([]byte, error) {
	if msgID == "" {
		return nil, errors.New("webhooks: empty message id")
	}
	if ts.Unix() < 0 {
		return nil, errors.New("webhooks: timestamp before 1970")
	}
	return signedContent(msgID, ts.Unix(), body), nil
}

func hmacSum(key, content []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(content)
	return mac.Sum(nil)
}

// Sign returns the "v1,<base64>" HMAC-SHA256 signature of a message, as it
// goes in the webhook-signature header. The webhook-timestamp header must
// carry ts.Unix(). To sign with several secrets (rotation), join the results
// with a space.
func Sign(secret string, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := parseHMACSecret(secret)
	if err != nil {
		return "", err
	}
	content, err := signingInput(msgID, ts, body)
	if err != nil {
		return "", err
	}
	return "v1," + b64.EncodeToString(hmacSum(key, content)), nil
}

// SignEd25519 returns the "v1a,<base64>" Ed25519 signature of a message made
// with a whsk_ private key.
func SignEd25519(privateKey string, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := parsePrivateKey(privateKey)
	if err != nil {
		return "", err
	}
	content, err := signingInput(msgID, ts, body)
	if err != nil {
		return "", err
	}
	return "v1a," + b64.EncodeToString(ed25519.Sign(key, content)), nil
}

// A Verifier checks deliveries against a fixed set of keys. It is safe for
// concurrent use.
type Verifier struct {
	hmacKeys   [][]byte
	publicKeys []ed25519.PublicKey
	defaults   []VerifyOption
}

// NewVerifier returns a Verifier that accepts a message signed by any of the
// keys: whsec_ (or unprefixed base64) HMAC secrets and whpk_ Ed25519 public
// keys. Pass both the old and the new secret while rotating.
func NewVerifier(keys ...string) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys given", ErrInvalidKey)
	}
	v := &Verifier{}
	for i, k := range keys {
		switch {
		case strings.HasPrefix(k, prefixPublicKey):
			pub, ok := decodeBase64(strings.TrimPrefix(k, prefixPublicKey))
			if !ok || len(pub) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%w: key %d: an Ed25519 public key is whpk_ followed by the base64 of 32 bytes", ErrInvalidKey, i)
			}
			v.publicKeys = append(v.publicKeys, ed25519.PublicKey(pub))
		case strings.HasPrefix(k, prefixPrivateKey):
			return nil, fmt.Errorf("%w: key %d: whsk_ is a private signing key; verify with its whpk_ public key", ErrInvalidKey, i)
		default:
			secret, err := parseHMACSecret(k)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			v.hmacKeys = append(v.hmacKeys, secret)
		}
	}
	return v, nil
}

// With returns a copy of v whose Verify applies opts by default, for example
// to give Handler a different tolerance. Options passed to Verify still win.
func (v *Verifier) With(opts ...VerifyOption) *Verifier {
	c := *v
	c.defaults = append(append([]VerifyOption(nil), v.defaults...), opts...)
	return &c
}

// A VerifyOption changes how one verification is done.
type VerifyOption func(*verifyOptions)

type verifyOptions struct {
	tolerance time.Duration
	now       func() time.Time
}

// WithTolerance sets how far the timestamp may lie from now, in either
// direction (default DefaultTolerance; a negative value counts as zero).
func WithTolerance(d time.Duration) VerifyOption {
	return func(o *verifyOptions) { o.tolerance = d }
}

// WithNow sets the clock that timestamps are compared with (default time.Now).
func WithNow(now func() time.Time) VerifyOption {
	return func(o *verifyOptions) { o.now = now }
}

// Verify checks a delivery's signature headers against the raw request body.
// It returns nil when one of the signatures matches one of v's keys, or an
// error matching ErrMalformed, ErrTimestampTooOld, ErrTimestampInFuture or
// ErrSignatureMismatch (in that order of checking).
func (v *Verifier) Verify(body []byte, headers http.Header, opts ...VerifyOption) error {
	_, _, err := v.verify(body, headers, opts)
	return err
}

type signature struct {
	version string
	sig     []byte
}

func (v *Verifier) verify(body []byte, headers http.Header, opts []VerifyOption) (string, int64, error) {
	o := verifyOptions{tolerance: DefaultTolerance, now: time.Now}
	for _, opt := range v.defaults {
		opt(&o)
	}
	for _, opt := range opts {
		opt(&o)
	}

	msgID := headerValue(headers, HeaderID)
	rawTS := headerValue(headers, HeaderTimestamp)
	rawSigs := headerValue(headers, HeaderSignature)
	switch {
	case msgID == "":
		return "", 0, fmt.Errorf("%w: missing %s header", ErrMalformed, HeaderID)
	case rawTS == "":
		return "", 0, fmt.Errorf("%w: missing %s header", ErrMalformed, HeaderTimestamp)
	case rawSigs == "":
		return "", 0, fmt.Errorf("%w: missing %s header", ErrMalformed, HeaderSignature)
	}
	ts, ok := parseTimestamp(rawTS)
	if !ok {
		return "", 0, fmt.Errorf("%w: %s is not unix seconds", ErrMalformed, HeaderTimestamp)
	}
	sigs, err := parseSignatures(rawSigs)
	if err != nil {
		return "", 0, err
	}

	tolerance := max(o.tolerance, 0) / time.Second
	// With both now and ts non-negative int64s, neither difference overflows.
	now := max(o.now().Unix(), 0)
	if now-ts > int64(tolerance) {
		return "", 0, ErrTimestampTooOld
	}
	if ts-now > int64(tolerance) {
		return "", 0, ErrTimestampInFuture
	}

	content := signedContent(msgID, ts, body)
	for _, key := range v.hmacKeys {
		expected := hmacSum(key, content)
		for _, s := range sigs {
			if s.version == "v1" && hmac.Equal(expected, s.sig) {
				return msgID, ts, nil
			}
		}
	}
	for _, key := range v.publicKeys {
		for _, s := range sigs {
			if s.version == "v1a" && ed25519.Verify(key, content, s.sig) {
				return msgID, ts, nil
			}
		}
	}
	return "", 0, ErrSignatureMismatch
}

// headerValue looks a header up case-insensitively, also in maps built by hand
// with non-canonical keys.
func headerValue(h http.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

func parseTimestamp(s string) (int64, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	return ts, err == nil
}

// parseSignatures splits the header into "version,payload" entries. Entries
// of versions other than v1 and v1a are kept unparsed and never match.
func parseSignatures(header string) ([]signature, error) {
	var sigs []signature
	entries := 0
	for _, entry := range strings.Split(header, " ") {
		if entry == "" {
			continue
		}
		entries++
		version, payload, found := strings.Cut(entry, ",")
		if !found || version == "" || payload == "" {
			return nil, fmt.Errorf("%w: %s entry is not version,signature", ErrMalformed, HeaderSignature)
		}
		if version != "v1" && version != "v1a" {
			continue
		}
		sig, ok := decodeBase64(payload)
		if !ok {
			return nil, fmt.Errorf("%w: %s signature is not base64", ErrMalformed, version)
		}
		sigs = append(sigs, signature{version: version, sig: sig})
	}
	if entries == 0 {
		return nil, fmt.Errorf("%w: empty %s header", ErrMalformed, HeaderSignature)
	}
	return sigs, nil
}
