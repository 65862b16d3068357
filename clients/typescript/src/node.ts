// Node.js only: the gRPC transport over HTTP/2 (`@connectrpc/connect-node`).

import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport as connectGrpcTransport, type GrpcTransportOptions } from "@connectrpc/connect-node";

import { withApiKey, type WithApiKey } from "./client.js";

/**
 * A gRPC transport over HTTP/2 for Node.js. `baseUrl: "http://127.0.0.1:7400"` speaks plaintext
 * HTTP/2 (as `loft serve` listens by default); `https://…` uses TLS (`nodeOptions` takes `ca`,
 * `cert`, … for your own certificates).
 */
export function createGrpcTransport(options: WithApiKey<GrpcTransportOptions>): Transport {
  return connectGrpcTransport(withApiKey(options));
}
