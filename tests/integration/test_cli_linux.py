"""config.json shapes of linux.* that runc and crun run, through the CLI: a hostname in a
joined uts namespace, cpuset memory nodes, an exact linux.cgroupsPath."""
import subprocess

import pytest

from test_cli import _cgroup_file, make_bundle, oci  # noqa: F401  (the CLI tests' fixtures)


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


def test_cpuset_memory_nodes(oci, make_bundle):
    """linux.resources.cpu.mems goes to cpuset.mems (this host's cpuset is cgroup v1; the
    v2 writer: tests/unit/test_v2_writers.py). Node 0 is the one every host has, so the
    value equals the parent's here: what is checked is that it is written and applies."""
    def mutate(s):
        s["linux"]["resources"]["cpu"] = {"cpus": "0", "mems": "0"}
    b = make_bundle(mutate=mutate)
    oci.ok("create", "-b", b, "--pid-file", str(oci.tmp / "pid"), "mems")
    oci.ok("start", "mems")
    pid = int((oci.tmp / "pid").read_text())
    assert oci.state("mems")["status"] == "running"
    assert (_cgroup_file(pid, "cpuset", "cpuset.cpus"),
            _cgroup_file(pid, "cpuset", "cpuset.mems")) == ("0", "0")
    status = oci.ok("exec", "mems", "grep", "_allowed_list:", "/proc/self/status").out
    assert status.split() == ["Cpus_allowed_list:", "0", "Mems_allowed_list:", "0"]
    oci.ok("update", "--cpuset-mems", "0", "mems")        # runc's flag, as runc takes it
    oci.fails("update", "--cpuset-mems", "0-", "mems")
    oci.ok("delete", "--force", "mems")
    assert oci.ids() == []
