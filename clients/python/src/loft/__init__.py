"""Python client for Loft, the self-hosted webhook relay and delivery service."""
