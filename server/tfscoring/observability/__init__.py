"""Request log, metrics, tracing, data collection and GPU metrics."""
