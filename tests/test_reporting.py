"""Table 1 and the claims on constructed result sets whose verdicts are known (holds / fails / undecided)."""
import pytest

from clipbook.repro.reporting import differences_to_paper, format_table1, qualitative_claims, table1, table1_markdown
from clipbook.repro.schema import check_result


def result(row, seed=0, test=90.0, pgd=30.0, worst=20.0, lam=0.0, mu=0.0, epochs=100, **metrics):
    method = row.split("-")[1].rstrip("0123456789")
    m = {"train": test, "test": test, "noise": 30.0, "noise_normalised": 70.0, "noise_normalised_clipped": 71.0,
         "pgd": pgd, "lam": lam, "mu": mu, "sn_scale": None, "lip_estimate": 1.0, "upper_bound": 8.0, "best_epoch": 1}
    m.update(metrics)
    return check_result({"name": f"{row}-s{seed}", "row": row, "dataset": row.split("-")[0], "method": method,
                         "target": None, "seed": seed, "config": {"epochs": epochs, "seed": seed}, "budget": {"pgd": None},
                         "metrics": m, "robust": {"n": 10, "eps": [2.0, 0.5], "attacks": {}, "worst": [worst, 50.0]},
                         "history": [{"epoch": 1, "lam": lam, "mu": mu}], "provenance": {}})


def rows_of(*results):
    return table1(list(results))


def verdicts(rows, dataset="mnist"):
    return {c["claim"].split(" more")[0] + (" worst" if "worst" in c["claim"] else "")
            + (" noise" if "noise" in c["claim"] and "pixel" not in c["claim"] else "")
            + (" pixel noise" if "pixel" in c["claim"] else ""): c["verdict"]
            for c in qualitative_claims(rows, dataset)}


def test_claims_hold_fail_and_stay_undecided_as_constructed():
    base = [result("mnist-standard", test=90, pgd=30, worst=10), result("mnist-weight_reg90", test=89, pgd=35, worst=12),
            result("mnist-clip95", test=95, pgd=50, lam=0.1), result("mnist-clip90", test=90, pgd=60, worst=30, lam=1.0),
            result("mnist-clip85", test=86, pgd=40, worst=9, lam=2.0), result("mnist-weight_reg85", test=86, pgd=45, worst=10)]
    v = verdicts(rows_of(*base))
    assert v["CLIP90"] == "holds" and v["CLIP90 worst"] == "holds"        # 60 > 30, 35; 30 > 10, 12
    assert v["CLIP85"] == "fails" and v["CLIP85 worst"] == "fails"        # 40 < 45; 9 < 10
    assert v["lambda larger for lower targets (95 < 90 < 85)"] == "holds"
    # nothing to compare with: undecided, never a vacuous "holds"
    alone = verdicts(rows_of(result("mnist-clip90", test=99, pgd=60, lam=1.0), result("mnist-standard", test=80)))
    assert alone["CLIP90"] == "undecided"
    assert verdicts([])["CLIP90"] == "undecided"


def test_a_difference_inside_the_seeds_spread_does_not_count():
    clip = [result("mnist-clip90", seed=s, test=90, pgd=p, lam=1.0) for s, p in enumerate((40, 50, 60))]
    std = [result("mnist-standard", seed=s, test=90, pgd=p) for s, p in enumerate((38, 42, 46))]
    assert verdicts(rows_of(*clip, *std))["CLIP90"] == "fails"  # means 50 vs 42, spreads 10 + 4 > 8
    std = [result("mnist-standard", seed=s, test=90, pgd=p) for s, p in enumerate((20, 21, 22))]
    assert verdicts(rows_of(*clip, *std))["CLIP90"] == "holds"  # 50 - 21 = 29 > 10 + 1


def test_unlike_runs_are_never_averaged():
    rows = rows_of(result("mnist-clip90", seed=0, pgd=70), result("mnist-clip90", seed=1, pgd=80),
                   result("mnist-clip90", seed=5, pgd=10, epochs=3))
    assert [(r["epochs"], r["seeds"], r["variant"]) for r in rows] == [(100, [0, 1], False), (3, [5], True)]
    assert rows[0]["pgd"] == 75.0 and rows[0]["pgd_std"] == pytest.approx(7.0710678)
    assert rows[0]["paper"]["pgd"] == 36.2 and rows[1]["pgd"] == 10.0


