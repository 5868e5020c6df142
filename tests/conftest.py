import os
from pathlib import Path

import pytest
import torch

# Tiny models run fastest on one thread, and one thread keeps numbers reproducible.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_dir() -> Path:
    """The shared MNIST folder; skipped where it is absent, except under ``CI=true``,
    where a missing folder fails the run (a CI must not pass by skipping its MNIST tests)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        message = f"the MNIST files are not in {SHARED_MNIST}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI=true does not allow skipping the MNIST tests")
        pytest.skip(message)
    return SHARED_MNIST
