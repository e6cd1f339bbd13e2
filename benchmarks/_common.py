"""Shared helpers of the benchmark harness (start_latency.py, scaling.py).

- a busybox rootfs builder and an OCI bundle writer (runc/crun get the same image and
  the same namespaces and mounts as a default pycontainer Config);
- nearest-rank percentile statistics (the same rule as c_limit.c) and the reconstruction
  of pseudo-samples from the quantiles c_limit prints per chunk;
- interleaved rounds: every round runs each contender once (one chunk of samples), in a
  shuffled order, so drift and neighbours' load hit every contender alike;
- small C helpers compiled with gcc into the run's temp dir: c_limit (from c_limit.c),
  `nsumount` (crun 1.8 on a hybrid cgroup host) and `exitwatch` (kernel exit times);
- c_limit's SECURITY_FILE, read from pycontainer's own defaults (climit_security_lines);
- the state roots of pycontainer, runc and crun: by default on a private tmpfs (StateRoots);
- a cleanup stack that runs on success, on an exception and on Ctrl-C/SIGTERM;
- cgroup paths of this process, and the plot.

pycontainer is imported lazily (the cgroup discovery uses the library's parsers and
removal; climit_security_lines and write_oci_bundle use the library); the scenarios import
it themselves.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
RUN_TAG = f"pcbench-{os.getpid()}"          # prefix of every id and cgroup the harness makes


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def now_ns():
    return time.perf_counter_ns()


# --- cleanup ------------------------------------------------------------------------------

class Cleanup:
    """LIFO stack of cleanup callbacks. Each runs once, errors are reported and do not
    stop the others. SIGTERM and SIGHUP become KeyboardInterrupt so `finally` blocks run."""

    def __init__(self):
        self._stack = []

    def push(self, fn, *args, **kw):
        entry = [fn, args, kw]
        self._stack.append(entry)
        return entry

    def discard(self, entry):
        with contextlib.suppress(ValueError):
            self._stack.remove(entry)

    def run(self):
        # Ctrl-C during cleanup must not abort it: ignore SIGINT until done.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._stack:
                fn, args, kw = self._stack.pop()
                try:
                    fn(*args, **kw)
                except Exception as exc:        # keep cleaning
                    log(f"cleanup: {getattr(fn, '__name__', fn)}: {exc!r}")
        finally:
            signal.signal(signal.SIGINT, old)

    @staticmethod
    def install_signal_handlers():
        def to_interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, to_interrupt)
        # Also when started with SIGINT ignored (a background job of a script).
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --- statistics ---------------------------------------------------------------------------

def percentile(sorted_values, p):
    """Nearest rank, as c_limit.c computes it."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    idx = int(p * n + 0.999999) - 1
    return sorted_values[min(max(idx, 0), n - 1)]


def summarize(samples):
    s = sorted(samples)
    if not s:
        return {"n": 0}
    return {"n": len(s), "median_us": percentile(s, 0.5), "p90_us": percentile(s, 0.9),
            "p99_us": percentile(s, 0.99), "min_us": s[0], "max_us": s[-1],
            "mean_us": sum(s) / len(s)}


def pseudo_samples(summary):
    """c_limit prints only min/median/p90/p99/max of a chunk. Rebuild `n` samples from the
    piecewise-linear quantile function through those points, so chunks can be pooled
    (and plotted) like real samples. Exact at the printed quantiles of a chunk;
    an approximation between them."""
    n = int(summary["n"])
    pts = [(0.0, summary["min_us"]), (0.5, summary["median_us"]), (0.9, summary["p90_us"]),
           (0.99, summary["p99_us"]), (1.0, summary["max_us"])]
    out = []
    for i in range(n):
        p = (i + 0.5) / n
        for (p0, v0), (p1, v1) in zip(pts, pts[1:]):
            if p <= p1:
                out.append(v0 + (v1 - v0) * ((p - p0) / (p1 - p0) if p1 > p0 else 0.0))
                break
    return out


# --- interleaved rounds -------------------------------------------------------------------

class Contender:
    """A named thing to time. `chunk(k)` runs k samples and returns their latencies in µs
    (c_limit: pseudo-samples, the raw JSON line goes to `raw`). `per_round` is k."""

    def __init__(self, name, chunk, per_round, note=""):
        self.name = name
        self._chunk = chunk
        self.per_round = per_round
        self.note = note
        self.samples = []
        self.raw = []            # extra per-chunk data (c_limit JSON lines, phase splits)

    def run_chunk(self, keep=True):
        out = self._chunk(self.per_round)
        if isinstance(out, tuple):           # (samples, raw extra)
            out, extra = out
            if keep and extra is not None:
                self.raw.append(extra)
        if keep:
            self.samples.extend(out)
        return out


