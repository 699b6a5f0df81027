"""launch/ scripts pass their arguments unchanged to `python -m nic_jax.main` and
set up the environment that asks for jax.distributed; checked with stand-ins for
python, srun and gcloud on PATH (the real multi-process run is
test_multiprocess.py)."""

import json
import os
import pathlib
import stat
import subprocess

LAUNCH = pathlib.Path(__file__).resolve().parents[2] / "launch"
TRICKY = ["--config=configs/nes.py:tiny", "--workdir=/tmp/a dir", "--x='q' \"d\" $HOME"]

# prints its argv and the distributed env as one JSON line, then exits $EXIT_<id>
FAKE_PYTHON = r"""#!/usr/bin/env python3
import json, os, sys
names = ["NIC_JAX_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
         "JAX_PROCESS_ID"]
line = json.dumps({"argv": sys.argv[1:], "env": {n: os.environ.get(n) for n in names},
                   "cwd": os.getcwd()})
os.write(1, (line + "\n").encode())  # one write: processes share the pipe
sys.exit(int(os.environ.get("EXIT_" + str(os.environ.get("JAX_PROCESS_ID")), 0)))
"""


def _executable(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _run(command, tmp_path, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = _executable(bin_dir / "fake_python", FAKE_PYTHON)
    # srun runs its command as is; gcloud runs --command in a shell, as ssh does
    _executable(bin_dir / "srun", '#!/bin/sh\nexec "$@"\n')
    _executable(
        bin_dir / "gcloud",
        '#!/usr/bin/env bash\nfor a in "$@"; do case $a in --command=*) c=${a#*=};;'
        " esac; done\nwhile [[ $# -gt 0 ]]; do [[ $1 == --command ]] && c=$2;"
        ' shift; done\necho "GCLOUD_COMMAND $c"\ncd ~ && eval "$c"\n',
    )
    full_env = dict(
        os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(tmp_path)
    )
    full_env.update(PYTHON=python, **env)
    done = subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=60
    )
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return done, lines


def test_multiprocess_starts_n_processes_on_loopback(tmp_path):
    done, lines = _run(
        [str(LAUNCH / "multiprocess.sh"), "3", *TRICKY], tmp_path, NIC_JAX_PORT="4321"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(line["env"]["JAX_PROCESS_ID"] for line in lines) == ["0", "1", "2"]
    for line in lines:
        assert line["argv"] == ["-m", "nic_jax.main", *TRICKY]
        assert line["env"]["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
        assert line["env"]["JAX_NUM_PROCESSES"] == "3"


def test_multiprocess_exits_with_the_first_failure(tmp_path):
    done, _ = _run(
        [str(LAUNCH / "multiprocess.sh"), "2", "--a"],
        tmp_path,
        NIC_JAX_PORT="4321",
        EXIT_1="3",
    )
    assert done.returncode == 3
    done, _ = _run([str(LAUNCH / "multiprocess.sh"), "two"], tmp_path)
    assert done.returncode == 2 and "usage" in done.stderr


def test_slurm_runs_main_in_every_task_with_distributed_on(tmp_path):
    done, lines = _run(["bash", str(LAUNCH / "slurm.sbatch"), *TRICKY], tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = lines
    assert line["argv"] == ["-m", "nic_jax.main", *TRICKY]
    assert line["env"]["NIC_JAX_DISTRIBUTED"] == "1"


def test_tpu_vm_runs_the_same_command_on_every_worker(tmp_path):
    (tmp_path / "nic_jax").mkdir()  # the checkout on the worker
    done, lines = _run(
        [str(LAUNCH / "tpu_vm.sh"), "my-tpu", "us-central2-b", *TRICKY], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "--worker=all" not in done.stdout  # only the command is echoed
    [line] = lines
    assert line["argv"] == ["-m", "nic_jax.main", *TRICKY]
    assert line["env"]["NIC_JAX_DISTRIBUTED"] == "1"
    assert line["cwd"] == str(tmp_path / "nic_jax")
