package loft_test

// Tests against a real `loft serve` (started by .ci/run), skipped when
// LOFT_TEST_GRPC_ADDR is unset. LOFT_TEST_API_KEY is an ADMIN key; the server
// runs with --dev, so http://127.0.0.1 destinations are allowed.

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	loft "github.com/loft-relay/loft/clients/go"
	"github.com/loft-relay/loft/clients/go/loftv1"
	"github.com/loft-relay/loft/clients/go/webhooks"
)

// server is a project on the real server with an EDITOR client for it, a
// receiver, and a destination pointing at it with a subscription.
type server struct {
	admin, editor *loft.Client
	projectID     string
	created       *timestamppb.Timestamp
	destination   *loftv1.Destination
	secret        string
	received      chan *http.Request
	bodies        chan []byte
}

func realServer(t *testing.T) *server {
	t.Helper()
	addr := os.Getenv("LOFT_TEST_GRPC_ADDR")
	if addr == "" {
		t.Skip("LOFT_TEST_GRPC_ADDR is not set: no loft serve to test against (.ci/run starts one)")
	}
	ctx := context.Background()
	admin, err := loft.Dial(addr, loft.WithInsecure(), loft.WithAPIKey(os.Getenv("LOFT_TEST_API_KEY")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })

	project, err := admin.CreateProject(ctx, &loftv1.CreateProjectRequest{Project: &loftv1.Project{Name: "go-client " + t.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := admin.CreateApiKey(ctx, &loftv1.CreateApiKeyRequest{ApiKey: &loftv1.ApiKey{
		ProjectId: project.GetProject().GetId(), Name: "go-client", Role: loftv1.ApiKeyRole_API_KEY_ROLE_EDITOR,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.GetSecret(), "loft_") {
		t.Fatalf("CreateApiKey secret %q", key.GetSecret())
	}
	editor, err := loft.Dial(addr, loft.WithInsecure(), loft.WithAPIKey(key.GetSecret()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { editor.Close() })

	s := &server{admin: admin, editor: editor, projectID: project.GetProject().GetId(), created: project.GetProject().GetCreateTime(), received: make(chan *http.Request, 16), bodies: make(chan []byte, 16)}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.received <- r
		s.bodies <- body
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	// The EDITOR key defaults to its project: no project_id.
	created, err := editor.CreateDestination(ctx, &loftv1.CreateDestinationRequest{Destination: &loftv1.Destination{
		Name: "receiver", Url: receiver.URL + "/hook",
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.destination, s.secret = created.GetDestination(), created.GetSecret()
	if _, err := editor.CreateSubscription(ctx, &loftv1.CreateSubscriptionRequest{Subscription: &loftv1.Subscription{
		DestinationId: s.destination.GetId(), EventTypes: []string{"order.*"},
	}}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRealServerConfiguration(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()

	// A second destination, so that page_size 1 takes two pages.
	if _, err := s.editor.CreateDestination(ctx, &loftv1.CreateDestinationRequest{Destination: &loftv1.Destination{
		Name: "second", Url: "http://127.0.0.1:9/hook",
	}}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	list := func(ctx context.Context, req *loftv1.ListDestinationsRequest, opts ...grpc.CallOption) (*loftv1.ListDestinationsResponse, error) {
		calls++
		return s.editor.ListDestinations(ctx, req, opts...)
	}
	var names []string
	for d, err := range loft.Paginate(ctx, list, &loftv1.ListDestinationsRequest{PageSize: 1}, (*loftv1.ListDestinationsResponse).GetDestinations) {
		if err != nil {
			t.Fatal(err)
		}
		if d.GetSecretHint() == s.secret {
			t.Fatal("ListDestinations returned the secret, not a hint")
		}
		names = append(names, d.GetName())
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "receiver,second" || calls < 2 {
		t.Fatalf("paged through %v in %d calls, want both destinations over ≥ 2 calls", names, calls)
	}

	// The signing secret, and the webhooks helpers agree with it.
	secret, err := s.editor.GetDestinationSecret(ctx, &loftv1.GetDestinationSecretRequest{DestinationId: s.destination.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret.GetSecret(), "whsec_") || secret.GetSecret() != s.secret {
		t.Fatalf("GetDestinationSecret = %q, CreateDestination said %q", secret.GetSecret(), s.secret)
	}
	body := []byte(`{"order":1}`)
	now := time.Now()
	sig, err := webhooks.Sign(secret.GetSecret(), "evt_test", now, body)
	if err != nil {
		t.Fatal(err)
	}
	v, err := webhooks.NewVerifier(secret.GetSecret())
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(webhooks.HeaderID, "evt_test")
	h.Set(webhooks.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhooks.HeaderSignature, sig)
	if err := v.Verify(body, h); err != nil {
		t.Fatalf("verifying our own signature with the server's secret: %v", err)
	}
}

func TestRealServerErrorReasons(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()

	_, err := s.editor.CreateDestination(ctx, &loftv1.CreateDestinationRequest{Destination: &loftv1.Destination{Url: "ftp://x"}})
	if status.Code(err) != codes.InvalidArgument || loft.ErrorReason(err) != loftv1.ErrorReason_ERROR_REASON_DESTINATION_URL_FORBIDDEN {
		t.Fatalf("ftp:// destination: %v (reason %v), want INVALID_ARGUMENT DESTINATION_URL_FORBIDDEN", err, loft.ErrorReason(err))
	}
	if info := loft.ErrorInfo(err); info.GetDomain() != "loft.v1" {
		t.Fatalf("ErrorInfo %v", info)
	}

	for _, err := range loft.Paginate(ctx, s.editor.ListDestinations, &loftv1.ListDestinationsRequest{PageToken: "not-a-token"}, (*loftv1.ListDestinationsResponse).GetDestinations) {
		if loft.ErrorReason(err) != loftv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN {
			t.Fatalf("bad page token: %v (reason %v), want INVALID_PAGE_TOKEN", err, loft.ErrorReason(err))
		}
	}

	_, err = s.editor.GetDestination(ctx, &loftv1.GetDestinationRequest{DestinationId: "dst_" + strings.Repeat("0", 26)})
	if status.Code(err) != codes.NotFound || loft.ErrorReason(err) != loftv1.ErrorReason_ERROR_REASON_RESOURCE_NOT_FOUND {
		t.Fatalf("unknown destination: %v, want NOT_FOUND RESOURCE_NOT_FOUND", err)
	}
}

// TestRealServerDelivery publishes an event and checks the signed delivery
// and its attempt.
func TestRealServerDelivery(t *testing.T) {
	s := realServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	payload, _ := structpb.NewValue(map[string]any{"order": 42})
	published, err := s.editor.PublishEvent(ctx, &loftv1.PublishEventRequest{
		Type: "order.created", Payload: &loftv1.PublishEventRequest_Json{Json: payload},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventID := published.GetEvent().GetId()
	if published.GetDeliveriesCreated() != 1 {
		t.Fatalf("deliveries_created = %d, want 1", published.GetDeliveriesCreated())
	}

	// The receiver gets the event, signed with the destination's secret.
	var req *http.Request
	var body []byte
	select {
	case req = <-s.received:
		body = <-s.bodies
	case <-ctx.Done():
		t.Fatal("no delivery arrived")
	}
	v, err := webhooks.NewVerifier(s.secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(body, req.Header); err != nil {
		t.Fatalf("delivery does not verify: %v", err)
	}
	if req.Header.Get(webhooks.HeaderID) != eventID || req.Header.Get(webhooks.HeaderEventType) != "order.created" {
		t.Fatalf("delivery headers %v for event %s", req.Header, eventID)
	}

	// Its attempt is listed once the result is committed.
	var attempts []*loftv1.Attempt
	for len(attempts) == 0 && ctx.Err() == nil {
		attempts = nil
		for a, err := range loft.Paginate(ctx, s.editor.ListAttempts, &loftv1.ListAttemptsRequest{EventId: eventID}, (*loftv1.ListAttemptsResponse).GetAttempts) {
			if err != nil {
				t.Fatal(err)
			}
			attempts = append(attempts, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(attempts) != 1 || attempts[0].GetResponse().GetStatusCode() != http.StatusNoContent {
		t.Fatalf("attempts %v, want one answered 204", attempts)
	}
}

// TestRealServerWatch follows the project's feed from its creation (the
// destination and subscription made it resource_changed items), then
// resumes from the first item's cursor.
func TestRealServerWatch(t *testing.T) {
	s := realServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var first []*loftv1.WatchEventsResponse
	from := &loftv1.WatchEventsRequest{Start: &loftv1.WatchEventsRequest_StartTime{StartTime: s.created}}
	for item, err := range loft.Watch(ctx, s.editor, from) {
		if err != nil {
			t.Fatal(err)
		}
		if item.GetHeartbeat() == nil {
			if item.GetResourceChanged() == nil {
				t.Fatalf("item %v, want resource_changed", item)
			}
			first = append(first, item)
		}
		if len(first) == 2 {
			break
		}
	}
	resume := &loftv1.WatchEventsRequest{Start: &loftv1.WatchEventsRequest_AfterCursor{AfterCursor: first[0].GetCursor()}}
	for item, err := range loft.Watch(ctx, s.editor, resume) {
		if err != nil {
			t.Fatal(err)
		}
		if item.GetHeartbeat() != nil {
			continue
		}
		if item.GetCursor() != first[1].GetCursor() {
			t.Fatalf("resumed at %q, want %q", item.GetCursor(), first[1].GetCursor())
		}
		break
	}
}

// deliveryKinds are what one published event makes in the feed when its one
// destination answers 2xx.
var deliveryKinds = []loftv1.ActivityKind{
	loftv1.ActivityKind_ACTIVITY_KIND_EVENT_RECEIVED,
	loftv1.ActivityKind_ACTIVITY_KIND_ATTEMPT_FINISHED,
	loftv1.ActivityKind_ACTIVITY_KIND_DELIVERY_SUCCEEDED,
}

// feedKey names a feed item by its kind and event ("" for a heartbeat).
func feedKey(t *testing.T, s *server, item *loftv1.WatchEventsResponse) string {
	t.Helper()
	switch a := item.GetActivity().(type) {
	case *loftv1.WatchEventsResponse_Heartbeat:
		return ""
	case *loftv1.WatchEventsResponse_EventReceived:
		if a.EventReceived.GetEvent().GetType() != "order.created" {
			t.Fatalf("event_received %v", a.EventReceived)
		}
		return "received " + a.EventReceived.GetEvent().GetId()
	case *loftv1.WatchEventsResponse_AttemptFinished:
		if a.AttemptFinished.GetAttempt().GetResponse().GetStatusCode() != http.StatusNoContent {
			t.Fatalf("attempt_finished %v", a.AttemptFinished)
		}
		return "attempt " + a.AttemptFinished.GetAttempt().GetEventId()
	case *loftv1.WatchEventsResponse_DeliverySucceeded:
		if a.DeliverySucceeded.GetDelivery().GetDestinationId() != s.destination.GetId() {
			t.Fatalf("delivery_succeeded %v", a.DeliverySucceeded)
		}
		return "succeeded " + a.DeliverySucceeded.GetDelivery().GetEventId()
	}
	t.Fatalf("item %v is none of the kinds asked for", item)
	return ""
}

// TestRealServerWatchResume follows the feed with loft.Watch while events are
// published and delivered, stops part-way, publishes more, and resumes from
// the last cursor: every item arrives exactly once across the two watches.
func TestRealServerWatchResume(t *testing.T) {
	s := realServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	want := map[string]bool{}
	publish := func(n int) {
		for i := range n {
			payload, _ := structpb.NewValue(map[string]any{"order": i})
			published, err := s.editor.PublishEvent(ctx, &loftv1.PublishEventRequest{
				Type: "order.created", Payload: &loftv1.PublishEventRequest_Json{Json: payload},
			})
			if err != nil {
				t.Fatal(err)
			}
			id := published.GetEvent().GetId()
			want["received "+id], want["attempt "+id], want["succeeded "+id] = true, true, true
		}
	}
	seen := map[string]bool{}
	see := func(item *loftv1.WatchEventsResponse) {
		key := feedKey(t, s, item)
		if !want[key] {
			t.Fatalf("unexpected item %s: %v", key, item)
		}
		if seen[key] {
			t.Fatalf("item %s arrived twice", key)
		}
		seen[key] = true
	}

	// From now: the stream opens with a heartbeat, so events published after
	// it are certain to be in the watch.
	cursor := ""
	for item, err := range loft.Watch(ctx, s.editor, &loftv1.WatchEventsRequest{Kinds: deliveryKinds}) {
		if err != nil {
			t.Fatal(err)
		}
		if item.GetCursor() == "" {
			t.Fatalf("item without a cursor: %v", item)
		}
		cursor = item.GetCursor()
		if item.GetHeartbeat() != nil {
			if len(want) == 0 {
				publish(2)
			}
			continue
		}
		see(item)
		if len(seen) == 4 { // of 6: stop part-way
			break
		}
	}

	publish(2)
	resume := &loftv1.WatchEventsRequest{Kinds: deliveryKinds, Start: &loftv1.WatchEventsRequest_AfterCursor{AfterCursor: cursor}}
	opened := false
	for item, err := range loft.Watch(ctx, s.editor, resume) {
		if err != nil {
			t.Fatal(err)
		}
		if !opened {
			if item.GetHeartbeat() == nil || item.GetCursor() != cursor {
				t.Fatalf("resumed stream opened with %v, want a heartbeat at %q", item, cursor)
			}
			opened = true
			continue
		}
		if item.GetHeartbeat() != nil {
			continue
		}
		see(item)
		if len(seen) == len(want) {
			break
		}
	}
	if len(seen) != 12 {
		t.Fatalf("saw %d items, want 12", len(seen))
	}
}

// TestRealServerWatchBadCursor: a malformed cursor ends the watch at once,
// without retrying, with INVALID_ARGUMENT and reason INVALID_CURSOR.
func TestRealServerWatchBadCursor(t *testing.T) {
	s := realServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bad := &loftv1.WatchEventsRequest{Start: &loftv1.WatchEventsRequest_AfterCursor{AfterCursor: "not-a-cursor"}}
	var errs []error
	retry := loft.OnRetry(func(err error, _ time.Duration) { t.Errorf("retried after %v", err) })
	for item, err := range loft.Watch(ctx, s.editor, bad, retry) {
		if item != nil {
			t.Fatalf("item %v from a bad cursor", item)
		}
		errs = append(errs, err)
	}
	if len(errs) != 1 || status.Code(errs[0]) != codes.InvalidArgument || loft.ErrorReason(errs[0]) != loftv1.ErrorReason_ERROR_REASON_INVALID_CURSOR {
		t.Fatalf("errors %v, want one INVALID_ARGUMENT with reason INVALID_CURSOR", errs)
	}
}
