"""noise_study keeps what it measured on runs whose checkpoints are gone, and only for the same run."""
import json
import shutil
from pathlib import Path

from clipbook.repro.noise_study import noise_study, run_fingerprint

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_records_are_measured_kept_or_skipped(tmp_path, mnist_split):
    for name in ("mnist-standard-s0", "mnist-clip90-s0", "mnist-weight_reg90-s0"):
        shutil.copy(RESULTS / f"{name}.json", tmp_path)
    (tmp_path / "checkpoints").mkdir()
    for f in ("mnist-standard-s0.pt", "mnist-standard-s0.final.pt"):
        shutil.copy(RESULTS / "checkpoints" / f, tmp_path / "checkpoints")
    clip = json.loads((tmp_path / "mnist-clip90-s0.json").read_text())
    earlier = {"provenance": {"git_commit": "0123456789ab"}, "records": [
        {"run": "mnist-clip90-s0", "network": "final", "top_class_share": 0.5},  # an older file: no fingerprint
        {"run": "mnist-weight_reg90-s0", "network": "final", "top_class_share": 0.4, "run_fingerprint": "another run"}]}
    (tmp_path / "noise_response.json").write_text(json.dumps(earlier))
    out = noise_study(tmp_path, n=50)
    by = {(r["run"], r["network"]): r for r in out["records"]}
    assert set(by) == {("mnist-standard-s0", "selected"), ("mnist-standard-s0", "final"), ("mnist-clip90-s0", "final")}
    assert 0 < by[("mnist-standard-s0", "final")]["top_class_share"] <= 1
    kept = by[("mnist-clip90-s0", "final")]
    assert kept["top_class_share"] == 0.5 and kept["measured_by"] == "0123456789ab"
    assert kept["run_fingerprint"] == run_fingerprint(clip)
    assert out["kept_from_before"] == ["mnist-clip90-s0"] and out["skipped"] == ["mnist-weight_reg90-s0"]
    assert json.loads((tmp_path / "noise_response.json").read_text()) == json.loads(json.dumps(out))
