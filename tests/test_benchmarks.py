"""results/benchmarks.json: one schema, one writer, the readers the chapters use."""
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
    B.store_section(path, "step_cost", torch.device("cpu"), {"m": {"step_ms": {"standard": 2.0, "clip": 5.0}}})
    B.store_section(path, "pgd_throughput", torch.device("cpu"), {"m": {"images_per_s": 3.0}})
    data = B.load_benchmarks(path)
    assert set(data) == {"schema", "step_cost", "pgd_throughput"}
    assert B.step_ratio(data, "m", "clip") == 2.5
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


def test_the_stored_benchmarks_are_in_the_schema_and_agree_with_themselves():
    data = B.load_benchmarks()
    for name in B.SECTIONS:
        assert "provenance" in B.section(data, name)
    for model in ("mnist_mlp", "fashion_cnn"):
        c = B.step_cost(data, model)
        for method, ratio in c["ratios"].items():
            assert B.step_ratio(data, model, method) == pytest.approx(ratio)
        # the breakdown builds the fused step up from a standard one and ends at the fused step's own ratio
        assert c["breakdown_ratios"]["clip (fused, default)"] == pytest.approx(c["ratios"]["clip (fused, default)"])
        assert c["rows_per_pass"] == (c["batch"] + 2 * c["lip_pairs"]) / c["batch"]


def test_the_step_benchmark_writes_every_method_and_stage(tmp_path):
    out = tmp_path / "b.json"
    res = _script("bench_clip_cost").main(["--models", "mnist_mlp", "--rounds", "1", "--steps", "1", "--out", str(out)])
    c = B.step_cost(B.load_benchmarks(out), "mnist_mlp")
    assert c == json.loads(json.dumps(res["mnist_mlp"]))
    assert set(c["ratios"]) == set(_script("bench_clip_cost").METHODS)
    assert list(c["breakdown_ratios"]) == ["standard", "+ pair rows", "+ pair input gradients", "clip (fused, default)"]
    assert all(v > 0 for v in c["step_ms"].values())