def interleave(contenders, rounds, seed=1, warmup=1, progress=None):
    """Warm each contender up (samples dropped), then `rounds` rounds; each round runs
    every contender's chunk once, in a fresh random order (seeded). Returns the orders."""
    rng = random.Random(seed)
    for c in contenders:
        for _ in range(warmup):
            c.run_chunk(keep=False)
    orders = []
    for r in range(rounds):
        order = list(contenders)
        rng.shuffle(order)
        orders.append([c.name for c in order])
        for c in order:
            c.run_chunk()
        if progress and (r + 1) % max(1, rounds // 5) == 0:
            progress(r + 1, rounds)
    return orders


def table(title, contenders_or_rows, reference=None, unit="us"):
    """Print median/p90/p99 and the ratio of each row's median (and p90) to the reference
    row's. rows: [(name, summary, note)]."""
    rows = []
    for c in contenders_or_rows:
        if isinstance(c, Contender):
            rows.append((c.name, summarize(c.samples), c.note))
        else:
            rows.append(c)
    ref = next((s for n, s, _ in rows if n == reference), None)
    w = max([28] + [len(r[0]) + 2 for r in rows])
    lines = [f"\n== {title} ==",
             f"{'contender':<{w}}{'n':>6}{'median':>11}{'p90':>11}{'p99':>11}"
             f"   ratio to {reference or '-'} (median / p90)"]
    for name, s, note in rows:
        if not s or s.get("n", 0) == 0:
            lines.append(f"{name:<{w}}  skipped: {note}")
            continue
        ratio = ""
        if ref and ref.get("n"):
            ratio = f"{s['median_us'] / ref['median_us']:.2f}x / {s['p90_us'] / ref['p90_us']:.2f}x"
        lines.append(f"{name:<{w}}{s['n']:>6}{s['median_us']:>11.1f}{s['p90_us']:>11.1f}"
                     f"{s['p99_us']:>11.1f}   {ratio}")
        if note:
            lines.append(f"{'':<4}note: {note}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# --- rootfs and OCI bundle ----------------------------------------------------------------

def build_busybox_rootfs(path):
    """A rootfs of Debian's static busybox: /bin/<applet> -> busybox (as the tests build)."""
    if not os.path.exists(BUSYBOX):
        raise SystemExit("busybox is not installed (apt-get install -y busybox-static)")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "run"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")
    return path


def write_oci_bundle(bundle, rootfs, args, cgroups_path, hostname="bench"):
    """config.json for runc/crun: a default pycontainer Config in its own OCI form
    (pycontainer.oci.spec.to_oci: namespaces mount pid uts ipc net, the same mounts,
    capabilities, masked and read-only paths, the default seccomp profile,
    no_new_privileges, the device policy), running `args` in `cgroups_path`."""
    import pycontainer as pc
    from pycontainer.oci.spec import to_oci
    spec = to_oci(pc.Config(rootfs=os.path.abspath(rootfs), hostname=hostname),
                  pc.ProcessConfig(args=list(args)))
    spec["linux"]["cgroupsPath"] = cgroups_path
    os.makedirs(bundle, exist_ok=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return bundle


CLIMIT_SECURITY_WORK = ("masked/read-only paths, device policy, capability drop, no_new_privs, "
                        "seccomp")


def climit_security_lines(rootfs, seccomp_path):
    """The SECURITY_FILE lines for c_limit (format: the top of c_limit.c) that make it do
    the kernel work of a default pycontainer Config's security settings, read from the
    library itself so the two cannot drift; the compiled seccomp filter is written to
    `seccomp_path`. (lines, notes): what the library cannot provide is left out, with a note."""
    lines, notes = [], []
    try:
        import pycontainer as pc
        cfg = pc.Config(rootfs=rootfs)
    except Exception as exc:            # noqa: BLE001 - any failure: bare c_limit, noted
        return [], [f"c_limit security file: no pycontainer Config ({exc!r}): c_limit does no "
                    "security work"]
    try:
        lines += [f"ro {p}" for p in cfg.readonly_paths]
        lines += [f"mask {p}" for p in cfg.masked_paths]
    except AttributeError as exc:
        notes.append(f"c_limit security file: no read-only/masked paths ({exc})")
    try:
        from pycontainer.container import device_policy
        writes = device_policy(cfg).v1_writes
        if not any("devices" in ctls for _, _, ctls, _ in own_cgroups()):
            notes.append("c_limit security file: no v1 devices hierarchy here, so no device rules "
                         "(pycontainer uses only its eBPF device program then)")
        else:
            for name, rule in writes:
                kw = {"devices.deny": "devdeny", "devices.allow": "devallow"}[name]
                lines.append(f"{kw} {rule}")
            if hybrid_unified_mount():
                notes.append("c_limit security file: on this hybrid host pycontainer also attaches "
                             "its eBPF device program to the container's cgroup2 dir (a bpf() "
                             "call per create); c_limit writes only the v1 device rules")
    except Exception as exc:            # noqa: BLE001 - the library's API moved: noted
        notes.append(f"c_limit security file: no device rules ({exc!r})")
    try:
        from pycontainer.security import kernel_last_cap
        if cfg.capabilities is not None:
            bnd, eff, prm, inh, amb = cfg.capabilities.masks(kernel_last_cap())
            lines.append(f"caps {bnd:x}")
            if not (bnd == eff == prm):
                notes.append(f"c_limit security file: capability sets differ (bounding {bnd:#x}, "
                             f"effective {eff:#x}, permitted {prm:#x}); c_limit keeps the bounding "
                             "one in all three")
            if inh or amb:
                notes.append(f"c_limit security file: inheritable {inh:#x} / ambient {amb:#x} not "
                             "reproduced (c_limit sets both empty)")
    except (ImportError, AttributeError) as exc:
        notes.append(f"c_limit security file: no capability drop ({exc!r})")
    nnp = bool(getattr(cfg, "no_new_privileges", False))
    if nnp:
        lines.append("nnp")
    try:
        from pycontainer.seccomp import DEFAULT_PROFILE, compile_profile, filter_flags
        prof = getattr(cfg, "seccomp", None)
        if prof is not None:
            prof = DEFAULT_PROFILE if prof == "default" else prof
            if not nnp:
                notes.append("c_limit security file: seccomp without no_new_privileges is not "
                             "reproduced (c_limit loads its filter after nnp): no seccomp line")
            else:
                with open(seccomp_path, "wb") as f:
                    f.write(compile_profile(prof))
                lines.append(f"seccomp {seccomp_path}")
                if filter_flags(prof):
                    notes.append(f"c_limit security file: seccomp flags {filter_flags(prof):#x} "
                                 "not reproduced (c_limit loads with flags 0)")
    except Exception as exc:            # noqa: BLE001 - ImportError, libseccomp missing ...
        notes.append(f"c_limit security file: no seccomp filter ({exc!r})")
    return lines, notes


# --- cgroups of this process --------------------------------------------------------------

def _mounts():
    """cgroup and cgroup2 mounts as (mountpoint, root, fstype, options): the library's
    parser (pycontainer.cgroups.host)."""
    from pycontainer.cgroups.host import parse_mountinfo
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def own_cgroups():
    """[(mountpoint, own dir, controllers, own path)] of every mounted hierarchy this
    process is in. Parsed as the library parses, but named v1 hierarchies (name=systemd)
    are kept, which the library's detect() leaves out: runc and crun join them too."""
    from pycontainer.cgroups.host import parse_proc_cgroup
    mounts = _mounts()
    out = []
    with open("/proc/self/cgroup") as f:
        entries = parse_proc_cgroup(f.read())
    for hid, ctls, path in entries:
        for mnt, root, fstype, opts in mounts:
            if (hid == 0 and not ctls and fstype == "cgroup2") or \
                    (fstype == "cgroup" and ctls and set(ctls) <= set(opts)):
                rel = path[len(root):] if root != "/" and path.startswith(root) else path
                out.append((mnt, os.path.join(mnt, rel.lstrip("/")), list(ctls), path))
                break
    return out


def unified_own_dir():
    """Our own cgroup in the cgroup2 hierarchy (the only entry without controllers)."""
    for mnt, own, ctls, _ in own_cgroups():
        if not ctls:
            return own
    return None


def hybrid_unified_mount():
    """The cgroup2 mountpoint on a hybrid host (v1 controllers + cgroup2), else None."""
    mounts = _mounts()
    has_v1 = any(t == "cgroup" for _, _, t, _ in mounts)
    for mnt, _, t, _ in mounts:
        if t == "cgroup2" and has_v1:
            return mnt
    return None


def memory_limit_bytes():
    """The tightest memory limit of our own cgroup (v1 memory.limit_in_bytes or v2
    memory.max, this cgroup and its ancestors), or None."""
    best = None
    for mnt, own, ctls, _ in own_cgroups():
        if ctls and "memory" not in ctls:
            continue
        d = own
        while d.startswith(mnt) and len(d) >= len(mnt):
            for name in ("memory.limit_in_bytes", "memory.max"):
                with contextlib.suppress(OSError, ValueError):
                    with open(os.path.join(d, name)) as f:
                        v = f.read().strip()
                    if v != "max":
                        v = int(v)
                        if v < (1 << 62):
                            best = v if best is None else min(best, v)
            if d == mnt:
                break
            d = os.path.dirname(d)
    return best


class RuntimeCgroups:
    """cgroupsPath for runc/crun below our own cgroup in every hierarchy.

    Both runtimes take an absolute cgroupsPath from each hierarchy's root (crun 1.8 does
    so for a relative one too), so the path must lie below our own cgroup in all of them:
    the deepest own path works when every other own path is a prefix of it (here memory
    is /process_api/<id>, the rest /). Directories the runtimes create on the way
    (e.g. cpu/process_api/<id>/pycontainer) are removed again at the end when empty;
    `pycontainer` dirs pycontainer itself uses are left alone."""

    LIBRARY_V1 = {"blkio", "cpu", "cpuacct", "cpuset", "memory", "pids"}

    def __init__(self):
        self.hier = own_cgroups()
        paths = sorted({p for _, _, _, p in self.hier}, key=len)
        deepest = paths[-1] if paths else "/"
        ok = all(deepest == p or deepest.startswith(p.rstrip("/") + "/") for p in paths)
        self.base = (deepest.rstrip("/") + "/pycontainer") if ok else None
        self.problem = None if ok else f"own cgroups {paths} have no common descendant"
        # dirs on the way that do not exist yet, per hierarchy: ours to remove later
        self.created_candidates = []
        if self.base:
            for mnt, own, ctls, ownpath in self.hier:
                rel = self.base[len(ownpath.rstrip("/")):].strip("/").split("/")
                d = own
                for part in rel:
                    d = os.path.join(d, part)
                    if not os.path.exists(d):
                        library = (part == "pycontainer" and os.path.dirname(d) == own
                                   and (not ctls or set(ctls) & self.LIBRARY_V1))
                        if not library:
                            self.created_candidates.append(d)

    def path(self, name):
        return f"{self.base}/{name}"

    def leaf_dirs(self, name):
        out = []
        for mnt, own, ctls, ownpath in self.hier:
            rel = self.path(name)[len(ownpath.rstrip("/")):].lstrip("/")
            out.append(os.path.join(own, rel))
        return out

    def remove_leaf(self, name):
        for d in self.leaf_dirs(name):
            rmdir_tree(d)

    def remove_created(self):
        for d in sorted(self.created_candidates, key=len, reverse=True):
            with contextlib.suppress(FileNotFoundError):
                try:
                    os.rmdir(d)
                except OSError as exc:
                    if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise


def rmdir_tree(path):
    """rmdir a cgroup dir and its sub-cgroups, deepest first; missing is fine: the
    library's remove_cgroup."""
    from pycontainer.cgroups.fs import remove_cgroup
    remove_cgroup(path)


def pycontainer_cgroup_leftovers(tag=RUN_TAG):
    """Cgroup dirs below any `pycontainer` dir whose name carries our tag (other people's
    tests share the machine; theirs are not ours to report)."""
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if "/pycontainer/" in dirpath + "/" and tag in dirpath:
            found.append(dirpath)
            dirnames[:] = []
        if dirpath.count("/") > 12:
            dirnames[:] = []
    return found


# --- C helpers ----------------------------------------------------------------------------

NSUMOUNT_C = r"""
/* nsumount MOUNTPOINT CMD ARGS...: run CMD in a private mount namespace in which
 * MOUNTPOINT is unmounted. crun 1.8 refuses a hybrid cgroup host (v1 controllers plus a
 * cgroup2 mount) unless it cannot see the cgroup2 mount. One exec more than crun alone. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/mount.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	if (argc < 3) { fprintf(stderr, "usage: nsumount MOUNTPOINT CMD...\n"); return 2; }
	if (unshare(CLONE_NEWNS) < 0) { perror("nsumount: unshare"); return 125; }
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) { perror("nsumount: rprivate"); return 125; }
	if (umount2(argv[1], MNT_DETACH) < 0) { perror("nsumount: umount"); return 125; }
	execvp(argv[2], argv + 2);
	fprintf(stderr, "nsumount: exec %s: %s\n", argv[2], strerror(errno));
	return 127;
}
"""

EXITWATCH_C = r"""
/* exitwatch: read pids (one per line) from stdin until an empty line, pidfd_open them
 * all, print "ready", then wait in epoll for every one to exit and print one JSON line:
 * {"n":N,"times_ns":[CLOCK_MONOTONIC of each epoll wake-up ...],"counts":[exits seen at
 * that wake-up ...],"rt":1 if it got SCHED_FIFO}. Event-driven: it sleeps until the kernel
 * reports exits. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(void)
{
	static int fds[100000];
	static long long times[100000];
	static int counts[100000];
	int n = 0, ep = epoll_create1(EPOLL_CLOEXEC);
	char line[64];
	if (ep < 0) { perror("epoll_create1"); return 1; }
	while (fgets(line, sizeof line, stdin) && line[0] != '\n' && n < 100000) {
		int pid = atoi(line);
		int fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0) { fprintf(stderr, "exitwatch: pidfd_open %d: ", pid); perror(""); return 1; }
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) { perror("epoll_ctl"); return 1; }
		fds[n++] = fd;
	}
	/* SCHED_FIFO: wake up at each exit even while 1000 exiting processes keep both CPUs
	 * busy, so the timestamps are the exits', not the moment the scheduler got to us. */
	struct sched_param sp = { .sched_priority = 1 };
	int rt = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
	printf("ready\n"); fflush(stdout);
	int left = n, w = 0;
	static struct epoll_event evs[4096];
	while (left > 0) {
		int r = epoll_wait(ep, evs, 4096, 60000);
		if (r <= 0) { fprintf(stderr, "exitwatch: timeout, %d left\n", left); break; }
		long long t = now();
		for (int i = 0; i < r; i++) { epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL); close(evs[i].data.fd); }
		left -= r; times[w] = t; counts[w] = r; w++;
	}
	printf("{\"n\":%d,\"left\":%d,\"rt\":%d,\"times_ns\":[", n, left, rt);
	for (int i = 0; i < w; i++) printf("%s%lld", i ? "," : "", times[i]);
	printf("],\"counts\":[");
	for (int i = 0; i < w; i++) printf("%s%d", i ? "," : "", counts[i]);
	printf("]}\n");
	return left ? 1 : 0;
}
"""


def compile_c(src_text_or_path, out, extra=()):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise FileNotFoundError("gcc not found (apt-get install -y gcc)")
    if os.path.exists(src_text_or_path):
        src = src_text_or_path
    else:
        src = out + ".c"
        with open(src, "w") as f:
            f.write(src_text_or_path)
    subprocess.run([gcc, "-O2", "-Wall", "-o", out, src, *extra], check=True,
                   capture_output=True, text=True)
    return out


class Tools:
    """The run's temp dir with the busybox rootfs and the compiled helpers."""

    def __init__(self, cleanup):
        self.tmp = tempfile.mkdtemp(prefix=f"{RUN_TAG}-")
        cleanup.push(shutil.rmtree, self.tmp, ignore_errors=True)
        self.rootfs = build_busybox_rootfs(os.path.join(self.tmp, "rootfs"))
        self.notes = []
        self.c_limit = self._build("c_limit", os.path.join(HERE, "c_limit.c"))
        self.nsumount = self._build("nsumount", NSUMOUNT_C)
        self.exitwatch = self._build("exitwatch", EXITWATCH_C)
        # c_limit's SECURITY_FILE: the kernel work of a default Config's security settings
        self.climit_security = None
        self.climit_security_lines = []
        if self.c_limit:
            lines, notes = climit_security_lines(self.rootfs,
                                                 os.path.join(self.tmp, "climit-seccomp.bpf"))
            self.notes += notes
            self.climit_security_lines = lines
            self.climit_security = os.path.join(self.tmp, "climit-security")
            with open(self.climit_security, "w") as f:
                f.write("# c_limit SECURITY_FILE from pycontainer's default Config "
                        "(format: benchmarks/c_limit.c)\n" + "".join(x + "\n" for x in lines))

    def _build(self, name, src):
        try:
            return compile_c(src, os.path.join(self.tmp, name))
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            msg = getattr(exc, "stderr", "") or str(exc)
            self.notes.append(f"{name}: not built: {msg.strip()[:200]}")
            return None


# --- state roots --------------------------------------------------------------------------

MS_NOSUID, MS_NODEV, MS_NOEXEC, MNT_DETACH = 0x2, 0x4, 0x8, 0x2
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype, flags, data):
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(flags),
                   data.encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {fstype} on {target}: {os.strerror(e)}")


def _umount2(target, flags=0):
    if _libc.umount2(target.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount {target}: {os.strerror(e)}")


def mounts_of(tag=RUN_TAG):
    """Mount points whose source or mount point carries `tag` (a state tmpfs left mounted)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            src = tail[1] if len(tail) > 1 else ""
            if tag in fields[4] or tag in src:
                out.append(fields[4])
    return out


class StateRoots:
    """Where pycontainer (its Factory root), runc and crun (`--root`) keep their state.

    Default: a private tmpfs at <run temp dir>/state (source `pcbench-<pid>-state`, mode
    0700, 64 MiB, nosuid/nodev/noexec as systemd's /run), with one dir per runtime, so
    that a state file write costs the same for all three and no disk journal is involved.
    It is unmounted by the cleanup stack after every container is gone (it is pushed
    before any container exists). on_disk=True: the old behaviour, /run/<tag> for
    pycontainer and the runtimes' default roots (/run/runc, /run/crun), wherever /run is."""

    def __init__(self, tools, cleanup, on_disk=False):
        self.on_disk = on_disk
        self.tmpfs = None
        if on_disk:
            self.pycontainer = f"/run/{RUN_TAG}"
            self.runc = self.crun = None
            return
        mnt = os.path.join(tools.tmp, "state")
        os.mkdir(mnt, 0o700)
        _mount(f"{RUN_TAG}-state", mnt, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "mode=0700,size=64m")
        self.tmpfs = mnt
        cleanup.push(self.unmount)
        self.pycontainer = os.path.join(mnt, "pycontainer")
        self.runc = os.path.join(mnt, "runc")
        self.crun = os.path.join(mnt, "crun")
        for d in (self.runc, self.crun):
            os.mkdir(d, 0o700)

    def runtime_root(self, name):
        """`--root` for runc/crun; None: the runtime's default."""
        return getattr(self, name, None)

    def default_runtime_root(self, name):
        return f"/run/{name}"

    def describe(self):
        if self.on_disk:
            fs = _fstype_of("/run")
            return (f"on disk (--state-on-disk): pycontainer {self.pycontainer}, runc and crun "
                    f"their defaults /run/runc, /run/crun; /run is {fs}")
        return (f"private tmpfs {self.tmpfs}: pycontainer {self.pycontainer}, runc --root "
                f"{self.runc}, crun --root {self.crun}")

    def record(self):
        return {"kind": "disk" if self.on_disk else "tmpfs", "tmpfs": self.tmpfs,
                "pycontainer": self.pycontainer,
                "runc": self.runc or self.default_runtime_root("runc"),
                "crun": self.crun or self.default_runtime_root("crun"),
                "run_fstype": _fstype_of("/run"), "description": self.describe()}

    def unmount(self):
        try:
            _umount2(self.tmpfs)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            log(f"cleanup: {self.tmpfs} busy, detached lazily")
            _umount2(self.tmpfs, MNT_DETACH)


def _fstype_of(path):
    """The fstype of the mount holding `path` (longest mount point prefix)."""
    best, fs = "", "?"
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mp = left.split()[4]
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, fs = mp, right.split()[0]
    return fs


# --- runc / crun --------------------------------------------------------------------------

class OciRuntime:
    """runc or crun driven through its CLI, with the harness's bundles and ids.

    crun 1.8 on a hybrid cgroup host runs through `nsumount` (a private mount namespace
    with the cgroup2 mount unmounted), so every crun command pays one unshare(CLONE_NEWNS)
    (a copy of the mount table) and one exec more; `wrapper_cost` measures that.
    root: its state root (`--root`, a global flag: right after the binary), None for the
    runtime's default (/run/runc, /run/crun)."""

    def __init__(self, name, tools, cgroups, cleanup, root=None):
        self.name = name
        self.root = root
        self.binary = shutil.which(name)
        self.tools = tools
        self.cgroups = cgroups
        self.cleanup = cleanup
        self.ids = []
        self.skip = None
        self.wrapped = None
        self.prefix = [self.binary] if self.binary else []
        if not self.binary:
            self.skip = f"{name} is not installed (apt-get install -y {name})"
        elif cgroups.base is None:
            self.skip = f"no cgroupsPath below our own cgroups: {cgroups.problem}"
        elif name == "crun":
            mnt = hybrid_unified_mount()
            if mnt:
                if not tools.nsumount:
                    self.skip = "crun needs the nsumount helper on a hybrid host (no gcc)"
                else:
                    self.prefix = [tools.nsumount, mnt, self.binary]
                    self.wrapped = mnt
        if self.binary and root:
            self.prefix += ["--root", root]

    def new_id(self, kind):
        cid = f"{RUN_TAG}-{self.name}-{kind}-{len(self.ids)}"
        self.ids.append(cid)
        return cid

    def bundle(self, kind, args):
        cid = self.new_id(kind)
        b = write_oci_bundle(os.path.join(self.tools.tmp, "bundles", cid), self.tools.rootfs,
                             args, self.cgroups.path(cid), hostname=kind)
        return cid, b

    def cmd(self, *args):
        return [*self.prefix, *args]

    def call(self, *args, check=True):
        # stderr to a file, not a pipe: a detached container inherits it and would keep a
        # pipe open forever.
        with tempfile.TemporaryFile(dir=self.tools.tmp) as err:
            r = subprocess.run(self.cmd(*args), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err)
            if check and r.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{' '.join(self.cmd(*args))}: exit {r.returncode}: "
                                   f"{err.read().decode(errors='replace').strip()[:300]}")
        return r.returncode

    def delete(self, cid):
        subprocess.run(self.cmd("delete", "-f", cid), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.cgroups.remove_leaf(cid)

    def start_detached(self, kind, args):
        cid, b = self.bundle(kind, args)
        self.cleanup.push(self.delete, cid)
        self.call("run", "-d", "-b", b, cid)
        return cid

    def state(self, cid):
        r = subprocess.run(self.cmd("state", cid), capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def leftovers(self):
        if not self.binary:
            return []
        r = subprocess.run(self.cmd("list", "-q"), capture_output=True, text=True)
        return [x for x in r.stdout.split() if x.startswith(RUN_TAG)]


# --- c_limit ------------------------------------------------------------------------------

CLIMIT_PIDS = set()         # every c_limit this process ran: verify_clean looks for their cgroups


class CLimit:
    """Runs `c_limit MODE ROOTFS k [SECURITY_FILE]` as one chunk; pseudo-samples from its
    quantiles. secure=True passes the tools' security file (the default Config's security
    work), secure=False runs it bare. If we are interrupted it gets SIGTERM (it cleans up
    on that) and, should it have died of SIGKILL, its climit-<pid> cgroups are removed here."""

    def __init__(self, tools, cleanup):
        self.tools = tools
        self.cleanup = cleanup

    def chunk(self, mode, k, secure=True):
        argv = [self.tools.c_limit, mode, self.tools.rootfs, str(k)]
        if secure:
            if not self.tools.climit_security:
                raise RuntimeError("c_limit: no security file")
            argv.append(self.tools.climit_security)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        CLIMIT_PIDS.add(p.pid)
        entry = self.cleanup.push(self._stop, p)
        try:
            out, err = p.communicate()
        finally:
            if p.poll() is None:
                self._stop(p)
            self.cleanup.discard(entry)
        if p.returncode != 0:
            self._remove_cgroups(p.pid)
            raise RuntimeError(f"c_limit {mode}: exit {p.returncode}: {err.strip()[:300]}")
        line = json.loads(out.strip().splitlines()[-1])
        return pseudo_samples(line), line

    def _stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._remove_cgroups(p.pid)

    @staticmethod
    def _remove_cgroups(pid):
        for _, own, _, _ in own_cgroups():
            rmdir_tree(os.path.join(own, "pycontainer", f"climit-{pid}"))


# --- misc ---------------------------------------------------------------------------------

def proc_status(field, pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
    return None


def rss_bytes():
    return int(proc_status("VmRSS")) * 1024


def machine_context():
    load = os.getloadavg()
    others = 0
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    with open(f"/proc/{name}/cgroup") as f:
                        t = f.read()
                    if "/pycontainer/" in t and RUN_TAG not in t:
                        others += 1
    return {"loadavg": load, "cpus": os.cpu_count(), "kernel": os.uname().release,
            "processes_in_other_pycontainer_cgroups": others, "time": time.time()}


def write_json(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def verify_clean(state=None, settle=5.0):
    """What the run left behind: our cgroups (and those of the c_limits we ran), runc/crun
    containers (in the state roots used and the default ones), pycontainer state dirs, the
    state tmpfs still mounted, processes. `state`: the StateRoots of the run (None: only
    the /run places). Processes die and cgroups empty asynchronously: retried for up to
    `settle` seconds."""
    deadline = time.monotonic() + settle
    while True:
        out = _leftovers(state)
        if out["clean"] or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def climit_cgroup_leftovers(pids=None):
    """climit-<pid> cgroups below a `pycontainer` dir, for the c_limits this process ran."""
    names = {f"climit-{p}" for p in (CLIMIT_PIDS if pids is None else pids)}
    found = []
    if not names:
        return found
    for _, own, _, _ in own_cgroups():
        for n in names:
            d = os.path.join(own, "pycontainer", n)
            if os.path.exists(d):
                found.append(d)
    return found


def _leftovers(state=None):
    out = {"cgroups": pycontainer_cgroup_leftovers() + climit_cgroup_leftovers()}
    for rt in ("runc", "crun"):
        if shutil.which(rt):
            ids = []
            roots = [None]
            if state is not None and state.runtime_root(rt):
                roots.append(state.runtime_root(rt))
            for root in roots:
                if root is not None and not os.path.isdir(root):
                    continue                    # gone with the tmpfs
                cmd = [rt] + (["--root", root] if root else []) + ["list", "-q"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                ids += [x for x in r.stdout.split() if x.startswith(RUN_TAG)]
            out[rt] = ids
    dirs = {f"/run/{RUN_TAG}"} | ({state.pycontainer} if state is not None else set())
    out["state_dir"] = sorted(d for d in dirs if os.path.exists(d))
    out["state_tmpfs_mounted"] = mounts_of(RUN_TAG)
    procs = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{name}/cgroup") as f:
                    if RUN_TAG in f.read():
                        with open(f"/proc/{name}/cmdline", "rb") as g:
                            procs.append((int(name), g.read().replace(b"\0", b" ").decode()[:80]))
    out["processes"] = procs
    out["clean"] = not any([out["cgroups"], out.get("runc"), out.get("crun"), out["state_dir"],
                            out["state_tmpfs_mounted"], procs])
    return out


# --- the plot -----------------------------------------------------------------------------

def plot(path, data):
    """One PNG: a box plot per scenario (log scale, every contender), and the scaling
    curves. matplotlib is optional."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    scen = data.get("scenarios") or {}
    scal = data.get("scaling") or {}
    panels = [k for k in ("full", "join", "pause") if k in scen]
    n_top = len(panels)
    n_bottom = 3 if scal else 0
    cols = max(n_top, n_bottom, 1)
    rows = (1 if n_top else 0) + (1 if n_bottom else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 5.6 * rows), squeeze=False)
    titles = {"full": "1. full lifecycle (create+start+exit+destroy)",
              "join": "2. join (start /bin/true into a running container)",
              "pause": "3. pause + resume"}
    r = 0
    if n_top:
        for i, key in enumerate(panels):
            ax = axes[r][i]
            cons = [(n, c) for n, c in scen[key]["contenders"].items() if c["samples_us"]]
            cons.sort(key=lambda nc: nc[1]["summary"]["median_us"])
            data_ms = [[v / 1000 for v in c["samples_us"]] for _, c in cons]
            labels = [n.replace(" (", "\n(") for n, _ in cons]
            colors = ["tab:red" if n == "pycontainer" else "lightcoral" if n.startswith("pycontainer") else
                      "yellowgreen" if n.startswith("c_limit") and "(bare)" in n else
                      ("tab:green" if n.startswith("c_limit") or n.startswith("bare") else "tab:gray")
                      for n, _ in cons]
            bp = ax.boxplot(data_ms, vert=False, whis=(1, 99), showfliers=True, patch_artist=True,
                            flierprops={"markersize": 2, "alpha": 0.4})
            for patch, col in zip(bp["boxes"], colors):
                patch.set_facecolor(col)
                patch.set_alpha(0.5)
            ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("latency, ms (log)   box: p25-p75, whiskers p1-p99")
            ax.set_title(titles[key], fontsize=10)
            for j, (_, c) in enumerate(cons):
                s = c["summary"]
                ax.annotate(f"{s['median_us'] / 1000:.2f} ms", (s["median_us"] / 1000, j + 1),
                            xytext=(0, 9), textcoords="offset points", ha="center", fontsize=7)
            ax.grid(True, axis="x", which="both", alpha=0.3)
        for i in range(n_top, cols):
            axes[r][i].axis("off")
        r += 1
    if n_bottom:
        # (a) heap
        ax = axes[r][0]
        lv = scal["heap"]["levels"]
        xs = [x["heap_bytes"] / (1 << 30) for x in lv]
        for key, label, col in (("lifecycle", "pycontainer lifecycle", "tab:red"),
                                ("subprocess", "subprocess.run(/bin/true)", "tab:gray"),
                                ("fork", "os.fork+exit+wait (reference)", "tab:blue")):
            med = [x[key]["summary"]["median_us"] / 1000 for x in lv]
            p90 = [x[key]["summary"]["p90_us"] / 1000 for x in lv]
            ax.plot(xs, med, "o-", color=col, label=f"{label} median")
            ax.plot(xs, p90, "x--", color=col, alpha=0.6, label=f"{label} p90")
        ax.set_xlabel("live heap of the calling process, GiB")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_title("(a) start latency vs caller heap", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        # (b) containers
        ax = axes[r][1]
        levels = scal["containers"]["levels"]
        main = [x for x in levels if x["label"] != "0 (after)"]
        after = [x for x in levels if x["label"] == "0 (after)"]
        for key, col in (("join", "tab:red"), ("processes()", "tab:purple"), ("stats()", "tab:orange")):
            xs = [x["others"] for x in main]
            ax.plot(xs, [x[key]["summary"]["median_us"] for x in main], "o-", color=col,
                    label=f"{key} median")
            ax.plot(xs, [x[key]["summary"]["p90_us"] for x in main], "x--", color=col, alpha=0.6)
            if after:
                ax.plot([0], [after[0][key]["summary"]["median_us"]], "s", color=col, mfc="none",
                        label=f"{key} at 0 again (drift check)")
        mem = scal["containers"].get("memory", {})
        ax.set_xlabel("other containers running")
        ax.set_ylabel("us (log)   dashed: p90")
        ax.set_yscale("log")
        ax.set_title("(b) cost with other containers running\n(d) per idle container: RSS "
                     f"{mem.get('rss_per_container_bytes', 0) / 1024:.1f} KiB, tracemalloc "
                     f"{mem.get('tracemalloc_per_container_bytes', 0) / 1024:.1f} KiB, "
                     f"{mem.get('fds_per_container', 0):.1f} fds", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        # (c) exits
        ax = axes[r][2]
        for i, rep in enumerate(scal["exits"]["reps"]):
            t, cum = [], 0
            for tt, cnt in zip(rep["exit_times_ms"], rep["exit_counts"]):
                cum += cnt
                t.append((tt, cum))
            ax.step([a for a, _ in t], [b for _, b in t], where="post", color="tab:blue",
                    alpha=0.8, label="exited (kernel, pidfd)" if i == 0 else None)
            ax.plot(rep["arrival_ms"], range(1, len(rep["arrival_ms"]) + 1), color="tab:red",
                    alpha=0.8, label="status in its queue" if i == 0 else None)
        rep0 = scal["exits"]["reps"][0]
        ax.set_xlabel("ms since the pipe's write end was closed")
        ax.set_ylabel("processes")
        ax.set_title(f"(c) {rep0['n']} simultaneous exits: worst last-exit -> all delivered "
                     f"{scal['exits']['worst_delivery_ms']:.1f} ms", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        for i in range(3, cols):
            axes[r][i].axis("off")
    ctx = data.get("context_before", {})
    where = (data.get("state_roots") or {}).get("kind", "?")
    fig.suptitle(f"pycontainer benchmarks ({'quick' if data.get('options', {}).get('quick') else 'full'} run; "
                 f"state roots on {where}; "
                 f"{ctx.get('cpus')} CPUs, Linux {ctx.get('kernel')}, load avg before "
                 f"{', '.join(f'{x:.2f}' for x in ctx.get('loadavg', []))})  red: pycontainer, "
                 f"green: kernel-work limit (light: c_limit bare, no security work)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"plot: {path}"
