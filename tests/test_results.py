import json

import numpy as np
import pytest

from unlearnlib.results import load_results, save_results, summarize


def test_results_round_trip_with_environment(tmp_path):
    recs = [{"task": "t", "method": m, "seed": s, "forget_acc": a, "seconds": 1.0}
            for m, a0 in (("retrain", 0.0), ("finetune", 0.5)) for s, a in enumerate((a0, a0 + 0.1, a0 + 0.2))]
    path = save_results("demo", "cpu", recs, config={"x": 1}, root=tmp_path)
    assert path == tmp_path / "demo" / "cpu.json" and not list(tmp_path.rglob("*.tmp"))
    payload = json.loads(path.read_text())
    assert {"hardware", "versions", "commit"} <= set(payload["environment"])
    df = load_results("demo", root=tmp_path)
    assert len(df) == 6 and set(df["profile"]) == {"cpu"}
    table = summarize(df, ["forget_acc"], order=["retrain", "finetune"])
    assert table.loc[("t", "finetune"), "forget_acc"] == "0.600 ± 0.100"
    assert table.loc[("t", "retrain"), "seeds"] == 3


def test_saving_nothing_or_loading_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        save_results("demo", "cpu", [], root=tmp_path)
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        load_results("nothing", root=tmp_path)
