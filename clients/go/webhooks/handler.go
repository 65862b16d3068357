package webhooks

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"
)

// MaxBodyBytes is the largest body Handler reads, Loft's own limit on
// delivered bodies.
const MaxBodyBytes = 10 << 20

// An Event is a verified delivery.
type Event struct {
	ID        string    // webhook-id: stable across retries, use it to de-duplicate
	Timestamp time.Time // webhook-timestamp: when this attempt was signed
	Type      string    // X-Loft-Event-Type (not covered by the signature)
	Body      []byte    // the raw body, exactly as signed
}

// Handler returns an http.Handler that reads the request body (at most
// MaxBodyBytes, else 413), verifies it with v (else 401 with the reason) and
// then calls fn with the event. r.Body is refilled, so fn may read it again.
func Handler(v *Verifier, fn func(w http.ResponseWriter, r *http.Request, ev Event)) http.Handler {
	if v == nil || fn == nil {
		panic("webhooks.Handler: nil Verifier or handler func")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, "webhook body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read webhook body", http.StatusBadRequest)
			return
		}
		id, ts, err := v.verify(body, r.Header, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		fn(w, r, Event{
			ID:        id,
			Timestamp: time.Unix(ts, 0).UTC(),
			Type:      r.Header.Get(HeaderEventType),
			Body:      body,
		})
	})
}
