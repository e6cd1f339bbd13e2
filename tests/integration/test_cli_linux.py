"""config.json shapes of linux.* that runc and crun run, through the CLI: a hostname in a
joined uts namespace, cpuset memory nodes, an exact linux.cgroupsPath."""
import subprocess

import pytest

from test_cli import Cli, make_bundle, oci  # noqa: F401  (fixtures of the CLI tests)


@pytest.fixture
def uts_namespace():
    """A uts namespace of its own, held by a sleeping process: its /proc ns path."""
    p = subprocess.Popen(["unshare", "--uts", "sh", "-c", "echo ready; exec sleep 1000"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        yield p.pid
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def test_hostname_in_a_joined_uts_namespace(oci, make_bundle, uts_namespace):
    def mutate(s):
        s["hostname"] = "joined-box"
        for ns in s["linux"]["namespaces"]:
            if ns["type"] == "uts":
                ns["path"] = f"/proc/{uts_namespace}/ns/uts"
    b = make_bundle(["hostname"], mutate=mutate)
    assert oci.ok("run", "-b", b, "uts").out == "joined-box\n"
    # Set in the namespace joined, as runc does: its other processes see it.
    seen = subprocess.run(["nsenter", f"--uts=/proc/{uts_namespace}/ns/uts", "hostname"],
                          capture_output=True, text=True, check=True).stdout
    assert seen == "joined-box\n"
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout != seen
