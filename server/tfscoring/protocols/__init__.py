"""Request forms: decode a body against the model's interface, encode the outputs."""
