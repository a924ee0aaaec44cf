"""Fuzzing suites. In CI they are derandomized (hypothesis `derandomize=True`): every run sends the same
generated requests, so a red run means a change broke something, not that the dice were unlucky. To
explore with fresh random examples: `HYPOTHESIS_RANDOM=1 ./dev test tests/fuzz` (or schemathesis against a
live server, as test_openapi_fuzz.py says)."""

import os

DERANDOMIZE = os.environ.get("HYPOTHESIS_RANDOM") != "1"
