"""The rules that keep the code's house in order: what may import TensorFlow, who spells the
Optuna attributes, the MLflow schema and the accuracies' names, that importing changes nothing,
how large a module may grow, and where study files are found."""

import ast
import re
import subprocess
import sys

import pytest

from sweep.search.spec import load_spec
from tests.conftest import REPO

NO_TENSORFLOW = "import sys\nsys.modules['tensorflow'] = sys.modules['keras'] = None  # importing either now fails\n"
MODULES = sorted((REPO / "sweep").rglob("*.py"))
TENSORFLOW_FREE = [
    "sweep.cli",
    "sweep.console",
    "sweep.stores",
    "sweep.stats",
    "sweep.stopping",
    "sweep.training.config",
    "sweep.training.checkpoint",
    "sweep.search",
    "sweep.tracking",
    "sweep.seeds.choice",
    "sweep.report",
]


def python(code: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def module_name(path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


@pytest.mark.slow  # a fresh interpreter
def test_what_reads_study_files_stores_and_reports_never_imports_tensorflow():
    names = [module_name(p) for p in MODULES if any(module_name(p).startswith(m) for m in TENSORFLOW_FREE)]
    assert "sweep.report.write" in names and "sweep.search.spec" in names  # the packages' modules are all in
    names.remove("sweep.search.objective")  # it trains: the one module of search that needs TensorFlow
    names.remove("sweep.search.study")  # its objective's
    result = python(NO_TENSORFLOW + "".join(f"import {name}\n" for name in names))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # a fresh interpreter
def test_importing_any_module_changes_no_global_state():
    """No environment variable, signal handler or MLflow tracking URI is set by an import: only
    the command line sets them, where it starts."""
    names = [module_name(p) for p in MODULES if module_name(p) != "sweep.__main__"]
    libraries = (
        "tensorflow, keras, optuna, mlflow, mlflow.keras, pandas, matplotlib.pyplot, scipy.stats, sqlalchemy, tqdm"
    )
    code = (
        f"import os, signal, importlib\nimport {libraries}  # what they set themselves is theirs\n"
        "before = (dict(os.environ), signal.getsignal(signal.SIGINT), "
        "signal.getsignal(signal.SIGTERM), mlflow.get_tracking_uri())\n"
        + "".join(f"importlib.import_module({name!r})\n" for name in names)
        + "after = (dict(os.environ), signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), "
        "mlflow.get_tracking_uri())\nassert before == after, [k for k in set(before[0]) ^ set(after[0])]\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow  # a fresh interpreter
def test_a_bad_study_file_is_answered_before_tensorflow_is_imported(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\n[search.num_units]\ntype = "int"\nlow = 64\nhigh = 8\n')
    result = python(
        NO_TENSORFLOW + "from sweep.cli import main\nsys.exit(main(['--study', 'bad.toml']))\n", cwd=tmp_path
    )
    assert result.returncode == 2 and "low = 64 is above high = 8" in result.stderr, result.stderr
    assert not list(tmp_path.glob("*.db"))


def test_every_optuna_attribute_key_is_spelled_once():
    """sweep/search/attributes.py names them; everywhere else reads and writes them by those names."""
    literal_key = re.compile(
        r"""(user_attrs\[|user_attrs\.get\(|set_user_attr\(|user_attrs=\{|system_attrs\.get\()\s*["']"""
    )
    for path in MODULES:
        assert not literal_key.search(path.read_text()), path


def test_only_the_schema_spells_the_mlflow_names_and_only_stats_the_accuracies():
    for path in MODULES:
        text = path.read_text()
        if path.parent.name != "tracking":
            assert "search_runs(" not in text and "tags.`" not in text, path  # queries are tracking's
        if path.name != "schema.py":
            assert not re.search(r"""["']sweep\.(?!py)""", text), path  # a tag such as "sweep.role"
        if path.name != "stats.py":
            assert not re.search(r"""["'](val|test)_accuracy""", text), path


def test_modules_stay_small_and_every_package_says_what_it_is_for():
    for path in MODULES:
        assert len(path.read_text().splitlines()) <= 300, path
    for package in (REPO / "sweep").rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(package.read_text())), package


def test_study_files_are_found_as_given_then_among_the_tools_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository
    assert load_spec("smoke").name == "smoke" and load_spec("studies/smoke.toml").name == "smoke"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "smoke.toml").write_text(
        (REPO / "studies" / "smoke.toml").read_text().replace('"smoke"', '"mine"')
    )
    assert load_spec("studies/smoke.toml").name == "mine"  # a file that exists is taken as given


@pytest.mark.slow  # a fresh interpreter
def test_python_dash_m_sweep_runs_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sweep", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--trials" in result.stdout
