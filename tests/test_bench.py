"""The benchmarks run end to end. Their speeds are not asserted (speed is for the benchmark to
report, not for tests), but what they print must hang together: each ratio is the native
backend's samples/s over that row's, each median lies within its rounds; the ablation prints
one validation accuracy per recipe and seed, and never a test accuracy."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow


def test_the_throughput_benchmark_prints_a_consistent_ratio_per_implementation():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "throughput.py"), "--steps", "9", "--rounds", "2"],
        env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    row = re.compile(r"^(.+?)\s+(\d+)\s+(\d+)-(\d+)\s+[\d.]+s\s+([\d.]+)x$", re.M)
    rows = {m.group(1).strip(): tuple(float(g) for g in m.groups()[1:]) for m in row.finditer(result.stdout)}
    assert set(rows) >= {"ours, native backend", "ours, keras backend", "tf1 graph (tutorial)", "keras.layers.LSTM + fit"}, result.stdout
    native = rows["ours, native backend"][0]
    for name, (median, low, high, ratio) in rows.items():
        assert low - 1 <= median <= high + 1, name  # a median of two rounds lies between them (printed rounded)
        assert ratio == pytest.approx(native / median, rel=0.01, abs=0.011), name


def test_the_ablation_prints_validation_accuracy_per_recipe_and_seed_only():
    base = "epochs=1,train_limit=1000,val_limit=300,test_limit=128,num_units=16"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ablation.py"), "--base", base, "--seeds", "0,1", "", "shift_pixels=1"],
        env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| recipe")]
    assert [row.split(" | ")[0] for row in rows] == ["| base", "| shift_pixels=1"]
    for row in rows:
        cells = re.findall(r"([\d.]+)% \((\d+)/300\)", row)
        assert len(cells) == 2 and all(float(p) == pytest.approx(100 * int(c) / 300, abs=0.006) for p, c in cells), row
        assert len(re.findall(r"%", row)) == 3, row  # two seeds' validation accuracies and their mean: no test accuracy
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "ablation.py"), "shift_pixelz=1"], env=cli_env(),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "unknown setting 'shift_pixelz'" in bad.stderr
