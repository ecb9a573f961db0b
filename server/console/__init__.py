"""The web console `artdet serve` serves beside the gRPC port (needs the `console` extra)."""
