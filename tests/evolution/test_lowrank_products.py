"""The three forms of a low-rank member's Linear product against an explicit
float64 x W + c (x a) b^T, under the batchings a population meets, and the
grouped form's rule seen to run (its per-group products in the jaxpr)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nic_jax.evolution import lowrank_products as products

MEMBERS, ROWS, K, M, N, RANK = 12, (2, 3), 9, 8, 11, 8  # k > m: a folded column
FORMS = ("shared", "stacked", "grouped")


def _operands(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {
        "lhs": (MEMBERS, *ROWS, K),
        "rhs": (K, N),
        "a": (MEMBERS, M, RANK),
        "b": (MEMBERS, N, RANK),
        "coef": (MEMBERS,),
    }
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _explicit(lhs, rhs, a, b, coef):
    """Member by member in float64: x W + c (x[:, :m] a) b^T."""
    lhs, rhs, a, b, coef = (np.asarray(x, np.float64) for x in (lhs, rhs, a, b, coef))
    low = np.einsum("p...m,pmr,pnr->p...n", lhs[..., :M], a, b)
    return lhs @ rhs + coef.reshape(-1, *(1,) * (lhs.ndim - 1)) * low


def _grouped_products(jaxpr) -> list:
    """Inner sizes of the batched dot_generals in `jaxpr` wider than m (the
    per-group products; the members' x a products have inner size m)."""
    sizes = [
        eqn.invars[0].aval.shape[-1]
        for eqn in jaxpr.eqns
        if eqn.primitive.name == "dot_general"
        and eqn.params["dimension_numbers"][1] == ((0,), (0,))
    ]
    return [size for size in sizes if size > M]


@pytest.mark.parametrize("form", FORMS)
def test_each_form_over_vmapped_members_equals_the_explicit_sum(form):
    ops = _operands()
    product = products.linear_product(form)
    members = jax.vmap(product, in_axes=(0, None, 0, 0, 0))
    got = jax.jit(members)(*ops.values())
    np.testing.assert_allclose(got, _explicit(**ops), rtol=0, atol=2e-5)
    one = product(*(ops[k][0] if k != "rhs" else ops[k] for k in ops))
    np.testing.assert_allclose(one, _explicit(**ops)[0], rtol=0, atol=2e-5)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("own_bias", [True, False])
def test_each_form_adds_a_bias_per_member_or_shared(form, own_bias):
    """`bias` as `layers.folded_linear` hands it over: each member's own (the
    grouped form puts it inside its product, a column of 1s against the bias
    rows) or one for all."""
    ops = _operands(3)
    bias = np.random.default_rng(4).standard_normal((MEMBERS, N)).astype(np.float32)
    bias = bias if own_bias else bias[0]
    in_axes = (0, None, 0, 0, 0, 0 if own_bias else None)
    members = jax.vmap(products.linear_product(form), in_axes=in_axes)
    got = jax.jit(members)(*ops.values(), bias)
    per_member = bias if own_bias else np.broadcast_to(bias, (MEMBERS, N))
    want = _explicit(**ops) + per_member[:, None, None, :]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_grouped_puts_each_members_bias_in_its_block():
    """r = 8 and a bias: 9 columns a member, so 3 members a product (32 // 9),
    inner size k + 3 (r + 1) = 36 (without a bias: 4 members, k + 32)."""
    ops = _operands()
    bias = np.ones((MEMBERS, N), np.float32)
    in_axes = (0, None, 0, 0, 0, 0)
    members = jax.vmap(products.linear_product("grouped"), in_axes=in_axes)
    closed = jax.make_jaxpr(members)(*ops.values(), bias).jaxpr
    assert _grouped_products(closed) == [K + 3 * (RANK + 1)]


@pytest.mark.parametrize("form", FORMS)
def test_each_form_takes_bf16_operands_into_f32_sums(form):
    """As `layers.folded_linear` calls it at "bfloat16" precision: the main
    product's operands bf16, its sums f32; c x a rounded to bf16 where it joins
    the main product (stacked, grouped)."""
    ops = _operands(2)
    bf16 = {k: jnp.asarray(ops[k], jnp.bfloat16) for k in ("lhs", "rhs")}
    product = products.linear_product(form, preferred_element_type=jnp.float32)
    members = jax.vmap(product, in_axes=(0, None, 0, 0, 0))
    got = members(bf16["lhs"], bf16["rhs"], ops["a"], ops["b"], ops["coef"])
    assert got.dtype == jnp.float32
    rounded = {k: np.asarray(v.astype(jnp.float32)) for k, v in bf16.items()}
    want = _explicit(**(ops | rounded))
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-3 * scale)  # bf16 c x a


