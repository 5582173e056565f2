/*
 * a3s-init: the static PID 1 of the A3S guest.
 *
 * It prepares a read-only sandbox, runs exactly one program (the agent) as
 * its child, reports how that program ended and powers the VM off. The
 * contract (config, kernel command line, channels, control lines, exit
 * statuses) is docs/guest-protocol.md; the config language is config.c.
 *
 * The work is in two parts, kept apart so that a later version can stop
 * between them (a set-up VM that waits for its job, e.g. to be snapshotted):
 *
 *   setup_machine()  what does not depend on the job: /dev /proc /sys, the
 *                    config, kernel modules, channels, the disk root, / made
 *                    read-only, tmpfs, loopback
 *   wait_for_job()   with job=1 (a3s.job=1): "a3s ready", then the job from
 *                    the host on the control channel, laid over the config.
 *                    This is the point where a VM is snapshotted: nothing of
 *                    the job, no share and no per-run state exists yet.
 *   run_job()        the machine's own identity (entropy, clock, hostname),
 *                    the shares, the agent (argv, env, cwd, user), its
 *                    supervision, its output, the report and the power-off
 *
 * Nothing waits for what cannot come: with built-in drivers init loads no
 * module and never sleeps before it starts the agent.
 *
 * PID 1 must never exit (the kernel panics), so every error path ends in
 * fatal(): print, report a distinct status, power off.
 *
 * Built static against musl: make -C guest
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "changes.h"
#include "channels.h"
#include "config.h"
#include "dm-verity.h"
#include "pump.h"

/* Exit statuses for failures of init itself (same meaning as in sh/docker). */
#define EXIT_SETUP 125    /* bad config, failed mount, module, chdir, setuid */
#define EXIT_NOEXEC 126   /* agent exists but cannot be executed */
#define EXIT_NOTFOUND 127 /* agent (or its ELF interpreter) not found */

#define SYSROOT "/sysroot"
#define KILL_WAIT_MS 2000  /* at most, for leftover processes to die */
#define CTL_DRAIN_MS 10000 /* at most, for the host to take the last lines */

/* Not in musl's headers (they come from linux/magic.h, linux/module.h and
 * linux/random.h). */
#define RAMFS_MAGIC 0x858458f6
#define TMPFS_MAGIC 0x01021994
#define MODULE_INIT_COMPRESSED_FILE 4
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)

static struct config cfg;      /* the effective config */
static struct cmdline cmdline; /* the kernel command line */
static int loaded_modules;     /* init loaded a module in this boot */
static int in_fd = -1, out_fd = -1, err_fd = -1; /* the agent's; -1 = console */
static int sig_fd = -1;        /* signalfd: SIGCHLD and the forwarded signals */
static pid_t agent_pid;
static int job_mode;           /* job=1: the job comes from the host (§8) */
static struct pump agent_out[2]; /* init carries the agent's stdout, stderr */
static int agent_ends[2];      /* the pipes' write ends, for the agent */

static void fatal(int status, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 2, 3)));

/* ---- the end of a boot ------------------------------------------------ */

/*
 * SIGKILL every process but init and reap them, so that nothing writes to
 * the shares after the sync that follows. The wait is bounded: a process
 * in uninterruptible sleep (e.g. on a share whose host side hangs) cannot
 * die until the kernel lets it. Returns 1 when none is left.
 */
static int kill_leftovers(void)
{
	long long end = now_us() + KILL_WAIT_MS * 1000LL;
	int st;

	if (kill(-1, SIGKILL) != 0)
		return 1; /* ESRCH: there are none */
	for (;;) {
		struct pollfd p = { sig_fd, POLLIN, 0 };
		struct signalfd_siginfo si;
		long long left;
		pid_t pid;

		while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
			dbg("reaped %d", (int)pid);
		if (pid < 0 && errno == ECHILD)
			return 1;
		left = (end - now_us()) / 1000;
		if (left <= 0 || sig_fd < 0) {
			say("processes still alive %d ms after SIGKILL; powering off anyway",
			    KILL_WAIT_MS);
			return 0;
		}
		/* Woken by SIGCHLD; other signals are no longer forwarded. */
		if (poll(&p, 1, (int)left) > 0 && read(sig_fd, &si, sizeof si) <= 0)
			say("signalfd: %s", strerror(errno));
	}
}

/*
 * reboot(2) only returns on failure; if power-off is refused we try a reset
 * (QEMU -no-reboot turns it into an exit) and finally sleep forever,
 * because returning from PID 1 would panic the kernel.
 */
static void __attribute__((noreturn)) power_off(void)
{
	char t[32];

	if (control_dropped())
		say("%u control lines were dropped (the host did not read them)",
		    control_dropped());
	dbg_flush();
	emit(ONCE, "poweroff %s", ms(t));
	control_drain(CTL_DRAIN_MS);
	sync();
	reboot(RB_POWER_OFF);
	say("power off failed: %s; trying reset", strerror(errno));
	reboot(RB_AUTOBOOT);
	say("reset failed: %s; halting", strerror(errno));
	for (;;)
		pause();
}

static void fatal(int status, const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dbg_flush();
	say("error: %s", msg);
	/* An early error (bad config, missing module) may come before the
	 * control channel was opened: try the configured or default device. */
	if (control_fd() < 0) {
		const char *path = cfg.str[K_CONTROL] ? cfg.str[K_CONTROL] :
				   "/dev/virtio-ports/a3s.control";
		const int flags = O_RDWR | O_NONBLOCK;
		int fd;

		open_channels(1, &path, &flags, &fd, 0);
		control_attach(fd);
	}
	emit(ONCE, "error %d %s", status, msg);
	if (agent_pid > 0)
		kill_leftovers();
	power_off();
}

void config_out_of_memory(void)
{
	fatal(EXIT_SETUP, "out of memory");
}

/* ---- setup: file systems, config, modules ---------------------------- */

/* Is path the root of a mount? (st_dev differs from its parent's) */
static int is_mountpoint(const char *path)
{
	struct stat a, b;
	char parent[256];

	snprintf(parent, sizeof parent, "%s/..", path);
	if (stat(path, &a) || stat(parent, &b))
		return 0;
	return a.st_dev != b.st_dev;
}

