"""Seeds in studies, tables with spread, and verdicts that never call noise a result (A/A and A/B tests)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny

from celebae import RunDir, train
from celebae.cli import main
from celebae.studies.points import Point
from celebae.studies.sweep import sweep
from celebae.studies.verdicts import effect_at

TINY = {"data": "synthetic", "synthetic_size": 300, "limit_train": 64, "limit_val": 32, "limit_test": 30}


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """A and A' (the same settings, seeds 0-2 and 3-5) and B (seeds 0-2, a tenth of the training)."""
    root = tmp_path_factory.mktemp("verdicts")
    out: dict[str, list[Path]] = {"A": [], "A2": [], "B": []}
    for group, seeds, epochs, limit in (("A", (0, 1, 2), 4, 128), ("A2", (3, 4, 5), 4, 128), ("B", (0, 1, 2), 1, 16)):
        for seed in seeds:
            run = root / group / f"seed-{seed}"
            values = {**TINY, "seed": seed, "epochs": epochs, "limit_train": limit, "lr": 2e-3, "out": str(run)}
            train(tiny(root, **values), progress=False)
            out[group].append(run)
    return out


def test_every_run_writes_its_per_image_errors(groups: dict[str, list[Path]]) -> None:
    run = RunDir(groups["A"][0])
    errors = run.test_errors()
    assert errors.shape == (30,) and errors.dtype == np.float32  # the 30 test faces of 300
    assert float(errors.mean()) == pytest.approx(run.summary["test_mse"], rel=1e-5)
    val = np.load(run.val_errors_path)
    assert val.shape == (4, 30)  # one row per epoch; 30 validation faces of the 300
    assert float(val[-1].mean()) == pytest.approx(run.summary["val_mse"], rel=1e-5)


def test_a_a_is_inconclusive_and_a_b_has_the_right_sign(groups: dict[str, list[Path]], capsys) -> None:
    a, a2, b = (str(Path(groups[g][0]).parent) for g in ("A", "A2", "B"))
    assert main(["compare", a, "--vs", a2]) == 0
    out = capsys.readouterr().out
    assert "Verdict: no difference shown" in out and "(inconclusive that A is better)" in out
    assert "3 vs 3 seeds" in out and "seed variation and image sampling" in out
    assert main(["compare", a, "--vs", f"{b}/seed-*"]) == 0
    assert "Verdict: A has the lower error" in capsys.readouterr().out
    assert main(["compare", b, "--vs", a]) == 0
    assert "Verdict: B has the lower error" in capsys.readouterr().out

    points = {g: Point(g, [RunDir(p) for p in groups[g]]) for g in groups}
    effect, where = effect_at(points["A"], points["A2"], "epochs")
    assert effect.verdict == "inconclusive" and effect.db_low < 0 < effect.db_high and "test images" in where
    effect, _ = effect_at(points["A"], points["B"], "epochs")
    assert effect.verdict == "supported" and effect.db > 0
    effect, where = effect_at(points["A"], points["B"], "steps")  # B's 1 step budget: A's first epoch is 8 steps
    assert effect is None and "no epoch within the budget" in where
    one_seed = effect_at(Point("a", points["A"].runs[:1]), Point("b", points["B"].runs[:1]), "epochs")[0]
    assert "seed variation unknown" in one_seed.describe()


def test_points_that_differ_in_neither_batch_nor_width_make_no_size_claim(groups: dict[str, list[Path]]) -> None:
    from celebae.studies.verdicts import all_verdicts

    a, a2 = (Point(name, [RunDir(r) for r in groups[name]]) for name in ("A", "A2"))
    assert all_verdicts([a, a2]) == ["- none of the report's comparisons applies to these runs"]  # no "16 → 16"


def test_compare_refuses_runs_on_other_images(groups: dict[str, list[Path]], tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    train(tiny(tmp_path, **{**TINY, "epochs": 1, "limit_test": 20, "out": str(other)}), progress=False)
    assert main(["compare", str(groups["A"][0]), "--vs", str(other)]) == 2
    assert "tested on different images" in capsys.readouterr().err


def test_a_study_with_seeds(tmp_path: Path, capsys) -> None:
    study = tmp_path / "s.toml"
    settings = "".join(f"{k} = {json.dumps(v)}\n" for k, v in {**TINY, "nf": 8, "epochs": 2, "log_every": 1}.items())
    study.write_text(f"name = 's'\nseeds = 2\n[settings]\n{settings}[grid]\nbatch_size = [8, 16]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(study), "--out", str(out), "--dry-run", "--seeds", "0,5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(":")[0] for line in lines]
    assert names == ["conv-bs8-nf8/seed-0", "conv-bs8-nf8/seed-5", "conv-bs16-nf8/seed-0", "conv-bs16-nf8/seed-5"]
    records = sweep(study, out)
    assert [r["name"] for r in records] == ["conv-bs8-nf8/seed-0", "conv-bs8-nf8/seed-1"] + [
        "conv-bs16-nf8/seed-0",
        "conv-bs16-nf8/seed-1",
    ]
    assert all(r["status"] == "done" for r in records)
    assert RunDir(out / "conv-bs8-nf8" / "seed-1").read_config().seed == 1
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["seeds"]) for r in rows] == [("conv-bs8-nf8", "2"), ("conv-bs16-nf8", "2")]
    tests = [RunDir(out / "conv-bs8-nf8" / f"seed-{s}").summary["test_mse"] for s in (0, 1)]
    assert float(rows[0]["test_mse"]) == pytest.approx(np.mean(tests))
    assert float(rows[0]["test_mse_std"]) == pytest.approx(np.std(tests, ddof=1))
    with open(out / "results-runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert " ± " in (out / "results.md").read_text()
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "paired hierarchical bootstrap (2000 resamples" in report and "2 seed(s) per point" in report
    assert "*Loss falls as batch size grows*" in report and "equal training compute" in report
    assert sweep(study, out)[0]["status"] == "done"  # finished seeds are skipped
