"""Caption rewards on device: CIDEr-D (+ BLEU-4) of token ids against the training
references, for self-critical training and the evolution fitness functions.

As self-critical.pytorch's `get_self_critical_reward` (Rennie et al. 2017) and
es-img-captioning's `compute_ciders`: the reward of a caption is
`cider_weight * CIDEr-D + bleu_weight * BLEU-4`, with CIDEr-D's document
frequencies taken once from the TRAIN split's references ("coco-train-idxs" of
`prepro_ngrams.py`: every reference plus its EOS), and captions and references
scored as the strings of `array_to_str`, i.e. with the EOS (id 0) that ends them
counted as one more word (`include_eos`; without it about a third of captions end
badly, on a dangling "a" or "the"). A row that fills all T columns has no EOS, there
as here. BLEU-4 is pycocoevalcap's per-sentence BLEU ("closest" reference length).

A `Reward` is built once per run (`build_reward`): the df table and the references
of every image of the split, prepared (n-gram words, lengths, tf-idf norms). A call
`reward(tokens (B, T), rows (B,))` gathers the references of images `rows` by index
(one row per unique image, never duplicated rows) and returns (B,) rewards. It is a
pytree, pure and jit-able; vmap it over a population axis of `tokens` with `rows`
shared (`jax.vmap(reward, in_axes=(0, None))`).

Shapes: N images, B captions, R references, T tokens.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np

from nic_jax.errors import InputError
from nic_jax.metrics import bleu, cider
from nic_jax.metrics import df as df_lib


@flax.struct.dataclass(eq=False)  # hashed by identity, so `jax.jit(reward)` works
class Reward:
    """Per-caption reward against the references of a split (a pytree)."""

    table: df_lib.DfTable  # CIDEr-D document frequencies (train references)
    refs: cider.RefStats  # (N, R, ...) prepared references of the split's images
    labels: jax.Array  # (N, R, T) int32 reference ids, 0-padded (for BLEU)
    cider_weight: float = flax.struct.field(pytree_node=False, default=1.0)
    bleu_weight: float = flax.struct.field(pytree_node=False, default=0.0)
    include_eos: bool = flax.struct.field(pytree_node=False, default=True)

    def __call__(self, tokens, rows):
        """(B,) float32 rewards of captions tokens (B, T) of images `rows` (B,).

        tokens end at their first 0; rows index the split this reward was built on.
        """
        refs = jax.tree.map(lambda x: x[rows], self.refs)
        total = jnp.zeros(tokens.shape[:1], jnp.float32)
        if self.cider_weight:
            scores = cider.ciderd_prepared(
                tokens, refs, self.table, include_eos=self.include_eos
            )
            total = total + self.cider_weight * scores
        if self.bleu_weight:
            stats = bleu.bleu_stats(
                tokens, self.labels[rows], refs.mask, include_eos=self.include_eos
            )
            total = total + self.bleu_weight * bleu.bleu_sentence(stats)[:, 3]
        return total


def train_document_frequency(labels, num_refs) -> df_lib.DocumentFrequency:
    """CIDEr-D df of references labels (N, R, T), num_refs (N,), each with its EOS.

    A column of zeros is appended first, so that references filling all T columns
    count their EOS too, as self-critical's `prepro_ngrams.py` counts it always.
    """
    labels = np.asarray(labels, np.int32)
    padded = np.concatenate([labels, np.zeros_like(labels[..., :1])], -1)
    mask = reference_mask(num_refs, labels.shape[1])
    return df_lib.from_references(padded, mask, include_eos=True)


def reference_mask(num_refs, max_refs: int) -> np.ndarray:
    """(N, R) bool: the first num_refs[i] references of image i are real."""
    return np.arange(max_refs)[None, :] < np.asarray(num_refs)[:, None]


def build_reward(
    split,
    vocab_size: int,
    *,
    df: df_lib.DocumentFrequency | None = None,
    cider_weight: float = 1.0,
    bleu_weight: float = 0.0,
    include_eos: bool = True,
) -> Reward:
    """The reward against the references of `split` (a `data.dataset.SplitData`).

    df: CIDEr-D document frequencies; None counts them over `split` itself, which
    should then be the training split (self-critical's default).
    """
    if cider_weight == 0 and bleu_weight == 0:
        raise InputError("reward weights are both 0: set cider_weight or bleu_weight")
    df = train_document_frequency(split.labels, split.num_refs) if df is None else df
    table = df.to_table(num_words=vocab_size + 1)
    mask = reference_mask(split.num_refs, split.labels.shape[1])
    refs = _prepare_in_chunks(split.labels, mask, table, include_eos)
    labels = jnp.asarray(split.labels, jnp.int32)
    return Reward(table, refs, labels, cider_weight, bleu_weight, include_eos)


def _prepare_in_chunks(labels, mask, table, include_eos: bool, chunk: int = 2048):
    """`cider.prepare_refs` over N images, `chunk` at a time (one compilation):
    the (chunk, R, T, T) n-gram comparisons of a whole COCO split at once would
    take gigabytes."""
    prepare = jax.jit(cider.prepare_refs, static_argnames="include_eos")
    n = labels.shape[0]
    size = min(chunk, n)
    parts = []
    for start in range(0, n, size):
        rows = np.arange(start, start + size) % n  # the last chunk wraps around
        part = prepare(labels[rows], mask[rows], table, include_eos=include_eos)
        keep = n - start
        parts.append(jax.tree.map(lambda x, keep=keep: x[:keep], part))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def reward_from_config(reward_config, split, vocab_size: int) -> Reward:
    """`build_reward` from a config group with `cider_reward_weight`,
    `bleu_reward_weight`, `include_eos` and `cached_tokens` (a df file of word ids,
    .npz or self-critical's `-idxs.p` pickle; "" counts the df over `split`)."""
    path = reward_config.cached_tokens
    return build_reward(
        split,
        vocab_size,
        df=df_lib.load(path) if path else None,
        cider_weight=reward_config.cider_reward_weight,
        bleu_weight=reward_config.bleu_reward_weight,
        include_eos=reward_config.include_eos,
    )


def policy_mask(tokens):
    """(..., T) bool: the positions up to and including each caption's first EOS.

    self-critical.pytorch's reward/fitness mask: position 0 always, then every
    position whose previous token is a word (tokens are 0 after the end).
    """
    first = jnp.ones(tokens.shape[:-1] + (1,), bool)
    return jnp.concatenate([first, tokens[..., :-1] > 0], -1)
