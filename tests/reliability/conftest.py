import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]
# the shared helpers of tests/ (data_helpers, tiny-model builders), as for tests/integration
sys.path[:0] = [str(TESTS / "unit"), str(TESTS), str(TESTS / "integration")]


@pytest.fixture(scope="session")
def straight(tmp_path_factory):
    """The uninterrupted run (runs.FLAGS) that every interrupted one must equal, and its data."""
    from runs import FLAGS, log, run, shapes

    root = tmp_path_factory.mktemp("straight")
    data = shapes(root / "shapes")
    assert run(data, root / "straight", *FLAGS) == 0, log(root / "straight")
    return data, root / "straight"
