// Tests against a real `loft serve` (started by .ci/run), skipped when LOFT_TEST_GRPC_ADDR is
// unset. LOFT_TEST_API_KEY is an ADMIN key; the server runs with --dev, so http://127.0.0.1
// destinations are allowed. Everything runs over gRPC (HTTP/2) and over gRPC-Web (HTTP/1.1, same
// port).
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import { fromJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";

import { createGrpcWebTransport, createLoftClient, errorReason, paginate, watch, type LoftClient } from "../src/client.js";
import { ApiKeyRole } from "../src/gen/loft/v1/api_key_service_pb.js";
import { ErrorReason } from "../src/gen/loft/v1/error_reason_pb.js";
import type { Attempt } from "../src/gen/loft/v1/delivery_service_pb.js";
import {
  ActivityKind,
  type PublishEventRequestSchema,
  type PublishEventResponse,
  type WatchEventsResponse,
} from "../src/gen/loft/v1/event_service_pb.js";
import { createGrpcTransport } from "../src/node.js";
import { sign, verify } from "../src/webhooks.js";

const addr = process.env.LOFT_TEST_GRPC_ADDR ?? "";
const adminKey = process.env.LOFT_TEST_API_KEY ?? "";
const skip = addr === "" && "LOFT_TEST_GRPC_ADDR is not set: no loft serve to test against (.ci/run starts one)";

interface Delivery {
  headers: http.IncomingHttpHeaders;
  body: Uint8Array;
}

/** An HTTP receiver collecting what Loft delivers. */
class Receiver {
  deliveries: Delivery[] = [];
  private waiting: (() => void)[] = [];
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      this.deliveries.push({ headers: req.headers, body: new Uint8Array(Buffer.concat(chunks)) });
      this.waiting.splice(0).forEach((wake) => wake());
      res.writeHead(204).end();
    });
  });

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  async next(timeoutMs: number): Promise<Delivery> {
    const deadline = Date.now() + timeoutMs;
    while (this.deliveries.length === 0) {
      assert.ok(Date.now() < deadline, "no delivery arrived");
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.deliveries.shift()!;
  }
}

const transports: [string, (apiKey: string) => Transport][] = [
  ["gRPC", (apiKey) => createGrpcTransport({ baseUrl: `http://${addr}`, apiKey })],
  ["gRPC-Web", (apiKey) => createGrpcWebTransport({ baseUrl: `http://${addr}`, apiKey })],
];