static void must_mount(const char *src, const char *dst, const char *type,
		       unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) != 0)
		fatal(EXIT_SETUP, "mount %s (%s) on %s: %s%s", src, type, dst,
		      strerror(errno), errno == ENOENT ?
		      " (the image must contain the mount point)" : "");
	dbg("mounted %s on %s", type, dst);
}

static void mount_pseudo(void)
{
	/* The kernel mounts devtmpfs itself only for a disk root and only with
	 * CONFIG_DEVTMPFS_MOUNT; skip whatever is already mounted. */
	if (!is_mountpoint("/dev"))
		must_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	if (!is_mountpoint("/proc"))
		must_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	if (!is_mountpoint("/sys"))
		must_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

/*
 * Give init a console on fds 0-2. Without a /dev/console node in the
 * initramfs the kernel starts init with no fds at all, so this runs after
 * devtmpfs is mounted; with nothing to open, output is silently lost.
 */
static void open_console(void)
{
	int fd;

	if (fcntl(2, F_GETFD) >= 0)
		return; /* the kernel already gave us /dev/console */
	fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		if (fd != i)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

/*
 * Turn off module autoloading: with an empty kernel.modprobe the kernel no
 * longer runs /sbin/modprobe (as root, from the image) whenever something
 * asks for a missing driver, e.g. mount -t virtiofs without the module.
 * The modules init was given are the only ones there will be. A kernel
 * without module support has no such file and nothing to turn off; it
 * answers finit_module with ENOSYS (a module kernel, with EBADF for fd -1),
 * which is asked first: a sysctl lookup is a kernel path run for nothing
 * there, about 1.4 ms under TCG.
 */
static void no_autoload(void)
{
	int fd;

	if (syscall(SYS_finit_module, -1, "", 0) != 0 && errno == ENOSYS)
		return;
	fd = open("/proc/sys/kernel/modprobe", O_WRONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		return;
	if (fd < 0 || write(fd, "\n", 1) != 1)
		say("cannot disable module autoloading: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void read_cmdline(void)
{
	int e = 0;
	char *buf = config_read_file("/proc/cmdline", 65536, &e), err[CONFIG_ERR_MAX];

	if (!buf)
		say("cannot read /proc/cmdline: %s (no overrides)", strerror(e));
	else if (config_parse_cmdline(buf, &cmdline, err))
		fatal(EXIT_SETUP, "%s", err);
}

static void load_config(void)
{
	char err[CONFIG_ERR_MAX];

	if (config_load(&cfg, &cmdline.overrides, err))
		fatal(EXIT_SETUP, "%s", err);
	debug = !strcmp(cfg.str[K_DEBUG], "1");
}

/*
 * Options for a module from the kernel command line (MODULE.PARAM=VALUE),
 * as modprobe would pass them: the kernel applies those only to built-in
 * code. '-' and '_' are the same in module names.
 */
static void module_params(const char *path, char *out, size_t outlen)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	char name[64];
	size_t n = 0, used = 0;

	for (; base[n] && base[n] != '.' && n < sizeof name - 1; n++)
		name[n] = base[n] == '-' ? '_' : base[n];
	name[n] = '\0';
	out[0] = '\0';
	for (size_t i = 0; i < cmdline.ntokens; i++) {
		const char *t = cmdline.tokens[i], *eq, *opt;
		size_t j;
		int w;

		for (j = 0; j < n && (t[j] == name[j] || (t[j] == '-' && name[j] == '_')); j++)
			;
		if (j != n || t[n] != '.' || !t[n + 1])
			continue;
		opt = t + n + 1;
		eq = strchr(opt, '=');
		/* values are re-quoted: the tokenizer removed the quotes */
		w = eq ? snprintf(out + used, outlen - used, "%s%.*s\"%s\"", used ? " " : "",
				  (int)(eq + 1 - opt), opt, eq + 1)
		       : snprintf(out + used, outlen - used, "%s%s", used ? " " : "", opt);
		if (w < 0 || (size_t)w >= outlen - used)
			fatal(EXIT_SETUP, "module %s: command line options too long", name);
		used += (size_t)w;
	}
}

/*
 * finit_module(2) returns once the module's init has run, including the
 * probing of the devices it drives (the kernel waits for asynchronous
 * probes too), so a device that is not there afterwards will not come.
 */
static void load_modules(const struct strvec *mods)
{
	for (size_t i = 0; i < mods->n; i++) {
		const char *path = mods->v[i], *ext = strrchr(path, '.');
		char params[1024];
		int flags = 0, fd, r;

		/* Uncompressed .ko is what the host should pack; compressed ones
		 * only load if the kernel has CONFIG_MODULE_DECOMPRESS. */
		if (ext && (!strcmp(ext, ".xz") || !strcmp(ext, ".zst") || !strcmp(ext, ".gz")))
			flags |= MODULE_INIT_COMPRESSED_FILE;
		module_params(path, params, sizeof params);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fatal(EXIT_SETUP, "module %s: %s", path, strerror(errno));
		r = (int)syscall(SYS_finit_module, fd, params, flags);
		if (r != 0 && errno != EEXIST) {
			int e = errno;
			fatal(EXIT_SETUP, "module %s: %s%s", path, strerror(e),
			      e == ENOENT ? " (unknown symbol: a dependency is missing or listed after it)" :
			      e == ENOEXEC ? " (not a module for this kernel)" :
			      (e == EOPNOTSUPP || e == EINVAL) && flags ?
			      " (this kernel cannot load compressed modules: decompress on the host)" : "");
		}
		close(fd);
		loaded_modules |= r == 0;
		dbg("loaded module %s %s%s", path, params, r ? "(already there)" : "");
	}
}

/* ---- setup: channels -------------------------------------------------- */

/*
 * The agent's stdio and the control channel (virtio-serial ports, else the
 * console). Looked at again after a switch to the disk root, whose config
 * may name other devices: a channel whose path is the same stays open (its
 * device node moved with /dev). That also keeps what the host has already
 * written to the control channel: the kernel drops a virtio-serial port's
 * unread input when it is closed, and a host may send the job as soon as
 * the root is mounted (§8).
 */
static void setup_channels(void)
{
	static char opened[4][256]; /* the path each fd was opened from */
	const char *paths[4] = { cfg.str[K_CONTROL], cfg.str[K_STDIN],
				 cfg.str[K_STDOUT], cfg.str[K_STDERR] };
	static const int flags[4] = { O_RDWR | O_NONBLOCK, O_RDONLY, O_WRONLY, O_WRONLY };
	int fds[4], *agent_fds[4] = { NULL, &in_fd, &out_fd, &err_fd };
	const char *todo[4];
	int todo_flags[4], todo_fds[4], todo_of[4], n = 0;

	for (int i = 0; i < 4; i++) {
		int fd = i ? *agent_fds[i] : control_fd();

		if (fd >= 0 && !strcmp(opened[i], paths[i])) {
			fds[i] = fd;
			continue;
		}
		/* A virtio-serial port takes one opener at a time: the old one
		 * is closed first. Queued control lines stay queued for the new
		 * channel. */
		if (i == 0)
			control_detach();
		else if (fd >= 0)
			close(fd);
		fds[i] = -1;
		todo[n] = paths[i];
		todo_flags[n] = flags[i];
		todo_of[n++] = i;
	}
	if (n)
		open_channels(n, todo, todo_flags, todo_fds, loaded_modules);
	for (int k = 0; k < n; k++) {
		int i = todo_of[k];

		fds[i] = todo_fds[k];
		snprintf(opened[i], sizeof opened[i], "%s", fds[i] >= 0 ? paths[i] : "");
		/* Only init (root) may write control lines: a non-root agent
		 * must not be able to forge its own exit report. */
		if (i == 0 && fds[0] >= 0 && fchmod(fds[0], 0600) != 0)
			say("chmod %s: %s", paths[0], strerror(errno));
	}
	control_attach(fds[0]);
	for (int i = 1; i < 4; i++)
		*agent_fds[i] = fds[i];
	if (in_fd < 0 && (in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		fatal(EXIT_SETUP, "open /dev/null: %s", strerror(errno));
	dbg("channels open (%d opened)", n);
}

/* ---- setup: the root ---------------------------------------------------- */

static int root_is_initramfs(void)
{
	struct statfs s;

	if (statfs("/", &s) != 0)
		fatal(EXIT_SETUP, "statfs /: %s", strerror(errno));
	return s.f_type == RAMFS_MAGIC || s.f_type == TMPFS_MAGIC;
}

/*
 * switch_root: mount the root device read-only on /sysroot, move /dev,
 * /proc and /sys into it, make it / and chroot. The initramfs stays in
 * memory underneath (its files are not deleted: it is small). The device
 * is not waited for: its driver probed it before init started or before
 * finit_module returned (see load_modules).
 */
static void switch_root(const char *dev, const char *type, const char *flags)
{
	static const char *const types[] = { "erofs", "squashfs", "ext4" };
	static const char *const moved[] = { "/dev", "/proc", "/sys" };
	char err[600] = "", dst[64];
	size_t n = 0;
	int ok = 0;

	if (mkdir(SYSROOT, 0755) != 0 && errno != EEXIST)
		fatal(EXIT_SETUP, "mkdir " SYSROOT ": %s", strerror(errno));
	if (access(dev, F_OK) != 0)
		fatal(EXIT_SETUP, "root device %s: %s (no such disk: is its driver "
		      "built in or among the modules?)", dev, strerror(errno));
	for (size_t i = 0; i < 3 && !ok; i++) {
		const char *t = type[0] ? type : types[i];
		ok = mount(dev, SYSROOT, t, MS_RDONLY, flags) == 0;
		if (!ok)
			n += (size_t)snprintf(err + n, n < sizeof err ? sizeof err - n : 0,
					      "%s%s: %s", n ? "; " : "", t, strerror(errno));
		if (type[0])
			break;
	}
	if (!ok)
		fatal(EXIT_SETUP, "mount root %s read-only: %s", dev, err);
	dbg("mounted root %s on " SYSROOT, dev);
	for (int i = 0; i < 3; i++) {
		snprintf(dst, sizeof dst, SYSROOT "%s", moved[i]);
		if (mount(moved[i], dst, NULL, MS_MOVE, NULL) != 0)
			fatal(EXIT_SETUP, "move %s to %s: %s", moved[i], dst, strerror(errno));
	}
	if (chdir(SYSROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 ||
	    chroot(".") != 0 || chdir("/") != 0)
		fatal(EXIT_SETUP, "switch root to %s: %s", dev, strerror(errno));
}

/*
 * The device to mount as the root: the disk itself, or with rootverity a
 * dm-verity device over it, so that every block the guest reads from the
 * root is checked against the root hash the host gave (dm-verity.c).
 */
static const char *verified_root(const char *dev, const char *rootverity)
{
	static char node[64];
	struct verity_root v;
	char err[CONFIG_ERR_MAX];
	const char *why;

	if (!rootverity[0])
		return dev;
	if ((why = config_parse_rootverity(rootverity, &v)))
		fatal(EXIT_SETUP, "%s", why); /* the parser checked it already */
	v.device = dev;
	if (dm_verity_open(&v, "a3s-root", node, sizeof node, err, sizeof err) != 0)
		fatal(EXIT_SETUP, "verified root on %s: %s", dev, err);
	dbg("root %s verified by dm-verity as %s (root hash %.16s...)", dev, node, v.root_hash);
	return node;
}

static void make_root_readonly(void)
{
	/* Remounting the superblock read-only works for the initramfs (tmpfs
	 * or ramfs) and for disk roots; a read-only bind remount of the mount
	 * is the fallback. Either way writes to / fail with EROFS. */
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0 &&
	    mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
		fatal(EXIT_SETUP, "remount / read-only: %s", strerror(errno));
	dbg("/ is read-only");
}

static void mount_tmpfs(void)
{
	static const struct { const char *path, *data; } t[] = {
		{ "/tmp", "mode=1777" }, { "/run", "mode=0755" },
		{ "/var/tmp", "mode=1777" }, { "/var/log", "mode=0755" },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
	};

	for (size_t i = 0; i < sizeof t / sizeof *t; i++)
		must_mount("tmpfs", t[i].path, "tmpfs", MS_NOSUID | MS_NODEV, t[i].data);
	/* /dev is devtmpfs (writable): the mount points can be made here. */
	if (mkdir("/dev/pts", 0755) != 0 && errno != EEXIST)
		fatal(EXIT_SETUP, "mkdir /dev/pts: %s", strerror(errno));
	must_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		   "mode=0620,ptmxmode=0666");
	if (mkdir("/dev/shm", 01777) != 0 && errno != EEXIST)
		fatal(EXIT_SETUP, "mkdir /dev/shm: %s", strerror(errno));
	must_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	for (size_t i = 0; i < 4; i++)
		if (symlink(links[i][0], links[i][1]) != 0 && errno != EEXIST)
			say("symlink %s: %s", links[i][1], strerror(errno));
}

/*
 * Not fatal: an agent without networking is still an agent. The kernel
 * gives lo 127.0.0.1/8 and ::1 when it comes up.
 *
 * Done the cheapest way, since under TCG every kernel path run for the
 * first time is translated first (about 2 ms less than an AF_INET socket,
 * a SIOCGIFFLAGS and a close, measured):
 * - an AF_UNIX socket: the interface ioctls reach dev_ioctl from any
 *   socket, and a UNIX socket costs less to make than a UDP one;
 * - one SIOCSIFFLAGS with IFF_UP: the flags that come from the caller are
 *   only the settable ones, the rest (IFF_LOOPBACK, IFF_RUNNING) the kernel
 *   keeps, so there is nothing to read first;
 * - the socket is kept (close-on-exec, so the agent never sees it): PID 1
 *   never exits, and closing would run the socket teardown code for nothing.
 */
static void loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		say("loopback: socket: %s", strerror(errno));
		return;
	}
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	ifr.ifr_flags = IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
		say("loopback: SIOCSIFFLAGS: %s", strerror(errno));
	dbg("loopback up");
}

/*
 * On a disk root, start reading the agent's file into the page cache now
 * (readahead(2) queues the reads and returns), so that the disk works
 * while init sets up the rest: its execve then faults in pages already
 * read, where it waited for the disk page by page (measured under TCG:
 * the agent's execve took 25-50 ms from an erofs disk against 4-8 ms from
 * the initramfs). A machine snapshotted at the ready point keeps those
 * pages too. It is the agent the image names; a job may name another,
 * which is then read as it runs. Failures change nothing: execve reports
 * them.
 */
static void prefetch_agent(void)
{
	struct stat st;
	int fd = open(cfg.str[K_AGENT], O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		readahead(fd, 0, (size_t)st.st_size);
	close(fd);
	dbg("agent's file being read ahead");
}

/*
 * Everything that does not depend on the job, in order: the pseudo file
 * systems, the config, the modules and channels, the disk root, then the
 * read-only sandbox around it.
 */
static void setup_machine(const char *t0)
{
	char t[32];
	long long early[4]; /* before the config says whether to print them */

	mount_pseudo();
	early[0] = now_us();
	open_console();
	no_autoload();
	early[1] = now_us();
	read_cmdline();
	early[3] = now_us();
	load_config();
	early[2] = now_us();
	dbg("init started at %s ms", t0);
	dbg_at(early[0], "/dev /proc /sys mounted");
	dbg_at(early[1], "console open, module autoloading off");
	dbg_at(early[3], "command line read");
	dbg_at(early[2], "config read");
	load_modules(&cfg.modules);
	setup_channels();
	emit(ONCE, "init-start %s", t0);

	if (cfg.str[K_ROOT][0] && root_is_initramfs()) {
		switch_root(verified_root(cfg.str[K_ROOT], cfg.str[K_ROOTVERITY]), cfg.str[K_ROOTFSTYPE],
			    cfg.str[K_ROOTFLAGS]);
		load_config(); /* the root file system's own config */
		load_modules(&cfg.modules);
		setup_channels();
		emit(ONCE, "root-ready %s", ms(t));
	}

	if (!root_is_initramfs())
		prefetch_agent();
	make_root_readonly();
	mount_tmpfs();
	loopback_up();
	/* The agent's output pipes depend on no job: made here, they are
	 * ready in every machine restored from a snapshot too. */
	pump_start(&agent_out[0], "stdout", out_fd, &agent_ends[0]);
	pump_start(&agent_out[1], "stderr", err_fd, &agent_ends[1]);
	dbg("output pipes made");
}

/* ---- the job: shares and the agent ------------------------------------ */

/*
 * Does the host provide tag? Without a "shares" key (from a job) it is
 * known only by trying to mount it; with one, only the tags it lists are
 * provided: a VM restored from a snapshot has the devices of every share
 * its template had, the ones this job does not use included.
 */
static int share_provided(const char *tag)
{
	const char *list = cfg.str[K_SHARES];
	size_t n = strlen(tag);

	if (!list)
		return 1;
	for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
		if (strcspn(p, ",") == n && !strncmp(p, tag, n))
			return 1;
	}
	return 0;
}

/*
 * Mount one share's device on path: virtio-fs first, then virtio-9p. A tag
 * the host did not provide fails with ENODEV (driver absent), EINVAL
 * (virtio-fs: no such tag) or ENOENT (9p: no such tag); an "optional"
 * share is then skipped (returns 0), any other failure is fatal.
 */
static int mount_share_on(const struct share *s, const char *path, int ro)
{
	unsigned long flags = MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
	int e1, e2;

	if (mount(s->tag, path, "virtiofs", flags, NULL) == 0) {
		dbg("share %s on %s: virtiofs %s", s->tag, path, ro ? "ro" : "rw");
		return 1;
	}
	e1 = errno;
	if (mount(s->tag, path, "9p", flags,
		  "trans=virtio,version=9p2000.L,msize=512000,cache=none") == 0) {
		dbg("share %s on %s: 9p %s", s->tag, path, ro ? "ro" : "rw");
		return 1;
	}
	e2 = errno;
	if (s->optional && (e1 == ENODEV || e1 == EINVAL || e1 == ENOENT) &&
	    (e2 == ENODEV || e2 == ENOENT)) {
		dbg("share %s: not provided by the host, skipped", s->tag);
		return 0;
	}
	fatal(EXIT_SETUP, "share %s on %s: virtiofs: %s; 9p: %s", s->tag, path,
	      strerror(e1), strerror(e2));
}

/* ---- the job: the workspace's overlay mode (docs/guest-protocol.md §8, "The change set") -- */

#define OVERLAY_DIR "/run/a3s-overlay"
#define OVERLAY_LOWER OVERLAY_DIR "/lower"
#define OVERLAY_LAYER OVERLAY_DIR "/layer"
#define OVERLAY_UPPER OVERLAY_LAYER "/upper"
#define OVERLAY_WORK OVERLAY_LAYER "/work"
#define CHANGES_PORT "/dev/virtio-ports/a3s.changes"

static int overlay_mounted; /* the change set is to be sent when the agent ends */

static void must_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST)
		fatal(EXIT_SETUP, "mkdir %s: %s", path, strerror(errno));
}

/*
 * The block device whose virtio serial is `serial` (the scratch disk the
 * host attached), as /dev/NAME in dev. Found by serial, not by name: the
 * names (vda, vdb) follow the order the devices were probed in.
 */
static void disk_by_serial(const char *serial, char *dev, size_t devlen)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;

	if (!d)
		fatal(EXIT_SETUP, "scratch disk %s: /sys/block: %s", serial, strerror(errno));
	while ((e = readdir(d))) {
		char p[300], v[64];
		int fd, n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "/sys/block/%s/serial", e->d_name);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = (int)read(fd, v, sizeof v - 1);
		close(fd);
		if (n <= 0)
			continue;
		v[n] = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (!strcmp(v, serial)) {
			snprintf(dev, devlen, "/dev/%s", e->d_name);
			closedir(d);
			return;
		}
	}
	closedir(d);
	fatal(EXIT_SETUP, "scratch disk %s: no block device has this serial (is "
	      "virtio_blk built in or among the modules?)", serial);
}

