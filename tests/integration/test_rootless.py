"""pycontainer as a real unprivileged user: `nobody` (uid/gid 65534), no delegated cgroups.

The test (root) copies the package, its built extension and the pyseccomp module into a
directory every user can read, makes an XDG_RUNTIME_DIR owned by nobody, and runs SCRIPT
as nobody with the system interpreter (the one running pytest lives under /root, which
nobody cannot reach). The script drives a host-image container through its whole
lifecycle and prints what it saw as JSON; the assertions are made here. Afterwards no
process the test started is left, and the directories are removed.
"""
import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

import pycontainer

NOBODY = 65534
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

SCRIPT = r"""
import errno, json, os, select, sys, traceback, warnings
import pycontainer as pc

out = {"uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid()}
factory = pc.Factory()
out["root"] = factory.root
made = []


def pipe_run(c, args):
    r, w = os.pipe()
    try:
        pid, exits = c.start(pc.ProcessConfig(args=args, stdout=w, stderr=w))
    finally:
        os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    return exits.get(timeout=10), data.decode()


def host_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(l.split(":\t", 1) for l in f.read().splitlines() if ":\t" in l)


try:
    # limits cannot be enforced without delegated cgroups: refused before anything exists
    try:
        factory.create("limited", pc.Config(resources=pc.Resources(pids_limit=10)))
        out["resources_error"] = None
    except pc.ConfigInvalidError as exc:
        out["resources_error"] = {"field": exc.field, "message": str(exc)}
    out["after_resources"] = sorted(os.listdir(factory.root)) if os.path.isdir(factory.root) \
        else []

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = factory.create("rl", pc.Config())
    made.append(c)
    out["warnings"] = [(w.category.__name__, str(w.message)) for w in caught]
    state_dir = os.path.join(factory.root, "rl")
    st = os.stat(state_dir)
    out["state_dir"] = {"exists": os.path.isdir(state_dir), "mode": st.st_mode & 0o777,
                        "uid": st.st_uid, "files": sorted(os.listdir(state_dir))}
    out["list_created"] = factory.list()
    out["state_created"] = str(c.run_state())

    out["first"] = pipe_run(c, ["/bin/sh", "-c", "id -u; echo $$"])
    out["state_after_first"] = str(c.run_state())

    # a failing start tells why and leaves the container as it was
    try:
        c.start(pc.ProcessConfig(args=["/no/such/program"]))
        out["exec_error"] = None
    except pc.ContainerSystemError as exc:
        out["exec_error"] = {"stage": exc.stage, "errno": exc.errno}
    out["state_after_exec_error"] = str(c.run_state())

    init_pid, init_exits = c.start(pc.ProcessConfig(args=["sleep", "100"]))
    join_pid, join_exits = c.start(pc.ProcessConfig(args=["sleep", "100"]))
    out["pids"] = [init_pid, join_pid]
    out["processes"] = sorted(c.processes())
    out["state_running"] = str(c.run_state())
    out["init_host_uid"] = host_status(init_pid)["Uid"].split()
    out["init_ns_pid"] = host_status(init_pid)["NSpid"].split()
    out["joined_ns_pid"] = host_status(join_pid)["NSpid"].split()
    out["joined"] = pipe_run(c, ["/bin/sh", "-c",
                                 "id -u; cat /proc/self/uid_map; cat /proc/1/cmdline"])
    out["userns_differs"] = (os.readlink(f"/proc/{init_pid}/ns/user")
                             != os.readlink("/proc/self/ns/user"))
    out["loaded_processes"] = sorted(pc.Factory().load("rl").processes())

    try:
        c.pause()
        out["pause_error"] = None
    except pc.ContainerSystemError as exc:
        out["pause_error"] = {"errno": exc.errno, "message": str(exc)}
    out["state_after_pause"] = str(c.run_state())

    c.destroy()
    out["exits"] = [init_exits.get(timeout=10), join_exits.get(timeout=10)]
    out["alive_after_destroy"] = [p for p in (init_pid, join_pid)
                                  if os.path.exists(f"/proc/{p}")]
    out["list_after"] = factory.list()
    out["state_dir_after"] = os.path.exists(state_dir)
except BaseException:
    traceback.print_exc()
    for c in made:
        try:
            c.destroy()
        except Exception:
            traceback.print_exc()
    sys.exit(1)
print(json.dumps(out))
"""


