"""DDP on two CPU processes through the real CLI: sharding, reduced metrics, one run, reproducible."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from digitpipe.data.datamodule import scale_images
from digitpipe.data.source import dataset_source
from digitpipe.evaluation.metrics import evaluate_logits, predict_logits
from digitpipe.models.checkpoint import load_classifier

from ..conftest import ROOT, compose_config, copy_project, free_port, run_cli, user_env
from ..support import write_indexed_dataset

pytestmark = pytest.mark.slow

SIZES = {"train": 501, "val": 101, "test": 101}  # odd: a padding sampler would repeat samples


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny):
    project = copy_project(tmp_path_factory.mktemp("ddp") / "project")
    tiny.shrink(project)
    processed = project / "data" / "processed"
    params = dataset_source(compose_config(config_dir=project / "conf")).params()  # what train will ask
    write_indexed_dataset(processed / "mnist.pt", processed / "stats.json", SIZES, params)
    return project


def train_ddp(project: Path, experiment: str, *extra: str, record: Path | None = None, multirun=False):
    args = ["python", "src/train.py", *(["-m"] if multirun else [])]
    args += ["trainer=ddp_cpu", "trainer.max_epochs=2", "data.batch_size=32", "data.eval_batch_size=25"]
    # fp32 whatever `auto` would choose: the tests compare numbers with a single-process evaluation
    args += ["trainer.precision=32-true"]
    args += ["callbacks.progress_bar.refresh_rate=0", "test_after_fit=true", "mlflow.log_model=false"]
    args += [f"mlflow.experiment_name={experiment}"]
    args += list(extra)
    if record:
        args += [
            "+callbacks.recorder._target_=tests.support.IndexRecorder",
            f"+callbacks.recorder.out_dir={record}",
        ]
    result = run_cli(args, cwd=project, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def runs_of(project: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.fixture(scope="module")
def ddp_run(project, tmp_path_factory):
    """One two-process training, and what it left, kept here: later tests train in the project too."""
    record, kept = tmp_path_factory.mktemp("indices"), tmp_path_factory.mktemp("outputs")
    result = train_ddp(project, "ddp", record=record)
    seen = {p.stem: json.loads(p.read_text()) for p in record.glob("*.json")}
    for output in ("models", "reports"):
        shutil.copytree(project / output, kept / output)
    metrics = json.loads((kept / "reports" / "train_metrics.json").read_text())
    weights = torch.load(kept / "models" / "last.ckpt", weights_only=True)["state_dict"]
    return DdpRun(result, seen, metrics, weights, kept)


@dataclass(frozen=True)
class DdpRun:
    result: subprocess.CompletedProcess
    seen: dict[str, list[int]]  # the indices each rank trained, validated and tested on, per epoch
    metrics: dict[str, float]
    weights: dict[str, torch.Tensor]
    outputs: Path  # a copy of the project's models/ and reports/ as the training left them


def test_each_rank_trains_a_disjoint_shard_of_every_epoch(ddp_run):
    seen = ddp_run.seen
    orders = []
    for epoch in (0, 1):
        rank0, rank1 = seen[f"train_rank0_epoch{epoch}"], seen[f"train_rank1_epoch{epoch}"]
        assert len(rank0) == len(rank1) == 251  # 501 samples, padded to 502 as DistributedSampler documents
        counts = Counter(rank0 + rank1)
        assert set(counts) == set(range(501))  # nothing dropped
        assert sorted(counts.values()) == [1] * 500 + [2]  # one repeat: the documented padding
        assert len(set(rank0)) == 251 and len(set(rank1)) == 251
        orders.append(rank0)
    assert orders[0] != orders[1]  # reshuffled every epoch


@pytest.mark.parametrize("stage", ["val", "test"])
def test_validation_and_test_shards_cover_every_sample_exactly_once(ddp_run, stage):
    seen = ddp_run.seen
    epoch = 1 if stage == "val" else 2  # the test runs after the two training epochs
    rank0, rank1 = seen[f"{stage}_rank0_epoch{epoch}"], seen[f"{stage}_rank1_epoch{epoch}"]
    assert sorted(rank0 + rank1) == list(range(101))


def test_two_process_test_accuracy_equals_a_single_process_evaluation(ddp_run, project):
    (run,) = runs_of(project, "ddp")
    model = load_classifier(ddp_run.outputs / "models" / "best.ckpt")
    data = torch.load(project / "data" / "processed" / "mnist.pt", weights_only=True)
    logits = predict_logits(model, scale_images(data["test_images"]), 50)
    single = evaluate_logits(logits, data["test_labels"].long(), 10).scalars
    assert single["test/acc"] < 1.0  # noisy labels: a wrong count would show
    assert run.data.metrics["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
    assert run.data.metrics["test/loss"] == pytest.approx(single["test/loss"], rel=1e-4)


def test_one_mlflow_run_and_outputs_written_once_by_rank_zero(ddp_run, project):
    result, metrics = ddp_run.result, ddp_run.metrics
    (run,) = runs_of(project, "ddp")
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.devices"] == "2"
    assert len(run.data.params) > 30  # the whole config, once
    history = (ddp_run.outputs / "reports" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "1", "2"]
    assert result.stdout.count("run ") == 1  # only rank 0 reports a run
    assert sorted(p.name for p in (ddp_run.outputs / "models").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert "val/acc" in metrics and "test/acc" not in metrics


def test_the_same_seed_gives_the_same_ddp_result_twice(ddp_run, project):
    metrics, weights = ddp_run.metrics, ddp_run.weights
    train_ddp(project, "ddp-again")
    again = json.loads((project / "reports" / "train_metrics.json").read_text())
    drop = {"fit_seconds"}
    assert {k: v for k, v in metrics.items() if k not in drop} == {
        k: v for k, v in again.items() if k not in drop
    }
    repeat = torch.load(project / "models" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], repeat[k]) for k in weights)


def test_a_hydra_sweep_under_ddp_runs_each_job_once(project):
    train_ddp(project, "ddp-sweep", "model.activation=relu,tanh", "trainer.max_epochs=1", multirun=True)
    runs = runs_of(project, "ddp-sweep")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3  # the sweep's parent and one run per job, none per rank
    assert sorted(r.data.params["model.activation"] for r in children) == ["relu", "tanh"]
    assert all(r.info.status == "FINISHED" for r in runs)


def torchrun(project: Path, experiment: str, node_rank: int, nnodes: int, nproc: int, port: int):
    """One node's `torchrun` launch, as a user would type it on that node."""
    command = [
        str(Path(sys.executable).parent / "torchrun"),
        f"--nnodes={nnodes}",
        f"--nproc_per_node={nproc}",
        f"--node_rank={node_rank}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "src/train.py",
    ]
    command += ["trainer=ddp_cpu", f"trainer.devices={nproc}", f"trainer.num_nodes={nnodes}"]
    command += [
        "trainer.max_epochs=1",
        "callbacks.progress_bar.refresh_rate=0",
        "mlflow.log_model=false",
        f"mlflow.experiment_name={experiment}",
    ]
    env = user_env({"PYTHONPATH": str(ROOT)})
    return subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def torchrun_run(project):
    """One torchrun launch of two processes on this node; its output and its run."""
    process = torchrun(project, "torchrun", node_rank=0, nnodes=1, nproc=2, port=free_port())
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    (run,) = runs_of(project, "torchrun")
    return out + err, run


