package loft_test

// Unit tests of the hand-written layer against fake services on a real gRPC
// server (127.0.0.1:0). The tests against a real `loft serve` are in
// integration_test.go.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	loft "github.com/loft-relay/loft/clients/go"
	"github.com/loft-relay/loft/clients/go/loftv1"
)

// serve starts a gRPC server with the given registrations and returns a
// Client connected to it.
func serve(t *testing.T, register func(*grpc.Server), opts ...loft.Option) *loft.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	client, err := loft.Dial(lis.Addr().String(), append([]loft.Option{loft.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// fakeDestinations serves ListDestinations from a fixed list, two per page,
// and records the authorization header.
type fakeDestinations struct {
	loftv1.UnimplementedDestinationServiceServer
	ids []string

	mu   sync.Mutex
	auth []string
}

func (f *fakeDestinations) ListDestinations(ctx context.Context, req *loftv1.ListDestinationsRequest) (*loftv1.ListDestinationsResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.mu.Unlock()
	start := 0
	if req.GetPageToken() != "" {
		if _, err := fmt.Sscanf(req.GetPageToken(), "page-%d", &start); err != nil {
			return nil, loftError(codes.InvalidArgument, "INVALID_PAGE_TOKEN")
		}
	}
	end := min(start+2, len(f.ids))
	resp := &loftv1.ListDestinationsResponse{}
	for _, id := range f.ids[start:end] {
		resp.Destinations = append(resp.Destinations, &loftv1.Destination{Id: id})
	}
	if end < len(f.ids) {
		resp.NextPageToken = fmt.Sprintf("page-%d", end)
	}
	return resp, nil
}

func loftError(code codes.Code, reason string) error {
	st, err := status.New(code, strings.ToLower(reason)).WithDetails(
		&errdetails.ErrorInfo{Reason: reason, Domain: loft.ErrorDomain},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "x", Description: "bad"}}},
	)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestPaginateAndAPIKey(t *testing.T) {
	fake := &fakeDestinations{ids: []string{"dst_1", "dst_2", "dst_3", "dst_4", "dst_5"}}
	client := serve(t, func(s *grpc.Server) { loftv1.RegisterDestinationServiceServer(s, fake) }, loft.WithAPIKey("loft_test"))

	req := &loftv1.ListDestinationsRequest{PageSize: 2}
	var got []string
	for d, err := range loft.Paginate(context.Background(), client.ListDestinations, req, (*loftv1.ListDestinationsResponse).GetDestinations) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.GetId())
	}
	if strings.Join(got, ",") != strings.Join(fake.ids, ",") {
		t.Fatalf("got %v, want %v", got, fake.ids)
	}
	if req.GetPageToken() != "" {
		t.Fatal("Paginate modified the request")
	}
	if len(fake.auth) != 3 || fake.auth[0] != "Bearer loft_test" {
		t.Fatalf("authorization headers %q, want 3 × Bearer loft_test", fake.auth)
	}

	// Stopping early makes no further calls.
	for range loft.Paginate(context.Background(), client.ListDestinations, req, (*loftv1.ListDestinationsResponse).GetDestinations) {
		break
	}
	if len(fake.auth) != 4 {
		t.Fatalf("%d calls after stopping on the first item, want 4", len(fake.auth))
	}

	// An error ends the sequence with the error and its reason.
	bad := &loftv1.ListDestinationsRequest{PageToken: "garbage"}
	n := 0
	for _, err := range loft.Paginate(context.Background(), client.ListDestinations, bad, (*loftv1.ListDestinationsResponse).GetDestinations) {
		n++
		if got := loft.ErrorReason(err); got != loftv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN {
			t.Fatalf("reason %v from %v", got, err)
		}
	}
	if n != 1 {
		t.Fatalf("%d items after an error, want exactly the error", n)
	}
}

