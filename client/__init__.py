"""Client for the scoring service."""
