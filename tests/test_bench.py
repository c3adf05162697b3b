"""`python -m unlearnlib.bench`: measured throughput, the paper workload it is multiplied with, and predictions."""
import contextlib
import io

import pytest

from unlearnlib import bench, experiment, profiles
from unlearnlib.book import toc_chapters

CHAPTERS = [c.stem for c in toc_chapters()]


def fixed_throughput(train: float = 1000.0, evaluate: float = 4000.0) -> dict:
    """Made-up throughputs for every bench model, so that predictions can be checked without measuring."""
    return {name: bench.Throughput(name, train, evaluate, 64, 1024, "test") for name in bench.bench_models()}


@pytest.fixture(scope="module")
def quick_cli_output():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--device", "cpu", "--quick"]) == 0
    return out.getvalue()


def test_the_quick_cli_measures_every_model_on_the_cpu(quick_cli_output):
    for name in bench.bench_models():
        line = next(l for l in quick_cli_output.splitlines() if l.strip().startswith(name))
        assert "measured on cpu" in line
        assert float(line.split()[2].replace(",", "")) > 0, "a positive training throughput"


def test_the_cli_predicts_every_chapter_of_the_toc_and_says_it_is_a_prediction(quick_cli_output):
    assert "PREDICTED" in quick_cli_output and "NOT included" in quick_cli_output
    lines = quick_cli_output.splitlines()
    for chapter in CHAPTERS:
        row = next(l for l in lines if l.split() and l.split()[0] == chapter)
        assert row.split()[-1] in ("min", "h", "days"), row


def test_every_toc_chapter_has_a_workload_and_only_those():
    assert set(bench.paper_workload()) == set(CHAPTERS)


def test_predictions_scale_inversely_with_throughput():
    slow, fast = fixed_throughput(), fixed_throughput(train=2000.0, evaluate=8000.0)
    for chapter in CHAPTERS:
        t = bench.predict_chapter_seconds(chapter, slow)
        assert t > 0
        assert bench.predict_chapter_seconds(chapter, fast) == pytest.approx(t / 2)


def test_the_prediction_is_training_images_over_training_throughput_plus_evaluation():
    w = bench.paper_workload()["foundations"]
    train, evaluate = w.seconds(fixed_throughput(train=100.0, evaluate=1e12))
    assert train == pytest.approx(sum(t.count * t.epochs * t.images for t in w.trainings) / 100.0)
    assert evaluate == pytest.approx(0, abs=1e-3)


def test_the_workload_follows_the_seeds():
    one, three = bench.paper_workload(seeds=[0]), bench.paper_workload(seeds=[0, 1, 2])
    original = lambda w: next(t for t in w["foundations"].trainings if t.what.startswith("original"))  # noqa: E731
    assert original(one).seeds == (0, profiles.get_profile("paper").tuning_seed)
    assert original(three).count == 4, "three reported seeds and the tuning seed"
    for chapter in CHAPTERS:
        assert bench.predict_chapter_seconds(chapter, fixed_throughput(), seeds=[0]) < \
               bench.predict_chapter_seconds(chapter, fixed_throughput(), seeds=[0, 1, 2])


def test_the_comparison_reports_five_seeds_unless_told_otherwise():
    assert bench.paper_workload()["comparison"].seeds == (0, 1, 2, 3, 4)
    assert bench.paper_workload(seeds=[7])["comparison"].seeds == (7,)


def test_the_workload_follows_the_profile(monkeypatch):
    paper = profiles.get_profile("paper")
    before = bench.paper_workload()
    longer = paper.replace(seeds=(0, 1, 2, 3), dataset_recipes={
        **paper.dataset_recipes, "cifar100": paper.recipe_for("cifar100").replace(epochs=400)})
    monkeypatch.setitem(profiles.PROFILES, "paper", longer)
    after = bench.paper_workload()
    assert len(after["foundations"].seeds) == 4
    cifar100 = lambda w: next(t for t in w["ssd"].trainings if "CIFAR-100" in t.what)  # noqa: E731
    assert cifar100(after).epochs == 2 * cifar100(before).epochs


def test_the_rem_workload_follows_the_corruption_benchmark(monkeypatch):
    real = experiment.corruption_benchmark
    before = sum(t.count for t in bench.paper_workload()["rem"].trainings)
    monkeypatch.setattr(experiment, "corruption_benchmark", lambda p: {**real(p), "rates": [0.5, 1.0]})
    after = sum(t.count for t in bench.paper_workload()["rem"].trainings)
    seeds = len(profiles.get_profile("paper").seeds)
    assert before - after == 3 * (10 - 2) * seeds, "one retrain model per corruption, seed and rate"


def test_a_whole_book_run_trains_shared_models_once():
    tp, workloads = fixed_throughput(), bench.paper_workload()
    alone = sum(sum(w.seconds(tp)) for w in workloads.values())
    assert bench.book_seconds(workloads, tp) < alone
    assert bench.book_seconds({"ssd": workloads["ssd"]}, tp) == pytest.approx(sum(workloads["ssd"].seconds(tp)))


def test_an_unknown_chapter_is_a_clear_error():
    with pytest.raises(ValueError, match="no paper workload for chapter 'nope'"):
        bench.predict_chapter_seconds("nope", fixed_throughput())


def test_assumed_gpus_are_labelled_assumed_and_the_h100_is_the_faster():
    t4, h100 = bench.assumed_throughput("t4"), bench.assumed_throughput("h100")
    for name in bench.bench_models():
        assert t4[name].source.startswith("ASSUMED") and h100[name].source.startswith("ASSUMED")
        assert h100[name].train > t4[name].train > 0 and h100[name].eval > t4[name].eval > 0
    with pytest.raises(ValueError, match="no assumed throughput"):
        bench.assumed_throughput("a100")


def test_the_assume_option_predicts_without_measuring(monkeypatch):
    monkeypatch.setattr(bench, "measure_all", lambda **kw: pytest.fail("--assume must not measure"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.main(["--assume", "t4", "--assume", "h100", "--seeds", "0"])
    text = out.getvalue()
    assert text.count("PREDICTED") == 2 and "measured on" not in text
    assert "assumptions for t4" in text and "assumptions for h100" in text


def test_seeds_must_be_integers():
    with pytest.raises(SystemExit):
        bench.main(["--assume", "t4", "--seeds", "zero"])
