"""`nic_jax.caption`: captions of a folder of raw images, vis.json and the HTML page,
the page opened in headless Chromium. The workdir holds random FC-model params
(saved through the trainers' checkpoint code), the ResNet random weights in an npz."""

import html
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import default
from nic_jax.decoding import beam_search, decode
from nic_jax.encoders import build_encoder, init_params, load_image, normalize, save_npz
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import tokens_to_text
from nic_jax.evaluation.folder import caption_folder
from nic_jax.evaluation.restore import load_workdir_model
from nic_jax.models import functional
from nic_jax.train import checkpoint, common

MAGENTA = (255, 0, 255)


def _write_workdir(workdir, data: dict, model="fc", feat_size=2048):
    """A workdir as the trainers leave it: config.json and one orbax checkpoint."""
    config = default.get_config("tiny")
    for key, value in data.items():
        section, name = key.split(".")
        config[section][name] = value
    config.model.name = model
    config.model.fc_feat_size = config.model.att_feat_size = feat_size
    config.ckpt.async_save = False
    words = json.loads(pathlib.Path(data["data.input_json"]).read_text())["ix_to_word"]
    vocab = [words[str(i)] for i in range(1, len(words) + 1)]
    params = functional.init_params(config.model, len(vocab), jax.random.key(1))
    # EOS (0) made unlikely so every caption has words the page must show
    params["logit"]["bias"] = params["logit"]["bias"].at[0].set(-10.0)
    common.save_config(config, str(workdir))
    manager = checkpoint.make_manager(str(workdir), config.ckpt, "val/CIDEr")
    meta = {"config": config.to_dict(), "vocab": vocab, "data_fingerprint": ""}
    train = {"step": jnp.zeros((), jnp.int32)}
    checkpoint.save(manager, 0, params, train, json.loads(json.dumps(meta)))
    manager.wait_until_finished()
    manager.close()


def _write_images(folder):
    """imgs/0.png .. imgs/2.png (listed in the dataset json) and extra.png (not)."""
    (folder / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "imgs" / f"{i}.png")
    solid = np.broadcast_to(np.uint8(MAGENTA), (64, 64, 3))  # found in screenshots
    Image.fromarray(np.ascontiguousarray(solid)).save(folder / "extra.png")
    return ["extra.png", "imgs/0.png", "imgs/1.png", "imgs/2.png"]


@pytest.fixture(scope="module")
def weights_and_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption")
    weights = root / "resnet50.npz"
    save_npz(str(weights), init_params("resnet50", "caffe", seed=0))
    return root, str(weights), _write_images(root / "images")


@pytest.fixture
def setup(weights_and_images, make_cocotalk, tmp_path):
    """(root with images/ and workdir/ and the dataset json, weights, image files)."""
    root, weights, files = weights_and_images
    data = make_cocotalk(num_images=8)
    shutil.rmtree(root / "workdir", ignore_errors=True)
    _write_workdir(root / "workdir", data)
    shutil.copyfile(data["data.dataset_json"], root / "dataset.json")
    return root, weights, files


def _reference_captions(root, files, beam_size, att_size):
    """Captions decoded image by image, without the caption pipeline."""
    restored = load_workdir_model(str(root / "workdir"))
    encoder = build_encoder("resnet50", "caffe")
    params = init_params("resnet50", "caffe", seed=0)
    images = np.stack([normalize(load_image(str(root / "images" / n))) for n in files])
    fc, att = encoder.features(params, images, att_size)

    @jax.jit
    def tokens_fn(feats):
        if beam_size == 1:
            return decode(restored.decoder, restored.params, feats)[0]
        return beam_search(restored.decoder, restored.params, feats, beam_size)[0]

    texts = []
    for row in range(len(files)):
        feats = {"fc": fc[row : row + 1]}
        if att is not None:
            feats["att"] = att[row : row + 1]
        tokens = tokens_fn(feats)
        texts.append(tokens_to_text(restored.ix_to_word, tokens[0]))
    return texts


