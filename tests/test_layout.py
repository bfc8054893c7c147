"""The rules that keep the code's house in order: what may import TensorFlow, who spells the
MLflow schema, and where study files are found."""

import re
import subprocess
import sys

from sweep.spec import load_spec
from tests.conftest import REPO

NO_TENSORFLOW = "import sys\nsys.modules['tensorflow'] = sys.modules['keras'] = None  # importing either now fails\n"


def python(code: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_config_spec_records_and_report_never_import_tensorflow():
    modules = "sweep.config, sweep.spec, sweep.stores, sweep.records, sweep.checkpoint, sweep.attrs, sweep.confirm, " \
              "sweep.report, sweep.plots, sweep.console, sweep.cli"
    result = python(NO_TENSORFLOW + f"import {modules}\n")
    assert result.returncode == 0, result.stderr


def test_a_bad_study_file_is_answered_before_tensorflow_is_imported(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\n[search.num_units]\ntype = "int"\nlow = 64\nhigh = 8\n')
    result = python(NO_TENSORFLOW + "from sweep.cli import main\nsys.exit(main(['--study', 'bad.toml']))\n", cwd=tmp_path)
    assert result.returncode == 2 and "low = 64 is above high = 8" in result.stderr, result.stderr
    assert not list(tmp_path.glob("*.db"))


def test_every_optuna_attribute_key_is_spelled_once():
    """sweep/attrs.py names them; everywhere else reads and writes them by those names."""
    literal_key = re.compile(r"""(user_attrs\[|user_attrs\.get\(|set_user_attr\(|user_attrs=\{)\s*["']""")
    for path in sorted((REPO / "sweep").glob("*.py")):
        assert not literal_key.search(path.read_text()), path.name


def test_only_records_spells_the_mlflow_schema():
    for path in sorted((REPO / "sweep").glob("*.py")):
        if path.name == "records.py":
            continue
        text = path.read_text()
        assert "search_runs(" not in text and "tags.`" not in text, path.name
        assert not re.search(r"""["']sweep\.(?!py)""", text), path.name  # a tag such as "sweep.role"


def test_study_files_are_found_as_given_then_among_the_tools_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository
    assert load_spec("smoke").name == "smoke" and load_spec("studies/smoke.toml").name == "smoke"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "smoke.toml").write_text((REPO / "studies" / "smoke.toml").read_text().replace('"smoke"', '"mine"'))
    assert load_spec("studies/smoke.toml").name == "mine"  # a file that exists is taken as given


def test_python_dash_m_sweep_runs_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sweep", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--trials" in result.stdout
