/*
 * c_limit.c - the physical limit of a container start: only the kernel work
 * a container runtime cannot avoid, done in a tight C loop.
 *
 *   gcc -O2 -o c_limit benchmarks/c_limit.c            (add -DSTEP_TIMES for a per-step split)
 *   ./c_limit full ROOTFS N [SECURITY_FILE]
 *                              N full lifecycles: cgroups, clone3 into new namespaces,
 *                              rootfs + /proc /sys /dev setup, exec /bin/true, reap, rmdir
 *   ./c_limit join ROOTFS N [SECURITY_FILE]
 *                              one long-lived container (/bin/sleep 1000), then N joins:
 *                              setns(init pidfd) helper + CLONE_PARENT clone3, exec /bin/true
 *
 * Without SECURITY_FILE ("bare") no security work is done. With it, c_limit also does the
 * kernel work of a runtime's default security settings, as the file lists them. The file
 * is read once at startup; one directive a line, blank lines and lines starting with '#'
 * ignored, the argument is the rest of the line after one space:
 *
 *   ro PATH          read-only path: mount(PATH, PATH, MS_BIND|MS_REC), then
 *                    mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY); absent (ENOENT) = skipped
 *   mask PATH        masked path: a directory gets an empty read-only tmpfs (size=0),
 *                    anything else /dev/null bound over it; absent (ENOENT) = skipped
 *   devdeny RULE     written to devices.deny of the container's v1 devices cgroup
 *   devallow RULE    written to devices.allow, e.g. "devallow c 1:3 rwm"
 *                    (device rules: in file order, each in a write(2) of its own, one
 *                    descriptor per file, right after the devices cgroup's mkdir)
 *   caps HEXMASK     capabilities kept: PR_CAPBSET_DROP of every other cap up to
 *                    /proc/sys/kernel/cap_last_cap, capset(v3) effective = permitted = mask,
 *                    inheritable = 0, then PR_CAP_AMBIENT_CLEAR_ALL
 *   nnp              prctl(PR_SET_NO_NEW_PRIVS, 1)
 *   seccomp FILE     FILE holds a raw struct sock_filter array (8 bytes an instruction),
 *                    loaded with seccomp(SECCOMP_SET_MODE_FILTER, 0) after nnp, just before
 *                    execve (so seccomp needs nnp: without it the load needs CAP_SYS_ADMIN)
 *
 * In the container child, after the mounts, hostname and lo: read-only paths, masked paths
 * (both inside the container, after pivot_root), capability drop + capset, nnp, seccomp,
 * execve - the order of pycontainer's C core. In `join` mode the init gets all of it and
 * every joined process caps, nnp and seccomp before its execve.
 *
 * Prints one JSON line with the median/p90/p99 latency in microseconds.
 * Needs root. All cgroups go below <own cgroup>/pycontainer/climit-<pid> in every
 * hierarchy used; every cgroup, process and mount it makes is gone when it exits,
 * also on failure (single cleanup path: die()/cleanup()). A `pycontainer` dir it had
 * to create is removed at the end too, unless someone else's cgroups are below it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#define CL_INTO_CGROUP 0x200000000ULL
#ifndef MNT_DETACH
#define MNT_DETACH 2
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#endif
#ifndef PR_CAP_AMBIENT_CLEAR_ALL
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef BPF_MAXINSNS
#define BPF_MAXINSNS 4096
#endif

struct cl_mount_attr {          /* struct mount_attr (linux/mount.h), MOUNT_ATTR_SIZE_VER0 */
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

struct cl_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
	uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET)
#define MAXH 16         /* v1 hierarchies */
#define MAXDIRS 64      /* cgroup directories alive at once */

/* ------------------------------------------------------------------ state */

struct hier {
	char ctrl[64];          /* "memory", "cpu", "cpu,cpuacct" ... */
	char own[PATH_MAX];     /* this process's cgroup in that hierarchy */
	char base[PATH_MAX];    /* own/pycontainer/climit-<pid> */
	int cpuset;
};

static struct hier g_v1[MAXH];
static int g_nv1;
static struct hier g_uni;                  /* the cgroup2 (unified) hierarchy */
static char g_cpus[256], g_mems[256];      /* cpuset values copied into new cpuset cgroups */

/* Directories we created, in creation order; an entry is pushed before mkdir
 * and popped after rmdir, so cleanup (ENOENT tolerated) never misses one. */
static char g_dirs[MAXDIRS][PATH_MAX];
static char g_shared[MAXDIRS];      /* a `pycontainer` dir we created: removed only if empty */
static volatile sig_atomic_t g_ndirs;

/* pidfds of live children; cleanup SIGKILLs them, then reaps every child. */
#define MAXPIDFD 8
static volatile int g_pidfds[MAXPIDFD] = { -1, -1, -1, -1, -1, -1, -1, -1 };
static pid_t g_mainpid;
static int g_errpipe = -1;  /* in the join init child: setup errors go to the parent */
static const char *g_rootfs;

/* The security work of SECURITY_FILE (see the top); all zero/empty without it. */
#define MAXSEC 64
static struct {
	int on;                             /* a SECURITY_FILE was given */
	char *ro[MAXSEC]; int nro;          /* read-only paths */
	char *mask[MAXSEC]; int nmask;      /* masked paths */
	char *dev[MAXSEC]; int devallow[MAXSEC]; int ndev;   /* device rules, file order */
	int has_caps; uint64_t caps; int last_cap;
	int nnp;
	struct sock_filter *filter; unsigned short nfilter;
} g_sec;
static int g_devidx = -1;           /* index in g_v1 of the devices hierarchy */