for (const [name, transport] of transports) {
  describe(`loft serve over ${name}`, { skip }, () => {
    const receiver = new Receiver();
    let editor: LoftClient;
    let destinationId = "";
    let secret = "";
    let created: Timestamp | undefined;

    before(async () => {
      await new Promise<void>((resolve) => receiver.server.listen(0, "127.0.0.1", resolve));
      const admin = createLoftClient(transport(adminKey));
      const { project } = await admin.projects.createProject({ project: { name: `typescript ${name}` } });
      created = project!.createTime;
      const key = await admin.apiKeys.createApiKey({
        apiKey: { projectId: project!.id, name: "typescript", role: ApiKeyRole.EDITOR },
      });
      assert.match(key.secret, /^loft_/);
      editor = createLoftClient(transport(key.secret));
      // The EDITOR key defaults to its project: no projectId.
      const destination = await editor.destinations.createDestination({ destination: { name: "receiver", url: receiver.url } });
      destinationId = destination.destination!.id;
      secret = destination.secret;
      await editor.subscriptions.createSubscription({ subscription: { destinationId, eventTypes: ["order.*"] } });
    });

    after(() => {
      receiver.server.closeAllConnections();
      receiver.server.close();
    });

    test("pages through destinations; the signing secret signs what webhooks.verify accepts", async () => {
      await editor.destinations.createDestination({ destination: { name: "second", url: "http://127.0.0.1:9/hook" } });
      let calls = 0;
      const list: typeof editor.destinations.listDestinations = (req, options) => {
        calls++;
        return editor.destinations.listDestinations(req, options);
      };
      const names: string[] = [];
      for await (const d of paginate(list, { pageSize: 1 }, (r) => r.destinations)) {
        assert.notEqual(d.secretHint, secret);
        names.push(d.name);
      }
      assert.deepEqual(names.sort(), ["receiver", "second"]);
      assert.ok(calls >= 2, `${calls} calls`);

      const got = await editor.destinations.getDestinationSecret({ destinationId });
      assert.match(got.secret, /^whsec_/);
      assert.equal(got.secret, secret);
      const body = new TextEncoder().encode('{"order":1}');
      const now = new Date();
      const headers = {
        "webhook-id": "evt_test",
        "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
        "webhook-signature": await sign(got.secret, "evt_test", now, body),
      };
      await verify(body, headers, [got.secret]);
    });

    test("error reasons", async () => {
      const reasonOf = (p: Promise<unknown>): Promise<[Code, ErrorReason]> =>
        p.then(
          () => assert.fail("no error"),
          (e: unknown) => [ConnectError.from(e).code, errorReason(e)],
        );
      assert.deepEqual(await reasonOf(editor.destinations.createDestination({ destination: { url: "ftp://x" } })), [
        Code.InvalidArgument,
        ErrorReason.DESTINATION_URL_FORBIDDEN,
      ]);
      const pages = paginate(editor.destinations.listDestinations, { pageToken: "not-a-token" }, (r) => r.destinations);
      assert.deepEqual(await reasonOf(pages.next()), [Code.InvalidArgument, ErrorReason.INVALID_PAGE_TOKEN]);
      assert.deepEqual(await reasonOf(editor.destinations.getDestination({ destinationId: "dst_" + "0".repeat(26) })), [
        Code.NotFound,
        ErrorReason.RESOURCE_NOT_FOUND,
      ]);
    });

    test("publish → signed delivery → attempt", async () => {
      const published = await editor.events.publishEvent(orderCreated(42));
      assert.equal(published.deliveriesCreated, 1);
      const event = published.event!;

      const delivery = await receiver.next(30_000);
      await verify(delivery.body, delivery.headers as Record<string, string>, [secret]);
      assert.equal(delivery.headers["webhook-id"], event.id);
      assert.equal(delivery.headers["x-loft-event-type"], "order.created");

      let attempts: Attempt[] = [];
      for (const deadline = Date.now() + 30_000; attempts.length === 0 && Date.now() < deadline; ) {
        attempts = [];
        for await (const a of paginate(editor.deliveries.listAttempts, { eventId: event.id }, (r) => r.attempts)) {
          attempts.push(a);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(attempts.length, 1);
      assert.equal(attempts[0].response?.statusCode, 204);
    });

    // The project's feed from its creation (the destination and subscription made it
    // resource_changed items), then resumed from the first item's cursor.
    test("watch from a start time, then resume from a cursor", async () => {
      const signal = AbortSignal.timeout(30_000);
      const first: WatchEventsResponse[] = [];
      for await (const item of watch(editor.events, { start: { case: "startTime", value: created! } }, { signal, onRetry })) {
        if (item.activity.case !== "heartbeat") {
          assert.equal(item.activity.case, "resourceChanged");
          first.push(item);
        }
        if (first.length === 2) {
          break;
        }
      }
      for await (const item of watch(editor.events, { start: { case: "afterCursor", value: first[0].cursor } }, { signal, onRetry })) {
        if (item.activity.case !== "heartbeat") {
          assert.equal(item.cursor, first[1].cursor);
          break;
        }
      }
    });

    test("watch while events are delivered; stop part-way; resume from the last cursor", async () => {
      const signal = AbortSignal.timeout(60_000);
      const feed = new FeedCheck(destinationId);
      const publish = async (...orders: number[]): Promise<void> => {
        for (const order of orders) {
          feed.published(await editor.events.publishEvent(orderCreated(order)));
        }
      };
      // From now: the stream opens with a heartbeat, so events published after it are in the watch.
      let cursor = "";
      for await (const item of watch(editor.events, { kinds: deliveryKinds }, { signal, onRetry })) {
        cursor = item.cursor;
        if (!feed.see(item)) {
          if (feed.want.size === 0) {
            await publish(1, 2);
          }
        } else if (feed.seen.size === 4) {
          break; // of 6: stop part-way
        }
      }

      await publish(3, 4);
      const resume = { kinds: deliveryKinds, start: { case: "afterCursor" as const, value: cursor } };
      let opened = false;
      for await (const item of watch(editor.events, resume, { signal, onRetry })) {
        if (!opened) {
          assert.equal(item.activity.case, "heartbeat");
          assert.equal(item.cursor, cursor, "the resumed stream opens at the cursor it resumed from");
          opened = true;
        } else if (feed.see(item) && feed.seen.size === feed.want.size) {
          break;
        }
      }
      assert.equal(feed.seen.size, 12);
    });

    test("a bad cursor ends the watch with INVALID_CURSOR", async () => {
      const bad = watch(editor.events, { start: { case: "afterCursor", value: "not-a-cursor" } }, { onRetry });
      await assert.rejects(bad.next(), (e: unknown) => {
        assert.equal(ConnectError.from(e).code, Code.InvalidArgument);
        assert.equal(errorReason(e), ErrorReason.INVALID_CURSOR);
        return true;
      });
    });
  });
}

function orderCreated(order: number): MessageInitShape<typeof PublishEventRequestSchema> {
  return { type: "order.created", payload: { case: "json", value: fromJson(ValueSchema, { order }) } };
}

/** The server is up for these tests: a reconnection means the helper misread an answer. */
function onRetry(error: ConnectError | undefined): never {
  assert.fail(`the watch reconnected after ${error?.message ?? "the end of the stream"}`);
}

/** What one published event makes in the feed when its one destination answers 2xx. */
const deliveryKinds = [ActivityKind.EVENT_RECEIVED, ActivityKind.ATTEMPT_FINISHED, ActivityKind.DELIVERY_SUCCEEDED];

/** The items the events published so far must make, each to arrive once. */
class FeedCheck {
  want = new Set<string>();
  seen = new Set<string>();

  constructor(private destinationId: string) {}

  published(response: PublishEventResponse): void {
    assert.equal(response.deliveriesCreated, 1);
    for (const kind of ["eventReceived", "attemptFinished", "deliverySucceeded"]) {
      this.want.add(`${kind} ${response.event!.id}`);
    }
  }

  /** Records an item; false for a heartbeat. */
  see(item: WatchEventsResponse): boolean {
    assert.notEqual(item.cursor, "");
    let eventId: string;
    switch (item.activity.case) {
      case "heartbeat":
        return false;
      case "eventReceived":
        assert.equal(item.activity.value.event?.type, "order.created");
        eventId = item.activity.value.event!.id;
        break;
      case "attemptFinished":
        assert.equal(item.activity.value.attempt?.response?.statusCode, 204);
        eventId = item.activity.value.attempt!.eventId;
        break;
      case "deliverySucceeded":
        assert.equal(item.activity.value.delivery?.destinationId, this.destinationId);
        eventId = item.activity.value.delivery!.eventId;
        break;
      default:
        assert.fail(`${item.activity.case} is none of the kinds asked for`);
    }
    const key = `${item.activity.case} ${eventId}`;
    assert.ok(this.want.has(key), `unexpected item ${key}`);
    assert.ok(!this.seen.has(key), `${key} arrived twice`);
    this.seen.add(key);
    return true;
  }
}
