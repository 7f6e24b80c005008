"""`klantbeeld eval identity` on the multi-channel demo data (typos, duplicates, shared devices)."""

import json
import subprocess
import sys

from klantbeeld.demo.pipeline import run_demo
from klantbeeld.settings import load_settings


def test_demo_profiles_are_precise_and_find_every_linkable_pair(tmp_path):
    settings = load_settings(home=tmp_path / "home")
    summary = run_demo(settings, tmp_path / "data", customers=300, seed=5)
    out = subprocess.run(
        [sys.executable, "-m", "klantbeeld.cli", "eval", "identity", "--truth",
         str(tmp_path / "data" / "ground_truth.csv"), "--data-dir", str(tmp_path / "home"),
         "--json"], capture_output=True, text=True, check=True)
    scores = json.loads(out.stdout)
    assert scores == summary["identity"]          # the demo reports the same evaluation
    assert scores["records"] > 15_000 and scores["people"] > 300
    assert scores["precision"] >= 0.995
    # Cash sales and cookies that never log in share no identifier with their person: no rule
    # can link them. Everything that can be linked is.
    assert scores["recall"] >= scores["recall_upper_bound"] - 0.002
    assert scores["recall_upper_bound"] > 0.8
    assert 0 < scores["over_merged_people"] < scores["people"] * 0.03


def test_eval_refuses_a_file_that_is_not_a_truth_file(tmp_path):
    bad = tmp_path / "truth.csv"
    bad.write_text("just one column\n")
    out = subprocess.run([sys.executable, "-m", "klantbeeld.cli", "eval", "identity", "--truth",
                          str(bad), "--data-dir", str(tmp_path / "home")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "record_key,person_id" in out.stderr
