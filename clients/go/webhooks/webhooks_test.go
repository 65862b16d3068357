package webhooks

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Name             string   `json:"name"`
	Secrets          []string `json:"secrets"`
	SigningKeys      []string `json:"signing_keys"`
	MsgID            string   `json:"msg_id"`
	Timestamp        int64    `json:"timestamp"`
	Body             string   `json:"body"`
	Signature        string   `json:"signature"`
	Now              int64    `json:"now"`
	ToleranceSeconds int64    `json:"tolerance_seconds"`
	Valid            bool     `json:"valid"`
	Error            *string  `json:"error"`
}

var errorsByCode = map[string]error{
	"signature_mismatch":  ErrSignatureMismatch,
	"timestamp_too_old":   ErrTimestampTooOld,
	"timestamp_in_future": ErrTimestampInFuture,
	"malformed":           ErrMalformed,
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return file.Vectors
}

func deliveryHeaders(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, sig)
	return h
}

func at(unix int64) VerifyOption {
	return WithNow(func() time.Time { return time.Unix(unix, 0) })
}

func TestVectors(t *testing.T) {
	for _, vec := range loadVectors(t) {
		t.Run(vec.Name, func(t *testing.T) {
			v, err := NewVerifier(vec.Secrets...)
			if err != nil {
				t.Fatal(err)
			}
			h := deliveryHeaders(vec.MsgID, strconv.FormatInt(vec.Timestamp, 10), vec.Signature)
			err = v.Verify([]byte(vec.Body), h, at(vec.Now), WithTolerance(time.Duration(vec.ToleranceSeconds)*time.Second))
			if vec.Valid {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			want, ok := errorsByCode[*vec.Error]
			if !ok {
				t.Fatalf("unknown error code %q", *vec.Error)
			}
			if !errors.Is(err, want) {
				t.Fatalf("want %v, got %v", want, err)
			}
		})
	}
}

// Signing is deterministic, so each key of a valid vector must reproduce one
// of the header's entries exactly.
func TestSignReproducesVectors(t *testing.T) {
	for _, vec := range loadVectors(t) {
		if !vec.Valid {
			continue
		}
		t.Run(vec.Name, func(t *testing.T) {
			entries := strings.Fields(vec.Signature)
			for _, key := range vec.SigningKeys {
				sign := Sign
				if strings.HasPrefix(key, "whsk_") {
					sign = SignEd25519
				}
				got, err := sign(key, vec.MsgID, time.Unix(vec.Timestamp, 0), []byte(vec.Body))
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, e := range entries {
					found = found || e == got
				}
				if !found {
					t.Fatalf("signature %q not in header %q", got, vec.Signature)
				}
			}
		})
	}
}

const (
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testSeed   = "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	testPublic = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
)

func TestSignAndVerifyWithRealClock(t *testing.T) {
	now := time.Now()
	body := []byte(`{"hello":"world"}`)
	s1, err := Sign(testSecret, "msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := SignEd25519(testSeed, "msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := deliveryHeaders("msg_1", strconv.FormatInt(now.Unix(), 10), s1+" "+s2)
	for _, key := range []string{testSecret, testPublic} {
		v, err := NewVerifier(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(body, h); err != nil {
			t.Errorf("key %.6s: %v", key, err)
		}
	}
}

func TestNewVerifierRejectsUnusableKeys(t *testing.T) {
	bad := map[string]string{
		"empty":                "",
		"prefix only":          "whsec_",
		"not base64":           "whsec_not-base64!",
		"unpadded":             "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
		"newline inside":       "whsec_MfKQ9r8GKYqrTwjU\nPD8ILPZIo2LaLaSw",
		"plain text secret":    "my webhook secret",
		"private key":          testSeed,
		"short public key":     "whpk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
		"public key not b64":   "whpk_??",
		"secret with whsk_ in": "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
	for name, key := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := NewVerifier(testSecret, key)
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("want ErrInvalidKey, got %v", err)
			}
			if len(key) > len("whsec_") && strings.Contains(err.Error(), key) {
				t.Fatalf("error %q reveals the key", err)
			}
		})
	}
	if _, err := NewVerifier(); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("no keys: want ErrInvalidKey, got %v", err)
	}
}

