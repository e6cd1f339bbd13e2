"""The package's public names (pycontainer.__all__) resolve, lazily: importing the package
(as `import pycontainer.cli` does) loads none of the library, and each name is the
object of the module that defines it."""
import subprocess
import sys

import pycontainer

CHECK = r"""
import sys
import pycontainer
assert not [m for m in sys.modules if m.startswith("pycontainer.")], sorted(sys.modules)
from pycontainer import Config, Factory, ContainerError
assert set(pycontainer.__all__) <= set(dir(pycontainer)), dir(pycontainer)
for name in pycontainer.__all__:
    value = getattr(pycontainer, name)
    assert value.__name__ == name, (name, value)
assert Config is sys.modules["pycontainer.config"].Config
try:
    pycontainer.NoSuchName
except AttributeError as exc:
    assert "NoSuchName" in str(exc)
else:
    raise AssertionError("pycontainer.NoSuchName resolved")
"""


def test_public_names_resolve_lazily():
    p = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_every_public_name_resolves_here():
    for name in pycontainer.__all__:
        assert getattr(pycontainer, name).__name__ == name
    assert pycontainer.__version__