/* A cgroup set: one dir per v1 hierarchy (cgroup.procs fds) + one cgroup2 dir fd. */
struct cg {
	int procs[MAXH];
	int ufd;
};

/* ------------------------------------------------------------------ helpers */

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long sys_clone3(struct cl_args *a) { return syscall(SYS_clone3, a, sizeof(*a)); }
static int sys_pidfd_send_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }
static int sys_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int sys_pivot_root(const char *n, const char *o) { return (int)syscall(SYS_pivot_root, n, o); }

static void putstr(int fd, const char *s) { ssize_t r = write(fd, s, strlen(s)); (void)r; }

static void track_pidfd(int fd)
{
	for (int i = 0; i < MAXPIDFD; i++)
		if (g_pidfds[i] < 0) { g_pidfds[i] = fd; return; }
}

static void untrack_pidfd(int fd)
{
	for (int i = 0; i < MAXPIDFD; i++)
		if (g_pidfds[i] == fd) g_pidfds[i] = -1;
}

/* Single cleanup path. Only async-signal-safe calls: it also runs from the
 * SIGINT/SIGTERM handler. */
static void cleanup(void)
{
	siginfo_t si;
	for (int i = 0; i < MAXPIDFD; i++)
		if (g_pidfds[i] >= 0) sys_pidfd_send_signal(g_pidfds[i], SIGKILL);
	/* Reap every child (including CLONE_PARENT grandchildren and exit_signal=0 ones). */
	for (;;) {
		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | __WALL) < 0) {
			if (errno == EINTR) continue;
			break;          /* ECHILD */
		}
	}
	for (int i = 0; i < MAXPIDFD; i++)
		if (g_pidfds[i] >= 0) { close(g_pidfds[i]); g_pidfds[i] = -1; }
	while (g_ndirs > 0) {
		const char *d = g_dirs[g_ndirs - 1];
		for (int tries = 0; tries < 2000; tries++) {      /* up to ~2 s for EBUSY */
			if (rmdir(d) == 0 || errno == ENOENT) break;
			if (g_shared[g_ndirs - 1]) break;          /* someone else's cgroups below it */
			if (errno != EBUSY && errno != EINTR) {
				putstr(2, "c_limit: cleanup: cannot rmdir ");
				putstr(2, d); putstr(2, ": "); putstr(2, strerror(errno)); putstr(2, "\n");
				break;
			}
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		g_ndirs--;
	}
}

static void die_msg(const char *step, const char *msg)
{
	fprintf(stderr, "c_limit: %s: %s\n", step, msg);
	fflush(stderr);
	cleanup();
	exit(1);
}

static void die(const char *step) { die_msg(step, strerror(errno)); }

static void on_signal(int sig)
{
	if (getpid() != g_mainpid) _exit(128 + sig);      /* a child before its exec */
	putstr(2, "c_limit: interrupted, cleaning up\n");
	cleanup();
	_exit(128 + sig);
}

/* In a child: report the failing step and exit; the parent sees a non-zero status. */
static void cfail(const char *step)
{
	char buf[256];
	int e = errno;
	snprintf(buf, sizeof buf, "c_limit: child: %s: %s\n", step, strerror(e));
	putstr(2, buf);
	if (g_errpipe >= 0) { ssize_t r = write(g_errpipe, &e, sizeof e); (void)r; }
	_exit(125);
}

/* cfail for a step about one path: "step path: strerror". */
static void cfailp(const char *step, const char *path)
{
	int e = errno;
	char buf[PATH_MAX + 64];
	snprintf(buf, sizeof buf, "%s %s", step, path);
	errno = e;
	cfail(buf);
}

static ssize_t read_file(const char *path, char *buf, size_t sz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, sz - 1 - n);
		if (r < 0) { if (errno == EINTR) continue; int e = errno; close(fd); errno = e; return -1; }
		if (r == 0 || (n += (size_t)r) >= sz - 1) break;
	}
	close(fd);
	buf[n] = 0;
	return (ssize_t)n;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t r = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	if (r != (ssize_t)strlen(s)) { errno = r < 0 ? e : EIO; return -1; }
	return 0;
}

static void path_join(char *out, const char *a, const char *b)
{
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", a, b) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		die("path");
	}
}

/* mkdir a cgroup we own, tracked for cleanup. shared: EEXIST is fine (then it
 * is not ours and never removed); if we create it, it is removed when empty. */
static int cg_mkdir2(const char *path, int shared)
{
	if (g_ndirs >= MAXDIRS) die_msg("mkdir", "too many cgroup directories");
	strcpy(g_dirs[g_ndirs], path);
	g_shared[g_ndirs] = (char)shared;
	g_ndirs++;
	if (mkdir(path, 0755) < 0) {
		int e = errno;
		g_ndirs--;              /* not ours: never rmdir it */
		if (shared && e == EEXIST) return 0;
		errno = e;
		fprintf(stderr, "c_limit: mkdir %s: %s\n", path, strerror(e));
		die("mkdir cgroup");
	}
	return 1;
}

static void cg_mkdir(const char *path) { cg_mkdir2(path, 0); }

