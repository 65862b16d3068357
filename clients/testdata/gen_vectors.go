//go:build ignore

// gen_vectors writes the shared webhook signing test vectors to stdout:
//
//	go run clients/testdata/gen_vectors.go > clients/testdata/webhooks.json
//
// It signs with the standard library only, independently of every client, so
// a bug in one client's signer cannot leak into the vectors it is tested
// against. All key material is fixed, so the output is byte-for-byte stable.
package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
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

const (
	errMismatch  = "signature_mismatch"
	errTooOld    = "timestamp_too_old"
	errFuture    = "timestamp_in_future"
	errMalformed = "malformed"
)

var b64 = base64.StdEncoding

// derive makes fixed, distinct key bytes from a label.
func derive(label string, n int) []byte {
	sum := sha512.Sum512([]byte("loft webhook test vectors: " + label))
	return sum[:n]
}

func whsec(key []byte) string { return "whsec_" + b64.EncodeToString(key) }

type edKey struct{ priv, pub string }

func newEdKey(label string) edKey {
	seed := derive(label, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	return edKey{priv: "whsk_" + b64.EncodeToString(seed), pub: "whpk_" + b64.EncodeToString(pub)}
}

var (
	// The example secret from the Standard Webhooks specification.
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	secretA     = whsec(derive("hmac A", 32))
	secretB     = whsec(derive("hmac B", 32))
	secretWrong = whsec(derive("hmac wrong", 24))
	secret64    = whsec(derive("hmac 64", 64))
	secret24    = whsec(derive("hmac 24", 24))

	edA     = newEdKey("ed25519 A")
	edWrong = newEdKey("ed25519 wrong")
)

func content(msgID string, ts int64, body string) []byte {
	return []byte(msgID + "." + strconv.FormatInt(ts, 10) + "." + body)
}

// token returns one "version,signature" entry for a signing key.
func token(key, msgID string, ts int64, body string) string {
	switch {
	case strings.HasPrefix(key, "whsec_"):
		raw, err := b64.DecodeString(strings.TrimPrefix(key, "whsec_"))
		check(err)
		mac := hmac.New(sha256.New, raw)
		mac.Write(content(msgID, ts, body))
		return "v1," + b64.EncodeToString(mac.Sum(nil))
	case strings.HasPrefix(key, "whsk_"):
		seed, err := b64.DecodeString(strings.TrimPrefix(key, "whsk_"))
		check(err)
		sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), content(msgID, ts, body))
		return "v1a," + b64.EncodeToString(sig)
	}
	panic("signing key without whsec_/whsk_ prefix: " + key)
}

