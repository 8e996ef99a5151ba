"""Test-session set-up: each pytest-xdist worker computes with one thread, and long runs start first.

The workers already keep every core busy; more threads per worker would only
make them compete. Set before torch is imported, so that the ``mbdpo``
commands the tests start inherit it too.
"""

import os

if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(items):
    """Start the training runs marked ``slow`` first, so that the workers' short tests fill in the end
    and both workers finish together. (pytest-xdist already starts the shared-run groups first.)"""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