/* rmdir the most recently created cgroup (must be `path`). */
static void cg_rmdir(const char *path)
{
	if (g_ndirs <= 0 || strcmp(g_dirs[g_ndirs - 1], path) != 0)
		die_msg("rmdir", "cgroup stack out of order");
	for (int tries = 0;; tries++) {
		if (rmdir(path) == 0) break;
		if (errno == EBUSY && tries < 2000) { sched_yield(); if (tries > 50) usleep(100); continue; }
		fprintf(stderr, "c_limit: rmdir %s: %s\n", path, strerror(errno));
		die("rmdir cgroup");
	}
	g_ndirs--;
}

/* "\040" etc. in mountinfo */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; ) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] && r[3]) {
			*w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
			r += 4;
		} else *w++ = *r++;
	}
	*w = 0;
}

static int has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p && *p; ) {
		const char *c = strchr(p, ',');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		if (len == n && strncmp(p, word, n) == 0) return 1;
		p = c ? c + 1 : NULL;
	}
	return 0;
}

/* Find the mount of a hierarchy: fstype "cgroup" with `ctrl` in its super
 * options, or fstype "cgroup2" when ctrl is NULL. Sets mountpoint and root. */
static int find_mount(const char *mi, const char *ctrl, char *mnt, char *root)
{
	const char *line = mi;
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char buf[4096];
		if (len < sizeof buf) {
			memcpy(buf, line, len);
			buf[len] = 0;
			char *f[40] = { 0 };
			int nf = 0;
			char *save = NULL;
			for (char *t = strtok_r(buf, " ", &save); t && nf < 40; t = strtok_r(NULL, " ", &save))
				f[nf++] = t;
			/* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
			int dash = -1;
			for (int i = 6; i < nf; i++) if (strcmp(f[i], "-") == 0) { dash = i; break; }
			if (dash > 0 && dash + 3 < nf) {
				const char *fstype = f[dash + 1], *sopts = f[dash + 3];
				int ok = ctrl ? (strcmp(fstype, "cgroup") == 0 && has_word(sopts, ctrl))
				              : strcmp(fstype, "cgroup2") == 0;
				if (ok) {
					strcpy(root, f[3]); unescape(root);
					strcpy(mnt, f[4]); unescape(mnt);
					return 0;
				}
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	return -1;
}

static void make_own_path(struct hier *h, const char *mnt, const char *root, const char *cgpath)
{
	size_t rl = strlen(root);
	const char *rel = cgpath;
	if (strcmp(root, "/") != 0) {
		if (strncmp(cgpath, root, rl) != 0 || (cgpath[rl] && cgpath[rl] != '/'))
			die_msg("cgroup path", "own cgroup is not below the hierarchy's mount root");
		rel = cgpath + rl;
	}
	if ((size_t)snprintf(h->own, PATH_MAX, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel) >= PATH_MAX)
		die_msg("cgroup path", "too long");
}

static void discover(void)
{
	static char cgf[16384], mi[131072];
	static const char *wanted[] = { "memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "devices" };
	char mnt[PATH_MAX], root[PATH_MAX];
	int have_uni = 0;

	if (read_file("/proc/self/cgroup", cgf, sizeof cgf) < 0) die("read /proc/self/cgroup");
	if (read_file("/proc/self/mountinfo", mi, sizeof mi) < 0) die("read /proc/self/mountinfo");

	for (char *save = NULL, *ln = strtok_r(cgf, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(ln, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2) continue;
		*c1 = 0; *c2 = 0;
		const char *ctrls = c1 + 1, *path = c2 + 1;
		if (strcmp(ln, "0") == 0 && *ctrls == 0) {
			if (find_mount(mi, NULL, mnt, root) < 0) continue;   /* hybrid without unified mount */
			make_own_path(&g_uni, mnt, root, path);
			have_uni = 1;
			continue;
		}
		int use = 0;
		for (size_t i = 0; i < sizeof wanted / sizeof *wanted; i++)
			if (has_word(ctrls, wanted[i])) use = 1;
		if (!use) continue;
		if (g_nv1 >= MAXH) die_msg("discover", "too many hierarchies");
		struct hier *h = &g_v1[g_nv1];
		snprintf(h->ctrl, sizeof h->ctrl, "%s", ctrls);
		char first[64];
		snprintf(first, sizeof first, "%s", ctrls);
		char *comma = strchr(first, ',');
		if (comma) *comma = 0;
		if (find_mount(mi, first, mnt, root) < 0) {
			fprintf(stderr, "c_limit: no mount for cgroup v1 hierarchy %s\n", ctrls);
			die_msg("discover", "cgroup v1 controller not mounted");
		}
		make_own_path(h, mnt, root, path);
		h->cpuset = has_word(ctrls, "cpuset");
		g_nv1++;
	}
	if (!have_uni) die_msg("discover", "no cgroup2 mount (CLONE_INTO_CGROUP needs one)");
}

/* <own>/pycontainer (created if missing, never removed: others may share it)
 * and <own>/pycontainer/climit-<pid> (ours). */
