"""scripts/compare_runs.py: two runs of one configuration compared value by value, timings aside."""
import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("compare_runs", Path(__file__).parents[1] / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def run(test: float, wall: float, cpu: str | None = None) -> dict:
    prov = {"git_commit": "abc", **({"cpu": cpu} if cpu else {})}
    return {"name": "mnist-clip90-s0", "metrics": {"test": test, "pgd": 50.0, "best_epoch": 3},
            "history": [{"epoch": 1, "train_acc": 90.0, "time_s": wall}], "provenance": prov}


def test_timings_are_ignored_and_any_other_value_counts(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps(run(90.0, 1.0, "Intel, AVX512")))
    b.write_text(json.dumps(run(90.0, 7.0, "AMD EPYC, AVX2")))
    c.write_text(json.dumps(run(90.5, 1.0)))
    assert compare_runs.main([str(a), str(b)]) == 0  # only a wall time differs
    out = tmp_path / "record.json"
    assert compare_runs.main([str(a), str(c), "--out", str(out)]) == 1
    rec = json.loads(out.read_text())
    assert not rec["identical"] and rec["n_differences"] == 1 and rec["differences"] == ["/metrics/test: 90.0 != 90.5"]
    assert rec["table1"]["test"] == [90.0, 90.5] and rec["a_cpu"] == "Intel, AVX512" and rec["b_cpu"] == "not recorded"


def test_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    import pytest
    with pytest.raises(SystemExit) as e:
        compare_runs.main([str(tmp_path / "nope.json"), str(tmp_path / "nope.json")])
    assert e.value.code == 2 and "no stored run at" in capsys.readouterr().err
