"""The breakages of tests/mutations.py still name code that exists (run them with `make mutations`)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutations", ROOT / "tests" / "mutations.py")
mutations = sys.modules["mutations"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
spec.loader.exec_module(mutations)


@pytest.mark.parametrize("mutation", mutations.MUTATIONS, ids=lambda m: m.name)
def test_each_breakage_replaces_one_place_in_the_code(mutation):
    text = (ROOT / mutation.path).read_text()
    assert text.count(mutation.old) == 1, f"{mutation.name}: update tests/mutations.py to follow {mutation.path}"
    assert mutation.old != mutation.new and all((ROOT / t).is_file() for t in mutation.tests)
