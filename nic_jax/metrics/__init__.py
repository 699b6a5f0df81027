"""Caption metrics, exact to the reference implementations, on device.

Pure jax functions over int32 token ids (0 = EOS/pad; B images, R references, T
tokens) for rewards and validation: CIDEr-D with a df table and corpus CIDEr
(Vedantam et al. 2015; Rennie et al. 2017 for CIDEr-D in SCST), BLEU-1..4
(Papineni et al. 2002) and ROUGE-L (Lin 2004), as pycocoevalcap computes them.
`include_eos` is a Python bool: bind it with functools.partial or mark it static
under jit. Host side: df tables (`df`), the PTB tokenizer (`tokenize`) and corpus
scoring of text (`corpus`, behind `python -m nic_jax.score`). Corpus CIDEr is
`metrics.cider.cider` (not re-exported: the name is its module's).
"""

from nic_jax.metrics.bleu import BleuStats, bleu_corpus, bleu_sentence, bleu_stats
from nic_jax.metrics.cider import RefStats, ciderd, ciderd_prepared, prepare_refs
from nic_jax.metrics.df import DfTable, DocumentFrequency, from_references
from nic_jax.metrics.df import load as load_df
from nic_jax.metrics.rouge import rouge_l

__all__ = [
    "BleuStats",
    "DfTable",
    "DocumentFrequency",
    "RefStats",
    "bleu_corpus",
    "bleu_sentence",
    "bleu_stats",
    "ciderd",
    "ciderd_prepared",
    "from_references",
    "load_df",
    "prepare_refs",
    "rouge_l",
]
