"""A private containerd with its CRI plugin, as a Kubernetes node runs it, for the CRI
tests, the benchmark and critest by hand. Everything lives below one temporary
directory (root, state, socket, config, CNI config and IPAM data, the runtimes' roots);
`stop()` removes all it made: the pods, containerd (by its pid), the shims, the mounts,
the pods' cgroups, the bridge and its veths, the CNI cache entries, the directory.

- CRI with restrict_oom_score_adj (pods get at least containerd's own oom_score_adj:
  lowering it needs CAP_SYS_RESOURCE, which a container host may not grant);
- CRI with the cgroupfs driver (SystemdCgroup = false) and the overlayfs snapshotter;
  containerd (and so its shims) runs in `<our own cgroup>/pcri<pid>/daemon` and pods made
  with `pod_config` get `cgroup_parent` `<our own cgroup>/pcri<pid>/pods`: nothing is
  made at a hierarchy root (a pod without a cgroup_parent, as critest's, is placed by the
  runtime relative to the shim's cgroup, so below the daemon's);
- two runtime handlers of type io.containerd.runc.v2: `runc` (the reference) and
  `pycontainer` (BinaryName: a `python -IS` launcher of this checkout's CLI, as the
  README recommends for packages);
- CNI: a bridge of our own plus loopback; pod addresses from host-local in a /24 that
  exists only on that bridge and in the pods' network namespaces: the bridge holds its
  gateway address, so the host routes the subnet there, pods get no default route and
  nothing is masqueraded (no traffic to a pod's address leaves the machine);
- images: images.py's stand-ins, imported with `ctr -n k8s.io images import`; with
  `registry=True` also served by a registry of ours on 127.0.0.1 (registry.py) that
  containerd uses instead of every registry host critest names (it pulls what it
  uses); no pull ever goes to the real hosts.

Run as a program, it starts the bed and prints the socket until interrupted:
    python tests/cri/testbed.py [--registry]"""
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import images           # noqa: E402  (tests/cri)
from client import CRIClient  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CNI_BIN = "/usr/lib/cni"
HANDLERS = ("runc", "pycontainer")
# What the shims make under /run/containerd whatever the daemon's state dir (their
# sockets): removed afterwards when empty and new.
# The registry hosts of the images critest pulls: all served by registry.py (--registry).
REGISTRY_HOSTS = ("registry.k8s.io", "gcr.io", "docker.io", "localhost")
RUN_DIRS = ("/run/containerd/s", "/run/containerd")
CNI_CACHE = "/var/lib/cni/results"
MNT_DETACH = 2


def own_cgroup():
    """This process's deepest cgroup path over all hierarchies (on a hybrid host the
    others are the root or its ancestors; tests/helpers.isolate_cgroups keeps it so)."""
    with open("/proc/self/cgroup") as f:
        return max((line.split(":", 2)[2].strip() for line in f), key=len).rstrip("/")


def hierarchy_dirs(path):
    """The directory of cgroup `path` in every mounted hierarchy (cgroup and cgroup2)."""
    dirs = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                dirs.append(fields[4] + path)
    return dirs