func TestErrorReason(t *testing.T) {
	err := loftError(codes.InvalidArgument, "DESTINATION_URL_FORBIDDEN")
	if got := loft.ErrorReason(err); got != loftv1.ErrorReason_ERROR_REASON_DESTINATION_URL_FORBIDDEN {
		t.Fatalf("ErrorReason = %v", got)
	}
	if got := loft.ErrorReason(fmt.Errorf("creating: %w", err)); got != loftv1.ErrorReason_ERROR_REASON_DESTINATION_URL_FORBIDDEN {
		t.Fatalf("ErrorReason of a wrapped error = %v", got)
	}
	if info := loft.ErrorInfo(err); info.GetReason() != "DESTINATION_URL_FORBIDDEN" {
		t.Fatalf("ErrorInfo = %v", info)
	}
	foreign, _ := status.New(codes.Unavailable, "x").WithDetails(&errdetails.ErrorInfo{Reason: "INTERNAL", Domain: "proxy.example"})
	for _, err := range []error{nil, errors.New("plain"), status.Error(codes.Internal, "no details"), foreign.Err(), loftError(codes.Internal, "SOMETHING_NEWER")} {
		if got := loft.ErrorReason(err); got != loftv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			t.Errorf("ErrorReason(%v) = %v, want UNSPECIFIED", err, got)
		}
	}
}

func TestDialOptions(t *testing.T) {
	if _, err := loft.Dial("127.0.0.1:1", loft.WithInsecure(), loft.WithTLS(nil)); err == nil {
		t.Fatal("WithInsecure with WithTLS dialled")
	}
	// The key is never sent in clear unless WithInsecure said so: a connection
	// made plaintext through a dial option refuses it.
	_, err := loft.Dial("127.0.0.1:1", loft.WithAPIKey("loft_secret"), loft.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err == nil || !strings.Contains(err.Error(), "transport") {
		t.Fatalf("plaintext connection with a TLS-only key: %v", err)
	}
}

// fakeFeed serves WatchEvents from a script: one entry per call, each a
// list of cursors to send and the error to end with (nil: end the stream).
type fakeFeed struct {
	loftv1.UnimplementedEventServiceServer
	script []feedCall

	mu       sync.Mutex
	requests []*loftv1.WatchEventsRequest
}

type feedCall struct {
	cursors []string
	end     error
}

func (f *fakeFeed) WatchEvents(req *loftv1.WatchEventsRequest, stream grpc.ServerStreamingServer[loftv1.WatchEventsResponse]) error {
	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	if n >= len(f.script) {
		<-stream.Context().Done() // the last call stays open until the client leaves
		return nil
	}
	for _, c := range f.script[n].cursors {
		item := &loftv1.WatchEventsResponse{Cursor: c, Activity: &loftv1.WatchEventsResponse_Heartbeat{Heartbeat: &loftv1.Heartbeat{}}}
		if err := stream.Send(item); err != nil {
			return err
		}
	}
	return f.script[n].end
}

func (f *fakeFeed) startCursors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, r.GetAfterCursor())
	}
	return out
}

func TestWatchResumesAfterLastCursor(t *testing.T) {
	feed := &fakeFeed{script: []feedCall{
		{cursors: []string{"c1", "c2"}, end: status.Error(codes.Unavailable, "node going away")},
		{cursors: nil, end: status.Error(codes.Unavailable, "still down")}, // fails before any item
		{cursors: []string{"c3"}, end: nil},                                // server ends the stream cleanly
		{cursors: []string{"c4", "c5"}, end: loftError(codes.OutOfRange, "CURSOR_EXPIRED")},
	}}
	client := serve(t, func(s *grpc.Server) { loftv1.RegisterEventServiceServer(s, feed) })

	var retries []error
	req := &loftv1.WatchEventsRequest{Start: &loftv1.WatchEventsRequest_AfterCursor{AfterCursor: "c0"}}
	var got []string
	var final error
	for item, err := range loft.Watch(context.Background(), client, req,
		loft.WithBackoff(time.Millisecond, 5*time.Millisecond),
		loft.OnRetry(func(err error, _ time.Duration) { retries = append(retries, err) })) {
		if err != nil {
			final = err
			break
		}
		got = append(got, item.GetCursor())
	}
	if want := "c1,c2,c3,c4,c5"; strings.Join(got, ",") != want {
		t.Fatalf("items %v, want %s", got, want)
	}
	if want := "c0,c2,c2,c3"; strings.Join(feed.startCursors(), ",") != want {
		t.Fatalf("after_cursor of each call %v, want %s", feed.startCursors(), want)
	}
	if len(retries) != 3 {
		t.Fatalf("%d retries (%v), want 3", len(retries), retries)
	}
	if loft.ErrorReason(final) != loftv1.ErrorReason_ERROR_REASON_CURSOR_EXPIRED || status.Code(final) != codes.OutOfRange {
		t.Fatalf("final error %v, want OUT_OF_RANGE CURSOR_EXPIRED", final)
	}
	if req.GetAfterCursor() != "c0" {
		t.Fatal("Watch modified the request")
	}
}

