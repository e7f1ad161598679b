"""`heartfast render` writes one PNG per record, resumes, and reads real 500 Hz PTB-XL records."""
from __future__ import annotations

import numpy as np
from PIL import Image

from heartfast.cli import main


def test_render_command_writes_pngs_and_resumes(tmp_path, capsys):
    out = tmp_path / "images"
    assert main(["render", "synthetic:2", "--layout", "6x2", "--size", "224", "-o", str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2
    image = np.asarray(Image.open(pngs[0]))
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8 and image.min() < 60
    before = pngs[0].stat().st_mtime_ns
    assert main(["render", "synthetic:2", "--layout", "6x2", "--size", "224", "-o", str(out)]) == 0
    assert pngs[0].stat().st_mtime_ns == before
    assert "2 already rendered" in capsys.readouterr().err


def test_render_command_on_a_ptbxl_record(shared_data, tmp_path):
    record = next((shared_data / "ptb-xl" / "records500").rglob("*_hr.hea")).with_suffix("")
    out = tmp_path / "ptbxl"
    assert main(["render", str(record), "--layout", "12x1", "--size", "440x340", "-o", str(out)]) == 0
    (png,) = out.glob("*.png")
    image = np.asarray(Image.open(png))
    assert image.shape == (340, 440, 3)
    assert (image.min(-1) < 80).sum() > 2000           # twelve traces of ink
