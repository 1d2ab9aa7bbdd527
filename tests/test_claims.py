"""The qualitative claims of Table 1, evaluated on synthetic rows (both outcomes) and on the stored results."""
import pytest

from clipbook.runner import DEFAULT_RESULTS, differences_to_paper, load_results, qualitative_claims, table1


def _row(name, test, pgd, lam=0.0):
    return {"row": f"mnist-{name}", "test": test, "pgd": pgd, "lam_or_mu": lam}


def test_claims_hold_and_fail_as_the_numbers_say():
    rows = [_row("standard", 90, 30), _row("weight_reg90", 89, 35), _row("clip95", 95, 50, 0.1),
            _row("clip90", 90, 60, 1.0), _row("clip85", 86, 40, 2.0), _row("weight_reg85", 86, 45)]
    c = {x["claim"][:6]: x["holds"] for x in qualitative_claims(rows, "mnist")}
    assert c["CLIP90"] is True      # 60 > 30 and > 35
    assert c["CLIP85"] is False     # 40 < 45 of weight_reg85 at the same accuracy
    assert c["lambda"] is True
    rows[2]["lam_or_mu"] = 5.0
    assert qualitative_claims(rows, "mnist")[2]["holds"] is False
    assert qualitative_claims([], "mnist")[0]["holds"] is None


def test_differences_to_paper_threshold():
    row = {"row": "mnist-clip90", "train": 90, "test": 91.6, "noise": 50, "pgd": 36.0,
           "paper": {"train": 91.8, "test": 91.6, "noise": 78.0, "pgd": 36.2}}
    assert differences_to_paper([row]) == [("mnist-clip90", "noise", 50, 78.0)]


STORED = load_results(DEFAULT_RESULTS)


@pytest.mark.skipif(not STORED, reason="no stored results")
@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
def test_claims_are_decided_on_the_stored_results(dataset):
    rows = [r for r in table1(STORED) if r["row"].startswith(dataset)]
    if len(rows) < 7:
        pytest.skip(f"{dataset}: only {len(rows)} of 7 rows stored")
    claims = qualitative_claims(rows, dataset)
    assert all(isinstance(c["holds"], bool) for c in claims)
    # the lambda claim, recomputed by hand from the stored rows
    lam = {r["row"]: r["lam_or_mu"] for r in rows}
    assert claims[2]["holds"] == (lam[f"{dataset}-clip95"] < lam[f"{dataset}-clip90"] < lam[f"{dataset}-clip85"])


@pytest.mark.skipif(not STORED, reason="no stored results")
def test_stored_results_are_complete_and_consistent():
    for r in STORED:
        m = r["metrics"]
        assert 0 <= m["pgd"] <= m["clean_eval_subset"] + 1e-9 <= 100 + 1e-9
        assert m["lip_estimate"] <= m["upper_bound"]
        assert r["provenance"]["git_commit"] and r["provenance"]["command"].startswith("python -m clipbook")
        assert len(r["history"]) == r["config"]["epochs"]
        art = DEFAULT_RESULTS / f"{r['name']}.artifacts.pt"
        assert art.exists() and art.stat().st_size < 200_000, art