def uid_processes(uid, xdg):
    """Pids of processes owned by uid that this test may have started (zombies included: a
    process never reaped is a leak too): those in a user namespace other than ours (the
    rootless containers) and those with our XDG_RUNTIME_DIR in their environment (the
    script). Other tests' processes running as nobody are neither."""
    own_userns = os.readlink("/proc/self/ns/user")
    marker = f"XDG_RUNTIME_DIR={xdg}".encode()
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            if os.readlink(f"/proc/{name}/ns/user") != own_userns:
                pids.add(int(name))
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    pids.add(int(name))
        except OSError:
            pass
    return pids


@pytest.fixture
def sandbox(leak_check):
    """(pkgdir, xdg) in a fresh 0755 directory under /tmp; removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root (to become nobody)")
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run as nobody")
    base = tempfile.mkdtemp(prefix="pyc-rootless-")
    try:
        os.chmod(base, 0o755)
        pkgdir = os.path.join(base, "pkg")
        os.mkdir(pkgdir)
        src = os.path.dirname(os.path.abspath(pycontainer.__file__))
        shutil.copytree(src, os.path.join(pkgdir, "pycontainer"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        import pyseccomp
        shutil.copy2(pyseccomp.__file__, pkgdir)
        subprocess.run(["chmod", "-R", "a+rX", pkgdir], check=True)
        xdg = os.path.join(base, "xdg")
        os.mkdir(xdg, 0o700)
        os.chown(xdg, NOBODY, NOBODY)
        yield pkgdir, xdg
    finally:
        shutil.rmtree(base, ignore_errors=True)


def check_interpreter(pkgdir):
    """The copied extension must load in PY: same CPython version and ABI."""
    ext = subprocess.run([PY, "-c", "import sys, sysconfig; "
                          "print(sysconfig.get_config_var('EXT_SUFFIX')); "
                          "print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.split()
    suffix, version = ext
    mine = "%d.%d" % sys.version_info[:2]
    built = glob.glob(os.path.join(pkgdir, "pycontainer", "_core*.so"))
    assert built, "pycontainer._core is not built (python setup.py build_ext --inplace)"
    if version != mine or not any(b.endswith(suffix) for b in built):
        pytest.fail(f"{PY} is Python {version} (extension suffix {suffix}), but the extension "
                    f"was built for Python {mine}: {[os.path.basename(b) for b in built]}; "
                    "nobody cannot run the interpreter under /root")


def run_as_nobody(pkgdir, xdg, script):
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "env", "-i", f"XDG_RUNTIME_DIR={xdg}", f"PYTHONPATH={pkgdir}",
         "PATH=/usr/local/bin:/usr/bin:/bin", PY, "-c", script],
        capture_output=True, text=True, timeout=60, cwd="/")


def test_lifecycle_as_nobody(sandbox):
    pkgdir, xdg = sandbox
    check_interpreter(pkgdir)
    before = uid_processes(NOBODY, xdg)
    p = run_as_nobody(pkgdir, xdg, SCRIPT)
    leftover = uid_processes(NOBODY, xdg) - before
    for pid in leftover:          # do not let a failure leave them running
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    r = json.loads(p.stdout.splitlines()[-1])

    assert (r["uid"], r["gid"], r["euid"]) == (NOBODY, NOBODY, NOBODY)
    # state lives in the user's runtime directory
    assert r["root"] == os.path.join(xdg, "pycontainer")
    assert r["state_dir"]["exists"] and r["state_dir"]["uid"] == NOBODY
    assert r["state_dir"]["mode"] == 0o700, oct(r["state_dir"]["mode"])
    assert "state.json" in r["state_dir"]["files"]
    assert r["list_created"] == ["rl"] and r["state_created"] == "created"

    # Resources cannot be honoured: refused, naming the field, before anything exists
    assert r["resources_error"] is not None, "Resources were accepted without cgroups"
    assert r["resources_error"]["field"] == "resources"
    assert "resources" in r["resources_error"]["message"]
    assert "limited" not in r["after_resources"]

    # the warning that there are no cgroups
    assert len(r["warnings"]) == 1, r["warnings"]
    category, message = r["warnings"][0]
    assert category == "RuntimeWarning" and "cgroup" in message

    # root inside, pid 1 of its own pid namespace
    assert r["first"] == [0, "0\n1\n"], r["first"]
    assert r["state_after_first"] == "stopped"
    assert r["exec_error"] == {"stage": "exec", "errno": errno.ENOENT}
    assert r["state_after_exec_error"] == "stopped"

    # a long init and a joined process
    init_pid, join_pid = r["pids"]
    assert r["processes"] == sorted(r["pids"])
    assert r["loaded_processes"] == sorted(r["pids"])
    assert r["state_running"] == "running"
    assert r["init_host_uid"] == [str(NOBODY)] * 4         # nobody on the host
    assert r["init_ns_pid"][-1] == "1" and r["joined_ns_pid"][-1] != "1"
    assert r["userns_differs"]
    status, text = r["joined"]
    assert status == 0, text
    uid, umap, cmdline = text.split("\n", 2)
    assert uid == "0"
    assert umap.split() == ["0", str(NOBODY), "1"]
    assert cmdline.replace("\0", " ").strip() == "sleep 100"

    # no freezer: pause is not supported, and says so
    assert r["pause_error"] is not None, "pause() succeeded without cgroups"
    assert r["pause_error"]["errno"] == errno.ENOTSUP
    assert "pause" in r["pause_error"]["message"]
    assert r["state_after_pause"] == "running"

    # destroy kills both and removes everything
    assert r["exits"] == [-9, -9]
    assert r["alive_after_destroy"] == []
    assert r["list_after"] == [] and r["state_dir_after"] is False
    assert os.listdir(os.path.join(xdg, "pycontainer")) == []

    assert not leftover & {init_pid, join_pid}
    assert leftover == set(), f"processes of uid {NOBODY} left behind: {sorted(leftover)}"


DEFAULT_ROOT_SCRIPT = r"""
import os, json
import pycontainer as pc
print(json.dumps({"root": pc.Factory().root}))
"""


def test_default_root_without_a_runtime_dir_is_in_tmp(sandbox):
    """No XDG_RUNTIME_DIR and no /run/user/<uid> (a service, su): the temporary
    directory, named by uid, and a container can be made there."""
    pkgdir, _ = sandbox
    check_interpreter(pkgdir)
    if os.path.isdir(f"/run/user/{NOBODY}"):
        pytest.fail(f"/run/user/{NOBODY} exists: this test needs a uid without a session")
    expected = f"/tmp/pycontainer-{NOBODY}"
    try:
        p = run_as_nobody(pkgdir, "", DEFAULT_ROOT_SCRIPT + MAKE_ONE_SCRIPT)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout.splitlines()[0])["root"] == expected
        assert p.stdout.splitlines()[1] == "made"
        st = os.stat(expected)
        assert (st.st_uid, st.st_mode & 0o777) == (NOBODY, 0o700)
    finally:
        shutil.rmtree(expected, ignore_errors=True)


MAKE_ONE_SCRIPT = r"""
f = pc.Factory()
c = f.create("tmp-root", pc.Config())
c.destroy()
print("made")
"""


def test_default_root_follows_xdg_runtime_dir(sandbox):
    pkgdir, xdg = sandbox
    check_interpreter(pkgdir)
    p = run_as_nobody(pkgdir, xdg, DEFAULT_ROOT_SCRIPT)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["root"] == os.path.join(xdg, "pycontainer")
