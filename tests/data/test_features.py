"""Feature stores: the cocobu directories and the one-h5 layout read the same."""

import os
import pathlib
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nic_jax.data import features
from nic_jax.errors import InputError

D, K = 6, 4


def _data(n=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(1000)[:n].astype(np.int64) + 1
    fc = rng.normal(size=(n, D)).astype(np.float32)
    att = rng.normal(size=(n, K, D)).astype(np.float32)
    box = rng.uniform(size=(n, K, 4)).astype(np.float32)
    return ids, fc, att, box


def _write_dirs(root, ids, fc, att, box, att_ext="npz"):
    root = pathlib.Path(root)
    dirs = [root / f"cocobu_{k}" for k in ("fc", "att", "box")]
    for d in dirs:
        d.mkdir(exist_ok=True)
    for i, image_id in enumerate(ids):
        np.save(dirs[0] / f"{image_id}.npy", fc[i])
        if att_ext == "npz":
            np.savez_compressed(dirs[1] / f"{image_id}.npz", feat=att[i])
        else:
            np.save(dirs[1] / f"{image_id}.npy", att[i])
        np.save(dirs[2] / f"{image_id}.npy", box[i])
    return [str(d) for d in dirs]


def _write_h5(path, ids, fc, att=None, box=None):
    with h5py.File(path, "w") as f:
        f.create_dataset("image_id", data=ids)
        f.create_dataset("fc", data=fc)
        if att is not None:
            f.create_dataset("att", data=att)
        if box is not None:
            f.create_dataset("box", data=box)
    return str(path)


@pytest.fixture
def stores(tmp_path):
    ids, fc, att, box = _data(n=80)
    dirs = _write_dirs(tmp_path, ids, fc, att, box)
    h5 = _write_h5(tmp_path / "feats_train.h5", ids, fc, att, box)
    return (
        (ids, fc, att, box),
        features.open_features(*dirs),
        features.open_features(h5),
    )


@pytest.mark.parametrize("pick", [[3, 0, 3, 1], list(range(79, -1, -1)), [2] * 70])
def test_dir_and_h5_identical_in_request_order(stores, pick):
    (ids, fc, att, box), dirs, h5 = stores
    assert isinstance(dirs, features.DirFeatures)
    assert isinstance(h5, features.H5Features)
    want = ids[pick]
    for store in (dirs, h5):
        assert store.fc_dim == D and tuple(store.att_shape) == (K, D)
        np.testing.assert_array_equal(store.fc(want), fc[pick])
        np.testing.assert_array_equal(store.att(want), att[pick])
        np.testing.assert_array_equal(store.box(want), box[pick])
        assert store.fc(want).dtype == np.float32


def test_sparse_h5_reads_point_selection(tmp_path):
    ids, fc, _, _ = _data(n=200)
    store = features.H5Features(_write_h5(tmp_path / "f.h5", ids, fc))
    pick = [150, 3, 199, 3]
    np.testing.assert_array_equal(store.fc(ids[pick]), fc[pick])
    assert store.fc([]).shape == (0, D)


def test_att_npy_and_variable_regions_are_zero_padded_and_masked(tmp_path):
    ids, fc, att, box = _data(n=3)
    _, att_dir, _ = _write_dirs(tmp_path, ids, fc, att, box, att_ext="npy")
    np.save(os.path.join(att_dir, f"{ids[1]}.npy"), att[1, :2])
    store = features.DirFeatures(str(tmp_path / "cocobu_fc"), att_dir)
    got, mask = store.att_and_mask(ids)
    bucket = features.REGION_BUCKET
    assert got.shape == (3, bucket, D)  # K=4 and K=2 meet in one bucket of 8
    np.testing.assert_array_equal(got[1, :2], att[1, :2])
    np.testing.assert_array_equal(got[0, :K], att[0])
    assert not got[1, 2:].any() and not got[0, K:].any()
    np.testing.assert_array_equal(mask.sum(1), [K, 2, K])
    np.testing.assert_array_equal(mask[1], [1, 1] + [0] * (bucket - 2))
    same_k, same_mask = store.att_and_mask(ids[[0, 2]])  # one K: no bucket padding
    assert same_k.shape == (2, K, D) and same_mask.all()


def test_padded_regions_agree_or_round_up_to_the_bucket():
    assert features.padded_regions([36, 36]) == 36
    assert features.padded_regions([10, 100, 37]) == 104
    assert features.padded_regions([]) == 0


def test_missing_id_names_path_and_id(stores):
    (ids, *_), dirs, h5 = stores
    with pytest.raises(InputError, match=r"cocobu_fc/424242\.npy: no feature file "
                       "for image id 424242"):  # fmt: skip
        dirs.fc([ids[0], 424242])
    with pytest.raises(InputError, match=r"feats_train.h5: no features for image "
                       "id 424242"):  # fmt: skip
        h5.fc([424242])


def test_missing_files_and_dirs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        features.open_features(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="att_dir .* is not a directory"):
        features.open_features(str(tmp_path), att_dir=str(tmp_path / "nope"))
    with pytest.raises(InputError, match="nope.h5: feature file not found"):
        features.open_features(str(tmp_path / "nope.h5"))
    with pytest.raises(InputError, match="att_dir='x'"):
        features.open_features(str(tmp_path / "f.h5"), att_dir="x")


def test_check_fc_dim_names_file_and_both_sizes(stores):
    _, dirs, h5 = stores
    features.check_fc_dim(h5, D, "feats_train.h5")
    with pytest.raises(InputError, match="feature size D of feats_train.h5 is 6 but "
                       "config model.fc_feat_size is 2048"):  # fmt: skip
        features.check_fc_dim(h5, 2048, "feats_train.h5")
    with pytest.raises(InputError, match="is 6 but config model.fc_feat_size is 5"):
        features.check_fc_dim(dirs, 5, "cocobu_fc")


def test_wrong_shape_names_file_found_and_expected(stores):
    (ids, *_), dirs, _ = stores
    bad = os.path.join(dirs.fc_dir, f"{ids[1]}.npy")
    dirs.fc(ids[:1])  # the first file fixes D
    np.save(bad, np.zeros((1, 2048), np.float32))
    with pytest.raises(InputError, match=rf"{ids[1]}\.npy: found shape \(1, 2048\), "
                       r"expected \(6,\)"):  # fmt: skip
        dirs.fc(ids[:2])


def test_h5_layout_errors(tmp_path):
    ids, fc, att, _ = _data()
    path = _write_h5(tmp_path / "f.h5", ids, fc[:3])
    with pytest.raises(InputError, match=r"f.h5: 'fc' has shape \(3, 6\); expected "
                       r"\(N, D\) with N=5"):  # fmt: skip
        features.H5Features(path)
    store = features.H5Features(_write_h5(tmp_path / "g.h5", ids, fc))
    assert store.att_shape is None
    with pytest.raises(InputError, match="g.h5: dataset 'att' is missing"):
        store.att(ids)
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f.create_dataset("image_id", data=ids)
    with pytest.raises(InputError, match="h.h5: dataset 'fc' is missing"):
        features.H5Features(str(tmp_path / "h.h5"))
    with pytest.raises(InputError, match="appears twice"):
        features.H5Features(_write_h5(tmp_path / "i.h5", ids[[0, 0]], fc[:2]))


def test_truncated_npz_names_file(stores):
    (ids, *_), dirs, _ = stores
    path = pathlib.Path(dirs.att_dir) / f"{ids[2]}.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match=rf"{ids[2]}\.npz: corrupt or truncated"):
        dirs.att(ids[:3])


def test_npz_without_feat_key(stores):
    (ids, *_), dirs, _ = stores
    np.savez(pathlib.Path(dirs.att_dir) / f"{ids[0]}.npz", x=np.zeros((K, D)))
    with pytest.raises(InputError, match=r"npz has keys \['x'\], expected 'feat'"):
        dirs.att(ids[:1])


_FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _read_everything(root):
    dirs = features.open_features(f"{root}/cocobu_fc", f"{root}/cocobu_att",
                                  f"{root}/cocobu_box")  # fmt: skip
    h5 = features.open_features(f"{root}/f.h5")
    for store in (dirs, h5):
        ids = [int(p.stem) for p in pathlib.Path(f"{root}/cocobu_fc").iterdir()]
        store.fc(ids), store.att(ids), store.box(ids)
        features.check_fc_dim(store, store.fc_dim, "x")


@_FUZZ
@given(
    which=st.sampled_from(["fc", "att", "box", "h5"]),
    blob=st.one_of(st.binary(max_size=400), st.floats(0.0, 0.999)),
)
def test_fuzz_corrupt_files_raise_only_input_error(which, blob):
    ids, fc, att, box = _data(n=2)
    with tempfile.TemporaryDirectory() as root:
        _write_dirs(root, ids, fc, att, box)
        _write_h5(f"{root}/f.h5", ids, fc, att, box)
        if which == "h5":
            path = pathlib.Path(root) / "f.h5"
        else:
            path = next((pathlib.Path(root) / f"cocobu_{which}").iterdir())
        good = path.read_bytes()
        path.write_bytes(
            blob if isinstance(blob, bytes) else good[: int(len(good) * blob)]
        )
        with pytest.raises(InputError, match=path.name):
            _read_everything(root)
