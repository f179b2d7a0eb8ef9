"""``teleradlab worker`` and the shipped Slurm example: the job script dask-jobqueue makes from
examples/slurm/jobqueue.yaml runs our worker as root with one lab at a time, and its command line
is one ``teleradlab worker`` accepts (parsed by the real command, not started)."""

from __future__ import annotations

import shlex
from pathlib import Path

import dask.config
import pytest
import yaml
from dask_jobqueue import SLURMCluster

from lab.cli.main import main
from lab.cli.worker import parse_resources, worker
from lab.errors import LabError

EXAMPLE = Path(__file__).parents[3] / "examples" / "slurm" / "jobqueue.yaml"


def test_resources_are_parsed_like_dask_workers() -> None:
    assert parse_resources(None, 1) == {"lab": 1}
    assert parse_resources(None, 3) == {"lab": 3}
    assert parse_resources("lab=2,GPU=1", 1) == {"lab": 2.0, "GPU": 1.0}
    assert parse_resources("GPU=1", 2) == {"GPU": 1.0, "lab": 2}
    for bad, why in (("lab", "'lab' is not NAME=NUMBER"), ("lab=x", "'lab=x' is not"),
                     ("=3", "'=3' is not"), ("lab=0", "lab must be at least 1")):
        with pytest.raises(LabError, match=why):
            parse_resources(bad, 1)


def _job_script() -> str:
    ours = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["jobqueue"]["slurm"]
    known = dask.config.get("jobqueue.slurm")  # dask-jobqueue's own defaults: every key
    assert set(ours) <= set(known), set(ours) - set(known)  # a misspelt key would be ignored
    with dask.config.set({f"jobqueue.slurm.{k}": v for k, v in ours.items()}):
        # inproc: the scheduler the script points at is in this process (its HTTP server on
        # loopback): no job is submitted, no worker connects
        cluster = SLURMCluster(scheduler_options={"protocol": "inproc",
                                                  "dashboard_address": "127.0.0.1:0"})
        try:
            return str(cluster.job_script())
        finally:
            cluster.close()


def test_the_slurm_example_starts_teleradlab_worker_as_root_with_one_lab() -> None:
    script = _job_script()
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert {"#SBATCH -p lab", "#SBATCH --cpus-per-task=4", "#SBATCH --exclusive",
            "#SBATCH -t 04:00:00"} <= set(directives), directives
    lines = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "sudo -n /opt/teleradlab/.venv/bin/teleradlab doctor >/dev/null || exit 1"
    argv = shlex.split(lines[-1])
    assert argv[:5] == ["sudo", "-n", "/opt/teleradlab/.venv/bin/python", "-m", "lab"]
    assert argv[5] == "worker" and argv[6].startswith("inproc://")
    # The rest is what `teleradlab worker` is given: the real command parses it.
    ctx = worker.make_context("worker", argv[6:])
    assert ctx.params["resources"] == "lab=1" and ctx.params["nthreads"] == 1
    assert ctx.params["death_timeout"] == 120 and ctx.params["local_directory"] == "/tmp"
    assert parse_resources(ctx.params["resources"], ctx.params["labs"]) == {"lab": 1.0}
    assert main.get_command(main.make_context("teleradlab", ["worker", "--help"],
                                              resilient_parsing=True), "worker") is worker
