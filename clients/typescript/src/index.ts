export * as webhooks from "./webhooks.js";