/*
 * Overlay mode: the share goes read-only under OVERLAY_LOWER, and an
 * overlayfs on its path takes every write into an upper directory on
 * guest-local storage: a tmpfs, or the scratch disk (ext4) with scratch=.
 * redirect_dir, index and metacopy are off so that the upper directory
 * holds only whole files, whiteouts and opaque directories, which is all a
 * change set can say; renaming a directory that has lower entries then
 * fails with EXDEV, which mv and the like answer by copying.
 */
static void mount_overlay(const struct share *s)
{
	char opts[600], dev[300];
	struct stat lower;

	must_mkdir(OVERLAY_DIR, 0700);
	must_mkdir(OVERLAY_LOWER, 0755);
	must_mkdir(OVERLAY_LAYER, 0755);
	if (!mount_share_on(s, OVERLAY_LOWER, 1))
		fatal(EXIT_SETUP, "overlay=%s: the host does not provide that share", s->tag);
	if (cfg.str[K_SCRATCH]) {
		disk_by_serial(cfg.str[K_SCRATCH], dev, sizeof dev);
		/* noatime: reads write nothing back to a disk nobody keeps */
		must_mount(dev, OVERLAY_LAYER, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL);
	} else {
		must_mount("tmpfs", OVERLAY_LAYER, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	}
	must_mkdir(OVERLAY_UPPER, 0755);
	must_mkdir(OVERLAY_WORK, 0700);
	/* The overlay's root takes the upper directory's owner and mode: the
	 * share's, so that an agent that could write there still can. */
	if (stat(OVERLAY_LOWER, &lower) != 0 || chown(OVERLAY_UPPER, lower.st_uid, lower.st_gid) != 0 ||
	    chmod(OVERLAY_UPPER, lower.st_mode & 07777) != 0)
		fatal(EXIT_SETUP, "overlay=%s: the upper directory: %s", s->tag, strerror(errno));
	snprintf(opts, sizeof opts, "lowerdir=" OVERLAY_LOWER ",upperdir=" OVERLAY_UPPER
		 ",workdir=" OVERLAY_WORK ",redirect_dir=off,index=off,metacopy=off");
	must_mount("overlay", s->path, "overlay", MS_NOSUID | MS_NODEV, opts);
	overlay_mounted = 1;
	dbg("share %s on %s: overlay, upper on %s", s->tag, s->path,
	    cfg.str[K_SCRATCH] ? dev : "tmpfs");
}

/*
 * Send the change set: the upper directory as a tar on the changes port,
 * then "a3s changes BYTES ENTRIES SKIPPED" (or "a3s changes-error MSG"),
 * before agent-exit. The host applies nothing unless it received exactly
 * BYTES bytes and the tar is whole (docs/guest-protocol.md §8, "The change set").
 */
static void send_changes(void)
{
	struct change_counts c;
	char err[400];
	int fd;

	/* The host names the channels' device nodes on the command line, so no
	 * link by name exists yet: made here, once, for this port alone. */
	if (access(CHANGES_PORT, F_OK) != 0)
		link_named_ports();
	fd = open(CHANGES_PORT, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		emit(ONCE, "changes-error opening %s: %s", CHANGES_PORT, strerror(errno));
		return;
	}
	if (changes_write(OVERLAY_UPPER, fd, &c, err, sizeof err) != 0)
		emit(ONCE, "changes-error %s", err);
	else
		emit(ONCE, "changes %llu %llu %llu", c.bytes, c.entries, c.skipped);
	close(fd);
	dbg("change set: %llu bytes, %llu entries, %llu skipped", c.bytes, c.entries, c.skipped);
}

/*
 * Mount one share by tag on its path, or under an overlay (overlay=TAG).
 * Without a "shares" key it is known only by trying whether the host
 * provides it; with one, only the tags it lists are provided.
 */
static void mount_share(const struct share *s)
{
	if (!share_provided(s->tag)) {
		if (!s->optional)
			fatal(EXIT_SETUP, "share %s on %s: the host does not provide it (its job "
			      "lists shares=%s)", s->tag, s->path, cfg.str[K_SHARES]);
		dbg("share %s: not provided by the host (job), skipped", s->tag);
		return;
	}
	if (cfg.str[K_OVERLAY] && !strcmp(cfg.str[K_OVERLAY], s->tag) && !s->ro)
		mount_overlay(s);
	else
		mount_share_on(s, s->path, s->ro);
}

/*
 * tmpfs=PATH[:SIZE]: guest-local writable volumes, mounted after the
 * shares so that one can sit inside a share (/workspace/node_modules). The
 * mount point is made if missing (in the share, then) and the volume
 * belongs to the agent's user. Nothing in it comes back to the host.
 */
static void mount_volumes(void)
{
	for (size_t i = 0; i < cfg.tmpfs.n; i++) {
		char path[PATH_MAX], data[96];
		const char *v = cfg.tmpfs.v[i], *colon = strchr(v, ':');
		size_t n = colon ? (size_t)(colon - v) : strlen(v);

		if (n >= sizeof path)
			fatal(EXIT_SETUP, "tmpfs %s: path too long", v);
		memcpy(path, v, n);
		path[n] = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			fatal(EXIT_SETUP, "tmpfs %s: mkdir: %s%s", path, strerror(errno),
			      errno == EROFS ? " (the root is read-only: choose a path in a "
			      "share or one the image has)" : "");
		snprintf(data, sizeof data, "mode=0755,uid=%u,gid=%u%s%s", (unsigned)cfg.uid,
			 (unsigned)cfg.gid, colon ? ",size=" : "", colon ? colon + 1 : "");
		must_mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, data);
	}
}

