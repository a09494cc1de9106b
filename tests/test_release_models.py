"""Model folders exported by cvkit 0.1.0 (before the package became subpackages) load and predict as they did then.

tests/fixtures/release-0.1.0/ was written by tests/fixtures/make_release_models.py with that release: a CNN for one
class per image, a multi-label CNN, a scikit-learn baseline, six query images and the answers (answers.json)."""
import json, subprocess, sys
from pathlib import Path
import pytest

FIXTURE = Path(__file__).parent/"fixtures"/"release-0.1.0"
ANSWERS = json.loads((FIXTURE/"answers.json").read_text())
IMAGES = [FIXTURE/"images"/n for n in ANSWERS["images"]]

def same(got:dict, want:dict):
    "One prediction as JSON against the recorded one: the same labels, probabilities equal to the 6 digits recorded."
    assert set(got) == set(want), (got, want)
    for k, v in want.items():
        if k == "probs": assert got[k].keys() == v.keys() and all(abs(got[k][c] - v[c]) <= 1.5e-6 for c in v), (got[k], v)
        elif isinstance(v, float): assert abs(got[k] - v) <= 1.5e-6, (k, got[k], v)
        else: assert got[k] == v, (k, got[k], v)

@pytest.mark.parametrize("name", sorted(ANSWERS["models"]))
def test_release_model_predicts_as_recorded(name):
    from cvkit.all import load_model
    model = load_model(FIXTURE/name)
    got = [p.as_json() for p in model.predict_batch(IMAGES)]
    assert len(got) == len(ANSWERS["models"][name])
    for g, w in zip(got, ANSWERS["models"][name]): same(g, w)

def test_release_model_through_cli():
    "`cvkit predict --json` on the multi-label folder: the same answers through the command line."
    out = subprocess.run([sys.executable, "-m", "cvkit", "predict", "--json", str(FIXTURE/"train-multi"), *map(str, IMAGES)],
                         capture_output=True, text=True, check=True).stdout
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert [Path(l.pop("file")).name for l in lines] == ANSWERS["images"]
    for g, w in zip(lines, ANSWERS["models"]["train-multi"]): same(g, w)
