"""dvc.yaml names the files of conf/paths/default.yaml literally (DVC shows a column for every value
it templates from a file, so `${paths.*}` would put 11 paths into `dvc exp show`): they must agree."""

from __future__ import annotations

import yaml

from ..conftest import ROOT

PATHS = yaml.safe_load((ROOT / "conf" / "paths" / "default.yaml").read_text())
STAGE_FILES = {"stage_config", "conf_knobs", "raw_dir", "dataset", "stats", "model_dir", "run_info",
               "train_metrics", "history", "metrics", "per_class", "predictions",
               "confusion_png"}  # fmt: skip


def declared(dvc_yaml) -> set[str]:
    """Every path a pipeline's stages and plots declare (deps, outs, metrics, plots)."""
    found = set()
    spec = yaml.safe_load(dvc_yaml.read_text())
    for stage in spec["stages"].values():
        for field in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(field, []):
                found.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    for plot in spec.get("plots", []):
        for definition in plot.values():
            found.update(definition["y"])
    return found


def test_the_main_pipeline_declares_exactly_the_files_of_conf_paths():
    files = {path for path in declared(ROOT / "dvc.yaml") if not path.startswith(("src", "conf"))}
    assert files == {PATHS[key] for key in STAGE_FILES}
    assert "${" not in (ROOT / "dvc.yaml").read_text()


def test_the_sub_pipelines_name_the_main_pipelines_files_as_conf_paths_does():
    for dvc_yaml in sorted((ROOT / "pipelines").glob("*/dvc.yaml")):
        text = dvc_yaml.read_text()
        assert "${paths." not in text and "../../params.yaml" not in text, dvc_yaml
        main_files = {p.removeprefix("../../") for p in declared(dvc_yaml) if p.startswith("../../")}
        assert main_files <= {PATHS["dataset"], "src", "src/digitpipe", "src/digitpipe_search",
                              "src/digitpipe_study", "src/search.py", "src/train.py", "src/evaluate.py",
                              "conf"}, (dvc_yaml, main_files)  # fmt: skip
        for key in ("dataset", "stats", "raw_dir"):  # the search's command names them too
            for named in (w.split("=", 1)[1] for w in text.split() if w.startswith(f"paths.{key}=")):
                assert named == f"../../{PATHS[key]}", (dvc_yaml, key, named)


def test_each_sub_pipeline_is_a_dvc_project_of_its_own_sharing_the_main_cache():
    """So the main pipeline's `dvc exp show` lists none of their params, deps or metrics."""
    for dvc_yaml in sorted((ROOT / "pipelines").glob("*/dvc.yaml")):
        config = (dvc_yaml.parent / ".dvc" / "config").read_text()
        assert "dir = ../../../.dvc/cache" in config, dvc_yaml