def test_a_budget_field_added_later_does_not_split_a_row():
    old = result("mnist-clip90", seed=0)
    new = result("mnist-clip90", seed=1)
    new["budget"] = {"pgd": None, "attack_steps": 100}  # the default, written out by a newer clipbook
    assert [r["seeds"] for r in rows_of(old, new)] == [[0, 1]]


def test_table_renders_as_markdown_and_text_and_lists_differences():
    rows = rows_of(result("mnist-clip90", test=91.6, pgd=36.0, lam=3.0, noise=50.0))
    md = table1_markdown(rows)
    assert md.count("\n") == 2 and md.splitlines()[1].startswith("|---")
    assert "36.0 (36.2)" in md and "mnist-clip90" in format_table1(rows)
    assert ("mnist-clip90", "noise", 50.0, 78.0) in differences_to_paper(rows)
    assert all(c != "pgd" for _, c, _, _ in differences_to_paper(rows))


def test_a_result_of_another_version_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match="re-run"):
        check_result({"name": "x", "metrics": {"train": 1.0}}, "old.json")


def test_both_readings_show_each_networks_own_epoch_and_parameter():
    """The selected checkpoint is shown with lambda of its epoch, the final network with the last lambda."""
    r = result("mnist-clip90", test=90, pgd=60, lam=0.96)
    r["metrics"]["best_epoch"] = 2
    r["config"]["epochs"] = 3
    r["history"] = [{"epoch": e, "lam": lam, "mu": 0.0} for e, lam in ((1, 0.0), (2, 0.785), (3, 0.96))]
    r["final"] = {"epoch": 3, "metrics": {**r["metrics"], "test": 91.0, "pgd": 40.0, "best_epoch": 3},
                  "robust": {"n": 10, "eps": [2.0, 0.5], "attacks": {}, "worst": [5.0, 50.0]}}
    old = result("mnist-standard")  # stored before final networks were kept: in the selected reading only
    sel, fin = table1([r, old]), table1([r, old], "final")
    assert [x["row"] for x in sel] == ["mnist-standard", "mnist-clip90"] and [x["row"] for x in fin] == ["mnist-clip90"]
    assert sel[1]["param"] == 0.785 and sel[1]["network_epochs"] == [2] and sel[1]["pgd"] == 60
    assert fin[0]["param"] == 0.96 and fin[0]["network_epochs"] == [3] and fin[0]["pgd"] == 40 and fin[0]["worst"] == 5
    assert "2 / 3" in format_table1(sel) and "3 / 3" in format_table1(fin)
    with pytest.raises(ValueError, match="reading"):
        table1([r], "best")


def test_the_reading_closer_to_the_paper_is_measured_per_column():
    from clipbook.repro.reporting import compare_readings
    r = result("mnist-clip90", test=80.0, pgd=60.0)  # paper: test 91.6, PGD 36.2
    r["final"] = {"epoch": 1, "metrics": {**r["metrics"], "test": 91.0, "pgd": 70.0},
                  "robust": r["robust"]}
    recs = {c["column"]: c for c in compare_readings([r], "mnist", ("test", "pgd"))}
    assert recs["test"]["selected"] == pytest.approx(11.6) and recs["test"]["final"] == pytest.approx(0.6)
    assert recs["test"]["closer"] == "final" and recs["pgd"]["closer"] == "selected"
    assert compare_readings([r], "fashion", ("test",))[0]["closer"] is None  # no runs: undecided


def test_the_noise_claims_are_decided_for_both_datasets():
    base = [result("fashion-weight_reg90", test=89, pgd=6, noise=40.0, noise_normalised=80.0),
            result("fashion-clip90", test=89, pgd=13, noise=30.0, noise_normalised=85.0, lam=0.7)]
    v = verdicts(rows_of(*base), "fashion")
    assert v["CLIP90"] == "holds" and v["CLIP90 pixel noise"] == "fails" and v["CLIP90 noise"] == "holds"
    prone = [c for c in qualitative_claims(rows_of(*base), "fashion") if c["claim"].startswith("CLIP less robust")]
    assert [c["verdict"] for c in prone] == ["undecided", "undecided"]  # the 95 and 85 rows are missing
    full = base + [result(f"fashion-{m}{t}", test=90, noise=40.0 if m == "weight_reg" else 30.0, noise_normalised=70.0)
                   for t in ("95", "85") for m in ("weight_reg", "clip")]
    prone = {c["claim"]: c["verdict"] for c in qualitative_claims(rows_of(*full), "fashion") if "less robust" in c["claim"]}
    assert list(prone.values()) == ["fails", "holds"]  # normalised: 80 < 85 at 90 %; pixel: 40 > 30 everywhere
    assert not [c for c in qualitative_claims(rows_of(*full), "mnist") if "less robust" in c["claim"]]