def test_grouped_rule_runs_in_groups_of_32_over_r_members():
    """r = 8: 4 members a product, 3 products over 12 members, inner size
    k + 4 r = 41; with the shared form no per-group product."""
    ops = _operands()
    for form, want in (("grouped", [K + 4 * RANK]), ("shared", [])):
        members = jax.vmap(products.linear_product(form), in_axes=(0, None, 0, 0, 0))
        jaxpr = jax.make_jaxpr(members)(*ops.values()).jaxpr
        assert _grouped_products(jaxpr) == want, form


def test_grouped_under_other_batchings():
    """lhs or coef the same for every member (broadcast), a vmap over rows
    inside the members' (still grouped), and W batched (the plain fallback)."""
    ops = _operands(1)
    want = _explicit(**ops)
    product = products.linear_product("grouped")
    shared_lhs = jax.vmap(product, in_axes=(None, None, 0, 0, 0))
    got = shared_lhs(ops["lhs"][0], ops["rhs"], ops["a"], ops["b"], ops["coef"])
    lhs0 = np.broadcast_to(ops["lhs"][:1], ops["lhs"].shape)
    np.testing.assert_allclose(got, _explicit(**(ops | {"lhs": lhs0})), atol=2e-5)

    shared_coef = jax.vmap(product, in_axes=(0, None, 0, 0, None))
    got = shared_coef(ops["lhs"], ops["rhs"], ops["a"], ops["b"], ops["coef"][0])
    coef0 = np.full(MEMBERS, ops["coef"][0])
    np.testing.assert_allclose(got, _explicit(**(ops | {"coef": coef0})), atol=2e-5)

    def member(x, a, b, c):  # an inner vmap over the first row axis
        return jax.vmap(product, in_axes=(0, None, None, None, None))(
            x, ops["rhs"], a, b, c
        )

    nested = jax.vmap(member)
    args = (ops["lhs"], ops["a"], ops["b"], ops["coef"])
    np.testing.assert_allclose(nested(*args), want, rtol=0, atol=2e-5)
    assert _grouped_products(jax.make_jaxpr(nested)(*args).jaxpr) == [K + 4 * RANK]

    own_w = np.broadcast_to(ops["rhs"], (MEMBERS, K, N))
    got = jax.vmap(product)(ops["lhs"], own_w, ops["a"], ops["b"], ops["coef"])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    "members,rank,want",
    [(12, 8, 4), (48, 1, 24), (64, 3, 8), (7, 4, 7), (2, 4, 2), (5, 64, 1)],
)
def test_group_size_is_the_largest_divisor_up_to_32_over_r(members, rank, want):
    assert products.group_size(members, rank) == want


def test_auto_resolves_by_backend_and_rows(monkeypatch):
    assert jax.default_backend() == "cpu"
    assert products.resolve("auto", 128) == "stacked"
    assert products.resolve("auto", 127) == "shared"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert products.resolve("auto", 128) == products.resolve("auto", 8) == "grouped"
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert products.resolve("auto", 128) == "shared"
    monkeypatch.undo()
    assert [products.resolve(f, 8) for f in FORMS] == list(FORMS)
    with pytest.raises(ValueError, match="out_sharding"):
        products.linear_product("grouped", out_sharding=jnp.float32)
