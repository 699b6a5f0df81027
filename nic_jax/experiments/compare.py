r"""XE→SCST vs XE→NIC-NES vs XE→NIC-ES on equal wall-clock budgets (issue 6).

Trains XE (configs/default.py), or reuses an XE workdir, then fine-tunes from the
same XE checkpoint with SCST (Rennie et al. 2017; configs/scst.py), NIC-NES and
NIC-ES (es-img-captioning; configs/nes.py, configs/es.py), each for the same
seconds of training (`config.budget`, nic_jax/train/budget.py: the clock stops
during validation and saves), each validated every `eval_every_s` of them on the
same validation images (`val/CIDEr-D`). Then every best checkpoint (XE's too) is
evaluated on the test split, greedy and with beam search, and the table
(`compare.md`), the plot of validation CIDEr-D against training seconds and
against decoded captions (`compare.png`) and all numbers (`compare.json`) are
written into the workdir.

  python -m nic_jax.experiments.compare --workdir=/tmp/nic_compare --budget_s=150
  python -m nic_jax.experiments.compare --workdir=/tmp/nic_compare \
    --xe_workdir=/tmp/nic_xe --budget_s=150
  python -m nic_jax.experiments.compare --workdir=/tmp/cmp_tiny --tiny --budget_s=4

Re-running the command resumes: finished stages return at once.
"""

import dataclasses
import json
import os
import pathlib

from absl import flags, logging

from nic_jax import app
from nic_jax.config_args import sibling_config
from nic_jax.errors import InputError
from nic_jax.evaluation.restore import read_config
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.experiments import compare_report
from nic_jax.train.metric_writer import read_metrics
from nic_jax.train.registry import get_trainer

METHODS = ("scst", "nes", "es")
CONFIG_FILES = {"xe": "default.py", "scst": "scst.py", "nes": "nes.py", "es": "es.py"}
NEVER = 10**9  # step cadences and lengths the budget makes irrelevant
CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one comparison runs (every method gets the same budget and val set)."""

    workdir: str
    budget_s: float = 150.0  # training seconds per fine-tuning method
    eval_every_s: float = 0.0  # validation cadence; 0: budget_s / 10
    methods: tuple = METHODS
    xe_workdir: str = ""  # "": train XE into <workdir>/xe
    tiny: bool = False  # the configs' `:tiny` presets (tests)
    num_val_images: int = -1  # the first N validation images (-1: all)
    beam_size: int = 3
    seed: int = 0
    configs_dir: str = str(CONFIGS_DIR)

    def eval_every(self) -> float:
        return self.eval_every_s or self.budget_s / 10


def load_config(settings: Settings, method: str):
    """`get_config` of the method's config file (`:tiny` with `settings.tiny`)."""
    anchor = os.path.join(settings.configs_dir, "default.py")
    if not os.path.isfile(anchor):
        raise InputError(f"--configs_dir={settings.configs_dir}: no default.py there")
    return sibling_config(anchor, CONFIG_FILES[method], "tiny" if settings.tiny else "")


def train_xe(settings: Settings) -> str:
    """The XE workdir: `settings.xe_workdir`, or XE trained into <workdir>/xe."""
    if settings.xe_workdir:
        return settings.xe_workdir
    config = load_config(settings, "xe")
    with config.unlocked():
        config.seed = settings.seed
        config.finetune.trainer = ""
        config.evals.final_split = ""
    workdir = os.path.join(settings.workdir, "xe")
    get_trainer("xe")(config, workdir)
    return workdir


def _adopt(group, saved) -> None:
    """Sets the fields of `group` that the saved (JSON) group also has."""
    for key, value in saved.items():
        if key not in group:
            continue
        if hasattr(group[key], "items"):
            _adopt(group[key], value)
        else:
            group[key] = value


def stage_config(settings: Settings, method: str, xe_dir: str):
    """The method's config, fine-tuning the XE run's model on its data for
    `budget_s` training seconds, validated on CIDEr-D every `eval_every_s`."""
    xe_config = read_config(xe_dir)
    config = load_config(settings, method)
    with config.unlocked():
        _adopt(config.data, xe_config.data)
        _adopt(config.model, xe_config.model)
        config.seed = settings.seed
        config.ckpt.init_from = xe_dir
        config.budget.train_s = settings.budget_s
        config.budget.eval_every_s = settings.eval_every()
        config.evals.every_steps = config.ckpt.every_steps = NEVER
        config.evals.best_metric = "CIDEr-D"
        config.evals.num_images = settings.num_val_images
        config.evals.final_split = ""
        config.evals.test_metrics = tuple(xe_config.evals.test_metrics)
        if method == "scst":
            config.scst.num_epochs = NEVER
        else:
            config.es.num_steps = NEVER
    return config