static void setup_base(struct hier *h)
{
	char pyc[PATH_MAX], tmp[PATH_MAX];
	path_join(pyc, h->own, "pycontainer");
	int created = cg_mkdir2(pyc, 1);
	if (h->cpuset) {
		char cpus[256], mems[256];
		if (created) {
			path_join(tmp, h->own, "cpuset.cpus");
			if (read_file(tmp, cpus, sizeof cpus) < 0) die("read cpuset.cpus");
			path_join(tmp, h->own, "cpuset.mems");
			if (read_file(tmp, mems, sizeof mems) < 0) die("read cpuset.mems");
			path_join(tmp, pyc, "cpuset.cpus");
			if (write_str(tmp, cpus) < 0) die("write pycontainer cpuset.cpus");
			path_join(tmp, pyc, "cpuset.mems");
			if (write_str(tmp, mems) < 0) die("write pycontainer cpuset.mems");
		}
		path_join(tmp, pyc, "cpuset.cpus");
		if (read_file(tmp, g_cpus, sizeof g_cpus) < 0) die("read pycontainer cpuset.cpus");
		path_join(tmp, pyc, "cpuset.mems");
		if (read_file(tmp, g_mems, sizeof g_mems) < 0) die("read pycontainer cpuset.mems");
		if (g_cpus[0] == '\n' || !g_cpus[0] || g_mems[0] == '\n' || !g_mems[0])
			die_msg("cpuset", "pycontainer cpuset has empty cpus/mems");
	}
	char name[64];
	snprintf(name, sizeof name, "climit-%d", (int)g_mainpid);
	path_join(h->base, pyc, name);
	cg_mkdir(h->base);
	if (h->cpuset) {
		path_join(tmp, h->base, "cpuset.cpus");
		if (write_str(tmp, g_cpus) < 0) die("write climit cpuset.cpus");
		path_join(tmp, h->base, "cpuset.mems");
		if (write_str(tmp, g_mems) < 0) die("write climit cpuset.mems");
	}
}

/* climit-<pid> dirs (must go) and the pycontainer dirs we created (only if empty). */
static void teardown_base(void)
{
	while (g_ndirs > 0) {
		const char *d = g_dirs[g_ndirs - 1];
		if (!g_shared[g_ndirs - 1]) { cg_rmdir(d); continue; }
		if (rmdir(d) < 0 && errno != EBUSY && errno != ENOTEMPTY && errno != ENOENT) die("rmdir pycontainer");
		g_ndirs--;
	}
}

/* ------------------------------------------------------------------ SECURITY_FILE */

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) die("strdup");
	return d;
}

static void sec_fail(const char *file, int lineno, const char *msg)
{
	char buf[PATH_MAX + 256];
	snprintf(buf, sizeof buf, "%s:%d: %s", file, lineno, msg);
	die_msg("security file", buf);
}

/* The raw struct sock_filter array of a `seccomp FILE` line. */
static void sec_read_filter(const char *file, int lineno, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) { fprintf(stderr, "c_limit: open %s: %s\n", path, strerror(errno)); sec_fail(file, lineno, "cannot open the seccomp filter"); }
	struct stat st;
	if (fstat(fd, &st) < 0) die("fstat seccomp filter");
	if (st.st_size <= 0 || st.st_size % (off_t)sizeof(struct sock_filter) ||
	    st.st_size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
		sec_fail(file, lineno, "seccomp filter: not a non-empty struct sock_filter array of at most BPF_MAXINSNS");
	size_t len = (size_t)st.st_size, n = 0;
	char *buf = malloc(len);
	if (!buf) die("malloc seccomp filter");
	while (n < len) {
		ssize_t r = read(fd, buf + n, len - n);
		if (r < 0) { if (errno == EINTR) continue; die("read seccomp filter"); }
		if (r == 0) sec_fail(file, lineno, "seccomp filter: short read");
		n += (size_t)r;
	}
	close(fd);
	g_sec.filter = (struct sock_filter *)(void *)buf;
	g_sec.nfilter = (unsigned short)(len / sizeof(struct sock_filter));
}