func header(keys []string, msgID string, ts int64, body string) string {
	tokens := make([]string, len(keys))
	for i, k := range keys {
		tokens[i] = token(k, msgID, ts, body)
	}
	return strings.Join(tokens, " ")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func ptr(s string) *string { return &s }

const (
	ts     int64 = 1700000000
	msgID        = "msg_2bR4cZ7wQ1xYhJ9kLm3NpT6vUa"
	body         = `{"type":"invoice.paid","data":{"id":"inv_123","amount":4200}}`
	defTol int64 = 300
)

// valid builds a vector whose signature header is exactly what signingKeys
// produce for the message.
func valid(name string, secrets, signingKeys []string) vector {
	return vector{
		Name: name, Secrets: secrets, SigningKeys: signingKeys,
		MsgID: msgID, Timestamp: ts, Body: body,
		Signature: header(signingKeys, msgID, ts, body),
		Now:       ts, ToleranceSeconds: defTol, Valid: true,
	}
}

func invalid(v vector, reason string) vector {
	v.Valid = false
	v.Error = ptr(reason)
	return v
}

func main() {
	var vs []vector
	add := func(v vector) { vs = append(vs, v) }
	one := func(s string) []string { return []string{s} }
	none := []string{}

	// Interoperability with the specification's own example.
	{
		const id, t, b = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, `{"test": 2432232314}`
		sig := header(one(specSecret), id, t, b)
		if sig != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
			check(fmt.Errorf("specification example does not reproduce: %s", sig))
		}
		add(vector{Name: "standard_webhooks_spec_example", Secrets: one(specSecret), SigningKeys: one(specSecret),
			MsgID: id, Timestamp: t, Body: b, Signature: sig, Now: t, ToleranceSeconds: defTol, Valid: true})
	}

	// v1 (HMAC-SHA256).
	add(valid("v1_single_signature", one(secretA), one(secretA)))
	add(valid("v1_secret_24_bytes", one(secret24), one(secret24)))
	add(valid("v1_secret_64_bytes", one(secret64), one(secret64)))
	add(valid("v1_secret_without_whsec_prefix", one(strings.TrimPrefix(secretA, "whsec_")), one(secretA)))
	add(valid("v1_several_verify_keys_one_matches", []string{secretWrong, secretA}, one(secretA)))
	add(invalid(valid("v1_wrong_secret", one(secretWrong), one(secretA)), errMismatch))

	// Rotation: the sender signs with the old and the new secret.
	rot := []string{secretA, secretB}
	add(valid("rotation_verify_with_old_secret", one(secretA), rot))
	add(valid("rotation_verify_with_new_secret", one(secretB), rot))
	add(valid("rotation_verify_with_both_secrets", []string{secretB, secretA}, rot))
	add(invalid(valid("rotation_verify_with_unrelated_secret", one(secretWrong), rot), errMismatch))

	// v1a (Ed25519).
	add(valid("v1a_single_signature", one(edA.pub), one(edA.priv)))
	add(invalid(valid("v1a_wrong_public_key", one(edWrong.pub), one(edA.priv)), errMismatch))
	add(invalid(valid("v1a_signature_with_hmac_secret_only", one(secretA), one(edA.priv)), errMismatch))
	add(invalid(valid("v1_signature_with_public_key_only", one(edA.pub), one(secretA)), errMismatch))

	// Mixed v1 + v1a in one header.
	mixed := []string{secretA, edA.priv}
	add(valid("mixed_v1_v1a_verify_with_hmac_secret", one(secretA), mixed))
	add(valid("mixed_v1_v1a_verify_with_public_key", one(edA.pub), mixed))
	add(valid("mixed_v1_v1a_verify_with_both", []string{edA.pub, secretA}, mixed))
	add(invalid(valid("mixed_v1_v1a_verify_with_unrelated_keys", []string{secretWrong, edWrong.pub}, mixed), errMismatch))

	// Tampering: the signature covers id, timestamp and body.
	{
		v := invalid(valid("tampered_body", one(secretA), one(secretA)), errMismatch)
		v.Body = strings.Replace(v.Body, "4200", "4201", 1)
		add(v)
		v = invalid(valid("tampered_body_v1a", one(edA.pub), one(edA.priv)), errMismatch)
		v.Body = strings.Replace(v.Body, "4200", "4201", 1)
		add(v)
		v = invalid(valid("tampered_msg_id", one(secretA), one(secretA)), errMismatch)
		v.MsgID = "msg_2bR4cZ7wQ1xYhJ9kLm3NpT6vUb"
		add(v)
		// Within tolerance, so only the signature can catch it.
		v = invalid(valid("tampered_timestamp", one(secretA), one(secretA)), errMismatch)
		v.Timestamp = ts + 1
		add(v)
		v = invalid(valid("body_with_trailing_newline_added", one(secretA), one(secretA)), errMismatch)
		v.Body += "\n"
		add(v)
	}

	// Timestamp tolerance (inclusive at the boundary).
	{
		v := valid("timestamp_at_past_tolerance_boundary", one(secretA), one(secretA))
		v.Now = ts + defTol
		add(v)
		v = invalid(valid("timestamp_too_old", one(secretA), one(secretA)), errTooOld)
		v.Now = ts + defTol + 1
		add(v)
		v = valid("timestamp_at_future_tolerance_boundary", one(secretA), one(secretA))
		v.Now = ts - defTol
		add(v)
		v = invalid(valid("timestamp_in_future", one(secretA), one(secretA)), errFuture)
		v.Now = ts - defTol - 1
		add(v)
		v = invalid(valid("timestamp_too_old_custom_tolerance", one(secretA), one(secretA)), errTooOld)
		v.Now, v.ToleranceSeconds = ts+11, 10
		add(v)
		v = valid("timestamp_within_custom_tolerance", one(secretA), one(secretA))
		v.Now, v.ToleranceSeconds = ts-3600, 3600
		add(v)
		// The timestamp is checked before the signatures.
		v = invalid(valid("timestamp_too_old_and_wrong_secret", one(secretWrong), one(secretA)), errTooOld)
		v.Now = ts + 86400
		add(v)
		v = invalid(valid("timestamp_in_future_and_wrong_secret", one(secretWrong), one(secretA)), errFuture)
		v.Now = ts - 86400
		add(v)
	}

	// Versions other than v1 and v1a are skipped without looking at their payload.
	{
		good := token(secretA, msgID, ts, body)
		payload := strings.TrimPrefix(good, "v1,")
		v := invalid(valid("unknown_version_only", one(secretA), none), errMismatch)
		v.Signature = "v2," + payload
		add(v)
		v = invalid(valid("unknown_version_with_non_base64_payload", one(secretA), none), errMismatch)
		v.Signature = "v2,!!not*base64!!"
		add(v)
		v = invalid(valid("version_is_case_sensitive", one(secretA), none), errMismatch)
		v.Signature = "V1," + payload
		add(v)
		v = valid("unknown_version_before_valid_v1", one(secretA), one(secretA))
		v.Signature = "v2,whatever " + good
		add(v)
		v = valid("repeated_spaces_between_signatures", one(secretA), rot)
		v.Signature = strings.Replace(v.Signature, " ", "   ", 1)
		add(v)
		v = invalid(valid("v1_payload_of_wrong_length", one(secretA), none), errMismatch)
		v.Signature = "v1," + b64.EncodeToString([]byte("sixteen bytes!!!"))
		add(v)
		edGood := token(edA.priv, msgID, ts, body)
		edSig, _ := b64.DecodeString(strings.TrimPrefix(edGood, "v1a,"))
		v = invalid(valid("v1a_payload_of_wrong_length", one(edA.pub), none), errMismatch)
		v.Signature = "v1a," + b64.EncodeToString(edSig[:63])
		add(v)
	}

	// Malformed headers.
	{
		good := token(secretA, msgID, ts, body)
		malformed := func(name, sig string, signingKeys []string) {
			v := invalid(valid(name, one(secretA), signingKeys), errMalformed)
			v.Signature = sig
			add(v)
		}
		malformed("malformed_empty_signature_header", "", none)
		malformed("malformed_only_spaces", "   ", none)
		malformed("malformed_no_comma", "v1"+strings.TrimPrefix(good, "v1,"), none)
		malformed("malformed_empty_version", strings.TrimPrefix(good, "v1"), none)
		malformed("malformed_empty_payload", "v1,", none)
		malformed("malformed_v1_payload_not_base64", "v1,!!not*base64!!", none)
		malformed("malformed_v1_payload_unpadded_base64", strings.TrimRight(good, "="), none)
		malformed("malformed_v1a_payload_not_base64", "v1a,@@@@", none)
		// One bad entry makes the whole header malformed, even beside a valid one.
		malformed("malformed_entry_beside_valid_signature", good+" garbage", one(secretA))

		v := invalid(valid("malformed_empty_msg_id", one(secretA), none), errMalformed)
		v.MsgID = ""
		v.Signature = header(one(secretA), "", ts, body)
		add(v)
		v = invalid(valid("malformed_negative_timestamp", one(secretA), none), errMalformed)
		v.Timestamp, v.Now = -1, -1
		v.Signature = header(one(secretA), msgID, -1, body)
		add(v)
		// Headers are parsed before the timestamp is checked.
		v = invalid(valid("malformed_header_and_timestamp_too_old", one(secretA), none), errMalformed)
		v.Signature, v.Now = "v1", ts+86400
		add(v)
	}

	// Bodies are signed as raw bytes (UTF-8 here).
	{
		bodyVector := func(name, b string) vector {
			v := valid(name, one(secretA), []string{secretA, edA.priv})
			v.Secrets = []string{secretA, edA.pub}
			v.Body = b
			v.Signature = header(v.SigningKeys, msgID, ts, b)
			return v
		}
		add(bodyVector("unicode_body", `{"name":"Zoë Ångström","city":"東京","note":"naïve café — ok 🎉🚀","rtl":"שלום"}`))
		add(bodyVector("empty_body", ""))
		add(bodyVector("body_with_whitespace_and_newlines", "{\r\n  \"a\": 1,\n\t\"b\": \"two\"\n}\n\n"))
		add(bodyVector("body_with_escapes_and_html", `{"html":"<a href=\"x\">&amp;</a>","esc":"\\u0000 \" \\"}`))
		v := invalid(bodyVector("unicode_body_normalization_matters", "café"), errMismatch)
		v.Body = "cafe\u0301" // the same text in NFD: different bytes
		add(v)
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	check(enc.Encode(struct {
		Vectors []vector `json:"vectors"`
	}{vs}))
}
