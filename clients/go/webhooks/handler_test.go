package webhooks

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

type received struct {
	ev       Event
	reread   []byte
	received bool
}

func newTestServer(t *testing.T) (*httptest.Server, *received) {
	t.Helper()
	v, err := NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := &received{}
	srv := httptest.NewServer(Handler(v, func(w http.ResponseWriter, r *http.Request, ev Event) {
		got.received, got.ev = true, ev
		got.reread, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func post(t *testing.T, url string, body []byte, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func signedHeaders(t *testing.T, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	sig, err := Sign(testSecret, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := deliveryHeaders(id, strconv.FormatInt(ts.Unix(), 10), sig)
	h.Set("Content-Type", "application/json")
	return h
}

func TestHandlerDeliversVerifiedEvent(t *testing.T) {
	srv, got := newTestServer(t)
	now := time.Now().Truncate(time.Second)
	body := []byte(`{"type":"invoice.paid"}`)
	h := signedHeaders(t, "evt_1", now, body)
	h.Set(HeaderEventType, "invoice.paid")

	resp := post(t, srv.URL, body, h)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !got.received {
		t.Fatal("handler func not called")
	}
	if got.ev.ID != "evt_1" || got.ev.Type != "invoice.paid" || !got.ev.Timestamp.Equal(now) || !bytes.Equal(got.ev.Body, body) {
		t.Fatalf("event %+v", got.ev)
	}
	if !bytes.Equal(got.reread, body) {
		t.Fatalf("r.Body re-read %q", got.reread)
	}
}

func TestHandlerRejects(t *testing.T) {
	now := time.Now()
	body := []byte(`{"amount":1}`)
	cases := map[string]struct {
		body    []byte
		headers http.Header
		status  int
		reason  string
	}{
		"tampered body": {
			body: []byte(`{"amount":2}`), headers: signedHeaders(t, "evt_1", now, body),
			status: http.StatusUnauthorized, reason: "no signature matches",
		},
		"no signature headers": {
			body: body, headers: http.Header{},
			status: http.StatusUnauthorized, reason: "malformed",
		},
		"replayed an hour later": {
			body: body, headers: signedHeaders(t, "evt_1", now.Add(-time.Hour), body),
			status: http.StatusUnauthorized, reason: "too old",
		},
		"body over the limit": {
			body:    make([]byte, MaxBodyBytes+1),
			headers: signedHeaders(t, "evt_1", now, make([]byte, MaxBodyBytes+1)),
			status:  http.StatusRequestEntityTooLarge, reason: "too large",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			srv, got := newTestServer(t)
			resp := post(t, srv.URL, c.body, c.headers)
			msg, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || !strings.Contains(string(msg), c.reason) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, msg, c.status, c.reason)
			}
			if got.received {
				t.Fatal("handler func called for a rejected request")
			}
		})
	}
}

func TestHandlerAcceptsBodyAtTheLimit(t *testing.T) {
	srv, got := newTestServer(t)
	body := bytes.Repeat([]byte("a"), MaxBodyBytes)
	resp := post(t, srv.URL, body, signedHeaders(t, "evt_big", time.Now(), body))
	if resp.StatusCode != http.StatusNoContent || len(got.ev.Body) != MaxBodyBytes {
		t.Fatalf("status %d, body %d bytes", resp.StatusCode, len(got.ev.Body))
	}
}
