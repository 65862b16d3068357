export {
  ERROR_DOMAIN,
  apiKeyInterceptor,
  createGrpcWebTransport,
  createLoftClient,
  errorInfo,
  errorReason,
  paginate,
  watch,
  withApiKey,
  type LoftClient,
  type WatchOptions,
  type WithApiKey,
} from "./client.js";
// The generated loft.v1 messages, enums and services.
export * from "./gen/loft/v1/index.js";
// The google.rpc details Loft's errors carry: `err.findDetails(BadRequestSchema)`.
export {
  BadRequestSchema,
  ErrorInfoSchema,
  ResourceInfoSchema,
  type BadRequest,
  type BadRequest_FieldViolation,
  type ErrorInfo,
  type ResourceInfo,
} from "./gen/google/rpc/error_details_pb.js";
export * as webhooks from "./webhooks.js";
