package loft

import (
	"context"
	"fmt"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// pageResponse is the response of a List RPC.
type pageResponse interface {
	GetNextPageToken() string
}

// Paginate yields every item of a List RPC, calling it once per page until
// `next_page_token` comes back empty. items picks the page's items out of a
// response, e.g. (*loftv1.ListDestinationsResponse).GetDestinations:
//
//	req := &loftv1.ListDestinationsRequest{PageSize: 100}
//	for d, err := range loft.Paginate(ctx, client.ListDestinations, req, (*loftv1.ListDestinationsResponse).GetDestinations) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(d.GetId())
//	}
//
// req is not modified; its `page_token` is where the first page starts. An
// error is yielded once and ends the sequence.
func Paginate[Req proto.Message, Resp pageResponse, Item any](
	ctx context.Context,
	list func(context.Context, Req, ...grpc.CallOption) (Resp, error),
	req Req,
	items func(Resp) []Item,
	opts ...grpc.CallOption,
) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		var zero Item
		req := proto.Clone(req).(Req)
		m := req.ProtoReflect()
		field := m.Descriptor().Fields().ByName("page_token")
		if field == nil || field.Kind() != protoreflect.StringKind {
			yield(zero, fmt.Errorf("loft: %s has no page_token", m.Descriptor().FullName()))
			return
		}
		for {
			resp, err := list(ctx, req, opts...)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, item := range items(resp) {
				if !yield(item, nil) {
					return
				}
			}
			next := resp.GetNextPageToken()
			if next == "" {
				return
			}
			if next == m.Get(field).String() {
				yield(zero, fmt.Errorf("loft: %s returned its own page token again", m.Descriptor().FullName()))
				return
			}
			m.Set(field, protoreflect.ValueOfString(next))
		}
	}
}