func TestSignRejectsBadInput(t *testing.T) {
	now := time.Unix(1700000000, 0)
	cases := map[string]func() (string, error){
		"Sign with private key":        func() (string, error) { return Sign(testSeed, "m", now, nil) },
		"Sign with public key":         func() (string, error) { return Sign(testPublic, "m", now, nil) },
		"SignEd25519 with HMAC secret": func() (string, error) { return SignEd25519(testSecret, "m", now, nil) },
		"SignEd25519 with public key":  func() (string, error) { return SignEd25519(testPublic, "m", now, nil) },
		"empty id":                     func() (string, error) { return Sign(testSecret, "", now, nil) },
		"before 1970":                  func() (string, error) { return Sign(testSecret, "m", time.Unix(-1, 0), nil) },
	}
	for name, sign := range cases {
		if sig, err := sign(); err == nil {
			t.Errorf("%s: signed %q, want an error", name, sig)
		}
	}
}

func TestVerifyHeaders(t *testing.T) {
	const ts = 1700000000
	body := []byte("{}")
	sig, err := Sign(testSecret, "msg_1", time.Unix(ts, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(h http.Header) error { return v.Verify(body, h, at(ts)) }

	t.Run("non-canonical keys", func(t *testing.T) {
		h := http.Header{"webhook-id": {"msg_1"}, "WEBHOOK-TIMESTAMP": {"1700000000"}, "webhook-Signature": {sig}}
		if err := verify(h); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("leading zeros are signed in canonical form", func(t *testing.T) {
		if err := verify(deliveryHeaders("msg_1", "0001700000000", sig)); err != nil {
			t.Fatal(err)
		}
	})
	for name, h := range map[string]http.Header{
		"missing id":           {"Webhook-Timestamp": {"1700000000"}, "Webhook-Signature": {sig}},
		"missing timestamp":    {"Webhook-Id": {"msg_1"}, "Webhook-Signature": {sig}},
		"missing signature":    {"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {"1700000000"}},
		"fractional timestamp": deliveryHeaders("msg_1", "1700000000.0", sig),
		"signed timestamp":     deliveryHeaders("msg_1", "+1700000000", sig),
		"spaced timestamp":     deliveryHeaders("msg_1", "1700000000 ", sig),
		"exponent timestamp":   deliveryHeaders("msg_1", "17e8", sig),
		"timestamp past int64": deliveryHeaders("msg_1", "9223372036854775808", sig),
	} {
		t.Run(name, func(t *testing.T) {
			if err := verify(h); !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
		})
	}
	t.Run("largest int64 timestamp", func(t *testing.T) {
		err := verify(deliveryHeaders("msg_1", "9223372036854775807", sig))
		if !errors.Is(err, ErrTimestampInFuture) {
			t.Fatalf("want ErrTimestampInFuture, got %v", err)
		}
	})
}

func TestToleranceOptions(t *testing.T) {
	const ts = 1700000000
	sig, err := Sign(testSecret, "msg_1", time.Unix(ts, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := deliveryHeaders("msg_1", strconv.Itoa(ts), sig)
	v, err := NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(nil, h, at(ts+301)); !errors.Is(err, ErrTimestampTooOld) {
		t.Fatalf("default tolerance: got %v", err)
	}
	hour := v.With(WithTolerance(time.Hour), at(ts+3600))
	if err := hour.Verify(nil, h); err != nil {
		t.Fatalf("With defaults: %v", err)
	}
	if err := hour.Verify(nil, h, WithTolerance(time.Minute)); !errors.Is(err, ErrTimestampTooOld) {
		t.Fatalf("per-call option should override With: got %v", err)
	}
	if err := v.Verify(nil, h, at(ts+301)); !errors.Is(err, ErrTimestampTooOld) {
		t.Fatalf("With must not change the original Verifier: got %v", err)
	}
	if err := v.Verify(nil, h, at(ts), WithTolerance(-time.Hour)); err != nil {
		t.Fatalf("negative tolerance counts as zero: got %v", err)
	}
	if err := v.Verify(nil, h, at(ts+1), WithTolerance(1500*time.Millisecond)); err != nil {
		t.Fatalf("fractional tolerance: got %v", err)
	}
	if err := v.Verify(nil, h, at(ts+2), WithTolerance(1500*time.Millisecond)); !errors.Is(err, ErrTimestampTooOld) {
		t.Fatalf("fractional tolerance: got %v", err)
	}
}
