"""The report of the method comparison (`compare.py`): curves, markdown table, PNG.

A curve is a fine-tuning run's validation CIDEr-D (`val/CIDEr-D`: greedy captions,
train-split df, EOS counted, the reward every method optimises) at each validation,
with the training clock (`time/elapsed_s`) and the captions decoded so far
(`time/decoded_captions`) logged at the same step (`nic_jax/train/budget.py`).
"""

import os

from matplotlib.figure import Figure

from nic_jax.train.budget import DECODED, ELAPSED
from nic_jax.train.metric_writer import read_metrics

VAL_KEY = "val/CIDEr-D"
LABELS = {"xe": "XE", "scst": "XE→SCST", "nes": "XE→NIC-NES", "es": "XE→NIC-ES"}


def read_curve(workdir: str) -> list[dict]:
    """[{step, elapsed_s, decoded_captions, cider_d}] of each validation, in order."""
    lines = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    clock = {m["step"]: m for m in lines if ELAPSED in m}
    curve = []
    for line in lines:
        if VAL_KEY not in line or line["step"] not in clock:
            continue
        timed = clock[line["step"]]
        curve.append(
            {
                "step": line["step"],
                "elapsed_s": float(timed[ELAPSED]),
                "decoded_captions": int(timed[DECODED]),
                "cider_d": float(line[VAL_KEY]),
            }
        )
    return curve


def _number(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pair(tests: dict, key: str, beam_size: int) -> str:
    """'greedy / beam' cell of a test metric."""
    return f"{_number(tests[1].get(key))} / {_number(tests[beam_size].get(key))}"


def _budget_cells(curve, start) -> list[str]:
    """Training seconds, decoded captions and val CIDEr-D start -> best (XE, with
    no curve: the start every method shares)."""
    if not curve:
        return ["—", "—", _number(start)]
    last, best = curve[-1], max(point["cider_d"] for point in curve)
    return [
        f"{last['elapsed_s']:.0f}",
        f"{last['decoded_captions']:,}",
        f"{curve[0]['cider_d']:.3f} → {best:.3f}",
    ]


def markdown_table(results: dict, beam_size: int) -> str:
    """One row per method: budget use, validation CIDEr-D and test scores.

    results: {method: {"curve": [...] or None, "steps": int, "ckpt_step": int,
    "test": {beam: metrics}}}, the XE starting point under "xe". Test CIDEr-D is
    pycocoevalcap's `Cider` (sigma 6, clipping, df of the test references).
    """
    both = f"greedy / beam {beam_size}"
    header = [
        "method",
        "steps",
        "train s",
        "decoded captions",
        "val CIDEr-D start → best",
        "evaluated step",
        f"test CIDEr-D ({both})",
        "Δ test CIDEr-D vs XE (greedy)",
        f"test BLEU-4 ({both})",
        f"test METEOR ({both})",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    xe = results.get("xe", {}).get("test", {}).get(1, {}).get("CIDEr")
    curves = [r["curve"] for r in results.values() if r["curve"]]
    start = curves[0][0]["cider_d"] if curves else None
    for method, result in results.items():
        tests = result["test"]
        cider = tests[1].get("CIDEr")
        delta = "—" if method == "xe" or None in (xe, cider) else f"{cider - xe:+.3f}"
        row = [LABELS.get(method, method), str(result["steps"])]
        row += _budget_cells(result["curve"], start)
        row += [str(result["ckpt_step"]), _pair(tests, "CIDEr", beam_size), delta]
        row += [_pair(tests, "Bleu_4", beam_size), _pair(tests, "METEOR", beam_size)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict, path: str, title: str) -> str:
    """PNG of validation CIDEr-D against training seconds and decoded captions."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    figure.suptitle(title, fontsize="medium")
    axes_time, axes_work = figure.subplots(1, 2, sharey=True)
    for method, curve in curves.items():
        cider = [p["cider_d"] for p in curve]
        label = LABELS.get(method, method)
        seconds = [p["elapsed_s"] for p in curve]
        axes_time.plot(seconds, cider, "o-", markersize=3, label=label)
        decoded = [p["decoded_captions"] / 1e3 for p in curve]
        axes_work.plot(decoded, cider, "o-", markersize=3, label=label)
    axes_time.set(xlabel="training wall-clock (s)", ylabel=f"validation {VAL_KEY}")
    axes_work.set(xlabel="captions decoded for training (thousands)")
    starts = [curve[0]["cider_d"] for curve in curves.values() if curve]
    for axes in (axes_time, axes_work):
        if starts:
            axes.axhline(starts[0], color="gray", linestyle="--", label="XE (start)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path
