// Unit tests of the hand-written client layer against fake services on a real HTTP/2 server
// (127.0.0.1, a free port), over both transports. integration.test.ts runs against a real
// `loft serve`.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import {
  createGrpcWebTransport,
  createLoftClient,
  errorInfo,
  errorReason,
  paginate,
  watch,
} from "../src/client.js";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { DestinationService, DestinationSchema } from "../src/gen/loft/v1/destination_service_pb.js";
import { ErrorReason } from "../src/gen/loft/v1/error_reason_pb.js";
import { EventService, HeartbeatSchema, type WatchEventsResponse } from "../src/gen/loft/v1/event_service_pb.js";
import { createGrpcTransport } from "../src/node.js";

/** Fails a call the way Loft does: ErrorInfo and BadRequest details. */
function loftError(code: Code, reason: string): ConnectError {
  return new ConnectError(reason.toLowerCase(), code, undefined, [
    { desc: ErrorInfoSchema, value: { reason, domain: "loft.v1" } },
    { desc: BadRequestSchema, value: {} },
  ]);
}

/** WatchEvents script: per call, cursors to send then how to end (undefined: end cleanly). */
type FeedCall = { cursors: string[]; end?: ConnectError };

const ids = ["dst_1", "dst_2", "dst_3", "dst_4", "dst_5"];

class Fakes {
  auth: (string | null)[] = [];
  feed: FeedCall[] = [];
  starts: string[] = [];

  routes = (router: ConnectRouter): void => {
    const self = this; // for the generator method below
    router.service(DestinationService, {
      listDestinations: (req, ctx) => {
        this.auth.push(ctx.requestHeader.get("authorization"));
        let start = 0;
        if (req.pageToken !== "") {
          if (!req.pageToken.startsWith("page-")) {
            throw loftError(Code.InvalidArgument, "INVALID_PAGE_TOKEN");
          }
          start = Number(req.pageToken.slice(5));
        }
        const end = Math.min(start + 2, ids.length);
        return {
          destinations: ids.slice(start, end).map((id) => create(DestinationSchema, { id })),
          nextPageToken: end < ids.length ? `page-${end}` : "",
        };
      },
    });
    router.service(EventService, {
      watchEvents: async function* (req, ctx) {
        self.starts.push(req.start.case === "afterCursor" ? req.start.value : "");
        const call = self.feed.shift();
        if (call === undefined) {
          // Past the script: stay open until the client leaves.
          await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
          return;
        }
        for (const cursor of call.cursors) {
          yield { cursor, activity: { case: "heartbeat", value: create(HeartbeatSchema) } };
        }
        if (call.end) {
          throw call.end;
        }
      },
    });
  };
}

