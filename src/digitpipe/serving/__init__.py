"""What a trained model is used through: image files and bytes framed as MNIST digits (images), the
network that maps pixels to probabilities (network), and the MLflow model that carries both
(pyfunc_model), which `mlflow models serve` and `python src/predict.py` share."""
