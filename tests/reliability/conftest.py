"""The long variants of this directory (marked `slow`) run only when asked for: with
`-m slow` (or any -m expression naming slow), or PYCONTAINER_SLOW=1. CI's plain
`pytest tests` deselects them, so this directory stays within its few minutes there.
(tests/conftest.py's fixtures apply here as everywhere.)"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("PYCONTAINER_SLOW"):
        return
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("slow") and str(item.fspath).startswith(_HERE + os.sep):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
