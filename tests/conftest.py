import copy
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
