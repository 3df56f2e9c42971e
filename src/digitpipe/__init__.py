"""digitpipe: a reproducible DVC + Lightning + Hydra + MLflow pipeline around the Keras MNIST convnet."""
