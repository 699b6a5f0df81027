"""The image encoder without PyTorch: shapes, determinism, batch independence,
weights files, image reading as prepro_feats.py, and `prepro feats` output read
back by the feature loader."""

import json

import numpy as np
import pytest
from PIL import Image

from nic_jax import prepro
from nic_jax.data.features import DirFeatures
from nic_jax.encoders import (
    build_encoder,
    init_params,
    list_images,
    load_image,
    load_weights,
    normalize,
    save_npz,
)
from nic_jax.errors import InputError

ATT = 14


@pytest.fixture(scope="module")
def params():
    return init_params("resnet50", "caffe", seed=0)


@pytest.fixture(scope="module")
def weights_file(params, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.npz"
    save_npz(str(path), params)
    return str(path)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("resnet50", "caffe")


def _random_images(n, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_features_are_deterministic_and_independent_of_the_batch(encoder, params):
    images = normalize(_random_images(3, 64, 64).astype(np.float32) / 255.0)
    fc, att = encoder.features(params, images, ATT)
    assert fc.shape == (3, 2048) and att.shape == (3, ATT * ATT, 2048)
    again_fc, again_att = encoder.features(params, images, ATT)
    np.testing.assert_array_equal(fc, again_fc)
    np.testing.assert_array_equal(att, again_att)
    # float32 sums in another order: errors scale with the largest feature
    tol = 1e-5 * float(np.abs(fc).max())
    one_fc, one_att = encoder.features(params, images[1:2], ATT)
    np.testing.assert_allclose(one_fc[0], fc[1], rtol=0, atol=tol)
    np.testing.assert_allclose(one_att[0], att[1], rtol=0, atol=tol)
    assert np.abs(fc[0] - fc[1]).max() > 100 * tol  # other image, other features
    # a 64x64 image leaves a 2x2 map; 14 = 2 * 7, so each att cell copies one map
    # cell 49 times and the mean over regions is the pooled fc feature
    np.testing.assert_allclose(att.mean(axis=1), fc, rtol=0, atol=tol)


def test_npz_weights_round_trip(encoder, params, weights_file):
    loaded = load_weights(weights_file, "resnet50", "caffe")
    images = normalize(_random_images(1, 64, 64, seed=5).astype(np.float32) / 255)
    np.testing.assert_array_equal(
        encoder.features(loaded, images, ATT)[0],
        encoder.features(params, images, ATT)[0],
    )


@pytest.mark.parametrize(
    "make_path,model,needle",
    [
        (lambda tmp, good: "", "resnet50", "--weights is required"),
        (lambda tmp, good: str(tmp / "missing.npz"), "resnet50", "no such file"),
        (lambda tmp, good: good, "resnet101", "layer3"),
        (lambda tmp, good: good, "resnet34", "valid:"),
        (lambda tmp, good: _write(tmp / "w.h5", b"x"), "resnet50", "unknown format"),
        (
            lambda tmp, good: _write(tmp / "w.npz", b"junk"),
            "resnet50",
            "not a readable",
        ),
        (lambda tmp, good: _write(tmp / "w.pth", b"junk"), "resnet50", "state_dict"),
    ],
)
def test_bad_weights_are_input_errors(tmp_path, weights_file, make_path, model, needle):
    with pytest.raises(InputError, match=needle):
        load_weights(make_path(tmp_path, weights_file), model, "caffe")


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_images_are_read_as_prepro_feats(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    image = load_image(str(tmp_path / "gray.png"))
    assert image.shape == (3, 4, 3) and image.dtype == np.float32
    for channel in range(3):  # grayscale repeated over RGB, scaled to [0, 1]
        np.testing.assert_array_equal(image[..., channel], gray / np.float32(255))
    pixel = normalize(np.array([[1.0, 0.0, 0.5]], np.float32))
    want = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    np.testing.assert_allclose(pixel[0], want, rtol=1e-6)
    assert load_image(str(tmp_path / "gray.png"), image_size=8).shape == (8, 8, 3)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="bad.jpg: not a readable image"):
        load_image(str(tmp_path / "bad.jpg"))
    assert list_images(str(tmp_path)) == ["bad.jpg", "gray.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        list_images(str(tmp_path / "empty"))


def _write_images(folder, shapes, prefix=""):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    names = []
    for i, (height, width) in enumerate(shapes):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        names.append(f"{prefix}{i + 7}.png")
        Image.fromarray(pixels).save(folder / names[-1])
    return names


def test_prepro_feats_writes_cocobu_dirs_read_by_the_loader(
    tmp_path, encoder, params, weights_file
):
    names = _write_images(tmp_path / "images", [(64, 64), (48, 40), (64, 64)])
    out = tmp_path / "feats" / "cocotalk"
    out.parent.mkdir()
    args = ["feats", "--images_root", str(tmp_path / "images"), "--weights"]
    args += [weights_file, "--model", "resnet50", "--output_dir", str(out)]
    prepro.run(args + ["--batch_size", "2"])
    store = DirFeatures(f"{out}_fc", f"{out}_att")
    ids = [n[:-4] for n in names]
    assert store.fc(ids).shape == (3, 2048)
    assert store.att(ids[1:2]).shape == (1, ATT * ATT, 2048)
    for name, image_id in zip(names, ids):
        image = normalize(load_image(str(tmp_path / "images" / name)))[None]
        fc, att = encoder.features(params, image, ATT)
        np.testing.assert_allclose(store.fc([image_id])[0], fc[0], atol=1e-5)
        np.testing.assert_allclose(store.att([image_id])[0], att[0], atol=1e-5)


def test_prepro_feats_takes_ids_from_the_karpathy_json(tmp_path, weights_file):
    names = _write_images(tmp_path / "root" / "val2014", [(64, 64)] * 2, "COCO_")
    images = [
        {"split": "val", "filepath": "val2014", "filename": n, "cocoid": 100 + i,
         "sentences": [{"tokens": ["a"], "raw": "A."}]}
        for i, n in enumerate(names)
    ]  # fmt: skip
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"images": images}))
    out = tmp_path / "bu"
    prepro.run(
        ["feats", "--images_root", str(tmp_path / "root"), "--weights", weights_file]
        + ["--model", "resnet50", "--output_dir", str(out)]
        + ["--input_json", str(dataset)]
    )
    assert sorted(p.name for p in (tmp_path / "bu_fc").iterdir()) == [
        "100.npy",
        "101.npy",
    ]
    with np.load(tmp_path / "bu_att" / "101.npz") as data:
        assert data.files == ["feat"] and data["feat"].shape == (ATT * ATT, 2048)


def test_prepro_feats_without_weights_exits_with_an_error(tmp_path, capsys):
    _write_images(tmp_path / "images", [(64, 64)])
    with pytest.raises(SystemExit) as exit_info:
        prepro.run(
            ["feats", "--images_root", str(tmp_path / "images"), "--weights", ""]
            + ["--output_dir", str(tmp_path / "out")]
        )
    assert exit_info.value.code == 2
    assert "--weights is required" in capsys.readouterr().err