static void parse_security(const char *file)
{
	static char text[65536];
	if (read_file(file, text, sizeof text) < 0) die("read security file");
	if (strlen(text) >= sizeof text - 1) die_msg("security file", "larger than 64 KiB");
	g_sec.on = 1;
	int lineno = 0;
	for (char *line = text, *next; line && *line; line = next) {
		lineno++;
		next = strchr(line, '\n');
		if (next) *next++ = 0;
		size_t len = strlen(line);
		while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
		if (!len || line[0] == '#') continue;
		char *arg = strchr(line, ' ');
		if (arg) *arg++ = 0;
		const char *kw = line;
		if (!strcmp(kw, "nnp")) {
			if (arg) sec_fail(file, lineno, "nnp takes no argument");
			g_sec.nnp = 1;
			continue;
		}
		if (!arg || !*arg) sec_fail(file, lineno, "missing argument");
		if (!strcmp(kw, "ro") || !strcmp(kw, "mask")) {
			int ro = kw[0] == 'r';
			if (arg[0] != '/') sec_fail(file, lineno, "path must be absolute");
			if ((ro ? g_sec.nro : g_sec.nmask) >= MAXSEC) sec_fail(file, lineno, "too many paths");
			if (ro) g_sec.ro[g_sec.nro++] = xstrdup(arg);
			else g_sec.mask[g_sec.nmask++] = xstrdup(arg);
		} else if (!strcmp(kw, "devdeny") || !strcmp(kw, "devallow")) {
			if (g_sec.ndev >= MAXSEC) sec_fail(file, lineno, "too many device rules");
			g_sec.devallow[g_sec.ndev] = kw[3] == 'a';
			g_sec.dev[g_sec.ndev++] = xstrdup(arg);
		} else if (!strcmp(kw, "caps")) {
			char *end;
			errno = 0;
			unsigned long long m = strtoull(arg, &end, 16);
			if (errno || *end) sec_fail(file, lineno, "caps: not a hex mask");
			g_sec.has_caps = 1;
			g_sec.caps = (uint64_t)m;
		} else if (!strcmp(kw, "seccomp")) {
			if (g_sec.filter) sec_fail(file, lineno, "more than one seccomp filter");
			sec_read_filter(file, lineno, arg);
		} else {
			sec_fail(file, lineno, "unknown directive (ro mask devdeny devallow caps nnp seccomp)");
		}
	}
	if (g_sec.filter && !g_sec.nnp)
		die_msg("security file", "seccomp without nnp: c_limit loads the filter after no_new_privs");
	if (g_sec.has_caps) {
		char buf[32];
		if (read_file("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) < 0) die("read /proc/sys/kernel/cap_last_cap");
		char *end;
		long last = strtol(buf, &end, 10);
		if (end == buf || last < 0) die_msg("read /proc/sys/kernel/cap_last_cap", "not a number");
		g_sec.last_cap = last > 63 ? 63 : (int)last;
	}
}

/* Per container, after the mkdir of its v1 devices cgroup `dir`: the device rules. */
static void dev_rules(const char *dir)
{
	char f[PATH_MAX];
	int fds[2] = { -1, -1 };        /* devices.deny, devices.allow */
	for (int i = 0; i < g_sec.ndev; i++) {
		int a = g_sec.devallow[i];
		const char *name = a ? "devices.allow" : "devices.deny";
		path_join(f, dir, name);
		if (fds[a] < 0 && (fds[a] = open(f, O_WRONLY | O_CLOEXEC)) < 0) {
			fprintf(stderr, "c_limit: open %s: %s\n", f, strerror(errno));
			die("device rules");
		}
		size_t len = strlen(g_sec.dev[i]);
		ssize_t r = write(fds[a], g_sec.dev[i], len);
		if (r != (ssize_t)len) {
			int e = r < 0 ? errno : EIO;
			fprintf(stderr, "c_limit: write '%s' to %s: %s\n", g_sec.dev[i], f, strerror(e));
			for (int j = 0; j < 2; j++) if (fds[j] >= 0) close(fds[j]);
			errno = e;
			die("device rules");
		}
	}
	for (int j = 0; j < 2; j++)
		if (fds[j] >= 0 && close(fds[j]) < 0) die("close device rules file");
}

/* Per container: mkdir in every hierarchy, cpuset values, device rules, open cgroup.procs. */
static void cg_create(struct cg *cg, const char *name)
{
	char p[PATH_MAX], f[PATH_MAX];
	for (int i = 0; i < g_nv1; i++) {
		path_join(p, g_v1[i].base, name);
		cg_mkdir(p);
		if (i == g_devidx && g_sec.ndev) dev_rules(p);
		if (g_v1[i].cpuset) {
			path_join(f, p, "cpuset.cpus");
			if (write_str(f, g_cpus) < 0) die("write cpuset.cpus");
			path_join(f, p, "cpuset.mems");
			if (write_str(f, g_mems) < 0) die("write cpuset.mems");
		}
		path_join(f, p, "cgroup.procs");
		if ((cg->procs[i] = open(f, O_WRONLY | O_CLOEXEC)) < 0) die("open cgroup.procs");
	}
	path_join(p, g_uni.base, name);
	cg_mkdir(p);
	if ((cg->ufd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) die("open cgroup2 dir");
}

static void cg_destroy(struct cg *cg, const char *name)
{
	char p[PATH_MAX];
	close(cg->ufd);
	for (int i = 0; i < g_nv1; i++) close(cg->procs[i]);
	path_join(p, g_uni.base, name);
	cg_rmdir(p);
	for (int i = g_nv1 - 1; i >= 0; i--) {
		path_join(p, g_v1[i].base, name);
		cg_rmdir(p);
	}
}

/* ------------------------------------------------------------------ per-step timing */

#ifdef STEP_TIMES
enum { T_P0, T_P1, T_C0, T_C1, T_C2, T_C3, T_C4, T_C5, T_C6, T_C7, T_C8, T_C9, T_C10, T_C11, T_C12,
       T_P3, T_P4, T_MAX };
static volatile uint64_t *g_ts;     /* MAP_SHARED: the child writes, the parent reads */
#define TS(i) (g_ts[(i)] = now_ns())
#else
#define TS(i) do { } while (0)
#endif

/* ------------------------------------------------------------------ the container child */

static void child_procs(const struct cg *cg)
{
	for (int i = 0; i < g_nv1; i++)
		if (write(cg->procs[i], "0", 1) != 1) cfail("write cgroup.procs");
}

/* SECURITY_FILE, in the container (after pivot_root): read-only paths, then masked ones. */
static void child_paths(void)
{
	static const struct cl_mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY };
	for (int i = 0; i < g_sec.nro; i++) {
		const char *p = g_sec.ro[i];
		if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT) continue;          /* not in this image: nothing to protect */
			cfailp("readonly path: bind", p);
		}
		if (syscall(SYS_mount_setattr, AT_FDCWD, p, AT_RECURSIVE, &ro, sizeof ro) < 0)
			cfailp("readonly path: mount_setattr", p);
	}
	for (int i = 0; i < g_sec.nmask; i++) {
		const char *p = g_sec.mask[i];
		struct stat st;
		if (stat(p, &st) < 0) {
			if (errno == ENOENT) continue;
			cfailp("masked path: stat", p);
		}
		if (S_ISDIR(st.st_mode)) {
			if (mount("tmpfs", p, "tmpfs", MS_RDONLY, "size=0") < 0) cfailp("masked path: tmpfs", p);
		} else if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0) {
			cfailp("masked path: bind /dev/null", p);
		}
	}
}

