"""Scripts in examples/ that are not part of the course gallery: each runs with --quick
in this process (runpy, as the gallery's do) and writes only into the directory it is
given."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

import fastmlp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def recipe():
    """The fashion_recipe script's globals (its main is not run)."""
    if not (EXAMPLES / "fashion_recipe.py").is_file():
        pytest.skip("examples/ is not next to the tests (an installed copy of the tests)")
    return runpy.run_path(str(EXAMPLES / "fashion_recipe.py"), run_name="recipe")


def test_fashion_recipe_quick_run_writes_a_model_for_raw_pixels(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    result = recipe["main"](["--quick", "--test", "--out", str(out)])
    assert f"wrote {out / 'fashion.fmlp'}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["fashion.fmlp", "run.json"]
    assert json.loads((out / "run.json").read_text()) == json.loads(json.dumps(result))
    assert result["settings"]["hidden"] == [64] and result["settings"]["epochs"] == 2
    assert len(result["val_accuracy"]) == 2 and result["train_samples"] == 9000
    # the standardization is folded in: the saved model scores the [0, 1] pixels
    data = fastmlp.datasets.load_embedded_fashion_mnist()
    model = fastmlp.load(out / "fashion.fmlp")
    assert model.score(data.X_test, data.y_test) == result["test_accuracy"] > 0.6
    assert result["final_val_accuracy"] == result["val_accuracy"][-1] > 0.6
    assert result["cpu_s"] > 0 and result["wall_s"] > 0


def test_fashion_recipe_keeps_the_test_set_out_unless_asked(recipe, tmp_path):
    result = recipe["main"](["--quick", "--out", str(tmp_path)])
    assert result["test_accuracy"] is None
    all_data = recipe["main"](["--quick", "--out", str(tmp_path), "--validation", "0"])
    assert all_data["train_samples"] == 10000 and all_data["val_accuracy"] is None