def test_under_torchrun_lightning_uses_the_launched_processes(torchrun_run):
    output, run = torchrun_run
    assert "MEMBER: 2/2" in output
    assert run.info.status == "FINISHED"


def test_two_nodes_on_localhost_train_as_one_world_of_two(project, torchrun_run):
    port = free_port()
    nodes = [torchrun(project, "two-nodes", node_rank=r, nnodes=2, nproc=1, port=port) for r in (1, 0)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    (run,) = runs_of(project, "two-nodes")
    _, single_node = torchrun_run  # same seed, 2 processes on one node
    assert run.data.metrics["val/acc"] == single_node.data.metrics["val/acc"]


def signalled_ddp(project: Path, experiment: str, rank: int, signal: str, marker: Path) -> list[str]:
    """A DDP training of tiny data, slowed down, that sends `signal` to `rank` once (per marker)."""
    return ["trainer.max_epochs=3", "data.batch_size=32", "data.eval_batch_size=25",
            "callbacks.progress_bar.refresh_rate=0", "mlflow.log_model=false",
            f"mlflow.experiment_name={experiment}",
            "+callbacks.slow._target_=tests.support.SlowSteps", "+callbacks.slow.seconds=0.1",
            "+callbacks.kill._target_=tests.support.SignalOnce", f"+callbacks.kill.signal={signal}",
            "+callbacks.kill.epoch=1", "+callbacks.kill.batch=3", f"+callbacks.kill.rank={rank}",
            f"+callbacks.kill.marker={marker}"]  # fmt: skip


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGKILL"])
def test_under_torchrun_a_rank_stopped_or_killed_ends_every_rank_in_seconds_and_the_run_is_closed(
    project, tmp_path, signal
):
    """torchrun's agent sees the rank end and SIGTERMs the others: rank 0 marks the run and exits."""
    marker = tmp_path / "signalled"
    torchrun_command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    args = [*torchrun_command, "src/train.py", "trainer=ddp_cpu",
            *signalled_ddp(project, f"torchrun-{signal}", 1, signal, marker)]  # fmt: skip
    result = run_cli(args, cwd=project, env={"PYTHONPATH": str(ROOT)}, timeout=300)
    seconds = time.time() - marker.stat().st_mtime  # from the signal to the end of the command
    assert result.returncode != 0, result.stderr[-3000:]
    assert seconds < 30, result.stderr[-3000:]
    (run,) = runs_of(project, f"torchrun-{signal}")
    assert run.info.status in ("FAILED", "KILLED"), result.stderr[-3000:]  # never left RUNNING
    said = rf"(error: DDP rank 0 lost another rank|stopped: interrupted by SIGTERM).*run {run.info.run_id}"
    assert re.search(said, result.stderr), result.stderr[-3000:]


@pytest.mark.parametrize(("rank", "code"), [(1, 1), (0, 143)])
def test_sigterm_to_one_rank_of_lightnings_launcher_ends_every_rank_in_seconds_and_a_rerun_resumes(
    project, tmp_path, rank, code
):
    """SIGTERM to one rank: before, Lightning's handler broadcast from inside the signal handler and
    both ranks waited for each other forever (0% CPU), ignoring further SIGTERMs. A rank whose peer
    is gone fails its next collective at once; Lightning's own observer kills what is left 5 s
    after a rank ended, so the run is FAILED or KILLED, or RUNNING with its process gone, and the
    same command resumes it either way (torchrun and SLURM always close it: the test above)."""
    marker = tmp_path / "signalled"
    args = [
        "python",
        "src/train.py",
        "trainer=ddp_cpu",
        *signalled_ddp(project, f"term{rank}", rank, "SIGTERM", marker),
    ]
    result = run_cli(args, cwd=project, env={"PYTHONPATH": str(ROOT)}, timeout=300)
    seconds = time.time() - marker.stat().st_mtime  # from the signal to the end of the command
    assert result.returncode in (code, -9), result.stderr[-3000:]
    assert seconds < 20
    assert "Traceback" not in result.stderr
    (run,) = runs_of(project, f"term{rank}")
    if rank == 0:
        assert run.info.status == "KILLED"
        assert f"stopped: interrupted by SIGTERM; run {run.info.run_id} marked KILLED" in result.stderr
    else:
        assert run.info.status != "FINISHED"
        assert "error: DDP rank 0 lost another rank" in result.stderr or result.returncode == -9
    again = run_cli(args, cwd=project, env={"PYTHONPATH": str(ROOT)}, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming run {run.info.run_id}" in again.stdout
    assert runs_of(project, f"term{rank}")[0].info.status == "FINISHED"
