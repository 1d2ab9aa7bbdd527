"""noise_study keeps what it measured on runs whose checkpoints are gone, only for the same run and settings."""
import json
import shutil
import subprocess
from pathlib import Path

from clipbook.repro.noise_study import noise_study, run_fingerprint

RESULTS = Path(__file__).resolve().parent.parent / "results"
SETTINGS = {"n": 50, "sigma": 1.0, "space": "normalised", "clip": False, "noise_seed": 0}


def test_records_are_measured_kept_or_skipped(tmp_path, mnist_split):
    names = ("mnist-standard-s0", "mnist-clip90-s0", "mnist-weight_reg90-s0", "mnist-clip85-s0")
    for name in names[:3]:
        shutil.copy(RESULTS / f"{name}.json", tmp_path)
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    git("init", "-q"); git("add", "mnist-clip90-s0.json")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the run as measured")
    commit = git("rev-parse", "HEAD").strip()
    shutil.copy(RESULTS / "mnist-clip85-s0.json", tmp_path)  # stored later: not in that commit
    (tmp_path / "checkpoints").mkdir()
    for f in ("mnist-standard-s0.pt", "mnist-standard-s0.final.pt"):
        shutil.copy(RESULTS / "checkpoints" / f, tmp_path / "checkpoints")
    clip = json.loads((tmp_path / "mnist-clip90-s0.json").read_text())
    earlier = {**SETTINGS, "provenance": {"git_commit": commit}, "records": [
        {"run": "mnist-clip90-s0", "network": "final", "top_class_share": 0.5},  # an older file: no fingerprint
        {"run": "mnist-clip85-s0", "network": "final", "top_class_share": 0.3},  # nor here, and not in git
        {"run": "mnist-weight_reg90-s0", "network": "final", "top_class_share": 0.4, "run_fingerprint": "another run"}]}
    (tmp_path / "noise_response.json").write_text(json.dumps(earlier))
    out = noise_study(tmp_path, n=50)
    by = {(r["run"], r["network"]): r for r in out["records"]}
    assert set(by) == {("mnist-standard-s0", "selected"), ("mnist-standard-s0", "final"), ("mnist-clip90-s0", "final")}
    assert 0 < by[("mnist-standard-s0", "final")]["top_class_share"] <= 1
    kept = by[("mnist-clip90-s0", "final")]
    assert kept["top_class_share"] == 0.5 and kept["measured_by"] == commit
    assert kept["run_fingerprint"] == run_fingerprint(clip)  # read from git, the run as it was then
    assert out["kept_from_before"] == ["mnist-clip90-s0"]
    assert out["skipped"] == ["mnist-clip85-s0", "mnist-weight_reg90-s0"]
    assert json.loads((tmp_path / "noise_response.json").read_text()) == json.loads(json.dumps(out))
    # other settings: nothing is carried over
    out = noise_study(tmp_path, n=40)
    assert out["kept_from_before"] == [] and len(out["skipped"]) == 3
