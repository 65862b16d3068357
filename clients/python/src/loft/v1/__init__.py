"""Generated from proto/loft/v1 by scripts/gen-clients. Do not edit."""
