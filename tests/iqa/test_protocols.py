"""The paper's protocols (leave-one-distortion-out, synthetic-to-authentic) and prior training, on tiny data."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from metalearn_iqa.data.kadid10k import load_kadid10k
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.evaluation.predict import EvalConfig
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model, load_model
from metalearn_iqa.protocols import lodo as lodo_module
from metalearn_iqa.protocols.cross import CrossConfig, run_cross, split_target
from metalearn_iqa.protocols.lodo import LodoConfig, run_lodo
from metalearn_iqa.training.finetune import FinetuneConfig
from metalearn_iqa.training.prior import (
    PRIOR_FILE,
    SUMMARY_FILE,
    PriorConfig,
    load_prior,
    prior_trainer,
    train_prior,
)
from metalearn_iqa.training.tasks import TaskConfig
from tests.conftest import KADID_LEVELS, KADID_REFS
from tests.iqa.fixtures import make_cid2013

CROP = 32
EVAL = EvalConfig(crop=CROP, crops=1, batch_size=8)


@pytest.fixture(scope="module")
def records(kadid_root: Path) -> list[IQARecord]:
    return load_kadid10k(kadid_root)


def _prior(algorithm: str = "metaiqa", iterations: int = 1, tasks: int = 2) -> PriorConfig:
    return PriorConfig(
        algorithm=algorithm,
        iterations=iterations,
        inner_steps=1,
        inner_lr=1e-3,
        device="cpu",
        trainer=prior_trainer(tasks_per_batch=tasks, outer_lr=1e-3),
        task=TaskConfig(crop=CROP, batch_size=2, batches=1),
        model=ModelConfig(pretrained="none"),
    )


# ------------------------------------------------------------------------------------------------ LODO


def test_lodo_writes_reports_for_the_held_out_type(
    records: list[IQARecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained_on: list[set[int | None]] = []
    real = lodo_module.train_prior

    def spy(config: PriorConfig, train: list[IQARecord], *args: Any, **kw: Any) -> Any:
        trained_on.append({r.distortion for r in train})
        return real(config, train, *args, **kw)

    monkeypatch.setattr(lodo_module, "train_prior", spy)
    config = LodoConfig(prior=_prior(), folds=[(1,)], eval=EVAL)
    result = run_lodo(records, config, tmp_path)
    assert trained_on == [{9, 25}]  # the prior never sees the held-out type
    assert set(result["zero_shot"]["per_type"]) == {"1"}
    metrics = result["zero_shot"]["per_type"]["1"]
    assert math.isfinite(metrics["srocc"]) and -1.0 <= metrics["srocc"] <= 1.0
    assert metrics["n"] == KADID_REFS * len(KADID_LEVELS)  # zero-shot: all of the type's images
    assert result["zero_shot"]["mean_srocc"] == pytest.approx(metrics["srocc"])
    assert result["finetuned"] is None  # zero fine-tuning epochs: only the paper's reading
    saved = json.loads((tmp_path / "lodo-metaiqa.json").read_text())
    assert saved["zero_shot"]["per_type"]["1"]["srocc"] == pytest.approx(metrics["srocc"])
    assert saved["protocol"] == "leave-one-distortion-out" and saved["init"] == "scratch"
    assert saved["finetuned"] is None
    table = (tmp_path / "lodo-metaiqa.md").read_text()
    assert table.startswith("| held-out type") and "| 1 |" in table
    assert "zero-shot SROCC" in table and "fine-tuned" not in table
    assert (tmp_path / "fold-01" / PRIOR_FILE).is_file()


def test_lodo_test_set_excludes_the_finetuning_contents(
    records: list[IQARecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapted: list[list[IQARecord]] = []
    tested: list[list[IQARecord]] = []
    real_finetune, real_evaluate = lodo_module.finetune, lodo_module.evaluate_records

    def finetune_spy(model, recs, *args, **kw):
        adapted.append(list(recs))
        return real_finetune(model, recs, *args, **kw)

    def evaluate_spy(model, recs, *args, **kw):
        tested.append(list(recs))
        return real_evaluate(model, recs, *args, **kw)

    monkeypatch.setattr(lodo_module, "finetune", finetune_spy)
    monkeypatch.setattr(lodo_module, "evaluate_records", evaluate_spy)
    config = LodoConfig(
        prior=_prior(),
        folds=[(25,)],
        finetune=FinetuneConfig(epochs=1, batch_size=2, crop=CROP),
        eval=EVAL,
    )
    result = run_lodo(records, config, tmp_path)
    assert len(adapted) == 1 and len(tested) == 2  # zero-shot on everything, then fine-tuned on the rest
    everything, rest = tested
    assert len(everything) == KADID_REFS * len(KADID_LEVELS)
    adapt_refs = {r.reference for r in adapted[0]}
    test_refs = {r.reference for r in rest}
    assert adapt_refs and test_refs and not adapt_refs & test_refs
    assert {r.distortion for r in adapted[0] + everything} == {25}
    assert len(adapted[0]) + len(rest) == len(everything)
    assert result["zero_shot"]["per_type"]["25"]["n"] == len(everything)
    finetuned = result["finetuned"]["per_type"]["25"]
    assert finetuned["n"] == len(rest) and finetuned["finetune_images"] == len(adapted[0])
    table = (tmp_path / "lodo-metaiqa.md").read_text()
    assert "zero-shot SROCC" in table and "fine-tuned SROCC" in table and "1 epochs on 50%" in table


def test_lodo_rejects_an_unknown_held_out_type(records: list[IQARecord], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"\[7\]"):
        run_lodo(records, LodoConfig(prior=_prior(), folds=[(7,)], eval=EVAL), tmp_path)


# ------------------------------------------------------------------------------------------- splitting


def _cid_like(sets: int = 6, per_set: int = 2) -> list[IQARecord]:
    return [
        IQARecord(
            f"IS{s}/co1/img{s}_{i}.jpg", (s * per_set + i) / 20, 0.0, "cid", None, None, f"c{s}{i}", f"IS{s}"
        )
        for s in range(1, sets + 1)
        for i in range(per_set)
    ]


def test_split_target_by_image_set() -> None:
    target = _cid_like()
    config = CrossConfig(seed=0)
    combos = set()
    for repeat in range(10):
        train, test = split_target(target, config, repeat)
        train_sets, test_sets = {r.image_set for r in train}, {r.image_set for r in test}
        assert len(train_sets) == 4 and len(test_sets) == 2
        assert not train_sets & test_sets and len(train) + len(test) == len(target)
        combos.add(frozenset(train_sets))
        again, _ = split_target(target, config, repeat)
        assert again == train  # a repeat is reproducible
    assert len(combos) == 10  # pairwise distinct


def test_split_target_uses_every_image_set_combination_once() -> None:
    target = _cid_like()
    for seed in (0, 1):
        config = CrossConfig(seed=seed)
        combos = [frozenset(r.image_set for r in split_target(target, config, k)[0]) for k in range(15)]
        assert len(set(combos)) == 15  # all C(6, 4) choices
    orders = [[frozenset(r.image_set for r in split_target(target, CrossConfig(seed=s), k)[0]) for k in range(15)]
              for s in (0, 1)]  # fmt: skip
    assert orders[0] != orders[1]  # the seed picks the order
    with pytest.raises(DatasetError, match="only 15 distinct"):
        split_target(target, CrossConfig(), 15)


def test_run_cross_rejects_more_repeats_than_distinct_splits(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="at most 15 repeats"):
        run_cross(build_model(), _cid_like(), CrossConfig(repeats=16), tmp_path, "cid", "cross-cid")
    assert not list(tmp_path.iterdir())


def test_split_target_needs_more_sets_than_it_trains_on(tmp_path: Path) -> None:
    from metalearn_iqa.data.cid2013 import load_cid2013

    make_cid2013(tmp_path)  # only IS1..IS3
    with pytest.raises(DatasetError, match="3 image sets"):
        split_target(load_cid2013(tmp_path), CrossConfig(), 0)


def test_split_target_80_20_by_content() -> None:
    contents = [f"img{i}.jpg" for i in range(10)]
    target = [
        IQARecord(f"{name}:{k}", 0.1 * i, 0.0, "a", None, None, name, None)
        for i, name in enumerate(contents)
        for k in range(2)
    ]
    # KonIQ's official split names are not image sets to choose from: they split by content like the rest
    koniq = [
        IQARecord(f"k{i}.jpg", i / 10, i, "koniq", image_set=("training", "test")[i % 2]) for i in range(10)
    ]
    splits = set()
    for repeat in range(5):
        train, test = split_target(target, CrossConfig(), repeat)
        assert len({r.reference for r in train}) == 8 and len({r.reference for r in test}) == 2
        assert not {r.reference for r in train} & {r.reference for r in test}
        assert len(train) + len(test) == len(target)
        splits.add(frozenset(r.reference for r in test))
        k_train, k_test = split_target(koniq, CrossConfig(), repeat)
        assert len(k_train) == 8 and len(k_test) == 2
    assert len(splits) > 1


def test_run_cross_reports_mean_and_std_over_repeats(records: list[IQARecord], tmp_path: Path) -> None:
    # the KADID images as an "authentic" database: every image its own content
    target = [IQARecord(r.path, r.score, r.raw_score, "auth") for r in records]
    torch.manual_seed(0)
    prior = build_model(ModelConfig())
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    config = CrossConfig(repeats=2, finetune=FinetuneConfig(epochs=1, batch_size=2, crop=CROP), eval=EVAL)
    provenance = {"algorithm": "metaiqa", "init": "imagenet"}
    result = run_cross(prior, target, config, tmp_path, "auth", "cross-auth", provenance)
    splits = result["splits"]
    assert len(splits) == 2
    for split in splits:
        assert split["train"] + split["test"] == len(target) and split["test"] == round(0.2 * len(target))
        assert math.isfinite(split["srocc"]) and -1.0 <= split["srocc"] <= 1.0
    summary = result["summary"]
    assert summary["srocc"] == pytest.approx(statistics.fmean(s["srocc"] for s in splits))
    assert summary["srocc_std"] == pytest.approx(statistics.stdev(s["srocc"] for s in splits))
    assert summary["plcc_std"] >= 0.0
    saved = json.loads((tmp_path / "cross-auth.json").read_text())
    assert saved["summary"]["srocc"] == pytest.approx(summary["srocc"])
    assert saved["algorithm"] == "metaiqa" and saved["init"] == "imagenet"
    assert saved["summary"]["plcc_logistic"] is None  # 5 test images: logistic fit skipped
    assert "| auth |" in (tmp_path / "cross-auth.md").read_text()
    after = prior.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # fine-tuning works on copies


# ----------------------------------------------------------------------------------------------- prior


def test_train_prior_resumes_to_the_same_weights(records: list[IQARecord], tmp_path: Path) -> None:
    train_prior(_prior(iterations=2, tasks=1), records, tmp_path / "a", checkpoint_every=1)
    resumed, rows = train_prior(
        _prior(iterations=3, tasks=1), records, tmp_path / "a", resume=True, checkpoint_every=1
    )
    assert [int(r["iteration"]) for r in rows] == [3]
    straight, rows = train_prior(_prior(iterations=3, tasks=1), records, tmp_path / "b", checkpoint_every=1)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    a, b = resumed.state_dict(), straight.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed prior differs from an uninterrupted run"
    saved_a, saved_b = load_prior(tmp_path / "a").state_dict(), load_prior(tmp_path / "b").state_dict()
    assert all(torch.equal(saved_a[k], saved_b[k]) for k in saved_a)


def test_train_prior_resume_is_exact_with_the_authors_head(records: list[IQARecord], tmp_path: Path) -> None:
    """The authors' head has dropout, which draws from torch's global stream: resume must restore it."""

    def config(iterations: int) -> PriorConfig:
        prior = _prior(iterations=iterations, tasks=1)
        return dataclasses.replace(prior, model=ModelConfig(head="authors", pretrained="none"))

    straight, _ = train_prior(config(4), records, tmp_path / "straight")
    train_prior(config(2), records, tmp_path / "split", checkpoint_every=1)
    torch.manual_seed(1234)  # whatever ran in between
    resumed, rows = train_prior(config(4), records, tmp_path / "split", resume=True)
    assert [int(r["iteration"]) for r in rows] == [3, 4]
    a, b = resumed.state_dict(), straight.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed prior differs from an uninterrupted run"


def test_train_prior_refuses_a_previous_run(records: list[IQARecord], tmp_path: Path) -> None:
    from metalearn import RunExistsError

    train_prior(_prior(tasks=1), records, tmp_path)
    with pytest.raises(RunExistsError, match="prior.pt"):
        train_prior(_prior(tasks=1), records, tmp_path)
    (tmp_path / "mine.txt").write_text("not a run's\n")
    with pytest.raises(RunExistsError, match="mine.txt"):
        train_prior(_prior(tasks=1), records, tmp_path, overwrite=True)
    assert (tmp_path / PRIOR_FILE).is_file() and (tmp_path / "mine.txt").is_file()


@pytest.mark.parametrize("algorithm", ["baseline", "pooled-baseline", "maml", "fomaml", "reptile"])
def test_train_prior_runs_every_algorithm(algorithm: str, records: list[IQARecord], tmp_path: Path) -> None:
    config = _prior(algorithm, tasks=1)
    model, rows = train_prior(config, records, tmp_path)
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"])
    torch.manual_seed(config.trainer.seed)
    initial = build_model(config.model).state_dict()
    trained = model.state_dict()
    assert any(not torch.equal(initial[k], trained[k]) for k in initial), "one outer step changed nothing"
    loaded, model_config = load_model(tmp_path / PRIOR_FILE)
    assert model_config == config.model
    assert all(torch.equal(loaded.state_dict()[k], trained[k]) for k in trained)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert PriorConfig.from_dict(summary["config"]) == config


def test_prior_config_rejects_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        PriorConfig(algorithm="sgd")


def test_prior_provenance_comes_from_prior_json(tmp_path: Path) -> None:
    from metalearn_iqa.protocols.cross import prior_provenance

    folder = tmp_path / "run"
    folder.mkdir()
    config = PriorConfig(algorithm="baseline", model=ModelConfig(pretrained="/w/resnet18.pth"))
    (folder / SUMMARY_FILE).write_text(json.dumps({"config": config.to_dict()}))
    expected = {"algorithm": "baseline", "init": "/w/resnet18.pth"}
    with pytest.warns(UserWarning, match="older prior without its run record"):  # no record in a prior.pt
        assert prior_provenance(folder) == {"prior": str(folder), **expected}
        assert prior_provenance(folder / PRIOR_FILE) == {"prior": str(folder / PRIOR_FILE), **expected}
    other = folder / "finetuned.pt"  # not the prior that prior.json describes
    assert prior_provenance(other) == {"prior": str(other), "algorithm": "unknown", "init": str(other)}


def test_undefined_results_are_null_and_undefined_not_zero(tmp_path: Path) -> None:
    from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report

    mean, _ = mean_std([0.5, None])  # one type's correlation was undefined
    assert math.isnan(mean)
    table = markdown_table(["type", "SROCC"], [[1, None], ["mean", mean]])
    assert "undefined" in table and "0.0000" not in table
    json_path, _ = write_report(
        {"mean_srocc": mean, "per_type": {"1": {"srocc": None}}}, table, tmp_path, "r"
    )
    assert json.loads(json_path.read_text()) == {"mean_srocc": None, "per_type": {"1": {"srocc": None}}}
