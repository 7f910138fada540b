"""benchmarks/gpu_check.sh, the script run on a GPU machine, checked here without one."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_refuses_an_output_folder_that_exists(tmp_path):
    """benchmarks/gpu_check.sh never overwrites: an existing OUT_DIR is named, exit 2."""
    (tmp_path / "out").mkdir()
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{tmp_path / 'out'} already exists" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []
