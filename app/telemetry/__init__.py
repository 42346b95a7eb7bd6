"""OpenTelemetry traces of requests across the graph (README "Tracing")."""
