// The hand-written layer over the generated loft.v1 services: one client object serving every
// service over a Connect transport, the API key interceptor, and helpers for pagination, error
// reasons and the resuming WatchEvents follower. Browser-safe: the Node.js HTTP/2 transport is in
// ./node.ts.

import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type CallOptions,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcWebTransport as connectGrpcWebTransport, type GrpcWebTransportOptions } from "@connectrpc/connect-web";

import { ErrorInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
import { ApiKeyService } from "./gen/loft/v1/api_key_service_pb.js";
import { DeliveryService } from "./gen/loft/v1/delivery_service_pb.js";
import { DestinationService } from "./gen/loft/v1/destination_service_pb.js";
import { ErrorReason, ErrorReasonSchema } from "./gen/loft/v1/error_reason_pb.js";
import {
  EventService,
  type WatchEventsRequestSchema,
  type WatchEventsResponse,
} from "./gen/loft/v1/event_service_pb.js";
import { EventTypeService } from "./gen/loft/v1/event_type_service_pb.js";
import { ProjectService } from "./gen/loft/v1/project_service_pb.js";
import { SourceService } from "./gen/loft/v1/source_service_pb.js";
import { SubscriptionService } from "./gen/loft/v1/subscription_service_pb.js";
import { TemplateService } from "./gen/loft/v1/template_service_pb.js";

/** Every Loft service, each a Connect client (`await loft.destinations.createDestination({...})`). */
export interface LoftClient {
  projects: Client<typeof ProjectService>;
  apiKeys: Client<typeof ApiKeyService>;
  sources: Client<typeof SourceService>;
  destinations: Client<typeof DestinationService>;
  subscriptions: Client<typeof SubscriptionService>;
  eventTypes: Client<typeof EventTypeService>;
  templates: Client<typeof TemplateService>;
  events: Client<typeof EventService>;
  deliveries: Client<typeof DeliveryService>;
}

/**
 * Returns a client for every Loft service over one transport: `createGrpcTransport` (Node.js,
 * HTTP/2, from `@loft-relay/client/node`) or `createGrpcWebTransport` (browsers and any `fetch`).
 */
export function createLoftClient(transport: Transport): LoftClient {
  return {
    projects: createClient(ProjectService, transport),
    apiKeys: createClient(ApiKeyService, transport),
    sources: createClient(SourceService, transport),
    destinations: createClient(DestinationService, transport),
    subscriptions: createClient(SubscriptionService, transport),
    eventTypes: createClient(EventTypeService, transport),
    templates: createClient(TemplateService, transport),
    events: createClient(EventService, transport),
    deliveries: createClient(DeliveryService, transport),
  };
}

/** An interceptor sending `authorization: Bearer <apiKey>` with every call. */
export function apiKeyInterceptor(apiKey: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
}

/** Connect's transport options plus the API key to send. */
export type WithApiKey<T extends { interceptors?: Interceptor[] }> = T & {
  /** Sent as `authorization: Bearer <apiKey>` with every call. */
  apiKey?: string;
};

/** Prepends the API key interceptor to the caller's interceptors. */
export function withApiKey<T extends { interceptors?: Interceptor[] }>({ apiKey, ...options }: WithApiKey<T>): T {
  const own = apiKey ? [apiKeyInterceptor(apiKey)] : [];
  return { ...options, interceptors: [...own, ...(options.interceptors ?? [])] } as T;
}

/**
 * A gRPC-Web transport (`@connectrpc/connect-web`, over `fetch`: browsers, Node.js, Deno, Bun).
 * Loft serves gRPC-Web with CORS on its gRPC port: `baseUrl: "http://127.0.0.1:7400"`.
 */
export function createGrpcWebTransport(options: WithApiKey<GrpcWebTransportOptions>): Transport {
  return connectGrpcWebTransport(withApiKey(options));
}

// --- errors ------------------------------------------------------------------------------------

/** The `domain` of the `google.rpc.ErrorInfo` Loft attaches to every error. */
export const ERROR_DOMAIN = "loft.v1";

/** The `google.rpc.ErrorInfo` of Loft's domain carried by a failed call, or undefined. */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  if (!(err instanceof ConnectError)) {
    return undefined;
  }
  return err.findDetails(ErrorInfoSchema).find((info) => info.domain === ERROR_DOMAIN);
}

/**
 * Why a call failed, as an `ErrorReason`: the wire reason `"DESTINATION_URL_FORBIDDEN"` is
 * `ErrorReason.DESTINATION_URL_FORBIDDEN`. `ErrorReason.UNSPECIFIED` for anything without Loft's
 * ErrorInfo and for reasons newer than this client.
 */