/* What the agent's process runs, built before it exists. */
struct agent_exec {
	char **argv, **envp;
	sigset_t mask;
	int out, err;  /* its stdout and stderr */
	int step, errn; /* filled in by the child when a step fails */
};

enum { STEP_CHDIR, STEP_SETGROUPS, STEP_SETGID, STEP_SETUID, STEP_EXECVE };

/*
 * The agent's process, before execve. It shares init's memory (CLONE_VM)
 * while init waits (CLONE_VFORK), so it only makes system calls, raw ones
 * for the ids (libc's set*id would synchronize threads that do not exist),
 * and reports a failed step by writing it into a->step and a->errn.
 */
static int agent_child(void *arg)
{
	struct agent_exec *a = arg;

	sigprocmask(SIG_SETMASK, &a->mask, NULL);
	setsid(); /* no controlling terminal */
	dup2(in_fd, 0);
	dup2(a->out, 1);
	dup2(a->err, 2);
	if (chdir(cfg.str[K_CWD]) != 0)
		a->step = STEP_CHDIR;
	else if (syscall(SYS_setgroups, cfg.ngroups, cfg.groups) != 0)
		a->step = STEP_SETGROUPS;
	else if (syscall(SYS_setgid, cfg.gid) != 0)
		a->step = STEP_SETGID;
	else if (syscall(SYS_setuid, cfg.uid) != 0)
		a->step = STEP_SETUID;
	else {
		execve(a->argv[0], a->argv, a->envp);
		a->step = STEP_EXECVE;
	}
	a->errn = errno;
	_exit(EXIT_SETUP);
}

