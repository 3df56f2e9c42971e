"""The code of the logged MLflow model (MLflow's "models from code"): loading the model runs this."""

import mlflow

from digitpipe.serving.pyfunc_model import DigitModel

mlflow.models.set_model(DigitModel())
