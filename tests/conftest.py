import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def config(default_config):
    return copy.deepcopy(default_config)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Job entry points set torch's thread count for their process; a test that calls
    one must not change the numerics of the tests after it (float reductions depend
    on the thread count)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else len(os.sched_getaffinity(0))
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(before)
