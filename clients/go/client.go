// Package loft is the Go client for Loft, the self-hosted webhook relay and
// delivery service.
//
// The generated messages and service clients are in package
// github.com/loft-relay/loft/clients/go/loftv1; this package adds a Client that
// serves every service over one connection, API key and TLS options, a
// pagination iterator, error reason helpers and a resuming WatchEvents
// follower. Package webhooks verifies and signs the webhooks Loft delivers.
package loft

import (
	"context"
	"crypto/tls"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/loft-relay/loft/clients/go/loftv1"
)

// maxRecvBytes leaves room for events at the server's largest body limit.
const maxRecvBytes = 64 << 20

// Client calls every Loft service over one connection: its methods are the
// RPCs of all the loft.v1 services (client.CreateDestination,
// client.ListEvents, …).
type Client struct {
	loftv1.ProjectServiceClient
	loftv1.ApiKeyServiceClient
	loftv1.SourceServiceClient
	loftv1.DestinationServiceClient
	loftv1.SubscriptionServiceClient
	loftv1.EventTypeServiceClient
	loftv1.TemplateServiceClient
	loftv1.EventServiceClient
	loftv1.DeliveryServiceClient

	conn *grpc.ClientConn
}

// Option configures Dial.
type Option func(*options)

type options struct {
	apiKey   string
	tls      *tls.Config
	insecure bool
	dial     []grpc.DialOption
}

// WithAPIKey sends the key as `authorization: Bearer <key>` on every call.
func WithAPIKey(key string) Option {
	return func(o *options) { o.apiKey = key }
}

// WithTLS connects over TLS with this configuration. Without WithTLS or
// WithInsecure, Dial uses TLS with the system's root certificates.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		o.tls = cfg
	}
}

// WithInsecure connects without TLS (plaintext HTTP/2), as `loft serve`
// listens by default. The API key is then sent in clear: use it on loopback or
// inside a trusted network only.
func WithInsecure() Option {
	return func(o *options) { o.insecure = true }
}

// WithDialOptions passes options to grpc.NewClient, after Loft's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Dial returns a Client for the server at addr (`host:port`, or any target
// grpc.NewClient accepts). Like grpc.NewClient it does not wait for the
// connection: the first call does.
func Dial(addr string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.insecure && o.tls != nil {
		return nil, errors.New("loft: WithTLS and WithInsecure exclude each other")
	}
	creds := insecure.NewCredentials()
	if !o.insecure {
		cfg := o.tls
		if cfg == nil {
			cfg = &tls.Config{}
		}
		creds = credentials.NewTLS(cfg)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes)),
		grpc.WithUserAgent("loft-go"),
	}
	if o.apiKey != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearerToken{token: o.apiKey, secure: !o.insecure}))
	}
	conn, err := grpc.NewClient(addr, append(dial, o.dial...)...)
	if err != nil {
		return nil, err
	}
	c := New(conn)
	c.conn = conn
	return c, nil
}

// New returns a Client over a connection the caller made and keeps: Close
// does not close it.
func New(cc grpc.ClientConnInterface) *Client {
	return &Client{
		ProjectServiceClient:      loftv1.NewProjectServiceClient(cc),
		ApiKeyServiceClient:       loftv1.NewApiKeyServiceClient(cc),
		SourceServiceClient:       loftv1.NewSourceServiceClient(cc),
		DestinationServiceClient:  loftv1.NewDestinationServiceClient(cc),
		SubscriptionServiceClient: loftv1.NewSubscriptionServiceClient(cc),
		EventTypeServiceClient:    loftv1.NewEventTypeServiceClient(cc),
		TemplateServiceClient:     loftv1.NewTemplateServiceClient(cc),
		EventServiceClient:        loftv1.NewEventServiceClient(cc),
		DeliveryServiceClient:     loftv1.NewDeliveryServiceClient(cc),
	}
}

// Close closes the connection Dial opened.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// bearerToken is per-RPC credentials carrying a Loft API key.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity keeps the key off plaintext connections unless
// WithInsecure said that is intended.
func (b bearerToken) RequireTransportSecurity() bool { return b.secure }