export function errorReason(err: unknown): ErrorReason {
  const reason = errorInfo(err)?.reason;
  const value = ErrorReasonSchema.values.find((v) => v.name === `ERROR_REASON_${reason}`);
  return value ? (value.number as ErrorReason) : ErrorReason.UNSPECIFIED;
}

// --- pagination --------------------------------------------------------------------------------

/**
 * Yields every item of a List RPC, calling it once per page until `nextPageToken` comes back
 * empty:
 *
 * ```ts
 * for await (const d of paginate(loft.destinations.listDestinations, { pageSize: 100 }, (r) => r.destinations)) {
 *   console.log(d.id);
 * }
 * ```
 *
 * `request.pageToken`, if set, is where the first page starts; `options` go to every call.
 */
export async function* paginate<Req extends { pageToken?: string }, Res extends { nextPageToken: string }, Item>(
  method: (request: Req, options?: CallOptions) => Promise<Res>,
  request: Req,
  items: (response: Res) => Iterable<Item>,
  options?: CallOptions,
): AsyncGenerator<Item, void, undefined> {
  let token = request.pageToken ?? "";
  for (;;) {
    const response = await method({ ...request, pageToken: token }, options);
    yield* items(response);
    if (response.nextPageToken === "") {
      return;
    }
    if (response.nextPageToken === token) {
      throw new Error("loft: the server returned the same page token again");
    }
    token = response.nextPageToken;
  }
}

// --- the live feed -----------------------------------------------------------------------------

export interface WatchOptions extends CallOptions {
  /**
   * Delay before the first reconnection, in ms (default 250); doubles (±20 % jitter) up to
   * `maxBackoffMs`, and starts over once a stream delivers more than the heartbeat it opens with.
   */
  initialBackoffMs?: number;
  /** The longest delay between reconnections, in ms (default 30 000). */
  maxBackoffMs?: number;
  /** Called with the error (undefined when the server ended the stream) and the delay before each reconnection. */
  onRetry?: (error: ConnectError | undefined, delayMs: number) => void;
}

const retryable = new Set([
  Code.Unavailable,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.DeadlineExceeded,
]);

/**
 * Follows `WatchEvents` and yields every item of the feed, heartbeats included (they carry a
 * fresh cursor). When the stream breaks for a reason worth retrying (`Unavailable` and other
 * transient codes, or the server ending the stream) it reconnects with backoff and resumes after
 * the last cursor it yielded: no gap and no duplicate across reconnections. Other errors
 * (`InvalidArgument` with reason `INVALID_CURSOR`, `OutOfRange` with reason `CURSOR_EXPIRED`,
 * `PermissionDenied`…) are thrown; so is the abort of `options.signal` (as `Canceled`).
 *
 * `request` says where to start (`start: { case: "afterCursor", value: cursor }`, a `startTime`,
 * or from now; a reconnection before the first item starts over from it) and is not modified. To resume across restarts of your program, store the last
 * item's `cursor` and pass it as `afterCursor`.
 */
export async function* watch(
  events: Client<typeof EventService>,
  request: MessageInitShape<typeof WatchEventsRequestSchema> = {},
  options: WatchOptions = {},
): AsyncGenerator<WatchEventsResponse, void, undefined> {
  const { initialBackoffMs = 250, maxBackoffMs = 30_000, onRetry, signal, ...callOptions } = options;
  let req = { ...request };
  let failures = 0;
  for (;;) {
    if (signal?.aborted) {
      throw ConnectError.from(signal.reason);
    }
    // One controller per call, so that a consumer who stops early also ends the stream.
    const call = new AbortController();
    const abort = (): void => call.abort(signal?.reason);
    signal?.addEventListener("abort", abort);
    let error: ConnectError | undefined;
    let received = 0;
    try {
      for await (const item of events.watchEvents(req, { ...callOptions, signal: call.signal })) {
        // Every stream opens with a heartbeat; only what follows shows that it works.
        if (++received > 1) {
          failures = 0;
        }
        if (item.cursor !== "") {
          req = { ...req, start: { case: "afterCursor", value: item.cursor } };
        }
        yield item;
      }
    } catch (e) {
      const err = ConnectError.from(e);
      if (signal?.aborted || !retryable.has(err.code)) {
        throw err;
      }
      error = err;
    } finally {
      signal?.removeEventListener("abort", abort);
      call.abort();
    }
    const delay = Math.min(initialBackoffMs * 2 ** failures, maxBackoffMs) * (0.8 + 0.4 * Math.random());
    failures++;
    onRetry?.(error, delay);
    await sleep(delay, signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(ConnectError.from(signal.reason));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(ConnectError.from(signal?.reason));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