class TestBed:
    __test__ = False        # not a pytest class
    def __init__(self, registry=False, log=None):
        self.tag = f"pcri{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp")  # short: socket path
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "containerd.sock")
        self.cgroup = f"{own_cgroup()}/{self.tag}"       # all the bed's processes, below ours
        self.cgroup_parent = f"{self.cgroup}/pods"         # the pods' (pod_config)
        self.bridge = self.tag[:15]
        self.subnet = f"10.213.{os.getpid() % 250}.0/24"  # its own: beds may run side by side
        self.registry = None
        self.proc = None
        self.client = None
        self._want_registry = registry
        self._run_dirs_before = {d for d in RUN_DIRS if os.path.isdir(d)}
        self._cache_before = set(_listdir(CNI_CACHE))

    # --- start ----------------------------------------------------------------------------

    def start(self, timeout=60):
        try:
            built = images.build()
            if self._want_registry:
                import registry
                self.registry = registry.Registry(built)
            self._write_config()
            self.log_path = os.path.join(self.dir, "containerd.log")
            daemon_dirs = [_make_cgroup(d) for d in hierarchy_dirs(f"{self.cgroup}/daemon")]
            with open(self.log_path, "w") as log:
                self.proc = subprocess.Popen(
                    ["containerd", "--config", os.path.join(self.dir, "config.toml")],
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                    preexec_fn=lambda: _enter_cgroups(daemon_dirs))
            self.client = CRIClient(self.socket)
            deadline = time.monotonic() + timeout
            while not self._answers():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("containerd did not come up:\n" + self.log_tail())
                time.sleep(0.05)
            archive = images.oci_archive(built, os.path.join(self.dir, "images.tar"))
            self.ctr("images", "import", archive)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self):
        if not os.path.exists(self.socket):
            return False
        import grpc
        try:
            self.client.Version(timeout=2)
            return True
        except grpc.RpcError:
            return False

    def ctr(self, *args):
        p = subprocess.run(["ctr", "--address", self.socket, "-n", "k8s.io", *args],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def log_tail(self, lines=40):
        with contextlib.suppress(OSError), open(self.log_path) as f:
            return "".join(f.readlines()[-lines:])
        return ""

    def _write_config(self):
        d = self.dir
        # The launcher the README recommends for packages (python -IS: no site, no .pth
        # files; the shim runs it 3 to 5 times per container), on this checkout and the
        # site-packages of the interpreter running the bed (pyseccomp).
        import site
        wrapper = os.path.join(d, "pycontainer-runtime")
        with open(wrapper, "w") as f:
            f.write(f"#!{sys.executable} -IS\nimport sys\n"
                    f"sys.path[:0] = {[REPO] + site.getsitepackages()!r}\n"
                    "from pycontainer.cli import entry\nentry()\n")
        os.chmod(wrapper, 0o755)
        os.makedirs(os.path.join(d, "cni"))
        with open(os.path.join(d, "cni", "10-pcri.conflist"), "w") as f:
            f.write(_cni_conflist(self.tag, self.bridge, os.path.join(d, "ipam"), self.subnet))
        registry = ""
        if self.registry:
            # hosts.toml with `server`: our registry replaces each host (a mirror of the
            # older `mirrors` table would fall back to the host itself on a miss)
            hosts = os.path.join(d, "certs.d")
            for host in REGISTRY_HOSTS:
                os.makedirs(os.path.join(hosts, host))
                with open(os.path.join(hosts, host, "hosts.toml"), "w") as f:
                    f.write(f'server = "http://{self.registry.address}"\n'
                            f'[host."http://{self.registry.address}"]\n'
                            '  capabilities = ["pull", "resolve"]\n')
            registry = ('[plugins."io.containerd.grpc.v1.cri".registry]\n'
                        f'  config_path = "{hosts}"\n')
        runtimes = ""
        for name, binary in (("runc", shutil.which("runc") or "runc"),
                             ("pycontainer", wrapper)):
            runtimes += f"""
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
  BinaryName = "{binary}"
  Root = "{d}/{name}-root"
  SystemdCgroup = false
"""
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{d}/cni"
{runtimes}
{registry}""")

    # --- pods -----------------------------------------------------------------------------

    def pod_config(self, name, **extra):
        """A PodSandboxConfig (client.py's dict form) below our cgroup, logs in the bed."""
        log_dir = os.path.join(self.dir, "pod-logs", name)
        os.makedirs(log_dir, exist_ok=True)
        linux = {"cgroup_parent": self.cgroup_parent}
        linux.update(extra.pop("linux", {}))
        config = {"metadata": {"name": name, "uid": f"{self.tag}-{name}",
                               "namespace": "pcri"},
                  "hostname": name, "log_directory": log_dir, "linux": linux}
        config.update(extra)
        return config

    def remove_all_pods(self):
        """Stop and remove every pod sandbox (and so its containers) containerd has."""
        for pod in self.ctr("containers", "ls", "-q").split():
            with contextlib.suppress(Exception):
                self.client.StopPodSandbox(pod_sandbox_id=pod, timeout=60)
                self.client.RemovePodSandbox(pod_sandbox_id=pod, timeout=60)

    # --- stop -----------------------------------------------------------------------------

    def stop(self):
        """Remove everything; returns what had to be removed by force (a list of str),
        which a test may assert empty."""
        forced = []
        if self.proc is not None and self.proc.poll() is None and self.client is not None:
            with contextlib.suppress(Exception):
                self.remove_all_pods()
        if self.client is not None:
            self.client.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    forced.append(f"containerd {self.proc.pid} (SIGKILL)")
        for pid in _pids_with_arg(self.socket):     # shims: `-address <socket>`
            forced.append(f"shim {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        forced += self._kill_cgroup_processes()
        forced += [f"mount {m}" for m in _unmount_below(self.dir)]
        forced += self._remove_cgroups()
        forced += self._remove_links()
        for name in _listdir(CNI_CACHE):
            if name.startswith(self.tag) and name not in self._cache_before:
                os.unlink(os.path.join(CNI_CACHE, name))
        if self.registry is not None:
            self.registry.close()
        for d in RUN_DIRS:
            if d not in self._run_dirs_before:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        shutil.rmtree(self.dir, ignore_errors=True)
        return forced

    def _kill_cgroup_processes(self):
        found = []
        for top in hierarchy_dirs(self.cgroup):
            for dirpath, _, _ in os.walk(top):
                with contextlib.suppress(OSError), open(f"{dirpath}/cgroup.procs") as f:
                    for pid in f.read().split():
                        found.append(f"process {pid} in {dirpath}")
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        return found

    def _remove_cgroups(self):
        left = []
        for top in hierarchy_dirs(self.cgroup):
            if not os.path.isdir(top):
                continue
            dirs = [p for p, _, _ in os.walk(top)]
            ours = {top, f"{top}/daemon", f"{top}/pods"}
            pod_dirs = [d for d in dirs if d not in ours]   # a pod's or container's: a leak
            for d in sorted(dirs, key=len, reverse=True):
                for _ in range(100):     # a killed process leaves its cgroup a moment later
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
                else:
                    left.append(d)
            left += [f"cgroup {d}" for d in pod_dirs]
        return left

    def _remove_links(self):
        """The bridge (ours to remove) and any veth still attached to it (a leak)."""
        left = []
        master = f"/sys/class/net/{self.bridge}/brif"
        for veth in _listdir(master):
            left.append(f"veth {veth}")
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        if os.path.exists(f"/sys/class/net/{self.bridge}"):
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        return left

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _make_cgroup(d):
    """mkdir -p of cgroup directory d; a new v1 cpuset gets its parent's cpus and mems
    (it takes no process without them)."""
    parent = os.path.dirname(d)
    if not os.path.isdir(parent):
        _make_cgroup(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(d)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if os.path.exists(f"{parent}/{knob}"):
                with open(f"{parent}/{knob}") as src, open(f"{d}/{knob}", "w") as dst:
                    dst.write(src.read())
    return d


def _enter_cgroups(dirs):
    for d in dirs:
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write("0")


def _cni_conflist(name, bridge, ipam_dir, subnet):
    """The bridge has the subnet's first address, so the host routes the subnet to it
    (traffic to a pod's address never takes the host's default route); pods get no
    default route (isDefaultGateway false, no IPAM routes) and nothing is masqueraded."""
    import json
    return json.dumps({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True,
             "isDefaultGateway": False, "ipMasq": False, "hairpinMode": False,
             "ipam": {"type": "host-local", "dataDir": ipam_dir,
                      "ranges": [[{"subnet": subnet}]]}},
            {"type": "loopback"}]}, indent=1)


def _listdir(d):
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []


def _pids_with_arg(arg):
    needle = arg.encode() + b"\0"
    pids = []
    for p in _listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            with contextlib.suppress(OSError), open(f"/proc/{p}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(p))
    return pids


def _unmount_below(top):
    """Detach every mount below `top` (deepest first); their mount points."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    mine = sorted({p for p in points if p.startswith(top + "/")}, key=len, reverse=True)
    for p in mine:
        libc.umount2(p.encode(), MNT_DETACH)
    return mine


if __name__ == "__main__":
    bed = TestBed(registry="--registry" in sys.argv).start()
    print(f"containerd CRI socket: {bed.socket}\ncgroup_parent: {bed.cgroup_parent}\n"
          f"log: {bed.log_path}\nCtrl-C stops and removes it", flush=True)
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)   # (a background job ignores SIGINT)
    try:
        signal.sigwait(stops)
    finally:
        print("removed by force:", bed.stop())
