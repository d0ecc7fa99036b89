"""The report's uses made dependable: the anomaly detector, out-of-distribution sets, attribute labels, probes,
edits and maps, on a tiny run trained on the real CelebA sample with its partial attribute file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import celebae
from celebae import AnomalyDetector, CelebaeError
from celebae.cli import main
from celebae.data.attributes import read_attributes
from celebae.evaluation.ood import CORRUPTIONS, PCACodec, auroc_ap, ood_sets
from celebae.quality.metrics import auroc_rows, balanced_rows
from celebae.use.latent import split_images

pytest.importorskip("sklearn", reason="the applications need scikit-learn: pip install 'celebae[apps]'")
LABELLED_TRAIN = 579  # SOURCE.md: the sample's labelled images, all in the training split


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conv at 32 px with a 16-number code, two epochs on the sample's first 600 training faces (all 579
    labelled ones among them)."""
    from conftest import SAMPLE

    if not (SAMPLE / "list_attr_celeba.txt").exists():
        pytest.skip(f"the real CelebA sample with its attribute file is not at {SAMPLE}")
    out = tmp_path_factory.mktemp("apps") / "run"
    settings = celebae.Settings(data=str(SAMPLE), image_size=32, nf=8, code_size=16, batch_size=32, epochs=2,
                                limit_train=600, limit_val=300, limit_test=200, out=str(out))  # fmt: skip
    celebae.train(settings, progress=False)
    return out


def test_the_partial_attribute_file_labels_the_images_it_names(celeba_sample: Path) -> None:
    attributes = read_attributes(celeba_sample / "list_attr_celeba.txt")
    assert len(attributes.names) == 40 and attributes.names[31] == "Smiling"
    assert len(attributes.labels) == 20_000  # the count line says 202599; the lines stop after 020000.jpg
    train = [f for f, s in _partition(celeba_sample) if s == "0"]
    index, labels = attributes.of(train)
    assert len(index) == LABELLED_TRAIN and labels.shape == (LABELLED_TRAIN, 40)
    assert set(np.unique(labels)) == {0, 1}
    assert len(attributes.of([f for f, s in _partition(celeba_sample) if s == "2"])[0]) == 0


def _partition(root: Path) -> list[tuple[str, str]]:
    present = {p.name for p in (root / "img_align_celeba").iterdir()}
    rows = (line.split() for line in (root / "list_eval_partition.txt").read_text().splitlines())
    return [(name, split) for name, split in rows if name in present]


def test_kaggle_csv_and_bad_attribute_files(tmp_path: Path) -> None:
    names = [f"A{i}" for i in range(40)]
    good = tmp_path / "list_attr_celeba.csv"
    good.write_text("image_id," + ",".join(names) + "\n000001.jpg," + ",".join(["1", "-1"] * 20) + "\n")
    attributes = read_attributes(good)
    assert attributes.labels["000001.jpg"][:2].tolist() == [1, -1]
    with pytest.raises(CelebaeError, match="no attribute 'a3'; did you mean A3"):
        attributes.column("a3")
    bad = tmp_path / "list_attr_celeba.txt"
    bad.write_text("2\n" + " ".join(names) + "\n000001.jpg " + " 1" * 40 + "\n000002.jpg 1 0\n")
    with pytest.raises(CelebaeError, match=r"list_attr_celeba.txt, line 4: expected a file name and 40 values"):
        read_attributes(bad)


