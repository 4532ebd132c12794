"""The processes around the workers: supervisor, health, front door, sizing."""
