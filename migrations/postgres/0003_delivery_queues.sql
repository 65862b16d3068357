-- Per-destination queues for the dispatcher's claim: each destination's due deliveries (fair
-- claims take a few from every destination instead of the oldest overall), an ORDERED
-- destination's head in creation order, and the deliveries leased right now.
CREATE INDEX deliveries_queue ON deliveries (destination_id, next_attempt_time) WHERE next_attempt_time IS NOT NULL;
CREATE INDEX deliveries_fifo ON deliveries (destination_id, create_time, id) WHERE next_attempt_time IS NOT NULL;
CREATE INDEX deliveries_leased ON deliveries (destination_id) WHERE lease_until IS NOT NULL;
-- The claim no longer takes due deliveries by time alone.
DROP INDEX deliveries_due;
