"""The activation study's aggregate stage: the table, plot data and figures under reports/, and the
parent MLflow run "activation study" with every cell as a child run. Run by dvc repro from here."""

from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from digitpipe import atomic
from digitpipe.cli import VERSION_BASE
from digitpipe.errors import exit_on_user_error
from digitpipe.tracking.metadata import flatten_config
from digitpipe.tracking.store import open_store
from digitpipe_study.aggregate import aggregate
from digitpipe_study.cells import EXPERIMENT, Cell
from digitpipe_study.parent import record_parent

HERE = Path(__file__).resolve().parent
STUDY = "activation_study"


@exit_on_user_error
def main() -> None:
    study = yaml.safe_load((HERE / "params.yaml").read_text())["study"]
    with initialize_config_dir(str(HERE.parent.parent / "conf"), version_base=VERSION_BASE):
        cfg = compose("config", overrides=["diagnostics=on", f"mlflow.experiment_name={EXPERIMENT}"])
    rows, files = aggregate(HERE, study, cfg.callbacks.diagnostics.detail_steps)
    for path, data in files.items():
        atomic.write_bytes(path, data)
    summaries = [row.summary() for row in rows]
    metrics = {f"{s['arm']}/{s['activation']}/{k}": v for s in summaries for k, v in s.items()
               if isinstance(v, float) and k != "lr"}  # fmt: skip
    children = {Cell(c.arm, c.activation, c.seed).name: c.run_id for row in rows for c in row.cells}
    params = {f"study.{k}": str(v) for k, v in flatten_config(OmegaConf.create(study)).items()}
    run_id = record_parent(open_store(cfg.mlflow), STUDY, children, metrics, params, sorted(files))
    print(f"{len(children)} cells in {len(rows)} rows; parent run {run_id} in experiment {EXPERIMENT}")
    print((HERE / "reports" / "activation_study.md").read_text())


if __name__ == "__main__":
    main()
