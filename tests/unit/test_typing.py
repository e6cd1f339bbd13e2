"""The public API's annotations as a user's type checker sees them: `mypy --strict` on
tests/typing/user_script.py, which uses every public name (mypy is in the test extras)."""
import os
import subprocess
import sys

import pycontainer as pc

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "typing", "user_script.py")


def test_user_script_names_every_public_name():
    with open(SCRIPT) as f:
        text = f.read()
    assert [n for n in pc.__all__ if f"pc.{n}" not in text] == []


def test_mypy_strict_on_a_user_script():
    import importlib.util
    assert importlib.util.find_spec("mypy"), "mypy is in the test extras: pip install -e '.[test]'"
    # follow-imports=silent: the script's errors, not the library's insides, are checked;
    # calls into an unannotated public function are still errors (--strict).
    p = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                        "--no-incremental", SCRIPT], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
