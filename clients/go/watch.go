package loft

import (
	"context"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loft-relay/loft/clients/go/loftv1"
)

// WatchOption configures Watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	initial, ceiling time.Duration
	onRetry          func(err error, delay time.Duration)
}

// WithBackoff sets the delay before the first reconnection (default 250 ms)
// and the most it grows to (default 30 s). It doubles after each failure in
// a row, with ±20 % jitter, and starts over once a stream delivers more than
// the heartbeat it opens with (a server that accepts streams and then fails
// them at once still gets the growing delay).
func WithBackoff(initial, max time.Duration) WatchOption {
	return func(o *watchOptions) { o.initial, o.ceiling = initial, max }
}

// OnRetry is called with the error that broke the stream and the delay
// before the next connection attempt, e.g. to log it.
func OnRetry(fn func(err error, delay time.Duration)) WatchOption {
	return func(o *watchOptions) { o.onRetry = fn }
}

// Watch follows WatchEvents and yields every item of the feed, heartbeats
// included (they carry a fresh cursor). When the stream breaks for a reason
// worth retrying (UNAVAILABLE and other transient codes, or the server
// ending the stream) it reconnects with backoff and resumes after the last
// cursor it yielded, so the sequence has no gap and no duplicate across
// reconnections. Other errors (INVALID_ARGUMENT with reason INVALID_CURSOR,
// OUT_OF_RANGE with reason CURSOR_EXPIRED, PERMISSION_DENIED,
// UNAUTHENTICATED…) and the end of ctx are yielded once and end it.
//
// req is not modified; its start (after_cursor, start_time or from_now)
// applies until the first item arrives (a reconnection before that starts
// over from it), then the last cursor does. To resume across restarts of the
// program, store the last item's cursor and pass it as after_cursor.
//
//	req := &loftv1.WatchEventsRequest{Start: &loftv1.WatchEventsRequest_AfterCursor{AfterCursor: saved}}
//	for item, err := range loft.Watch(ctx, client, req) {
//		if err != nil {
//			return err
//		}
//		save(item.GetCursor())
//	}
func Watch(ctx context.Context, events loftv1.EventServiceClient, req *loftv1.WatchEventsRequest, opts ...WatchOption) iter.Seq2[*loftv1.WatchEventsResponse, error] {
	o := watchOptions{initial: 250 * time.Millisecond, ceiling: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	return func(yield func(*loftv1.WatchEventsResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if req == nil {
			req = &loftv1.WatchEventsRequest{}
		}
		req := proto.Clone(req).(*loftv1.WatchEventsRequest)
		failures := 0
		for {
			received := 0
			err := follow(ctx, events, req, func(item *loftv1.WatchEventsResponse) bool {
				// Every stream opens with a heartbeat; only what follows shows it works.
				if received++; received > 1 {
					failures = 0
				}
				if c := item.GetCursor(); c != "" {
					req.Start = &loftv1.WatchEventsRequest_AfterCursor{AfterCursor: c}
				}
				return yield(item, nil)
			})
			if err == errStopped {
				return
			}
			if ctx.Err() != nil {
				yield(nil, ctx.Err())
				return
			}
			if !retryable(err) {
				yield(nil, err)
				return
			}
			delay := backoff(o.initial, o.ceiling, failures)
			failures++
			if o.onRetry != nil {
				o.onRetry(err, delay)
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				yield(nil, ctx.Err())
				return
			case <-t.C:
			}
		}
	}
}

var errStopped = errors.New("stopped by the consumer")

// follow runs one WatchEvents call to its end: the error that ended it,
// io.EOF when the server closed it, or errStopped when yield said stop.
func follow(ctx context.Context, events loftv1.EventServiceClient, req *loftv1.WatchEventsRequest, yield func(*loftv1.WatchEventsResponse) bool) error {
	// Cancelling the call's context releases the stream if the consumer stops.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := events.WatchEvents(ctx, req)
	if err != nil {
		return err
	}
	for {
		item, err := stream.Recv()
		if err != nil {
			return err
		}
		if !yield(item) {
			return errStopped
		}
	}
}

func retryable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown, codes.DeadlineExceeded:
		return true
	}
	return false
}

// backoff is the delay before reconnection number n+1 of a run of failures.
func backoff(initial, ceiling time.Duration, n int) time.Duration {
	d := initial
	for i := 0; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
