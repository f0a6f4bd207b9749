import sys
from pathlib import Path

TESTS = Path(__file__).parents[1]
# the shared helpers of tests/ (data_helpers, tiny-model builders), as for tests/integration
sys.path[:0] = [str(TESTS / "unit"), str(TESTS), str(TESTS / "integration")]
