"""Builds the how-to's TF1 MNIST DNN and writes it in the registered-model layout."""
