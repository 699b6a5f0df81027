"""`nic_jax.plot`: which PNG figures a metrics.jsonl gives, that the curves are
drawn, and the command line."""

import json

import numpy as np
import pytest
from PIL import Image

from nic_jax import plot
from nic_jax.errors import InputError

LINE_BLUE = np.array([31, 119, 180])  # matplotlib's first line colour, C0


def _write_run(workdir, es: bool, split="val"):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps({"evals": {"split": split}}))
    rows = []
    for step in range(10, 210, 10):
        row = {"step": step, "train/loss": 5.0 / step**0.5, "train/lr": 5e-4}
        if es:
            row.update({"es/fitness_mean": step / 400, "es/fitness_max": step / 300})
            row.update(
                {"es/sigma": 0.01 * 0.99**step, "es/batch_size": 2 ** (step // 70)}
            )
        rows.append(row)
        if step % 50 == 0:
            rows.append(
                {"step": step, f"{split}/CIDEr": step / 200, f"{split}/Bleu_4": 0.1}
            )
    rows.append({"step": 200, "train/loss": "nan", "note": "not a number"})
    with open(workdir / "metrics.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def _blue_pixels(path) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - LINE_BLUE).sum(-1) < 30).sum())


def test_metric_series_reads_every_numeric_key(tmp_path):
    rows = _write_run(tmp_path / "w", es=True)
    series = plot.metric_series(rows)
    assert "note" not in series and "step" not in series
    want_steps = [r["step"] for r in rows if "val/CIDEr" in r]
    assert series["val/CIDEr"] == (want_steps, [s / 200 for s in want_steps])
    steps, values = series["train/loss"]
    assert steps[-1] == 200 and np.isnan(values[-1]) and len(steps) == 21


def test_es_run_gets_every_figure_with_curves_drawn(tmp_path):
    _write_run(tmp_path / "w", es=True)
    written = plot.write_plots(str(tmp_path / "w"))
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == [
        "batch_size.png",
        "fitness.png",
        "loss.png",
        "metrics.png",
        "sigma.png",
        "validation.png",
    ]
    for path in written:
        width, height = Image.open(path).size
        assert width >= 400 and height >= 250
        assert _blue_pixels(path) > 200, path  # a line was drawn, not just axes


def test_gradient_run_gets_no_es_figures_and_validation_follows_the_split(tmp_path):
    _write_run(tmp_path / "w", es=False, split="test")
    out = tmp_path / "plots"
    written = plot.write_plots(str(tmp_path / "w"), str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "loss.png",
        "metrics.png",
        "validation.png",
    ]
    assert all(p.startswith(str(out)) for p in written)


def test_command_line(tmp_path, capsys):
    _write_run(tmp_path / "w", es=False)
    plot.run(["--workdir", str(tmp_path / "w")])
    assert "loss.png" in capsys.readouterr().out
    assert (tmp_path / "w" / "plots" / "loss.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        plot.run(["--workdir", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err


def test_broken_metrics_file_is_an_input_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{oops\n')
    with pytest.raises(InputError, match=r"metrics.jsonl: line 2 is not JSON"):
        plot.write_plots(str(tmp_path))