def evaluate_test(workdir: str, beam_size: int) -> tuple[int, dict]:
    """(evaluated step, {beam: test metrics}) of the best validation checkpoint.

    Greedy runs last, so the workdir's eval_test.json holds greedy captions.
    """
    tests = {}
    for beam in (beam_size, 1):
        result = evaluate_workdir(workdir, "test", decoding={"beam_size": beam})
        tests[beam] = result["metrics"]
    return result["step"], tests


def _last_step(workdir: str) -> int:
    lines = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return max((m["step"] for m in lines), default=0)


def run_comparison(settings: Settings) -> dict:
    """Trains and evaluates every method; writes compare.{md,png,json}."""
    if settings.budget_s <= 0:
        raise InputError(f"--budget_s={settings.budget_s}: expected seconds > 0")
    unknown = [m for m in settings.methods if m not in METHODS]
    if unknown or not settings.methods:
        raise InputError(
            f"--methods={','.join(settings.methods)}: expected some of {list(METHODS)}"
        )
    os.makedirs(settings.workdir, exist_ok=True)
    load = {"start": os.getloadavg()}
    xe_dir = train_xe(settings)
    stages = {"xe": xe_dir}
    for method in settings.methods:
        stages[method] = os.path.join(settings.workdir, method)
        logging.info("comparison: %s for %.0f s", method, settings.budget_s)
        get_trainer(method)(stage_config(settings, method, xe_dir), stages[method])
        load[method] = os.getloadavg()
    results = {}
    for method, workdir in stages.items():
        step, tests = evaluate_test(workdir, settings.beam_size)
        curve = None if method == "xe" else compare_report.read_curve(workdir)
        results[method] = dict(
            workdir=workdir,
            curve=curve,
            steps=_last_step(workdir),
            ckpt_step=step,
            test=tests,
        )
    load["end"] = os.getloadavg()
    return write_report(settings, results, load)


def write_report(settings: Settings, results: dict, load: dict) -> dict:
    """compare.md (table), compare.png (curves) and compare.json in the workdir."""
    table = compare_report.markdown_table(results, settings.beam_size)
    peak = max(max(v) for v in load.values())
    title = (
        f"{', '.join(settings.methods)} from one XE checkpoint, "
        f"{settings.budget_s:.0f} s of training each "
        f"({os.cpu_count()} CPUs, load average up to {peak:.1f})"
    )
    curves = {m: r["curve"] for m, r in results.items() if r["curve"]}
    paths = {
        "table": os.path.join(settings.workdir, "compare.md"),
        "plot": os.path.join(settings.workdir, "compare.png"),
        "json": os.path.join(settings.workdir, "compare.json"),
    }
    with open(paths["table"], "w", encoding="utf-8") as f:
        f.write(table)
    compare_report.plot_curves(curves, paths["plot"], title)
    summary = {
        "settings": dataclasses.asdict(settings),
        "load_average": load,
        "results": results,
        "files": paths,
    }
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(table, flush=True)
    return summary


_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the comparison.")
_BUDGET = flags.DEFINE_float("budget_s", 150.0, "Training seconds per method.")
_EVAL_EVERY = flags.DEFINE_float("eval_every_s", 0.0, "0: budget_s / 10.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Fine-tuning methods.")
_XE_WORKDIR = flags.DEFINE_string("xe_workdir", "", "Reuse this XE run.")
_TINY = flags.DEFINE_bool("tiny", False, "The configs' :tiny presets.")
_VAL_IMAGES = flags.DEFINE_integer("num_val_images", -1, "-1: all.")
_BEAM = flags.DEFINE_integer("beam_size", 3, "Beam width of the test evaluation.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every stage.")
_CONFIGS = flags.DEFINE_string("configs_dir", str(CONFIGS_DIR), "configs/ dir.")
flags.mark_flag_as_required("workdir")


def main(argv) -> None:
    if len(argv) > 1:
        raise InputError(f"unexpected arguments: {argv[1:]}")
    settings = Settings(
        workdir=_WORKDIR.value,
        budget_s=_BUDGET.value,
        eval_every_s=_EVAL_EVERY.value,
        methods=tuple(_METHODS.value),
        xe_workdir=_XE_WORKDIR.value,
        tiny=_TINY.value,
        num_val_images=_VAL_IMAGES.value,
        beam_size=_BEAM.value,
        seed=_SEED.value,
        configs_dir=_CONFIGS.value,
    )
    run_comparison(settings)


if __name__ == "__main__":
    app.run(main)
