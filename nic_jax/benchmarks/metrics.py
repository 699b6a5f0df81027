"""CIDEr-D on device against pycocoevalcap's Cider, on the same captions.

  python -m nic_jax.benchmarks.metrics [--quick] [--captions PATH]

Prints one JSON line. 5,000 captions (1,000 with --quick), each scored against 5
references: row k is image k mod n of the caption file (default: the shared COCO
sample, else synthetic captions), its candidate one of its own 5 human captions.
Both sides see the same PTB-tokenized words; pycocoevalcap's time starts after
tokenization. The jax side is `cider.ciderd`, jit-compiled and warmed up, with the
df table of these references (so its numbers are pycocoevalcap's CIDEr, checked
here), inputs already on the device, `block_until_ready`, best of several runs.
"_prepared" times the candidates alone against references made ready once
(`cider.prepare_refs`), which is how SCST and ES rewards run. Rates of the two parts
that bound it are set against the machine's measured peaks: df-table lookups (6
random gathers each) against random gathers/s, word-pair comparisons against int32
ops/s (as ops per pair that the peak would allow; the kernel issues 4 per order).
"_bucketed" runs rows grouped by length (`corpus.length_buckets`), as
`python -m nic_jax.score` does, instead of padding every row to the longest.
"""

import json
import os
import pathlib
import time

import jax
import numpy as np
from absl import flags

from nic_jax import app
from nic_jax.metrics import cider, corpus, ngrams
from nic_jax.metrics import df as df_lib
from nic_jax.metrics.tokenize import ptb_tokenize

_QUICK = flags.DEFINE_bool("quick", False, "1,000 captions instead of 5,000.")
_CAPTIONS = flags.DEFINE_string("captions", "", "public.json-style caption file.")
_SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared/data/captions"


def _images(path: str) -> list:
    """Lists of 5 raw captions per image: the file's, or synthetic ones."""
    path = path or str(_SHARED / "public.json")
    if os.path.exists(path):
        return [im["refs"][:5] for im in json.load(open(path))["images"]]
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    p = 1.0 / np.arange(1, 3001)
    p /= p.sum()
    return [
        [" ".join(rng.choice(words, rng.integers(8, 16), p=p)) for _ in range(5)]
        for _ in range(2400)
    ]


def rows(n: int, captions: str = ""):
    """(references {k: [5 tokenized]}, candidates {k: tokenized}) for n rows."""
    images = _images(captions)
    tokenized = ptb_tokenize(dict(enumerate(images)))
    refs = {k: tokenized[k % len(images)] for k in range(n)}
    cands = {k: refs[k][(k // len(images)) % 5] for k in range(n)}
    return refs, cands


def best_time(fn, *args, repeats: int = 10) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def pycocoevalcap_cider(refs: dict, cands: dict, repeats: int):
    from pycocoevalcap.cider.cider import Cider

    res = {k: [c] for k, c in cands.items()}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, scores = Cider().compute_score(refs, res)
        times.append(time.perf_counter() - start)
    return min(times), np.asarray(scores)


def _peaks(table_size: int, n: int) -> dict:
    """The machine's rates for random gathers and for streaming int compares."""
    key = jax.random.key(0)
    table = jax.random.uniform(key, (table_size,))
    index = jax.random.randint(key, (n,), 0, table_size)
    gather = jax.jit(lambda t, i: t[i])
    x = jax.random.randint(key, (1 << 20,), 0, 8)
    steps = 64  # one fused loop of 128 int32 ops per element loaded: compute-bound

    def chain(v):
        for i in range(steps):
            v = (v ^ i) + 3
        return v

    ops = jax.jit(chain)
    return {
        "peak_gathers_per_s": n / best_time(gather, table, index),
        "peak_int32_ops_per_s": 2 * steps * x.size / best_time(ops, x),
    }


def _parts(cands, refs, mask, table) -> dict:
    """Rates of the two bounding parts of one ciderd call, measured alone."""
    stats = cider.prepare_refs(refs, mask, table)
    lengths = ngrams.effective_lengths(cands)
    cand_w = ngrams.candidate_words(cands, lengths)
    keys = jax.jit(ngrams.ngram_keys)(cand_w, lengths)
    lookup_time = best_time(jax.jit(df_lib.lookup_log_df), table, *keys)
    cross = jax.jit(lambda c, w: ngrams.cross_counts(c, w).sum())
    pairs = cand_w.size * stats.words.shape[1] * stats.words.shape[2]
    return {
        "lookups_per_call": keys[0].size + stats.words.size * ngrams.MAX_N,
        "lookups_per_s": keys[0].size / lookup_time,
        "word_pairs_per_s": pairs / best_time(cross, cand_w, stats.words),
    }


def _jax_times(cands, refs, mask, table, repeats: int) -> dict:
    """Seconds per call: one call, length buckets, references alone, candidates."""
    ciderd = jax.jit(cider.ciderd)
    groups = [jax.device_put(g[1:]) for g in corpus.length_buckets(cands, refs, mask)]
    prepare = jax.jit(cider.prepare_refs)
    stats = prepare(refs, mask, table)
    return {
        "one_call": best_time(ciderd, cands, refs, mask, table, repeats=repeats),
        "bucketed": best_time(
            lambda: [ciderd(*g, table) for g in groups], repeats=repeats
        ),
        "references": best_time(prepare, refs, mask, table, repeats=repeats),
        "prepared": best_time(
            jax.jit(cider.ciderd_prepared), cands, stats, table, repeats=repeats
        ),
    }


def run_benchmark(n: int, captions: str = "", repeats: int = 10) -> dict:
    refs, cands = rows(n, captions)
    coco_time, coco_scores = pycocoevalcap_cider(refs, cands, 1 if n > 2000 else 3)
    c, r, m, _ = corpus.encode_corpus(refs, cands)
    table = df_lib.from_references(r, m).to_table()
    c, r, m = (jax.device_put(x) for x in (c, r, m))
    diff = np.abs(np.asarray(jax.jit(cider.ciderd)(c, r, m, table)) - coco_scores)
    times = _jax_times(c, r, m, table, repeats)
    out = {
        "benchmark": "CIDEr-D",
        "captions": n,
        "refs_per_caption": int(r.shape[1]),
        "max_words": int(r.shape[2]),
        "device": jax.devices()[0].device_kind,
        "cpu_cores": os.cpu_count(),
        "max_abs_diff_vs_pycocoevalcap": float(diff.max()),
        "pycocoevalcap_cider_captions_per_s": n / coco_time,
        "jax_ciderd_captions_per_s": n / times["one_call"],
        "jax_ciderd_bucketed_captions_per_s": n / times["bucketed"],
        "jax_ciderd_prepared_captions_per_s": n / times["prepared"],
        "speedup": coco_time / times["one_call"],
        "speedup_bucketed": coco_time / times["bucketed"],
        "speedup_prepared": coco_time / times["prepared"],
        "reference_side_share": times["references"]
        / (times["references"] + times["prepared"]),
    }
    out.update(parts := _parts(c, r, m, table))
    out.update(peaks := _peaks(table.hi.shape[0], 1 << 21))
    # a lookup is 6 gathers: key words and value at each of its two slots
    out["lookup_gathers_fraction_of_peak"] = (
        6 * parts["lookups_per_s"] / peaks["peak_gathers_per_s"]
    )
    out["int32_ops_per_word_pair_at_peak"] = (
        peaks["peak_int32_ops_per_s"] / parts["word_pairs_per_s"]
    )
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in out.items()}


def main(argv) -> None:
    del argv
    result = run_benchmark(1000 if _QUICK.value else 5000, _CAPTIONS.value)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