/*
 * Start the agent with stdout and stderr on out and err: a new session,
 * then groups, gid, uid (in that order), then execve.
 * clone(CLONE_VM | CLONE_VFORK) rather than fork: no page tables to copy
 * and no copy-on-write faults after, and init resumes exactly when execve
 * has succeeded or a step has failed.
 */
static void start_agent(const sigset_t *mask, int out, int err)
{
	static const char *const steps[] = { "chdir", "setgroups", "setgid", "setuid", "execve" };
	static char stack[16384] __attribute__((aligned(16)));
	struct agent_exec a = { .step = -1, .mask = *mask, .out = out, .err = err };
	struct strvec argv = { 0 }, envp = { 0 };
	int has_path = 0, st;
	char t[32];

	strvec_push(&argv, cfg.str[K_AGENT]);
	for (size_t i = 0; i < cfg.args.n; i++)
		strvec_push(&argv, cfg.args.v[i]);
	for (size_t i = 0; i < cfg.env.n; i++) {
		strvec_push(&envp, cfg.env.v[i]);
		has_path |= !strncmp(cfg.env.v[i], "PATH=", 5);
	}
	if (!has_path)
		strvec_push(&envp, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	a.argv = argv.v;
	a.envp = envp.v;
	agent_pid = clone(agent_child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
	if (agent_pid < 0)
		fatal(EXIT_SETUP, "clone: %s", strerror(errno));
	if (a.step < 0) {
		emit(ONCE, "agent-start %s", ms(t));
		dbg("agent %s started, pid %d", a.argv[0], (int)agent_pid);
		dbg_flush();
		return;
	}
	while (waitpid(agent_pid, &st, 0) < 0 && errno == EINTR)
		;
	agent_pid = 0;
	if (a.step < STEP_EXECVE)
		fatal(EXIT_SETUP, "agent: %s %s: %s", steps[a.step],
		      a.step == STEP_CHDIR ? cfg.str[K_CWD] : "", strerror(a.errn));
	if (a.errn == ENOENT || a.errn == ENOTDIR)
		fatal(EXIT_NOTFOUND, "agent %s: %s", a.argv[0],
		      access(a.argv[0], F_OK) == 0 ?
		      "its ELF interpreter (dynamic loader) is missing" : "not found");
	fatal(EXIT_NOEXEC, "agent %s: cannot execute: %s", a.argv[0], strerror(a.errn));
}

static int signal_number(const char *s)
{
	static const struct { const char *name; int sig; } names[] = {
		{ "TERM", SIGTERM }, { "INT", SIGINT }, { "HUP", SIGHUP },
		{ "KILL", SIGKILL }, { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 },
		{ "USR2", SIGUSR2 },
	};
	const char *end;
	unsigned n;

	if (!strncmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (!strcmp(s, names[i].name))
			return names[i].sig;
	if (config_parse_uint(s, &end, &n) == 0 && !*end && n >= 1 && n <= 64)
		return (int)n;
	return -1;
}

static void forward(int sig, const char *from)
{
	char t[32];

	emit(REPEATABLE, "signal %s %d %s", ms(t), sig, from);
	if (agent_pid > 0 && kill(agent_pid, sig) != 0)
		say("forward signal %d: %s", sig, strerror(errno));
}

/* ---- control input (docs/guest-protocol.md §8) ------------------------- */

/*
 * What the host writes on the control channel: while init waits for a job,
 * the job's text, up to a line "end"; after it, one command per line.
 */
static struct {
	char line[256];
	size_t len;
	int poweroff; /* the host said "poweroff" */
} ctl_in;

static struct {
	int collecting; /* init is reading a job */
	int complete;   /* the "end" line came */
	char *text;
	size_t len, cap, line_start;
} job;

/* One line of host input: "signal SIG" or "poweroff". */
static void control_line(char *line)
{
	size_t n = strlen(line);

	if (n && line[n - 1] == '\r')
		line[n - 1] = '\0';
	if (!strncmp(line, "signal ", 7) && signal_number(line + 7) > 0)
		forward(signal_number(line + 7), "control");
	else if (!strcmp(line, "poweroff"))
		ctl_in.poweroff = 1;
	else if (line[0])
		say("control input ignored: \"%.60s\"", line);
}

/* One byte of a job. The job is the text before a line "end". */
static void job_byte(char c)
{
	if (job.len + 2 > job.cap) {
		if (job.cap >= CONFIG_MAX)
			fatal(EXIT_SETUP, "job: larger than 1 MiB");
		job.cap = job.cap ? 2 * job.cap : 4096;
		job.text = config_realloc(job.text, job.cap);
	}
	job.text[job.len++] = c;
	if (c != '\n')
		return;
	if (job.len - job.line_start == 4 && !memcmp(job.text + job.line_start, "end", 3)) {
		job.text[job.line_start] = '\0';
		job.collecting = 0;
		job.complete = 1;
		return;
	}
	job.line_start = job.len;
}

/* Read what the host wrote; 0 when the input has ended or broken. */
static int read_control(void)
{
	char c[4096];
	ssize_t n = read(control_fd(), c, sizeof c);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	for (ssize_t i = 0; i < n; i++) {
		if (job.collecting) {
			job_byte(c[i]);
		} else if (c[i] == '\n') {
			ctl_in.line[ctl_in.len] = '\0';
			control_line(ctl_in.line);
			ctl_in.len = 0;
		} else if (ctl_in.len < sizeof ctl_in.line - 1) {
			ctl_in.line[ctl_in.len++] = c[i];
		}
	}
	return n > 0;
}

/*
 * Wait on the signalfd and the control channel (input, and output while
 * control lines are queued) until `done` says so, for at most timeout_ms
 * (-1: no limit). Returns 0 when done, 1 on timeout, 2 when the host hung
 * up, or the number of a signal that reached init (SIGTERM, SIGINT,
 * SIGHUP), which a caller that is not supervising the agent stops on.
 */
static int wait_control(int (*done)(void), int timeout_ms)
{
	long long end = now_us() + timeout_ms * 1000LL;

	while (!done()) {
		struct pollfd pf[2] = { { sig_fd, POLLIN, 0 }, { control_fd(), POLLIN, 0 } };
		struct signalfd_siginfo si;
		long long left = (end - now_us()) / 1000;

		if (timeout_ms >= 0 && left <= 0)
			return 1;
		if (pf[1].fd < 0)
			return 2;
		if (control_pending())
			pf[1].events |= POLLOUT;
		if (poll(pf, 2, timeout_ms < 0 ? -1 : (int)left) < 0) {
			if (errno != EINTR)
				fatal(EXIT_SETUP, "poll: %s", strerror(errno));
			continue;
		}
		if ((pf[0].revents & POLLIN) && read(sig_fd, &si, sizeof si) == sizeof si &&
		    si.ssi_signo != SIGCHLD)
			return (int)si.ssi_signo;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			; /* orphans of an agent that is gone */
		if (pf[1].revents & POLLOUT)
			control_flush();
		if (pf[1].revents & POLLIN) {
			if (!read_control()) {
				control_hangup();
				return 2;
			}
		} else if (pf[1].revents & (POLLHUP | POLLERR)) {
			control_hangup();
			return 2;
		}
	}
	return 0;
}

static int job_complete(void)
{
	return job.complete;
}

/*
 * With job=1 the machine is set up and waits for its job: "a3s ready",
 * then the job's text on the control channel, laid over the config like a
 * drop-in (docs/guest-protocol.md §8). A VM is snapshotted at this point;
 * every machine restored from it reads its own job here.
 */
static void wait_for_job(void)
{
	char t[32], err[CONFIG_ERR_MAX];
	struct config j;
	int r;

	if (control_fd() < 0)
		fatal(EXIT_SETUP, "job=1, but there is no control channel to read a job from");
	job.collecting = 1;
	emit(ONCE, "ready %s", ms(t));
	dbg_flush();
	r = wait_control(job_complete, -1);
	if (r == 2)
		fatal(EXIT_SETUP, "the host hung up before it sent a job");
	if (r > 2)
		fatal(EXIT_SETUP, "signal %d before a job came", r);
	/* When the job had come: ready -> job is the host's share of init
	 * start -> agent exec (docs/guest-protocol.md §7). */
	emit(ONCE, "job %s", ms(t));
	memset(&j, 0, sizeof j);
	if (config_parse_text("job", job.text, SRC_JOB, &j, err))
		fatal(EXIT_SETUP, "%s", err);
	config_overlay(&cfg, &j);
	debug = !strcmp(cfg.str[K_DEBUG], "1");
	dbg("job read (%zu bytes)", job.len);
}

/* ---- the job ----------------------------------------------------------- */

static int hex_digit(char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/*
 * The machine's own random state: the host's bytes are added to the
 * kernel's input pool and credited (RNDADDENTROPY), then the CRNG is
 * reseeded from it at once (RNDRESEEDCRNG): on Linux 5.18 and later,
 * adding entropy to an initialised CRNG does not reseed it by itself. Two
 * machines restored from one snapshot start with the same random state;
 * this is what makes them differ before the agent draws a byte. The bytes
 * are wiped from init's memory after.
 */
static void reseed(char *hex)
{
	struct { int count, size; unsigned char buf[512]; } pool;
	size_t n = strlen(hex) / 2;
	int fd;

	for (size_t i = 0; i < n; i++)
		pool.buf[i] = (unsigned char)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
	pool.count = (int)(8 * n);
	pool.size = (int)n;
	fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) != 0 || ioctl(fd, RNDRESEEDCRNG) != 0)
		fatal(EXIT_SETUP, "reseeding the kernel's random generator: %s", strerror(errno));
	close(fd);
	explicit_bzero(&pool, sizeof pool);
	explicit_bzero(hex, 2 * n);
	dbg("random generator reseeded with %zu bytes from the host", n);
}

/* The wall clock, from the host: a restored machine's clock is the
 * snapshot's. "SECONDS[.FRACTION]", checked by the config parser. */
static void set_clock(const char *v)
{
	struct timespec ts = { 0, 0 };
	const char *end;
	unsigned sec;
	long scale = 100000000;

	if (config_parse_uint(v, &end, &sec) != 0)
		return;
	ts.tv_sec = (time_t)sec;
	if (*end == '.')
		for (end++; *end && scale > 0; end++, scale /= 10)
			ts.tv_nsec += (*end - '0') * scale;
	if (clock_settime(CLOCK_REALTIME, &ts) != 0)
		say("setting the clock: %s", strerror(errno));
	else
		dbg("clock set to %s", v);
}

static int decode_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return EXIT_SETUP;
}

/*
 * Wait for the agent: reap every child (orphans reparent to PID 1),
 * forward signals, read control input, carry the agent's output, write
 * queued control lines as the host takes them. Nothing here blocks but
 * poll. Returns the agent's status and, in exit_ms, when it was reaped.
 */
static int supervise(char exit_ms[32], struct pump out[2])
{
	int input = control_fd() >= 0;

	for (;;) {
		struct pollfd pf[4] = { { sig_fd, POLLIN, 0 }, { control_fd(), 0, 0 } };
		struct signalfd_siginfo si;
		int st;
		pid_t pid;

		pf[1].events = (short)((input ? POLLIN : 0) | (control_pending() ? POLLOUT : 0));
		if (!pf[1].events)
			pf[1].fd = -1;
		pump_poll(&out[0], &pf[2]);
		pump_poll(&out[1], &pf[3]);
		if (poll(pf, 4, -1) < 0) {
			if (errno != EINTR)
				fatal(EXIT_SETUP, "poll: %s", strerror(errno));
			continue;
		}
		if ((pf[0].revents & POLLIN) && read(sig_fd, &si, sizeof si) == sizeof si &&
		    si.ssi_signo != SIGCHLD)
			forward((int)si.ssi_signo, "signal");
		pump_step(&out[0], pf[2].revents);
		pump_step(&out[1], pf[3].revents);
		/* Reap on every wakeup: SIGCHLD coalesces. */
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			if (pid == agent_pid) {
				agent_pid = 0;
				ms(exit_ms);
				return decode_status(st);
			}
			dbg("reaped orphan %d", (int)pid);
		}
		if (pf[1].revents & POLLOUT)
			control_flush();
		if (input && (pf[1].revents & POLLIN))
			input = control_fd() >= 0 && read_control();
		else if (pf[1].revents & (POLLHUP | POLLERR)) {
			input = 0; /* the host is gone: nothing to read or write */
			control_hangup();
		}
	}
}

