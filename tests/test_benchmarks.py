"""results/benchmarks.json: one schema, one writer, the readers the chapters use; the step benchmark's stages."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from clipbook.repro import benchmarks as B

ROOT = Path(__file__).resolve().parent.parent


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_store_section_keeps_the_others_and_replaces_an_old_layout(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"clip_cost": {"cpu": {}}, "pgd": {}}))  # the layout before schema 2
    rounds = {"standard": [1.0, 2.0, 4.0], "clip": [3.0, 5.0, 4.0]}  # per-round ratios 3, 2.5, 1: median 2.5
    B.store_section(path, "step_cost", torch.device("cpu"), {"m": {"step_ms_rounds": rounds}})
    B.store_section(path, "pgd_throughput", torch.device("cpu"), {"m": {"images_per_s": 3.0}})
    data = B.load_benchmarks(path)
    assert set(data) == {"schema", "step_cost", "pgd_throughput"}
    assert B.step_ratio(data, "m", "clip") == 2.5          # the median of the ratios, not of the times (4 / 2)
    assert "git_commit" in B.section(data, "step_cost")["provenance"]
    with pytest.raises(ValueError, match="unknown benchmark section"):
        B.store_section(path, "clip_cost", torch.device("cpu"), {})


def test_load_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bench"):
        B.load_benchmarks(tmp_path / "none.json")
    (tmp_path / "old.json").write_text(json.dumps({"clip_cost": {}}))
    with pytest.raises(ValueError, match="schema 2"):
        B.load_benchmarks(tmp_path / "old.json")
    with pytest.raises(KeyError, match="no step_cost benchmark for device 'cuda'"):
        B.section({"schema": 2, "step_cost": {"cpu": {}}}, "step_cost", "cuda")


def test_the_stored_benchmarks_have_every_section_the_chapters_read():
    data = B.load_benchmarks()
    for name in B.SECTIONS:
        assert not B.section(data, name)["provenance"]["git_commit"].endswith("-dirty")
    for model in ("mnist_mlp", "fashion_cnn"):
        c = B.step_cost(data, model)
        assert set(c["ratios"]) == set(_script("bench_clip_cost").METHODS)
        assert list(c["breakdown_ratios"]) == ["standard", "+ pair rows", "+ pair input gradients", "clip (fused, default)"]
        assert B.section(data, "pgd_vs_torchattacks")["models"][model]["throughput_ratio"] > 0


def test_the_breakdown_stages_do_what_their_names_say():
    from clipbook.core.lipschitz import PairState
    from clipbook.core.models import build_model
    bench = _script("bench_clip_cost")
    x = torch.rand(6, 1, 28, 28)
    y = torch.randint(0, 10, (6,))
    pairs = PairState.start(x[:2], x[:2] + 0.1)
    for fused in (False, True):
        model = build_model("mnist_mlp", seed=0)
        before = [p.detach().clone() for p in model.parameters()]
        terms = bench._stage(model, x, y, pairs, fused)()
        assert len(terms.outputs) == 6 and len(terms.q) == 2     # one pass over the batch and both points of each pair
        assert (terms.px.grad is not None) == fused               # pair input gradients only in the fused stage
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the optimiser stepped
        assert pairs.x.grad is None                               # the stored pairs themselves are untouched


def test_the_step_benchmark_writes_every_method_and_stage(tmp_path):
    threads = torch.get_num_threads()
    try:
        out = tmp_path / "b.json"
        res = _script("bench_clip_cost").main(["--models", "mnist_mlp", "--rounds", "2", "--steps", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # main() sets one thread for the process
    c = B.step_cost(B.load_benchmarks(out), "mnist_mlp")
    assert c == json.loads(json.dumps(res["mnist_mlp"]))
    assert all(len(v) == 2 for v in c["step_ms_rounds"].values())
    assert B.step_ratio(B.load_benchmarks(out), "mnist_mlp", "weight_reg") == pytest.approx(c["ratios"]["weight_reg"])
