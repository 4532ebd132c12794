"""Batching concurrent requests, and the memory they may hold in flight."""
