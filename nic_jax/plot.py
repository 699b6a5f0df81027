"""PNG curves of a run's `metrics.jsonl`, as es-img-captioning draws at each snapshot.

  python -m nic_jax.plot --workdir=/tmp/nic_xe [--out_dir=DIR]

`write_plots(workdir)` is the library function (the trainers call it after each
checkpoint when `config.log.plots` is on, as it is outside `:tiny`). It writes
into `<workdir>/plots/`, each figure only when its keys are present: `loss.png`
(every `*loss` key), `validation.png` (one panel per metric of the run's
`evals.split`, e.g. `val/CIDEr`), `fitness.png` (`es/fitness_*`: mean, max, ...),
`sigma.png` (`es/sigma*`, the noise schedule), `batch_size.png` (`es/batch_size*`)
and `metrics.png` (every numeric key, one panel each). Figures
are drawn without pyplot (matplotlib's Agg canvas), so no display or global state is
touched, and each PNG is written to a temporary file and renamed into place.
"""

import argparse
import json
import math
import os
import sys

from matplotlib.figure import Figure

from nic_jax.errors import InputError
from nic_jax.train.metric_writer import read_metrics

# (file stem, title, key prefix or suffix test) of the one-axes figures
_SHARED_AXES = (
    ("loss", "Loss", lambda k: k.rsplit("/", 1)[-1].endswith("loss")),
    ("fitness", "ES fitness", lambda k: k.startswith("es/fitness")),
    ("sigma", "ES noise σ", lambda k: k.startswith("es/sigma")),
    ("batch_size", "ES batch size", lambda k: k.startswith("es/batch_size")),
)


def _value(raw) -> float | None:
    """A metric value as float ('nan'/'inf' strings included), else None."""
    if isinstance(raw, bool):
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def metric_series(rows: list) -> dict:
    """{key: (steps, values)} of every numeric key of metrics.jsonl rows."""
    series = {}
    for row in rows:
        step = row.get("step")
        for key, raw in row.items():
            value = _value(raw)
            if key == "step" or value is None or step is None:
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(int(step))
            values.append(value)
    return series


def _eval_prefix(workdir: str) -> str:
    """The validation split's metric prefix from the run's config ('val/')."""
    try:
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            return json.load(f)["evals"]["split"] + "/"
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return "val/"


def _plot_line(axes, steps, values, label=None):
    style = "o-" if len(steps) < 30 else "-"
    axes.plot(steps, values, style, markersize=3, label=label)


def _save(figure: Figure, path: str) -> str:
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path


def _shared_axes_figure(title: str, series: dict, keys: list, path: str) -> str:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for key in keys:
        _plot_line(axes, *series[key], label=key)
    axes.set(title=title, xlabel="step")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def _panels_figure(title: str, series: dict, keys: list, path: str) -> str:
    """One small panel per key (metrics of different scales)."""
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    figure = Figure(figsize=(4 * cols, 2.8 * rows), layout="constrained")
    figure.suptitle(title)
    for index, key in enumerate(keys):
        axes = figure.add_subplot(rows, cols, index + 1)
        _plot_line(axes, *series[key])
        axes.set_title(key, fontsize="medium")
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    return _save(figure, path)


def write_plots(workdir: str, out_dir: str = "") -> list[str]:
    """Writes the PNG curves of `workdir/metrics.jsonl`; returns their paths."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise InputError(f"{path} does not exist; is --workdir a training workdir?")
    series = metric_series(read_metrics(path))  # InputError names a bad line
    out_dir = out_dir or os.path.join(workdir, "plots")
    os.makedirs(out_dir, exist_ok=True)
    keys = sorted(series)
    written = []
    for stem, title, wanted in _SHARED_AXES:
        chosen = [k for k in keys if wanted(k)]
        if chosen:
            target = os.path.join(out_dir, f"{stem}.png")
            written.append(_shared_axes_figure(title, series, chosen, target))
    prefix = _eval_prefix(workdir)
    validation = [k for k in keys if k.startswith(prefix)]
    if validation:
        target = os.path.join(out_dir, "validation.png")
        written.append(_panels_figure("Validation", series, validation, target))
    if keys:
        target = os.path.join(out_dir, "metrics.png")
        written.append(_panels_figure("All metrics", series, keys, target))
    return written


def run(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nic_jax.plot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", required=True, help="training workdir")
    parser.add_argument("--out_dir", default="", help="default: <workdir>/plots")
    args = parser.parse_args(argv)
    try:
        paths = write_plots(args.workdir, args.out_dir)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print("wrote " + " ".join(paths))


if __name__ == "__main__":
    run()