/* SECURITY_FILE, last before execve: capabilities, no_new_privs, seccomp. */
static void child_hardening(void)
{
	if (g_sec.has_caps) {
		/* Dropping from the bounding set needs CAP_SETPCAP: before capset. */
		for (int cap = 0; cap <= g_sec.last_cap; cap++)
			if (!(g_sec.caps & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
				cfail("PR_CAPBSET_DROP");
		struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct data[2];
		memset(data, 0, sizeof data);
		for (int i = 0; i < 2; i++)
			data[i].effective = data[i].permitted = (uint32_t)(g_sec.caps >> (32 * i));
		if (syscall(SYS_capset, &hdr, data) < 0) cfail("capset");
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) cfail("PR_CAP_AMBIENT_CLEAR_ALL");
	}
	if (g_sec.nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) cfail("PR_SET_NO_NEW_PRIVS");
	if (g_sec.filter) {
		struct sock_fprog prog = { .len = g_sec.nfilter, .filter = g_sec.filter };
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) cfail("seccomp");
	}
}

static void child_setup(const struct cg *cg)
{
	static const struct { const char *name; unsigned maj, min; } nodes[] = {
		{ "/dev/null", 1, 3 }, { "/dev/zero", 1, 5 }, { "/dev/full", 1, 7 },
		{ "/dev/random", 1, 8 }, { "/dev/urandom", 1, 9 }, { "/dev/tty", 5, 0 },
	};
	TS(T_C0);
	child_procs(cg);
	TS(T_C1);
	umask(0);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) cfail("make / rprivate");
	TS(T_C2);
	if (mount(g_rootfs, g_rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) cfail("bind rootfs");
	TS(T_C3);
	if (chdir(g_rootfs) < 0) cfail("chdir rootfs");
	if (sys_pivot_root(".", ".") < 0) cfail("pivot_root");
	if (umount2(".", MNT_DETACH) < 0) cfail("umount old root");
	if (chdir("/") < 0) cfail("chdir /");
	TS(T_C4);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) cfail("mount /proc");
	TS(T_C5);
	if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) cfail("mount /sys");
	TS(T_C6);
	if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0) cfail("mount /dev");
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
		if (mknod(nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) < 0) cfail("mknod");
	TS(T_C7);
	if (mkdir("/dev/pts", 0755) < 0) cfail("mkdir /dev/pts");
	if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0) cfail("mount /dev/pts");
	if (mkdir("/dev/shm", 01777) < 0) cfail("mkdir /dev/shm");
	if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") < 0) cfail("mount /dev/shm");
	if (mkdir("/dev/mqueue", 0755) < 0) cfail("mkdir /dev/mqueue");
	if (mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) cfail("mount /dev/mqueue");
	TS(T_C8);
	if (sethostname("climit", 6) < 0) cfail("sethostname");
	TS(T_C9);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) cfail("socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) cfail("SIOCGIFFLAGS lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) cfail("SIOCSIFFLAGS lo");
	close(s);
	TS(T_C10);
	child_paths();
	TS(T_C11);
	child_hardening();
	TS(T_C12);
}

/* clone3 a new container into cg; returns its pidfd (tracked). */
static int spawn_container(const struct cg *cg, char *const argv[], int errpipe_w)
{
	int pidfd = -1;
	struct cl_args a;
	memset(&a, 0, sizeof a);
	a.flags = CLONE_PIDFD | NS_FLAGS | CL_INTO_CGROUP;
	a.pidfd = (uint64_t)(uintptr_t)&pidfd;
	a.exit_signal = 0;
	a.cgroup = (uint64_t)cg->ufd;
	long pid = sys_clone3(&a);
	if (pid < 0) die("clone3 container");
	if (pid == 0) {
		static char *const envp[] = { "PATH=/bin:/sbin:/usr/bin:/usr/sbin", NULL };
		if (errpipe_w >= 0) {
			/* the long-lived init: die with us, report setup errors through the pipe */
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) cfail("PR_SET_PDEATHSIG");
			g_errpipe = errpipe_w;
		}
		child_setup(cg);
		execve(argv[0], argv, envp);
		cfail("execve");
	}
	track_pidfd(pidfd);
	return pidfd;
}

/* Wait for a child by pidfd; it must exit 0. */
static void reap(int pidfd, const char *what)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL) < 0) {
		if (errno != EINTR) die(what);
	}
	untrack_pidfd(pidfd);
	close(pidfd);
	if (si.si_code != CLD_EXITED || si.si_status != 0) {
		char msg[128];
		if (si.si_code == CLD_EXITED) snprintf(msg, sizeof msg, "exited with status %d", si.si_status);
		else snprintf(msg, sizeof msg, "killed by signal %d", si.si_status);
		die_msg(what, msg);
	}
}

/* ------------------------------------------------------------------ stats */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, int n, double p)
{
	int idx = (int)(p * n + 0.999999) - 1;      /* nearest rank */
	if (idx < 0) idx = 0;
	if (idx >= n) idx = n - 1;
	return (double)sorted[idx] / 1000.0;
}

static void print_stats(const char *mode, uint64_t *lat, int n, const char *extra)
{
	qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
	uint64_t sum = 0;
	for (int i = 0; i < n; i++) sum += lat[i];
	printf("{\"tool\":\"c_limit\",\"mode\":\"%s\",\"security\":%s,\"n\":%d,\"median_us\":%.1f,\"p90_us\":%.1f,"
	       "\"p99_us\":%.1f,\"min_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f%s}\n",
	       mode, g_sec.on ? "true" : "false", n, pct(lat, n, 0.5), pct(lat, n, 0.9), pct(lat, n, 0.99),
	       (double)lat[0] / 1000.0, (double)lat[n - 1] / 1000.0, (double)sum / n / 1000.0, extra);
	fflush(stdout);
}

