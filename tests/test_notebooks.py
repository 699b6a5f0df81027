"""colab/*.ipynb executed top to bottom, as CI runs them: CPU, `:tiny` configs
(NIC_JAX_TINY=1), the session's temporary dataset cache (NIC_JAX_CACHE, set by
conftest), a temporary working directory. What they print is checked against the
command line (`python -m nic_jax.evaluate`) run on the workdirs they trained."""

import json
import os
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def notebook_env(tmp_path, monkeypatch):
    """The kernel's environment (inherited from this process) and working dir.

    The kernel sees one CPU device, as a notebook user without an accelerator
    does (conftest's 4 fake devices would only slow its compilations down)."""
    assert os.environ.get("NIC_JAX_CACHE"), "conftest's temporary cache is missing"
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if "xla_force_host_platform_device_count" not in f]
    monkeypatch.setenv("XLA_FLAGS", " ".join(flags))
    monkeypatch.setenv("NIC_JAX_TINY", "1")
    monkeypatch.setenv("NIC_JAX_REPO", REPO)
    monkeypatch.delenv("NIC_JAX_WORKDIR", raising=False)
    return tmp_path


def _execute(name: str, cwd) -> nbformat.NotebookNode:
    """Runs colab/<name>; a cell that raises fails the test with its traceback."""
    notebook = nbformat.read(os.path.join(REPO, "colab", name), as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return notebook


def _text(notebook) -> str:
    """Everything the cells printed (stdout streams and text results)."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"] + "\n")
    return "".join(parts)


def _num_images(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def _cli_evaluate(workdir, *flags) -> dict:
    """`python -m nic_jax.evaluate` on `workdir`: (printed metrics, written json)."""
    done = subprocess.run(
        [sys.executable, "-m", "nic_jax.evaluate", f"--workdir={workdir}", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("{")]
    with open(os.path.join(workdir, "eval_test.json"), encoding="utf-8") as f:
        return json.loads(line), json.load(f)


def _assert_same_metrics(found: dict, expected: dict) -> None:
    common = sorted(set(found) & set(expected) - {"split", "step"})
    assert {"Bleu_4", "ROUGE_L", "CIDEr"} <= set(common)
    np.testing.assert_allclose(
        [found[k] for k in common], [expected[k] for k in common], rtol=1e-5
    )


def test_quickstart_trains_xe_then_nes_and_shows_captions_and_plots(notebook_env):
    notebook = _execute("quickstart.ipynb", notebook_env)
    text = _text(notebook)
    assert "backend: cpu" in text and "devices: [CpuDevice(id=0)]" in text
    workdir = notebook_env / "workdirs" / "quickstart"
    assert f"xe: {workdir}\nnes: {workdir / 'nes'}\n" in text
    assert re.search(r"val CIDEr-D before NES: \d\.\d{4}, best after: \d\.\d{4}", text)
    # evaluate_workdir's metrics line and sample captions are the CLI's
    (line,) = [json.loads(x) for x in text.splitlines() if x.startswith('{"split"')]
    nes_metrics, written = _cli_evaluate(workdir / "nes", "--split=test")
    _assert_same_metrics(line, nes_metrics)
    cli_captions = {str(c["image_id"]): c["caption"] for c in written["captions"]}
    printed = re.findall(r"^image (\d+): (.*)$", text, re.M)
    assert len(printed) == 5
    for image_id, caption in printed:
        assert cli_captions[image_id] == caption
    shown = re.findall(r"^(/\S+\.png)$", text, re.M)
    expected = [workdir / "plots" / f"{s}.png" for s in ("loss", "validation")] + [
        workdir / "nes" / "plots" / f"{s}.png"
        for s in ("fitness", "sigma", "batch_size", "validation")
    ]
    assert shown == [str(p) for p in expected]
    assert all(p.stat().st_size > 1000 for p in expected)
    # the dataset's images with references, with captions, then each curve
    assert _num_images(notebook) == 2 + len(expected)


def test_evaluate_checkpoint_restores_captions_scores_and_shows_attention(
    notebook_env,
):
    notebook = _execute("evaluate_checkpoint.ipynb", notebook_env)
    text = _text(notebook)
    workdir = notebook_env / "workdirs" / "topdown"
    assert "topdown: step " in text
    scores = dict(re.findall(r"^scores (\w+): (\{.*\})$", text, re.M))
    assert sorted(scores) == ["beam3", "greedy"]
    # the notebook's beam-3 scores and captions are the CLI's
    cli_metrics, written = _cli_evaluate(workdir, "--split=test", "--beam_size=3")
    assert written["decoding"]["beam_size"] == 3
    _assert_same_metrics(json.loads(scores["beam3"]), cli_metrics)
    cli_captions = {c["image_id"]: c["caption"] for c in written["captions"]}
    shown = re.findall(r"^image (\d+)\n +greedy: (.*)\n +beam3: (.*)$", text, re.M)
    assert len(shown) == 4
    for image_id, _, beam in shown:
        assert cli_captions[int(image_id)] == beam
    # the step-by-step attention decode gives the first image's greedy caption
    (attended,) = re.findall(r"^attention caption: (.*)$", text, re.M)
    assert attended == shown[0][1]
    (argmax,) = re.findall(r"most attended region per word: (\[.*\])", text)
    regions = json.loads(argmax)
    assert len(regions) == len(attended.split())
    assert all(0 <= k < 10 for k in regions)
    # a heatmap of the weights and, when there are words, the boxes over the image
    assert _num_images(notebook) == (2 if regions else 0)
