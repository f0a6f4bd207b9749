import sys
from pathlib import Path

TESTS = Path(__file__).parents[1]
# shared tiny-model builders, the Hub stand-in and the resume check
sys.path[:0] = [str(TESTS / "unit"), str(TESTS), str(TESTS / "integration")]
