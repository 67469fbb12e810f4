"""DistributedDataParallel over symrnn.nn.LSTM: 2 gloo processes equal one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_processes_equal_one():
    """examples/ddp_train.py: after 5 SGD steps the parameters of the 2-process DDP run
    equal the single-process run on the whole batches to 1e-10 (float64)."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--steps", "5", "--world", "2"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "largest parameter difference" in result.stdout