#ifdef STEP_TIMES
/* steps[s][i]: duration of step s in iteration i; appends "steps_median_us" and "steps_p90_us" */
static void step_json(char *out, size_t sz, const char *const *names, uint64_t **steps, int nsteps, int n)
{
	size_t off = (size_t)snprintf(out, sz, ",\"steps_median_us\":{");
	for (int s = 0; s < nsteps && off < sz; s++) {
		qsort(steps[s], (size_t)n, sizeof(uint64_t), cmp_u64);
		off += (size_t)snprintf(out + off, sz - off, "%s\"%s\":%.1f", s ? "," : "", names[s], pct(steps[s], n, 0.5));
	}
	if (off < sz) off += (size_t)snprintf(out + off, sz - off, "},\"steps_p90_us\":{");
	for (int s = 0; s < nsteps && off < sz; s++)
		off += (size_t)snprintf(out + off, sz - off, "%s\"%s\":%.1f", s ? "," : "", names[s], pct(steps[s], n, 0.9));
	if (off < sz) snprintf(out + off, sz - off, "}");
}
static uint64_t dt(int a, int b) { return g_ts[b] > g_ts[a] ? g_ts[b] - g_ts[a] : 0; }
#endif

/* ------------------------------------------------------------------ modes */

static void run_full(int n, uint64_t *lat)
{
	static char *const argv[] = { "/bin/true", NULL };
	char extra[4096] = "";
#ifdef STEP_TIMES
	static const char *const names[] = { "cgroup_mkdir", "clone3", "cgroup_procs_v1", "rprivate", "bind_rootfs",
		"pivot_root", "mount_proc", "mount_sys", "dev_tmpfs_mknod", "pts_shm_mqueue", "hostname", "lo_up",
		"ro_mask_paths", "caps_nnp_seccomp", "exec_exit_reap", "cgroup_rmdir" };
	enum { NS = sizeof names / sizeof *names };
	uint64_t *steps[NS];
	for (int s = 0; s < NS; s++) if (!(steps[s] = calloc((size_t)n, sizeof(uint64_t)))) die("calloc");
#endif
	for (int i = 0; i < n; i++) {
		struct cg cg;
		uint64_t t0 = now_ns();
		TS(T_P0);
		cg_create(&cg, "run");
		TS(T_P1);
		int pidfd = spawn_container(&cg, argv, -1);
		reap(pidfd, "container (full)");
		TS(T_P3);
		cg_destroy(&cg, "run");
		TS(T_P4);
		lat[i] = now_ns() - t0;
#ifdef STEP_TIMES
		static const int seq[][2] = { { T_P0, T_P1 }, { T_P1, T_C0 }, { T_C0, T_C1 }, { T_C1, T_C2 }, { T_C2, T_C3 },
			{ T_C3, T_C4 }, { T_C4, T_C5 }, { T_C5, T_C6 }, { T_C6, T_C7 }, { T_C7, T_C8 }, { T_C8, T_C9 },
			{ T_C9, T_C10 }, { T_C10, T_C11 }, { T_C11, T_C12 }, { T_C12, T_P3 }, { T_P3, T_P4 } };
		for (int s = 0; s < NS; s++) steps[s][i] = dt(seq[s][0], seq[s][1]);
#endif
	}
#ifdef STEP_TIMES
	step_json(extra, sizeof extra, names, steps, NS, n);
#endif
	print_stats("full", lat, n, extra);
}