// Loft serves gRPC (HTTP/2) and gRPC-Web (HTTP/1.1) on one port; the fake uses one server each,
// because fetch speaks HTTP/1.1 only and Node's plaintext HTTP/2 server does not.
const fakes = new Fakes();
const h2 = http2.createServer(connectNodeAdapter({ routes: fakes.routes }));
const h1 = http.createServer(connectNodeAdapter({ routes: fakes.routes }));
const url = (s: http.Server | http2.Http2Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;

before(async () => {
  await new Promise<void>((resolve) => h2.listen(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => h1.listen(0, "127.0.0.1", resolve));
});

const sessions = new Set<http2.ServerHttp2Session>();
h2.on("session", (session) => sessions.add(session));

after(() => {
  // Clients keep connections open for reuse: close them, or the process does not exit.
  sessions.forEach((session) => session.destroy());
  h2.close();
  h1.closeAllConnections();
  h1.close();
});

const transports: [string, () => Transport][] = [
  ["gRPC", () => createGrpcTransport({ baseUrl: url(h2), apiKey: "loft_test" })],
  ["gRPC-Web", () => createGrpcWebTransport({ baseUrl: url(h1), apiKey: "loft_test" })],
];

for (const [name, transport] of transports) {
  describe(`over ${name}`, () => {
    test("createLoftClient serves every service", () => {
      const loft = createLoftClient(transport());
      assert.deepEqual(Object.keys(loft).sort(), [
        "apiKeys",
        "deliveries",
        "destinations",
        "eventTypes",
        "events",
        "projects",
        "sources",
        "subscriptions",
        "templates",
      ]);
    });

    test("paginate walks every page, sending the API key", async () => {
      const loft = createLoftClient(transport());
      fakes.auth = [];
      const got: string[] = [];
      for await (const d of paginate(loft.destinations.listDestinations, { pageSize: 2 }, (r) => r.destinations)) {
        got.push(d.id);
      }
      assert.deepEqual(got, ids);
      assert.deepEqual(fakes.auth, ["Bearer loft_test", "Bearer loft_test", "Bearer loft_test"]);

      // Stopping early makes no more calls.
      for await (const d of paginate(loft.destinations.listDestinations, {}, (r) => r.destinations)) {
        assert.equal(d.id, "dst_1");
        break;
      }
      assert.equal(fakes.auth.length, 4);
    });

    test("errorReason reads the ErrorInfo", async () => {
      const loft = createLoftClient(transport());
      const err = await loft.destinations.listDestinations({ pageToken: "garbage" }).then(
        () => assert.fail("no error"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(errorReason(err), ErrorReason.INVALID_PAGE_TOKEN);
      assert.equal(errorInfo(err)?.domain, "loft.v1");
    });

    test("watch resumes after the last cursor it yielded", async () => {
      const loft = createLoftClient(transport());
      fakes.feed = [
        { cursors: ["c1", "c2"], end: loftError(Code.Unavailable, "DATABASE_UNAVAILABLE") },
        { cursors: [], end: loftError(Code.Unavailable, "DATABASE_UNAVAILABLE") }, // fails before any item
        { cursors: ["c3"] }, // the server ends the stream cleanly
        { cursors: ["c4", "c5"], end: loftError(Code.OutOfRange, "CURSOR_EXPIRED") },
      ];
      fakes.starts = [];
      const retries: (Code | undefined)[] = [];
      const request = { start: { case: "afterCursor" as const, value: "c0" } };
      const got: string[] = [];
      const err = await (async () => {
        const options = { initialBackoffMs: 1, maxBackoffMs: 5, onRetry: (e?: ConnectError) => retries.push(e?.code) };
        for await (const item of watch(loft.events, request, options)) {
          got.push(item.cursor);
        }
      })().then(
        () => assert.fail("watch ended without an error"),
        (e: unknown) => e,
      );
      assert.deepEqual(got, ["c1", "c2", "c3", "c4", "c5"]);
      assert.deepEqual(fakes.starts, ["c0", "c2", "c2", "c3"]);
      assert.deepEqual(retries, [Code.Unavailable, Code.Unavailable, undefined]);
      assert.equal(errorReason(err), ErrorReason.CURSOR_EXPIRED);
      assert.equal(request.start.value, "c0");
    });

    // Every stream opens with a heartbeat, so that alone must not reset the backoff: a server that
    // accepts streams and fails them at once gets ever longer delays; a stream that delivers more
    // starts them over.
    test("watch's backoff ignores the opening heartbeat", async () => {
      const loft = createLoftClient(transport());
      const unavailable = (): ConnectError => loftError(Code.Unavailable, "DATABASE_UNAVAILABLE");
      fakes.feed = [
        { cursors: ["h1"], end: unavailable() },
        { cursors: ["h2"], end: unavailable() },
        { cursors: ["h3"], end: unavailable() },
        { cursors: ["h4", "c5"], end: unavailable() },
        { cursors: ["h6"] },
      ];
      const delays: number[] = [];
      const options = { initialBackoffMs: 1, maxBackoffMs: 1000, onRetry: (_?: ConnectError, d?: number) => delays.push(d!) };
      for await (const item of watch(loft.events, {}, options)) {
        if (item.cursor === "h6") {
          break;
        }
      }
      // With ±20 % jitter: 1 ms, 2 ms, 4 ms, then 1 ms again after c5.
      assert.equal(delays.length, 4);
      assert.ok(delays[0] < delays[1] && delays[1] < delays[2] && delays[3] < delays[1], `delays ${delays}`);
    });

    test("watch stops on a permanent error, a break, or an abort", async () => {
      const loft = createLoftClient(transport());
      fakes.feed = [{ cursors: [], end: new ConnectError("not yet", Code.Unimplemented) }];
      fakes.starts = [];
      await assert.rejects(watch(loft.events).next(), (e: unknown) => e instanceof ConnectError && e.code === Code.Unimplemented);
      assert.equal(fakes.starts.length, 1);

      fakes.feed = [{ cursors: ["c1", "c2"] }];
      for await (const item of watch(loft.events)) {
        assert.equal(item.cursor, "c1");
        break;
      }

      fakes.feed = [{ cursors: ["c1"] }]; // then a stream that stays open
      const controller = new AbortController();
      const got: WatchEventsResponse[] = [];
      await assert.rejects(
        (async () => {
          for await (const item of watch(loft.events, {}, { signal: controller.signal, initialBackoffMs: 1 })) {
            got.push(item);
            setTimeout(() => controller.abort(), 20);
          }
        })(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled,
      );
      assert.equal(got.length, 1);

      // A signal aborted before the first call: no call at all.
      fakes.feed = [{ cursors: ["c1"] }];
      fakes.starts = [];
      await assert.rejects(
        watch(loft.events, {}, { signal: AbortSignal.abort() }).next(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled,
      );
      assert.equal(fakes.starts.length, 0);
    });
  });
}

test("errorReason of other errors is UNSPECIFIED", () => {
  assert.equal(errorReason(new Error("plain")), ErrorReason.UNSPECIFIED);
  assert.equal(errorReason(undefined), ErrorReason.UNSPECIFIED);
  const foreign = new ConnectError("x", Code.Internal, undefined, [
    { desc: ErrorInfoSchema, value: { reason: "INTERNAL", domain: "proxy.example" } },
  ]);
  assert.equal(errorReason(foreign), ErrorReason.UNSPECIFIED);
  assert.equal(errorReason(loftError(Code.Internal, "SOMETHING_NEWER")), ErrorReason.UNSPECIFIED);
  assert.equal(errorReason(loftError(Code.InvalidArgument, "DESTINATION_URL_FORBIDDEN")), ErrorReason.DESTINATION_URL_FORBIDDEN);
});