def test_vectorised_metrics_equal_scikit_learn() -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(0)
    p, y = rng.random((4, 60)).round(1), (rng.random((4, 60)) < 0.3).astype(int)  # rounded: ties included
    assert np.allclose(auroc_rows(p, y), [roc_auc_score(y[i], p[i]) for i in range(4)])
    assert np.allclose(balanced_rows(p, y), [balanced_accuracy_score(y[i], p[i] >= 0.5) for i in range(4)])
    normal, odd = rng.normal(0, 1, 300), rng.normal(1, 1, 80)
    found = auroc_ap(normal, odd, resamples=300)
    labels, scores = np.r_[np.zeros(300), np.ones(80)], np.r_[normal, odd]
    assert found["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert found["auroc_lo"] < found["auroc"] < found["auroc_hi"] and found["ap_lo"] < found["ap"] < found["ap_hi"]
    assert 0.70 < found["auroc"] < 0.85  # two unit normals one apart: 0.76 in theory


def test_detector_threshold_holds_its_false_positive_rate_on_held_out_faces(sample_run: Path) -> None:
    from scipy.stats import binomtest

    run = celebae.load(sample_run)
    train, val, test = (split_images(run, None, s).pixels for s in ("train", "val", "test"))
    detector = AnomalyDetector(run, "mse").fit(train).infer_threshold(val, fpr=0.1)
    flagged = detector.predict(test)
    assert set(flagged) == {"instance_score", "p_value", "is_outlier", "threshold", "scores"}
    assert set(flagged["scores"]) == {"mse", "ssim", "mahalanobis", "combined"}
    assert ((flagged["p_value"] > 0) & (flagged["p_value"] <= 1)).all()
    interval = binomtest(int(flagged["is_outlier"].sum()), len(test), 0.1).proportion_ci(0.99)
    assert interval.low <= 0.1 <= interval.high  # held-out faces are flagged at the rate asked for
    # a flagged image has a small p-value, an unflagged one a larger
    assert flagged["p_value"][flagged["is_outlier"]].max() <= 0.1 < flagged["p_value"][~flagged["is_outlier"]].min()
    with pytest.raises(CelebaeError, match="needs at least 1,000 validation images"):
        AnomalyDetector(run).fit(train).infer_threshold(val, fpr=0.001)
    with pytest.raises(CelebaeError, match="hold 5 images; a detector needs at least 10"):
        AnomalyDetector(run).fit(train[:5])


def test_pca_detector_finds_noise_and_a_saved_detector_travels_with_the_model(sample_run: Path, tmp_path) -> None:
    run = celebae.load(sample_run)
    train, val, test = (split_images(run, None, s).pixels for s in ("train", "val", "test"))
    sets = ood_sets(test, "resize-crop", limit=30)
    assert set(sets) == {*CORRUPTIONS, "photographs", "lfw non-faces", "cartoon faces", "constant", "smooth"}
    assert all(images.shape == (30, 3, 32, 32) and images.dtype == np.uint8 for _, images in sets.values())
    pca = AnomalyDetector(PCACodec(train, 16), "mse").fit(train).infer_threshold(val, 0.05)
    normal, noisy = pca.scores(test), pca.scores(sets["noise"][1])
    assert auroc_ap(normal["ssim"], noisy["ssim"], resamples=200)["auroc_lo"] > 0.7  # what SSIM is made to see
    assert auroc_ap(normal["mse"], noisy["mse"], resamples=200)["auroc_lo"] > 0.6

    assert main(["anomalies", str(sample_run), "--out", str(tmp_path / "a"), "--fpr", "0.05", "--top", "2"]) == 0
    rows = list(csv.DictReader(Path(tmp_path / "a" / "scores.csv").read_text().splitlines()))
    assert len(rows) == 660 and {r["score"] for r in rows} == {"mse"}  # tools see the whole split
    folder = tmp_path / "hub"
    assert main(["export", str(sample_run), "--format", "hub", "--out", str(folder)]) == 0
    assert "## Anomaly detection" in (folder / "README.md").read_text()
    from_folder = AnomalyDetector.load(celebae.load(folder)).predict(test[:20])
    from_run = AnomalyDetector.load(celebae.load(sample_run)).predict(test[:20])
    assert np.allclose(from_folder["instance_score"], from_run["instance_score"])
    assert from_folder["threshold"] == from_run["threshold"]
    assert [bool(r["is_outlier"] == "1") for r in rows[:20]] == from_run["is_outlier"].tolist()


def test_evaluate_anomalies_scores_every_set_for_the_run_and_pca(sample_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ood"
    assert main(["evaluate", str(sample_run), "--anomalies", "--limit", "20", "--out", str(out)]) == 0
    rows = list(csv.DictReader(Path(out / "ood.csv").read_text().splitlines()))
    assert len(rows) == 2 * 4 * (1 + 11)  # run and PCA × scores × (the test faces + 11 sets)
    assert {r["method"] for r in rows} == {"conv bs=32 nf=8 size=32 code=16", "PCA-16"}
    measured = [r for r in rows if r["auroc"]]
    assert all(float(r["auroc_lo"]) <= float(r["auroc"]) <= float(r["auroc_hi"]) for r in measured)
    assert "| constant |" in (out / "ood.md").read_text()


def test_probe_against_pca_pixels_and_chance(sample_run: Path, tmp_path: Path, capsys) -> None:
    chosen = "Male,Smiling,Bald,Eyeglasses,Wearing_Hat"  # all 40 take minutes on two cores
    assert main(["probe", str(sample_run), "--out", str(tmp_path), "--folds", "3", "--attributes", chosen]) == 0
    out = capsys.readouterr().out
    assert f"3-fold cross-validation (stratified, seed 0) over the {LABELLED_TRAIN} labelled faces" in out
    assert "Left out (fewer than 10 labelled faces of one class): Bald" in out
    rows = list(csv.DictReader(Path(tmp_path / "probe.csv").read_text().splitlines()))
    methods = {r["method"] for r in rows}
    assert methods == {"conv bs=32 nf=8 size=32 code=16 code", "PCA-16", "pixels 9×9", "majority class"}
    assert len(rows) == 4 * 4
    assert all(float(r["balanced_accuracy"]) == 0.5 for r in rows if r["method"] == "majority class")
    male = {r["method"]: float(r["auroc"]) for r in rows if r["attribute"] == "Male"}
    assert male["pixels 9×9"] > 0.7  # a real signal: the probes learn
    assert Image.open(tmp_path / "probe.png").size[1] > 250  # a row per attribute
    with pytest.raises(CelebaeError, match="0 of the 660 faces in the test split carry labels"):
        celebae.evaluation.probe.probe(celebae.load(sample_run), tmp_path, split="test")


def test_edit_and_map_by_attribute(sample_run: Path, tmp_path: Path, capsys) -> None:
    face = next(iter(sorted((Path(celebae.load(sample_run).settings.data) / "img_align_celeba").glob("18*.jpg"))))
    strip = tmp_path / "strip.png"
    assert main(["edit", str(sample_run), str(face), "--attribute", "Smiling", "--amounts=-1,0,1", "--out",
                 str(strip)]) == 0  # fmt: skip
    assert "labelled faces with it" in capsys.readouterr().out
    assert Image.open(strip).size[1] == 32 + 4  # one row of 32-px faces
    assert main(["edit", str(sample_run), str(face), "--attribute", "Smile", "--out", str(strip)]) == 2
    assert "has no attribute 'Smile'" in capsys.readouterr().err
    assert main(["map", str(sample_run), "--out", str(tmp_path / "m.png"), "--split", "train", "--method", "tsne",
                 "--attribute", "Male"]) == 0  # fmt: skip
    trust = float(capsys.readouterr().out.split()[1])
    assert 0.5 < trust <= 1
    from celebae.use.explorer import Explorer

    ex = Explorer([str(sample_run)], limit=20)
    try:
        edited, row, how = ex.edit(face, "Eyeglasses", 1.0)
        assert edited.shape == (32, 32, 3) and row.shape[1] > 5 * 32 and "training faces with Eyeglasses" in how
    finally:
        ex.close()


def test_no_labels_is_one_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "syn"
    celebae.train(celebae.Settings(data="synthetic", synthetic_size=120, nf=4, code_size=8, image_size=32, epochs=1,
                                   out=str(run)), progress=False)  # fmt: skip
    assert main(["probe", str(run), "--out", str(tmp_path / "p")]) == 2
    assert "synthetic has no list_attr_celeba.txt or .csv" in capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1
