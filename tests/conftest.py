import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Under pytest-xdist (`-n 2`) each worker runs its tests single-threaded: two workers use two cores
# without oversubscribing them (torch's default would be one thread per core in every worker).
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
TORCH_THREADS = int(os.environ.get("OMP_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))
# the modules whose fixtures run the workflow or register scans for minutes, and the plans' dry runs:
# collected first (pyproject.toml's --no-loadscope-reorder keeps this order) so that the short tests fill
# the end, where one worker would otherwise wait for the other's long fixture. xdist gives a worker the next
# module in this order when it is down to its current module's last two tests: on 2026-12-05 one worker ran
# the tiny run's module (16 minutes), the other the studies run, the ADNI-layout run and the registration
# fixtures, and both then shared the short modules.
HEAVY = ("test_workflow.py", "test_studies_workflow.py", "test_bids_workflow.py", "test_registration.py",
         "test_workflow_plans.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY)))


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
    before = torch.get_num_threads() if torch else TORCH_THREADS
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(before)
