"""`python -m nic_jax.score`: both backends agree; bad input is a one-line error."""

import json
import subprocess
import sys

import pytest

from nic_jax import score
from nic_jax.data import prepro_ngrams
from nic_jax.errors import InputError
from nic_jax.metrics import corpus, tokenize
from nic_jax.metrics import df as df_lib


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    public = json.loads((shared_data / "captions" / "public.json").read_text())
    images = public["images"][:40]
    root = tmp_path_factory.mktemp("score")
    ann = {
        "images": [{"id": im["id"]} for im in images],
        "annotations": [
            {"image_id": im["id"], "caption": c}
            for im in images
            for c in im["refs"][1:]
        ],
    }
    res = [{"image_id": im["id"], "caption": im["refs"][0]} for im in images]
    (root / "ann.json").write_text(json.dumps(ann))
    (root / "res.json").write_text(json.dumps(res))
    return root


def test_jax_and_coco_backends_agree(files):
    refs = score.read_annotations(str(files / "ann.json"))
    cands = score.read_results(str(files / "res.json"), refs)
    refs = tokenize.ptb_tokenize(refs, use_java=False)
    cands = {k: tokenize.tokenize_line(c) for k, c in cands.items()}
    jax_scores = corpus.score_text(refs, cands, "jax", meteor=False)
    coco = corpus.score_text(refs, cands, "coco", meteor=False)  # METEOR: slow JVM
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"):
        assert abs(jax_scores[name] - coco[name]) <= 1e-6, name
    for name in ("CIDEr", "CIDEr-D"):
        assert abs(jax_scores[name] - coco[name]) <= 1e-4, name


def test_cli_prints_one_json_object(files):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nic_jax.score",
            "--annotations",
            str(files / "ann.json"),
            "--results",
            str(files / "res.json"),
            "--tokenizer=python",
            "--nometeor",
            "--backend=jax",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    scores = json.loads(out.stdout)
    want = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr", "CIDEr-D"}
    assert set(scores) == want


def test_cli_bad_input_is_a_one_line_error(files, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nic_jax.score",
            "--annotations",
            str(bad),
            "--results",
            str(files / "res.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert "error: " in out.stderr and "bad.json" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\xff\xfe not utf-8", "ann.json"),
        (b'{"images": [{"id": 1}]}', "annotations"),
        (
            b'{"images": [{"id": 1}], "annotations": '
            b'[{"image_id": 2, "caption": "a"}]}',
            r"annotations\[0\].image_id",
        ),
        (
            b'{"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": 3}]}',
            r"annotations\[0\].caption",
        ),
        (
            b'{"images": [{"id": 1}, {"id": 2}], "annotations": '
            b'[{"image_id": 1, "caption": "a"}]}',
            "image 2 has no annotation",
        ),
    ],
)
def test_bad_annotations_name_file_and_field(tmp_path, content, match):
    path = tmp_path / "ann.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        score.read_annotations(str(path))


@pytest.mark.parametrize(
    "results, match",
    [
        ([{"image_id": 1, "caption": "a"}], "no image_id for 1 annotated images"),
        ([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}], "twice"),
        ([{"image_id": 9, "caption": "a"}], r"\[0\].image_id 9"),
        ({"image_id": 1}, "expected a list"),
    ],
)
def test_bad_results_name_file_and_field(tmp_path, results, match):
    path = tmp_path / "res.json"
    path.write_text(json.dumps(results))
    with pytest.raises(InputError, match=match) as info:
        score.read_results(
            str(path),
            {1: ["a"], 2: ["b"]}
            if "twice" not in match and "annotated" in match
            else {1: ["a"]},
        )
    assert "res.json" in str(info.value)


def test_a_df_file_of_the_annotations_gives_cider_d_equal_to_cider(files, tmp_path):
    refs = tokenize.ptb_tokenize(
        score.read_annotations(str(files / "ann.json")), use_java=False
    )
    cands = score.read_results(str(files / "res.json"), refs)
    cands = {k: tokenize.tokenize_line(c) for k, c in cands.items()}
    _, ref_ids, mask, vocab = corpus.encode_corpus(refs, cands)
    words = [""] * (len(vocab) + 1)
    for word, i in vocab.items():
        words[i] = word
    table = df_lib.from_references(ref_ids, mask, words=words)
    pickle_path = prepro_ngrams.write(table, str(tmp_path / "ann"))[1]  # -words.p
    scores = corpus.jax_scores(refs, cands, df_path=pickle_path)
    assert abs(scores["CIDEr-D"] - scores["CIDEr"]) <= 1e-6
