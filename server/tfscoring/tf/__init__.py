"""TensorFlow: loading a model, its signatures and devices, and predicting."""
