// Tests against a real `loft serve` (started by .ci/run), skipped when LOFT_TEST_GRPC_ADDR is
// unset. LOFT_TEST_API_KEY is an ADMIN key; the server runs with --dev, so http://127.0.0.1
// destinations are allowed. Everything runs over gRPC (HTTP/2) and over gRPC-Web (HTTP/1.1, same
// port).
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test, type TestContext } from "node:test";

import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";

import { createGrpcWebTransport, createLoftClient, errorReason, paginate, watch, type LoftClient } from "../src/client.js";
import { ApiKeyRole } from "../src/gen/loft/v1/api_key_service_pb.js";
import { ErrorReason } from "../src/gen/loft/v1/error_reason_pb.js";
import type { Attempt } from "../src/gen/loft/v1/delivery_service_pb.js";
import type { WatchEventsResponse } from "../src/gen/loft/v1/event_service_pb.js";
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

    // Needs PublishEvent and ListAttempts (issue 4): skips itself while the server answers
    // UNIMPLEMENTED.
    test("publish → signed delivery → attempt", async (t: TestContext) => {
      const unimplemented = (e: unknown): boolean => ConnectError.from(e).code === Code.Unimplemented;
      let published;
      try {
        published = await editor.events.publishEvent({
          type: "order.created",
          payload: { case: "json", value: fromJson(ValueSchema, { order: 42 }) },
        });
      } catch (e) {
        if (unimplemented(e)) {
          t.skip("PublishEvent is not implemented by the server yet (issue 4)");
          return;
        }
        throw e;
      }
      assert.equal(published.deliveriesCreated, 1);
      const event = published.event!;

      const delivery = await receiver.next(30_000);
      await verify(delivery.body, delivery.headers as Record<string, string>, [secret]);
      assert.equal(delivery.headers["webhook-id"], event.id);
      assert.equal(delivery.headers["x-loft-event-type"], "order.created");

      let attempts: Attempt[] = [];
      for (const deadline = Date.now() + 30_000; attempts.length === 0 && Date.now() < deadline; ) {
        attempts = [];
        try {
          for await (const a of paginate(editor.deliveries.listAttempts, { eventId: event.id }, (r) => r.attempts)) {
            attempts.push(a);
          }
        } catch (e) {
          if (unimplemented(e)) {
            t.skip("ListAttempts is not implemented by the server yet (issue 4)");
            return;
          }
          throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(attempts.length, 1);
      assert.equal(attempts[0].response?.statusCode, 204);
    });

    // The project's feed from its creation (the destination and subscription made it
    // resource_changed items), then resumed from the first item's cursor. Needs WatchEvents
    // (issue 4): skips itself while the server answers UNIMPLEMENTED.
    test("watch, then resume from a cursor", async (t: TestContext) => {
      const signal = AbortSignal.timeout(30_000);
      const first: WatchEventsResponse[] = [];
      try {
        for await (const item of watch(editor.events, { start: { case: "startTime", value: created! } }, { signal })) {
          if (item.activity.case !== "heartbeat") {
            first.push(item);
          }
          if (first.length === 2) {
            break;
          }
        }
      } catch (e) {
        if (ConnectError.from(e).code === Code.Unimplemented) {
          t.skip("WatchEvents is not implemented by the server yet (issue 4)");
          return;
        }
        throw e;
      }
      for await (const item of watch(editor.events, { start: { case: "afterCursor", value: first[0].cursor } }, { signal })) {
        if (item.activity.case !== "heartbeat") {
          assert.equal(item.cursor, first[1].cursor);
          break;
        }
      }
    });
  });
}