/*
 * The rest of the agent's output, once every process that could write it
 * is gone: to the end of each pipe, as fast as the host takes it. When a
 * process could not be killed (stuck in the kernel), it may hold a pipe
 * open: then only what is in the pipes now is carried.
 */
static void finish_output(struct pump out[2], int all_gone)
{
	if (!all_gone)
		for (int i = 0; i < 2; i++)
			pump_last(&out[i]);
	while (!pump_done(&out[0]) || !pump_done(&out[1])) {
		struct pollfd pf[3] = { { sig_fd, POLLIN, 0 } };
		struct signalfd_siginfo si;

		pump_poll(&out[0], &pf[1]);
		pump_poll(&out[1], &pf[2]);
		if (poll(pf, 3, -1) < 0) {
			if (errno != EINTR)
				fatal(EXIT_SETUP, "poll: %s", strerror(errno));
			continue;
		}
		if ((pf[0].revents & POLLIN) && read(sig_fd, &si, sizeof si) == sizeof si &&
		    si.ssi_signo != SIGCHLD) {
			say("signal %d: the rest of the agent's output is dropped", (int)si.ssi_signo);
			return;
		}
		pump_step(&out[0], pf[1].revents);
		pump_step(&out[1], pf[2].revents);
	}
}

static int poweroff_asked(void)
{
	return ctl_in.poweroff;
}

