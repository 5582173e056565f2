/*
 * a3s-init: the static PID 1 of the A3S guest.
 *
 * It prepares a read-only sandbox, runs exactly one program (the agent) as
 * its child, reports how that program ended and powers the VM off. The
 * contract (config, kernel command line, channels, control lines, exit
 * statuses) is docs/guest-protocol.md; the config language is config.c.
 * Its parts by job: modules.c (kernel modules), channels.c and pump.c
 * (the channels, control lines, the agent's output), control.c (control
 * input, the job, the per-run identity), workspace.c (shares, overlay,
 * change set, tmpfs volumes), root.c and dm-verity.c (the disk root, a
 * verified one); shared state is in init.h.
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
#include <unistd.h>

#include "channels.h"
#include "config.h"
#include "control.h"
#include "init.h"
#include "modules.h"
#include "pump.h"
#include "root.h"
#include "workspace.h"

#define KILL_WAIT_MS 2000  /* at most, for leftover processes to die */
#define CTL_DRAIN_MS 10000 /* at most, for the host to take the last lines */

/* Not in musl's headers (they come from linux/magic.h). */
#define RAMFS_MAGIC 0x858458f6
#define TMPFS_MAGIC 0x01021994

struct config cfg;             /* the effective config */
struct cmdline cmdline;        /* the kernel command line */
int sig_fd = -1;               /* signalfd: SIGCHLD and the forwarded signals */
static int loaded_modules;     /* init loaded a module in this boot */
static int in_fd = -1, out_fd = -1, err_fd = -1; /* the agent's; -1 = console */
static pid_t agent_pid;
static int job_mode;           /* job=1: the job comes from the host (§8) */
static struct pump agent_out[2]; /* init carries the agent's stdout, stderr */
static int agent_ends[2];      /* the pipes' write ends, for the agent */

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
 *
 * A kernel running without ACPI (the microVM kernel on microvm acpi=off, a
 * Firecracker-style VMM) has no way to power off: it would halt and leave
 * the VM running. There a reset is how the VM ends, as Firecracker asks
 * of its guests. The kernel shows /sys/firmware/acpi only with ACPI.
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
	if (access("/sys/firmware/acpi", F_OK) == 0) {
		reboot(RB_POWER_OFF);
		say("power off failed: %s; trying reset", strerror(errno));
	}
	reboot(RB_AUTOBOOT);
	say("reset failed: %s; halting", strerror(errno));
	for (;;)
		pause();
}

void fatal(int status, const char *fmt, ...)
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

/* ---- setup: file systems, config ------------------------------------- */

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

void must_mount(const char *src, const char *dst, const char *type,
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
	loaded_modules |= load_modules(&cfg.modules);
	setup_channels();
	emit(ONCE, "init-start %s", t0);

	int switched = cfg.str[K_ROOT][0] && root_is_initramfs();

	if (switched) {
		switch_root(verified_root(cfg.str[K_ROOT], cfg.str[K_ROOTVERITY]), cfg.str[K_ROOTFSTYPE],
			    cfg.str[K_ROOTFLAGS]);
		load_config(); /* the root file system's own config */
		loaded_modules |= load_modules(&cfg.modules);
		setup_channels();
		emit(ONCE, "root-ready %s", ms(t));
	}

	if (switched || !root_is_initramfs())
		prefetch_agent();
	/* switch_root mounted the disk read-only: a remount would change
	 * nothing. (It saves less than its 3-4 ms step suggested under TCG:
	 * most of that was translating the kernel's mount code, which the
	 * tmpfs mounts below then translate instead; bench/init-steps.ts.)
	 * A root the kernel mounted (an initramfs, or a disk booted without
	 * one) may be writable. */
	if (switched)
		dbg("/ is read-only (mounted so)");
	else
		make_root_readonly();
	mount_tmpfs();
	loopback_up();
	/* The agent's output pipes depend on no job: made here, they are
	 * ready in every machine restored from a snapshot too. */
	pump_start(&agent_out[0], "stdout", out_fd, &agent_ends[0]);
	pump_start(&agent_out[1], "stderr", err_fd, &agent_ends[1]);
	dbg("output pipes made");
}

/* ---- the job: the agent ---------------------------------------------- */

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

void forward_signal(int sig, const char *from)
{
	char t[32];

	emit(REPEATABLE, "signal %s %d %s", ms(t), sig, from);
	if (agent_pid > 0 && kill(agent_pid, sig) != 0)
		say("forward signal %d: %s", sig, strerror(errno));
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
			forward_signal((int)si.ssi_signo, "signal");
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
