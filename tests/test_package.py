import importlib.util
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_kernels_install_as_subpackage_only():
    assert importlib.util.find_spec("heartfast.kernels") is not None
    assert importlib.util.find_spec("kernels") is None, "a top-level `kernels` module would shadow other packages"


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "heartfast").rglob("__init__.py")}
    assert on_disk | {"heartfast.kernels"} == listed
