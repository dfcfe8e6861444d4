"""Installs the test resolver (`oxen_test_resolver.py`) in processes the real-day tests start.

Only this folder is on their PYTHONPATH for it; it does nothing unless OXEN_TEST_RESOLVE is set.
"""

import os

if os.environ.get("OXEN_TEST_RESOLVE") is not None:
    import oxen_test_resolver

    oxen_test_resolver.install(os.environ["OXEN_TEST_RESOLVE"])