/*
 * The machine's identity for this job, the shares, the agent and its
 * output, and the end: leftovers killed and reaped, sync, then the status
 * with the byte counts of the agent's output, so that once the host reads
 * it the guest's writes to the shares are flushed and the host knows how
 * much output to wait for. The time reported is when the agent was reaped.
 * With a job, init then waits for the host's "poweroff": until then the
 * VM holds what the host has not yet read of the output.
 */
static void __attribute__((noreturn)) run_job(const sigset_t *agent_mask)
{
	struct pump *out = agent_out;
	int *ends = agent_ends;
	char t[32];
	int status;

	if (cfg.str[K_ENTROPY])
		reseed(cfg.str[K_ENTROPY]);
	if (cfg.str[K_CLOCK])
		set_clock(cfg.str[K_CLOCK]);
	if (sethostname(cfg.str[K_HOSTNAME], strlen(cfg.str[K_HOSTNAME])) != 0)
		say("sethostname: %s", strerror(errno));
	dbg("hostname set");
	for (size_t i = 0; i < cfg.nshares; i++)
		mount_share(&cfg.shares[i]);
	if (cfg.str[K_OVERLAY] && !overlay_mounted)
		fatal(EXIT_SETUP, "overlay=%s: no read-write share with that tag in this job",
		      cfg.str[K_OVERLAY]);
	mount_volumes();
	start_agent(agent_mask, ends[0] >= 0 ? ends[0] : out_fd >= 0 ? out_fd : 2,
		    ends[1] >= 0 ? ends[1] : err_fd >= 0 ? err_fd : 2);
	for (int i = 0; i < 2; i++)
		if (ends[i] >= 0)
			close(ends[i]); /* the agent has its own: the pipe ends with it */
	status = supervise(t, out);
	finish_output(out, kill_leftovers());
	sync();
	if (overlay_mounted)
		send_changes();
	emit(ONCE, "agent-exit %s %d %llu %llu", t, status, out[0].sent, out[1].sent);
	dbg("agent exited with status %d; powering off", status);
	if (job_mode && wait_control(poweroff_asked, -1) > 2)
		dbg("a signal came before the host's poweroff");
	power_off();
}

int main(int argc, char **argv)
{
	sigset_t mask, oldmask;
	char t0[32];

	ms(t0);
	if (getpid() != 1) {
		fprintf(stderr, "usage: %s (as PID 1 of an A3S guest; see "
			"docs/guest-protocol.md)\nTo check a config on the host, "
			"use config-check.\n", argc ? argv[0] : "init");
		return 2;
	}
	/* As PID 1, argv holds the kernel's leftover command line: ignored. */

	/* Block the signals we handle before anything can send them: they
	 * queue and are read from a signalfd. Ctrl-Alt-Del becomes SIGINT. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &oldmask);
	sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
	reboot(RB_DISABLE_CAD);
	umask(022);

	setup_machine(t0);
	if (sig_fd < 0)
		fatal(EXIT_SETUP, "signalfd: %s", strerror(errno));
	job_mode = !strcmp(cfg.str[K_JOB], "1");
	if (job_mode)
		wait_for_job();
	run_job(&oldmask);
}