static void run_join(int n, uint64_t *lat)
{
	static char *const sleep_argv[] = { "/bin/sleep", "1000", NULL };
	static char *const true_argv[] = { "/bin/true", NULL };
	static char *const envp[] = { "PATH=/bin:/sbin:/usr/bin:/usr/sbin", NULL };
	char extra[4096] = "";
	struct cg icg;
	int ep[2], pp[2];

	cg_create(&icg, "init");
	if (pipe2(ep, O_CLOEXEC) < 0) die("pipe2");
	int initfd = spawn_container(&icg, sleep_argv, ep[1]);
	close(ep[1]);
	int err = 0;
	ssize_t r;
	while ((r = read(ep[0], &err, sizeof err)) < 0 && errno == EINTR) { }
	close(ep[0]);
	if (r < 0) die("read init error pipe");
	if (r > 0) { errno = err; die("container init setup (see the child's message above)"); }
	/* EOF: exec happened, or the child died in setup; make sure it is alive. */
	{
		siginfo_t si;
		memset(&si, 0, sizeof si);
		if (waitid((idtype_t)P_PIDFD, (id_t)initfd, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0) die("waitid init");
		if (si.si_pid != 0) die_msg("container init", "exited during setup");
	}

	if (pipe2(pp, O_CLOEXEC) < 0) die("pipe2");
#ifdef STEP_TIMES
	/* P0 start, C0 helper runs, C1 after setns, C2 helper's clone3 returned, C3 grandchild runs,
	 * C4 after its cgroup.procs writes, C5 before execve, P3 helper reaped, P4 grandchild reaped */
	static const char *const names[] = { "clone3_helper", "setns", "clone3_parent", "cgroup_procs_v1",
		"caps_nnp_seccomp", "exec_exit_reap", "helper_exit_reap" };
	enum { NS = sizeof names / sizeof *names };
	uint64_t *steps[NS];
	for (int s = 0; s < NS; s++) if (!(steps[s] = calloc((size_t)n, sizeof(uint64_t)))) die("calloc");
#endif
	for (int i = 0; i < n; i++) {
		int hfd = -1;
		struct cl_args a;
		uint64_t t0 = now_ns();
		TS(T_P0);
		memset(&a, 0, sizeof a);
		a.flags = CLONE_PIDFD;
		a.pidfd = (uint64_t)(uintptr_t)&hfd;
		a.exit_signal = 0;
		long hp = sys_clone3(&a);
		if (hp < 0) die("clone3 helper");
		if (hp == 0) {
			TS(T_C0);
			if (setns(initfd, NS_FLAGS) < 0) cfail("setns(init pidfd)");
			TS(T_C1);
			int gfd = -1;
			struct cl_args b;
			memset(&b, 0, sizeof b);
			b.flags = CLONE_PARENT | CLONE_PIDFD | CL_INTO_CGROUP;
			b.pidfd = (uint64_t)(uintptr_t)&gfd;
			b.exit_signal = 0;
			b.cgroup = (uint64_t)icg.ufd;
			long gp = sys_clone3(&b);
			if (gp < 0) cfail("clone3 CLONE_PARENT");
			if (gp == 0) {
				TS(T_C3);
				child_procs(&icg);
				TS(T_C4);
				child_hardening();      /* pycontainer hardens joined processes too */
				TS(T_C5);
				execve(true_argv[0], true_argv, envp);
				cfail("execve /bin/true");
			}
			TS(T_C2);
			pid_t p = (pid_t)gp;
			if (write(pp[1], &p, sizeof p) != sizeof p) cfail("write pid pipe");
			_exit(0);
		}
		track_pidfd(hfd);
		reap(hfd, "join helper");
		TS(T_P3);
		pid_t gpid;
		while ((r = read(pp[0], &gpid, sizeof gpid)) < 0 && errno == EINTR) { }
		if (r != sizeof gpid) die_msg("read pid pipe", r < 0 ? strerror(errno) : "short read");
		/* gpid is our unreaped child (exit_signal 0): no pid-reuse race */
		int gfd = sys_pidfd_open(gpid);
		if (gfd < 0) die("pidfd_open joined process");
		track_pidfd(gfd);
		reap(gfd, "joined process");
		TS(T_P4);
		lat[i] = now_ns() - t0;
#ifdef STEP_TIMES
		steps[0][i] = dt(T_P0, T_C0);
		steps[1][i] = dt(T_C0, T_C1);
		steps[2][i] = dt(T_C1, T_C3);
		steps[3][i] = dt(T_C3, T_C4);
		steps[4][i] = dt(T_C4, T_C5);
		steps[5][i] = dt(T_C5, T_P4);
		steps[6][i] = dt(T_C2, T_P3);
#endif
	}
	close(pp[0]);
	close(pp[1]);

	if (sys_pidfd_send_signal(initfd, SIGKILL) < 0) die("pidfd_send_signal init");
	{
		siginfo_t si;
		memset(&si, 0, sizeof si);
		while (waitid((idtype_t)P_PIDFD, (id_t)initfd, &si, WEXITED | __WALL) < 0)
			if (errno != EINTR) die("waitid init");
		untrack_pidfd(initfd);
		close(initfd);
		if (si.si_code != CLD_KILLED || si.si_status != SIGKILL) die_msg("container init", "did not die by SIGKILL");
	}
	cg_destroy(&icg, "init");
#ifdef STEP_TIMES
	step_json(extra, sizeof extra, names, steps, NS, n);
#endif
	print_stats("join", lat, n, extra);
}

int main(int argc, char **argv)
{
	if ((argc != 4 && argc != 5) || (strcmp(argv[1], "full") && strcmp(argv[1], "join"))) {
		fprintf(stderr, "usage: %s full|join ROOTFS N [SECURITY_FILE]\n", argv[0]);
		return 2;
	}
	char *end;
	long n = strtol(argv[3], &end, 10);
	if (*end || n < 1 || n > 10000000) { fprintf(stderr, "c_limit: bad N: %s\n", argv[3]); return 2; }
	static char rootfs[PATH_MAX];
	if (!realpath(argv[2], rootfs)) { fprintf(stderr, "c_limit: rootfs %s: %s\n", argv[2], strerror(errno)); return 1; }
	g_rootfs = rootfs;
	g_mainpid = getpid();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigfillset(&sa.sa_mask);
	int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		if (sigaction(sigs[i], &sa, NULL) < 0) die("sigaction");

#ifdef STEP_TIMES
	g_ts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g_ts == MAP_FAILED) die("mmap");
#endif
	uint64_t *lat = calloc((size_t)n, sizeof *lat);
	if (!lat) die("calloc");

	if (argc == 5) parse_security(argv[4]);
	discover();
	for (int i = 0; i < g_nv1; i++)
		if (has_word(g_v1[i].ctrl, "devices")) g_devidx = i;
	if (g_sec.ndev && g_devidx < 0)
		die_msg("security file", "device rules, but no v1 devices hierarchy to write them to");
	for (int i = 0; i < g_nv1; i++) setup_base(&g_v1[i]);
	setup_base(&g_uni);

	if (strcmp(argv[1], "full") == 0) run_full((int)n, lat);
	else run_join((int)n, lat);

	teardown_base();
	cleanup();              /* nothing left by now; belt and braces */
	return 0;
}
