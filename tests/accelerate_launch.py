"""Run a command under ``accelerate launch`` with one or two CPU processes (gloo), as the README documents."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch_command(num_processes: int, *arguments: str) -> list[str]:
    """The ``accelerate launch`` command line for ``num_processes`` CPU processes running ``arguments``.

    ``accelerate launch --cpu`` starts one process; two CPU processes take ``--multi_gpu`` with
    ``ACCELERATE_USE_CPU`` set (see ``launch_environment``), which selects the gloo backend.
    """
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    if num_processes == 1:
        return [*launcher, "--num_processes", "1", *arguments]
    return [
        *launcher,
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *arguments,
    ]


def launch_environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "true",
        **extra,
    }


def run_launched(num_processes: int, *arguments: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``arguments`` (e.g. ``"-m", "hierarchical_vl.cli", "train", ...``) and fail with its stderr's tail."""
    result = subprocess.run(
        launch_command(num_processes, *arguments),
        capture_output=True,
        text=True,
        env=launch_environment(**env),
        cwd=REPO,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result
