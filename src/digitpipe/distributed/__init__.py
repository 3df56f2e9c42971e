"""One training as several processes (DDP). The processes are started and watched by an engine:
Lightning's launcher (`python src/train.py trainer=ddp`: it re-runs this job's command), torchrun's
agent or SLURM (docs/distributed.md). A training in one process never imports this."""
