import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_kernels_install_as_subpackage_only(tmp_path):
    # Run outside the checkout (python -m pytest puts the repo root on sys.path).
    probe = ("import importlib.util as u; print(u.find_spec('heartfast.kernels') is not None, "
             "u.find_spec('kernels') is None)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"], "kernels/ must install as heartfast.kernels only"


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "heartfast").rglob("__init__.py")}
    assert on_disk | {"heartfast.kernels"} == listed
