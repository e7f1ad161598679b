"""Run the GPU scripts from a source checkout without installing it (the device machine has no pip index).

pyproject installs kernels/ as heartfast.kernels; in a bare checkout that name does not exist, so the
source folder is registered under it. An installed heartfast is used as it is.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_source_tree() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import heartfast

    if importlib.util.find_spec("heartfast.kernels") is None:
        spec = importlib.util.spec_from_file_location("heartfast.kernels", ROOT / "kernels" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "kernels")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["heartfast.kernels"] = module
        spec.loader.exec_module(module)
        heartfast.kernels = module
