"""The HTTP layer: routes, body reading, authentication, responses."""
