"""Loading a trained checkpoint: weights only, and every way a file can be bad is one clear line."""

from __future__ import annotations

import inspect
import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from digitpipe.errors import DataError, UserError
from digitpipe.models.classifier import DigitClassifier

FIX = "train again (dvc repro, or python src/train.py) or use a checkpoint this project's training saved"


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def load_classifier(path: str | Path) -> DigitClassifier:
    """A trained checkpoint on the CPU (weights_only); a bad file is one DataError naming it and the fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; train first (dvc repro, or python src/train.py)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror}); {FIX}") from err
    if not data:
        raise DataError(f"{path} is empty (0 bytes): no checkpoint was written to it; {FIX}")
    checkpoint = _unpickle(path, data)
    if not isinstance(checkpoint, dict) or not all(
        isinstance(checkpoint.get(key), dict) for key in ("state_dict", "hyper_parameters")
    ):
        held = _names(checkpoint) if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}"
        raise DataError(
            f"{path} is not a Lightning checkpoint of this project's model (it holds {held}, where one "
            f"holds state_dict and hyper_parameters); {FIX}"
        )
    _check_weights(path, checkpoint["state_dict"], _expected_weights(path, checkpoint["hyper_parameters"]))
    try:  # Lightning's own loader, for its checkpoint migrations and the module's hooks
        return DigitClassifier.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:  # only a crafted file gets here
        raise DataError(f"{path} does not load as this project's model ({_reason(err)}); {FIX}") from err


def _unpickle(path: Path, data: bytes) -> Any:
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # weights-only unpickling fails safely, but in many ways, on arbitrary bytes
        blocked = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if blocked:
            raise DataError(
                f"{path} holds pickled Python objects ({blocked[1]}), not only weights, and was refused "
                f"because loading them could run code; {FIX}"
            ) from err
        zipped = zipfile.is_zipfile(io.BytesIO(data))  # torch.save writes a zip archive
        what = "is a damaged PyTorch checkpoint" if zipped else "is not a PyTorch checkpoint, or is truncated"
        raise DataError(f"{path} {what}; {FIX}") from err


def _expected_weights(path: Path, hparams: dict) -> dict[str, tuple[int, ...]]:
    """Weight names and shapes of the network `hparams` build, or DataError if they build none."""
    params = inspect.signature(DigitClassifier).parameters
    missing = [n for n, p in params.items() if p.default is p.empty and n not in hparams]
    unknown = [n for n in hparams if n not in params]
    if missing or unknown:
        raise DataError(
            f"{path} is a checkpoint of another model ({_diff(missing, unknown, 'hyper-parameters')}); {FIX}"
        )
    try:
        return {k: tuple(v.shape) for k, v in DigitClassifier(**hparams).state_dict().items()}
    except (UserError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{path} has hyper-parameters that build no network ({_reason(err)}); {FIX}") from err


def _check_weights(path: Path, weights: dict, expected: dict[str, tuple[int, ...]]) -> None:
    found = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if found.keys() != expected.keys():
        diff = _diff(expected.keys() - found.keys(), found.keys() - expected.keys(), "weights")
        raise DataError(f"{path} holds the weights of another network ({diff}); {FIX}")
    wrong = [k for k in expected if found[k] != expected[k]]
    if wrong:
        k = wrong[0]
        raise DataError(
            f"{path} holds weights of the wrong shape for this network ({len(wrong)} tensor(s); "
            f"{k} is {list(found[k])}, not {list(expected[k])}); {FIX}"
        )


def _diff(lacks: Any, extra: Any, kind: str) -> str:
    faults = [f"it lacks the {kind} {_names(lacks)}"] if lacks else []
    faults += [f"it has {kind} this model does not take: {_names(extra)}"] if extra else []
    return "; ".join(faults)


def _names(names: Any, shown: int = 5) -> str:
    names = sorted(map(str, names))
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _reason(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