def _dataset_references(root, name):
    dataset = json.loads((root / "dataset.json").read_text())
    for img in dataset["images"]:
        if os.path.join(img["filepath"], img["filename"]) == name:
            return [s["raw"] for s in img["sentences"]]
    return None


@pytest.mark.parametrize(
    "model,beam_size,num_images", [("fc", None, -1), ("topdown", 2, 3)]
)
def test_captions_equal_image_by_image_decoding(
    setup, make_cocotalk, model, beam_size, num_images
):
    root, weights, files = setup
    if model != "fc":  # regions: the 7x7 grid of the ResNet's last map
        shutil.rmtree(root / "workdir")
        _write_workdir(root / "workdir", make_cocotalk("att"), model=model)
    files = files if num_images < 0 else files[:num_images]
    out = root / f"vis_{model}"
    entries = caption_folder(
        str(root / "workdir"),
        str(root / "images"),
        weights,
        model="resnet50",
        beam_size=beam_size,
        num_images=num_images,
        att_size=7,
        batch_size=2,  # decoded in batches of 2, the last one padded for 3 images
        output_dir=str(out),
    )
    att_size = 7 if model != "fc" else 0
    want = _reference_captions(root, files, beam_size or 1, att_size)
    assert [e["caption"] for e in entries] == want
    assert all(len(c.split()) > 0 for c in want)
    assert len(set(want)) > 1  # images differ, so do their captions
    assert [e["file_name"] for e in entries] == files
    assert [e["image_id"] for e in entries] == list(range(1, len(files) + 1))
    for entry in entries:
        assert entry.get("references") == _dataset_references(root, entry["file_name"])
    assert json.loads((out / "vis.json").read_text()) == entries


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: apt-get install -y chromium (see .ci/run)")
    return path


def _run_chromium(args, tmp_path):
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu"]
    command += [f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_page_shows_every_caption_in_chromium(setup, tmp_path):
    root, weights, files = setup
    out = root / "vis_page"
    entries = caption_folder(
        str(root / "workdir"),
        str(root / "images"),
        weights,
        model="resnet50",
        output_dir=str(out),
    )
    url = (out / "index.html").as_uri()
    dom = html.unescape(_run_chromium(["--dump-dom", url], tmp_path))
    assert dom.count("<figure") == len(entries) == len(files)
    for entry in entries:
        assert f'<p class="caption">{entry["caption"]}</p>' in dom
        for ref in entry.get("references", []):
            assert f"<li>{ref}</li>" in dom
    shot = os.environ.get("NIC_CAPTION_SCREENSHOT", str(tmp_path / "page.png"))
    _run_chromium([f"--screenshot={shot}", "--window-size=1280,800", url], tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    # the magenta image is drawn: its file was found through the page's relative link
    assert (pixels == MAGENTA).all(axis=-1).sum() > 1000


def test_copied_images_make_a_page_that_moves(setup, tmp_path):
    root, weights, _ = setup
    caption_folder(
        str(root / "workdir"),
        str(root / "images"),
        weights,
        model="resnet50",
        output_dir=str(tmp_path / "vis"),
        copy_images=True,
    )
    moved = shutil.move(str(tmp_path / "vis"), str(tmp_path / "elsewhere"))
    with open(os.path.join(moved, "index.html"), encoding="utf-8") as f:
        page = f.read()
    assert 'src="imgs/img1.png"' in page
    assert os.path.isfile(os.path.join(moved, "imgs", "img1.png"))


def test_model_of_other_feature_size_is_refused(setup, make_cocotalk, tmp_path):
    _, weights, _ = setup
    _write_workdir(tmp_path / "w64", make_cocotalk("other"), feat_size=64)
    with pytest.raises(InputError, match="model.fc_feat_size is 64.*2048"):
        caption_folder(str(tmp_path / "w64"), str(tmp_path), weights, "resnet50")


def test_command_line_refuses_to_run_without_weights(setup):
    root, _, _ = setup
    command = [sys.executable, "-m", "nic_jax.caption"]
    command += [f"--workdir={root / 'workdir'}", f"--image_folder={root / 'images'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--weights is required" in done.stderr
    assert "Traceback" not in done.stderr