// Every stream opens with a heartbeat, so that alone must not reset the
// backoff: a server that accepts streams and fails them at once gets ever
// longer delays; a stream that delivers more starts them over.
func TestWatchBackoffIgnoresTheOpeningHeartbeat(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "failing after the heartbeat")
	feed := &fakeFeed{script: []feedCall{
		{cursors: []string{"h1"}, end: unavailable},
		{cursors: []string{"h2"}, end: unavailable},
		{cursors: []string{"h3"}, end: unavailable},
		{cursors: []string{"h4", "c5"}, end: unavailable},
		{cursors: []string{"h6"}},
	}}
	client := serve(t, func(s *grpc.Server) { loftv1.RegisterEventServiceServer(s, feed) })

	var delays []time.Duration
	for item, err := range loft.Watch(context.Background(), client, nil,
		loft.WithBackoff(time.Millisecond, time.Second),
		loft.OnRetry(func(_ error, d time.Duration) { delays = append(delays, d) })) {
		if err != nil {
			t.Fatal(err)
		}
		if item.GetCursor() == "h6" {
			break
		}
	}
	// With ±20 % jitter: 1 ms, 2 ms, 4 ms, then 1 ms again after c5.
	if len(delays) != 4 || !(delays[0] < delays[1] && delays[1] < delays[2] && delays[3] < delays[1]) {
		t.Fatalf("delays %v, want growing three times, then starting over", delays)
	}
}

func TestWatchStops(t *testing.T) {
	t.Run("on a permanent error at once", func(t *testing.T) {
		feed := &fakeFeed{script: []feedCall{{end: status.Error(codes.Unimplemented, "not yet")}}}
		client := serve(t, func(s *grpc.Server) { loftv1.RegisterEventServiceServer(s, feed) })
		for _, err := range loft.Watch(context.Background(), client, nil, loft.WithBackoff(time.Millisecond, time.Millisecond)) {
			if status.Code(err) != codes.Unimplemented {
				t.Fatalf("got %v, want UNIMPLEMENTED", err)
			}
		}
		if n := len(feed.startCursors()); n != 1 {
			t.Fatalf("%d calls, want 1", n)
		}
	})
	t.Run("when the consumer breaks", func(t *testing.T) {
		feed := &fakeFeed{script: []feedCall{{cursors: []string{"c1", "c2", "c3"}}}}
		client := serve(t, func(s *grpc.Server) { loftv1.RegisterEventServiceServer(s, feed) })
		for item, err := range loft.Watch(context.Background(), client, nil) {
			if err != nil || item.GetCursor() != "c1" {
				t.Fatalf("got %v, %v", item, err)
			}
			break
		}
	})
	t.Run("when the context ends", func(t *testing.T) {
		feed := &fakeFeed{script: []feedCall{{cursors: []string{"c1"}}}} // then a stream that stays open
		client := serve(t, func(s *grpc.Server) { loftv1.RegisterEventServiceServer(s, feed) })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var got []string
		var final error
		for item, err := range loft.Watch(ctx, client, nil, loft.WithBackoff(time.Millisecond, time.Millisecond)) {
			if err != nil {
				final = err
				break
			}
			got = append(got, item.GetCursor())
			cancel()
		}
		if len(got) != 1 || !errors.Is(final, context.Canceled) {
			t.Fatalf("got %v then %v, want [c1] then context.Canceled", got, final)
		}
	})
}
