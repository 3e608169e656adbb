"""The README's "Python API" example runs as written, on the tiny checkpoint and a small prepared set."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import difusi

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_python_example_runs(tiny_checkpoint, sft_data_with_test, tmp_path, monkeypatch):
    code = readme_example()
    assigned = re.search(r"^base, data = .*$", code, re.MULTILINE).group(0)
    code = code.replace(assigned, f"base, data = {str(tiny_checkpoint)!r}, {str(sft_data_with_test)!r}")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert isinstance(namespace["answer"], str)
    assert namespace["run"] == Path("runs/lora") and (tmp_path / "runs/lora/adapter").is_dir()
    assert namespace["metrics"]["n"] == 4 and (tmp_path / "runs/lora/eval/metrics.json").is_file()


def test_the_public_names_are_importable_and_generate_takes_the_settings_defaults():
    assert set(difusi.__all__) <= set(dir(difusi))
    assert set(difusi.__all__) == {*difusi._LAZY, "__version__"}  # every lazy name is public, and back
    assert all(getattr(difusi, name) is not None for name in difusi.__all__)
    parameters = inspect.signature(difusi.generate).parameters
    for name, default in dataclasses.asdict(difusi.SamplerSettings()).items():
        assert parameters[name].default == default, name


def test_import_difusi_loads_neither_torch_nor_training():
    code = "import sys, difusi; print(sorted(m for m in ('torch', 'transformers', 'difusi.tuning') if m in sys.modules))"
    src = Path(difusi.__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(src)})  # fmt: skip
    assert out.stdout.strip() == "[]"
