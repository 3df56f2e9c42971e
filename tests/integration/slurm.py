"""A throwaway one-node SLURM cluster: Debian's slurm-wlm and munge (.ci/run installs them), a
minimal slurm.conf in a temp dir, munged, slurmctld and slurmd started as root (SlurmUser=root),
on free ports. Jobs run as the user who submits them, with the submitter's environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..conftest import free_port

CONF = """\
ClusterName=digitpipe-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={base}/munge.socket
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def installed() -> bool:
    return all(shutil.which(tool) for tool in ("munged", "slurmctld", "slurmd", "sbatch"))


@dataclass
class Slurm:
    base: Path

    @property
    def env(self) -> dict[str, str]:
        """What a client command (sbatch, squeue, scancel) needs to find this cluster."""
        return {"SLURM_CONF": str(self.base / "slurm.conf")}

    def run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, **kwargs.pop("env", {})}
        return subprocess.run(command, env=env, capture_output=True, text=True, **kwargs)

    def sbatch(self, *args: str, cwd: Path, env: dict[str, str]) -> str:
        """Submit; the job id."""
        done = self.run("sbatch", "--parsable", *args, cwd=cwd, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def wait(self, job: str, timeout: float) -> dict[str, str]:
        """Until no task of `job` is pending or running; the state of each of its tasks (sacct needs a
        database this cluster lacks, so the states come from squeue while it runs and then scontrol)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", job, "-o", "%i", timeout=30).stdout.strip():
                return self.states(job)
            time.sleep(1)
        self.run("scancel", job)
        raise AssertionError(f"SLURM job {job} did not end within {timeout:.0f} s")

    def states(self, job: str) -> dict[str, str]:
        shown = self.run("scontrol", "-o", "show", "job", job, timeout=30).stdout
        states = {}
        for line in shown.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId", "")
            states[f"{fields.get('ArrayJobId', fields.get('JobId'))}_{task}" if task else fields["JobId"]] = (
                f"{fields.get('JobState')} {fields.get('ExitCode')}"
            )
        return states

    def stop(self) -> None:
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            path = self.base / pid_file
            if path.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(path.read_text().split()[0]), signal.SIGTERM)


def start_slurm(base: Path) -> Slurm:
    base.mkdir(parents=True, exist_ok=True)
    for folder in ("state", "spool"):
        (base / folder).mkdir()
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={base}/munge.socket",
                    f"--pid-file={base}/munged.pid", f"--log-file={base}/munged.log",
                    f"--seed-file={base}/munged.seed"], check=True, capture_output=True)  # fmt: skip
    host = socket.gethostname().split(".")[0]
    conf = CONF.format(host=host, base=base, ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count())
    (base / "slurm.conf").write_text(conf)
    cluster = Slurm(base)
    env = {**os.environ, **cluster.env}
    subprocess.run(["slurmctld"], env=env, check=True, capture_output=True)
    subprocess.run(["slurmd"], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "idle" in cluster.run("sinfo", "-h", "-o", "%t", timeout=30).stdout:
            return cluster
        time.sleep(0.5)
    cluster.stop()
    raise RuntimeError(f"the test SLURM cluster did not come up: see {base}/slurmctld.log, slurmd.log")
