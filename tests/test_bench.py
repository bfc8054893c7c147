"""The throughput benchmark runs end to end and prints every implementation's ratio to ours
(its numbers are not asserted: speed is for the benchmark to report, not for tests)."""

import re
import subprocess
import sys

from tests.conftest import REPO, cli_env


def test_benchmark_prints_a_ratio_per_implementation():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "throughput.py"), "--steps", "9", "--rounds", "2"],
        env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(.+?)\s+\d+\s+\d+-\d+\s+[\d.]+s\s+([\d.]+)x$", result.stdout, re.M)}
    assert set(rows) >= {"ours, native backend", "ours, keras backend", "tf1 graph (tutorial)", "keras.layers.LSTM + fit"}, result.stdout
    assert rows["ours, native backend"] == 1.0
    assert all(r > 0 for r in rows.values())
