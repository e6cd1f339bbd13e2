"""Issue 18, item 2 for rootless containers: an unprivileged user's joining process was
open, before its exec, to root inside the user's own rootless container (its memory was
the user's Python process's). As `nobody`, a host-image container runs /attacker
(attacker.c) while the user's process joins it again and again: nothing of ours opens."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import pycontainer

NOBODY = 65534
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = r"""
import json, os, sys
import pycontainer as pc
from attack_helpers import Attacker, join_until_seen

attacker_path, true_path = sys.argv[1], os.path.realpath("/bin/true")
c = pc.Factory().create("rootless-window", pc.Config())
try:
    attacker = Attacker(c, attacker_path, own=[attacker_path, true_path])
    def join():
        _, exits = c.start(pc.ProcessConfig(args=[true_path]))
        assert exits.get(timeout=30) == 0
    join_until_seen(attacker, join)
    lines = attacker.finish()
finally:
    c.destroy()
print(json.dumps(lines))
"""


@pytest.fixture
def nobody_sandbox(leak_check):
    """A 0755 directory outside /tmp (a host-image container gets a /tmp of its own) with
    the package, pyseccomp, attack_helpers.py and the static attacker; removed after."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run as nobody")
    base = tempfile.mkdtemp(prefix="pyc-rootless-attack-", dir="/var/tmp")
    try:
        os.chmod(base, 0o755)
        src = os.path.dirname(os.path.abspath(pycontainer.__file__))
        shutil.copytree(src, os.path.join(base, "pycontainer"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        import pyseccomp
        shutil.copy2(pyseccomp.__file__, base)
        shutil.copy2(os.path.join(HERE, "attack_helpers.py"), base)
        subprocess.run(["cc", "-O2", "-static", "-o", os.path.join(base, "attacker"),
                        os.path.join(HERE, "attacker.c")], check=True)
        subprocess.run(["chmod", "-R", "a+rX", base], check=True)
        xdg = os.path.join(base, "xdg")
        os.mkdir(xdg, 0o700)
        os.chown(xdg, NOBODY, NOBODY)
        yield base, xdg
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rootless_joined_processes_are_closed_to_the_container(nobody_sandbox):
    base, xdg = nobody_sandbox
    p = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "env", "-i", f"XDG_RUNTIME_DIR={xdg}", f"PYTHONPATH={base}",
         "PATH=/usr/local/bin:/usr/bin:/bin", PY, "-c", SCRIPT, os.path.join(base, "attacker")],
        capture_output=True, text=True, timeout=300, cwd="/")
    assert p.returncode == 0, p.stderr
    lines = json.loads(p.stdout.splitlines()[-1])
    assert [l for l in lines if l[0] == "seen"], lines
    assert [l for l in lines if l[0] == "got" or l[:2] == ["exewrite", "ok"]] == []