def test_the_cascade_saving_compares_per_image_costs_at_each_radius():
    from clipbook.repro.reporting import cascade_saving
    r = {"name": "x", "robust": {
        "eps": [2.0, 0.5], "n": 500, "attacks_n": 100,
        "attacks_wall_s": {"a": [1.0, 2.0], "b": [3.0, 4.0]},  # 100 images: 4 s and 6 s in all
        "cascade": [[{"attack": "clean", "attacked": 500, "accuracy": 90.0, "wall_s": 0.0},
                     {"attack": "a", "attacked": 450, "accuracy": 10.0, "wall_s": 5.0},
                     {"attack": "b", "attacked": 50, "accuracy": 8.0, "wall_s": 5.0}],
                    [{"attack": "clean", "attacked": 500, "accuracy": 90.0, "wall_s": 0.0},
                     {"attack": "a", "attacked": 450, "accuracy": 80.0, "wall_s": 10.0},
                     {"attack": "b", "attacked": 400, "accuracy": 70.0, "wall_s": 20.0}]]}}
    s = cascade_saving(r)
    assert [x["each attack on every image [s]"] for x in s] == [20.0, 30.0]  # scaled from 100 to 500 images
    assert [x["saving"] for x in s] == [2.0, 1.0] and s[0]["worst case [%]"] == 8.0
    assert cascade_saving({"name": "y", "robust": {"eps": [2.0]}}) == []


def test_parameter_settling_reports_when_the_parameter_moved_and_whether_accuracy_reached_the_target():
    from clipbook.repro.reporting import parameter_settling
    def run(lams, accs):
        return {"name": "x", "method": "clip", "target": 0.9,
                "history": [{"epoch": i + 1, "lam": v, "mu": 0.0, "train_acc": a} for i, (v, a) in enumerate(zip(lams, accs))]}
    s = parameter_settling(run([0, 0, 0.5, 1.0, 1.1, 1.0], [95, 93, 91, 90.2, 89.8, 90.1]), last=3)
    assert s["on target"] and s["first epoch > 0"] == 3 and s["end value"] == "1" and s["last 3 epochs"] == "1 – 1.1"
    assert abs(s["train acc, last 3 epochs [%]"] - 90.0333) < 1e-3
    assert not parameter_settling(run([0, 0.1, 0.2, 0.3], [97, 96, 95, 94]), last=2)["on target"]  # still above
    assert not parameter_settling(run([0.0] * 4, [90.0] * 4))["on target"]  # on target, but never moved
    mu = parameter_settling({"name": "y", "method": "weight_reg", "target": 0.9,
                             "history": [{"epoch": 1, "lam": 0, "mu": 0.0, "train_acc": 92.0},
                                         {"epoch": 2, "lam": 0, "mu": 1e-3, "train_acc": 90.5}]}, last=1)
    assert mu["parameter"] == "μ" and mu["first epoch > 0"] == 2 and mu["on target"]


def test_bounds_and_certificates_reads_the_runs_own_bracket():
    from pathlib import Path
    from clipbook.repro.reporting import bounds_and_certificates
    from clipbook.repro.storage import load_results
    runs = {r["name"]: r for r in load_results(Path(__file__).resolve().parent.parent / "results")}
    r = runs["fashion-weight_reg85-s0"]
    b = bounds_and_certificates(r)
    assert b["lower"] == max(b["pair search"], b["Jacobian"]) == r["beyond"]["bounds"]["lower"]
    assert b["product (4)"] >= b["lower"] and b["product / lower"] == b["product (4)"] / b["lower"]
    assert b["certified at ε = 0.05 [%]"] == r["beyond"]["certified_acc"][r["beyond"]["cert_eps"].index(0.05)]
    assert b["attacks' worst case at ε = 0.5 [%]"] == r["robust"]["worst"][r["robust"]["eps"].index(0.5)]


def test_worst_at_reads_the_radius_asked_for():
    from clipbook.repro.reporting import worst_at
    r = {"robust": {"eps": [0.5, 2.0], "worst": [40.0, 3.5]}}
    assert worst_at(r, 2.0) == 3.5 and worst_at(r, 0.5) == 40.0
    assert worst_at(r, 1.0) is None and worst_at({}, 2.0) is None
