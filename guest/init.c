/*
 * a3s-init: the static PID 1 of the A3S guest.
 *
 * It prepares a read-only sandbox, runs exactly one program (the agent) as
 * its child, reports how that program ended and powers the VM off. The
 * contract it implements (config file, kernel command line, virtio console
 * channels, control lines, exit statuses) is specified in
 * docs/guest-protocol.md; keep the two in step.
 *
 * Boot, in order:
 *   1. mount devtmpfs on /dev, proc on /proc, sysfs on /sys; turn off
 *      module autoloading
 *   2. read /etc/a3s/guest.conf, then the drop-ins /etc/a3s/guest.conf.d/
 *      *.conf in name order, then the a3s.* kernel command line overrides
 *   3. load the listed kernel modules with finit_module(2), in order
 *   4. open the output channels (virtio consoles, else /dev/console)
 *   5. disk mode only (a root device is configured and / is the initramfs):
 *      mount the root device read-only, switch root into it, then repeat
 *      steps 2-4 with the config found there
 *   6. make / read-only; tmpfs on /tmp /run /var/tmp /var/log; /dev/pts,
 *      /dev/shm; the shares (virtio-fs, else virtio-9p); hostname; loopback
 *   7. fork + execve the agent with its argv, env, cwd and uid/gid
 *   8. reap every zombie, forward SIGTERM/SIGINT/SIGHUP and "signal N"
 *      control input to the agent until it exits
 *   9. kill the leftovers, sync, report the status, power off
 *
 * PID 1 must never exit (the kernel panics), so every error path ends in
 * fatal(): print, report a distinct status, power off.
 *
 * Built static against musl: make -C guest
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
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
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses for failures of init itself (same meaning as in sh/docker). */
#define EXIT_SETUP 125    /* bad config, failed mount, module, chdir, setuid */
#define EXIT_NOEXEC 126   /* agent exists but cannot be executed */
#define EXIT_NOTFOUND 127 /* agent (or its ELF interpreter) not found */

#define CONFIG_PATH "/etc/a3s/guest.conf"
#define CONFIG_DROPIN_DIR "/etc/a3s/guest.conf.d"
#define CONFIG_MAGIC "a3s-guest-config"
#define CONFIG_VERSION "1"
#define CONFIG_MAX (1 << 20)
#define SYSROOT "/sysroot"
#define ROOT_WAIT_MS 5000 /* like the kernel's rootwait, but bounded */
#define HVC_WAIT_MS 2000  /* virtio console ports appear asynchronously */

/* Not in musl's headers (they come from linux/magic.h and linux/module.h). */
#define RAMFS_MAGIC 0x858458f6
#define TMPFS_MAGIC 0x01021994
#define MODULE_INIT_COMPRESSED_FILE 4

/* ---- config ---------------------------------------------------------- */

enum key {
	K_AGENT, K_ARG, K_ENV, K_CWD, K_USER, K_GROUPS, K_HOSTNAME, K_SHARE,
	K_MODULE, K_ROOT, K_ROOTFSTYPE, K_ROOTFLAGS, K_STDIN, K_STDOUT,
	K_STDERR, K_CONTROL, K_DEBUG, K_COUNT
};
static const char *const key_names[K_COUNT] = {
	"agent", "arg", "env", "cwd", "user", "groups", "hostname", "share",
	"module", "root", "rootfstype", "rootflags", "stdin", "stdout",
	"stderr", "control", "debug",
};
#define BIT(k) (1u << (k))
/* Keys that may appear more than once in the file. */
#define REPEATABLE (BIT(K_ARG) | BIT(K_ENV) | BIT(K_SHARE) | BIT(K_MODULE))
/* Keys accepted as a3s.KEY=VALUE on the kernel command line. */
#define ON_CMDLINE (BIT(K_AGENT) | BIT(K_ARG) | BIT(K_ENV) | BIT(K_CWD) | \
	BIT(K_USER) | BIT(K_GROUPS) | BIT(K_HOSTNAME) | BIT(K_SHARE) | \
	BIT(K_ROOT) | BIT(K_ROOTFSTYPE) | BIT(K_ROOTFLAGS) | BIT(K_DEBUG))

struct vec {
	char **v; /* NULL-terminated once non-empty */
	size_t n;
};

struct share {
	char *tag, *path;
	int ro, optional;
};

struct config {
	unsigned seen; /* BIT(key) for every key given */
	char *str[K_COUNT]; /* single-valued keys, NULL = not given */
	struct vec args, env, modules;
	struct share *shares;
	size_t nshares;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t ngroups;
};

static const char *const defaults[K_COUNT] = {
	[K_AGENT] = "/a3s/agent/a3s-box-code",
	[K_CWD] = "/workspace",
	[K_HOSTNAME] = "a3s",
	[K_ROOT] = "",
	[K_ROOTFSTYPE] = "",
	[K_ROOTFLAGS] = "",
	[K_STDIN] = "/dev/null",
	[K_STDOUT] = "/dev/hvc0",
	[K_STDERR] = "/dev/hvc1",
	[K_CONTROL] = "/dev/hvc2",
	[K_DEBUG] = "0",
};

/* ---- global state ---------------------------------------------------- */

static int debug;
static int ctl_fd = -1;      /* control channel, -1 = use the console */
static int out_fd = -1, err_fd = -1, in_fd = -1;
static pid_t agent_pid;
static struct config cfg;    /* effective config (file + command line) */
static struct config cmd;    /* the a3s.* command line overrides */
static char *cmdline_tokens[256];
static size_t ncmdline_tokens;

static void fatal(int status, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 2, 3)));

/* Milliseconds since the kernel started (CLOCK_BOOTTIME), "123.456". */
static const char *ms(char buf[32])
{
	struct timespec t;

	if (clock_gettime(CLOCK_BOOTTIME, &t) != 0)
		return strcpy(buf, "0.000");
	snprintf(buf, 32, "%lld.%03ld",
		 (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000,
		 (t.tv_nsec / 1000) % 1000);
	return buf;
}

/* Write all of buf; the console and virtio consoles may take it in parts. */
static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to report to: drop it */
		buf += n;
		len -= (size_t)n;
	}
}

/* Human-readable message on the kernel console (fd 2 of init). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = snprintf(buf, sizeof buf, "a3s-init: ");

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	write_all(2, buf, (size_t)n);
}

/* Progress messages, only with a3s.debug; prefixed with the boot time. */
#define dbg(fmt, ...) do { \
	char dbg_t_[32]; \
	if (debug) \
		say("[%s ms] " fmt, ms(dbg_t_), ##__VA_ARGS__); \
} while (0)

/*
 * One machine-readable control line: "a3s EVENT FIELDS...\n". Control
 * characters are replaced so that one report is always one line. Without a
 * control device the line goes to the console, prefixed "a3s-control: " on
 * a fresh line so the host can find it among the kernel's messages.
 */
static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
	static const char prefix[] = "\na3s-control: ";
	char buf[1200];
	size_t n = 0, m;
	va_list ap;
	int r;

	if (ctl_fd < 0) {
		memcpy(buf, prefix, sizeof prefix - 1);
		n = sizeof prefix - 1;
	}
	memcpy(buf + n, "a3s ", 4);
	n += 4;
	va_start(ap, fmt);
	r = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	m = (size_t)r < sizeof buf - n - 2 ? (size_t)r : sizeof buf - n - 2;
	for (size_t i = n; i < n + m; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	buf[n + m] = '\n';
	write_all(ctl_fd >= 0 ? ctl_fd : 2, buf, n + m + 1);
}

/*
 * The end of every boot. reboot(2) only returns on failure; if power-off is
 * refused we try a reset (QEMU -no-reboot turns it into an exit) and finally
 * sleep forever, because returning from PID 1 would panic the kernel.
 */
static void __attribute__((noreturn)) power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	say("power off failed: %s; trying reset", strerror(errno));
	reboot(RB_AUTOBOOT);
	say("reset failed: %s; halting", strerror(errno));
	for (;;)
		pause();
}

static int open_channel(const char *path, int flags);

static void fatal(int status, const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	say("error: %s", msg);
	/* The --check-* modes run on the host, often as root: an error there
	 * must end the process, never reboot the machine it runs on. */
	if (getpid() != 1)
		exit(status);
	/* An early error (bad config, missing module) may come before the
	 * control channel was opened: try the configured or default device. */
	if (ctl_fd < 0)
		ctl_fd = open_channel(cfg.str[K_CONTROL] ? cfg.str[K_CONTROL]
				      : defaults[K_CONTROL], O_RDWR);
	emit("error %d %s", status, msg);
	if (agent_pid > 0)
		kill(-1, SIGKILL);
	power_off();
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		fatal(EXIT_SETUP, "out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

static void vec_push(struct vec *v, char *s)
{
	v->v = xrealloc(v->v, (v->n + 2) * sizeof *v->v);
	v->v[v->n++] = s;
	v->v[v->n] = NULL;
}

/*
 * Undo the escapes of the config format in place: \\ \n \t \xHH. Returns
 * NULL on success or a description of the bad escape.
 */
static const char *unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (*r != '\\') {
			*w++ = *r;
			continue;
		}
		switch (*++r) {
		case '\\': *w++ = '\\'; break;
		case 'n': *w++ = '\n'; break;
		case 't': *w++ = '\t'; break;
		case 'x': {
			unsigned v = 0;
			for (int i = 0; i < 2; i++) {
				char c = *++r;
				if (c >= '0' && c <= '9') v = v * 16 + (unsigned)(c - '0');
				else if (c >= 'a' && c <= 'f') v = v * 16 + (unsigned)(c - 'a' + 10);
				else if (c >= 'A' && c <= 'F') v = v * 16 + (unsigned)(c - 'A' + 10);
				else return "\\x needs two hex digits";
			}
			if (v == 0)
				return "\\x00 is not allowed";
			*w++ = (char)v;
			break;
		}
		case '\0': return "trailing backslash";
		default: return "unknown escape (use \\\\ \\n \\t or \\xHH)";
		}
	}
	*w = '\0';
	return NULL;
}

/* Parse a decimal id (uid or gid): digits only, below 2^32-1. */
static int parse_id(const char *s, const char **end, unsigned *out)
{
	unsigned long long v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned)(*s - '0');
		if (v >= 0xffffffffULL)
			return -1;
	}
	*end = s;
	*out = (unsigned)v;
	return 0;
}

/* Set one key in c. Returns NULL or what is wrong with the value. */
static const char *set_key(struct config *c, enum key k, char *val)
{
	const char *end;
	unsigned a, b;

	switch (k) {
	case K_ARG: vec_push(&c->args, val); break;
	case K_MODULE: vec_push(&c->modules, val); break;
	case K_ENV:
		if (!strchr(val, '=') || val[0] == '=')
			return "env must be NAME=VALUE";
		vec_push(&c->env, val);
		break;
	case K_USER:
		if (parse_id(val, &end, &a) || *end != ':' ||
		    parse_id(end + 1, &end, &b) || *end)
			return "user must be UID:GID (decimal numbers)";
		c->uid = a;
		c->gid = b;
		break;
	case K_GROUPS:
		c->ngroups = 0;
		for (const char *p = val; *p; p = *end ? end + 1 : end) {
			if (parse_id(p, &end, &a) || (*end && *end != ','))
				return "groups must be GID,GID,... (decimal numbers)";
			c->groups = xrealloc(c->groups, (c->ngroups + 1) * sizeof *c->groups);
			c->groups[c->ngroups++] = a;
		}
		break;
	case K_SHARE: {
		/* TAG:PATH[:OPTS], OPTS a comma list of rw|ro|optional */
		struct share s = { val, strchr(val, ':'), 0, 0 };
		char *o;

		if (!s.path || s.path == val)
			return "share must be TAG:PATH[:rw|ro[,optional]]";
		*s.path++ = '\0';
		o = strchr(s.path, ':');
		if (o)
			*o++ = '\0';
		if (s.path[0] != '/')
			return "share path must be absolute";
		while (o && *o) {
			size_t n = strcspn(o, ",");
			if (n == 2 && !strncmp(o, "rw", 2)) s.ro = 0;
			else if (n == 2 && !strncmp(o, "ro", 2)) s.ro = 1;
			else if (n == 8 && !strncmp(o, "optional", 8)) s.optional = 1;
			else return "share options are rw, ro, optional";
			o += n + (o[n] == ',');
		}
		c->shares = xrealloc(c->shares, (c->nshares + 1) * sizeof *c->shares);
		c->shares[c->nshares++] = s;
		break;
	}
	case K_DEBUG:
		if (strcmp(val, "0") && strcmp(val, "1"))
			return "debug must be 0 or 1";
		c->str[k] = val;
		break;
	case K_HOSTNAME:
		if (strlen(val) > 64)
			return "hostname is longer than 64 bytes";
		c->str[k] = val;
		break;
	case K_ROOT: case K_ROOTFSTYPE: case K_ROOTFLAGS:
		c->str[k] = val; /* may be empty: "none" */
		break;
	default: /* paths */
		if (val[0] != '/')
			return "must be an absolute path";
		c->str[k] = val;
		break;
	}
	c->seen |= BIT(k);
	return NULL;
}

static int find_key(const char *name, size_t len)
{
	for (int k = 0; k < K_COUNT; k++)
		if (strlen(key_names[k]) == len && !strncmp(key_names[k], name, len))
			return k;
	return -1;
}

/* Read a whole file (at most max bytes) into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t max, int *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 4096;
	char *buf;

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	buf = xrealloc(NULL, cap);
	for (;;) {
		ssize_t n;
		if (len + 1 >= cap) {
			if (cap > max) {
				close(fd);
				free(buf);
				*err = EFBIG;
				return NULL;
			}
			buf = xrealloc(buf, cap *= 2);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err = errno;
			close(fd);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		free(buf);
		*err = EINVAL; /* a NUL byte: not a text file */
		return NULL;
	}
	return buf;
}

/*
 * Parse one config file into c. Returns 0, or -1 with a message in err
 * naming the file and line. A missing file is no error when missing_ok
 * (an image without a config boots with every key at its default).
 */
static int parse_config(const char *path, struct config *c, int missing_ok,
			char *err, size_t errlen)
{
	int e = 0, lineno = 0;
	char *buf = read_file(path, CONFIG_MAX, &e), *line, *next;

	if (!buf) {
		if (e == ENOENT && missing_ok)
			return 0;
		snprintf(err, errlen, "%s: %s", path,
			 e == EFBIG ? "larger than 1 MiB" :
			 e == EINVAL ? "contains a NUL byte" : strerror(e));
		return -1;
	}
	for (line = buf; line; line = next) {
		char *eq;
		const char *why;
		int k;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		if (lineno == 1) {
			size_t m = strlen(CONFIG_MAGIC);
			if (strncmp(line, CONFIG_MAGIC " ", m + 1)) {
				snprintf(err, errlen, "%s:1: not an a3s guest config "
					 "(the first line must be \"" CONFIG_MAGIC " "
					 CONFIG_VERSION "\")", path);
				return -1;
			}
			if (strcmp(line + m + 1, CONFIG_VERSION)) {
				snprintf(err, errlen, "%s:1: unsupported config version "
					 "\"%.40s\" (this init reads version " CONFIG_VERSION ")",
					 path, line + m + 1);
				return -1;
			}
			continue;
		}
		if (line[0] == '\0' || line[0] == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected KEY=VALUE", path, lineno);
			return -1;
		}
		k = find_key(line, (size_t)(eq - line));
		if (k < 0) {
			snprintf(err, errlen, "%s:%d: unknown key \"%.*s\"", path, lineno,
				 (int)(eq - line) > 60 ? 60 : (int)(eq - line), line);
			return -1;
		}
		if ((c->seen & BIT(k)) && !(REPEATABLE & BIT(k))) {
			snprintf(err, errlen, "%s:%d: key \"%s\" given twice", path,
				 lineno, key_names[k]);
			return -1;
		}
		why = unescape(eq + 1);
		if (!why)
			why = set_key(c, (enum key)k, eq + 1);
		if (why) {
			snprintf(err, errlen, "%s:%d: %s: %s", path, lineno, key_names[k], why);
			return -1;
		}
	}
	return 0; /* buf stays allocated: the config points into it */
}

/*
 * Lay top over base; the one rule for drop-ins and for the kernel command
 * line. A single-valued key in top wins. module and env lines are added
 * (a drop-in brings the modules of the kernel the host chose). arg and
 * share lines, if top has any, replace base's: an override states the
 * whole command line or share set, or it could never remove an entry.
 */
static void overlay_config(struct config *base, const struct config *top)
{
	for (int k = 0; k < K_COUNT; k++)
		if (top->str[k])
			base->str[k] = top->str[k];
	if (top->seen & BIT(K_USER)) {
		base->uid = top->uid;
		base->gid = top->gid;
	}
	if (top->seen & BIT(K_GROUPS)) {
		base->groups = top->groups;
		base->ngroups = top->ngroups;
	}
	if (top->args.n)
		base->args = top->args;
	if (top->nshares) {
		base->shares = top->shares;
		base->nshares = top->nshares;
	}
	for (size_t i = 0; i < top->env.n; i++)
		vec_push(&base->env, top->env.v[i]);
	for (size_t i = 0; i < top->modules.n; i++)
		vec_push(&base->modules, top->modules.v[i]);
	base->seen |= top->seen;
}

/* Parse the drop-in at path (it must exist) and lay it over c. */
static int parse_dropin(const char *path, struct config *c, char *err, size_t errlen)
{
	struct config d;

	memset(&d, 0, sizeof d);
	if (parse_config(path, &d, 0, err, errlen))
		return -1;
	overlay_config(c, &d);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Lay every regular file named *.conf in dir over c, in byte order of the
 * names (strcmp: an order the host can predict whatever its locale, so its
 * 50-kernel.conf lands after an image's 10-*.conf). Names starting with
 * '.' are skipped, like a shell glob. No directory means no drop-ins; an
 * old init, which does not know the directory, simply ignores it.
 */
static int parse_dropins(const char *dir, struct config *c, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL, path[512];
	size_t n = 0;
	int rc = 0;

	if (!d) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	for (errno = 0; (e = readdir(d)); errno = 0) {
		if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".conf"))
			continue;
		names = xrealloc(names, (n + 1) * sizeof *names);
		names[n++] = xstrdup(e->d_name);
	}
	if (errno) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		rc = -1;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n && !rc; i++) {
		struct stat st;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			rc = parse_dropin(path, c, err, errlen);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/*
 * Split a kernel command line into tokens the way the kernel does (double
 * quotes group, and are removed), stopping at "--" (what follows is init's
 * argv). a3s.KEY=VALUE tokens go into cmd; every token is kept so modules
 * can get their MODULE.PARAM=VALUE options like modprobe would give them.
 * buf is split in place and must outlive cmd. Returns 0, or -1 with err.
 */
static int parse_cmdline(char *buf, char *err, size_t errlen)
{
	for (char *p = buf; *p;) {
		char *tok, *w, *eq;
		int quoted = 0, k;
		const char *why;

		while (*p == ' ' || *p == '\n' || *p == '\t')
			p++;
		if (!*p)
			break;
		tok = w = p;
		for (; *p && (quoted || (*p != ' ' && *p != '\n' && *p != '\t')); p++) {
			if (*p == '"')
				quoted = !quoted;
			else
				*w++ = *p;
		}
		if (*p)
			p++;
		*w = '\0';
		if (!strcmp(tok, "--"))
			break;
		if (ncmdline_tokens < sizeof cmdline_tokens / sizeof *cmdline_tokens)
			cmdline_tokens[ncmdline_tokens++] = tok;
		if (strncmp(tok, "a3s.", 4))
			continue;
		eq = strchr(tok, '=');
		k = find_key(tok + 4, eq ? (size_t)(eq - tok - 4) : strlen(tok + 4));
		if (k < 0 || !(ON_CMDLINE & BIT(k))) {
			snprintf(err, errlen, "kernel command line: unknown key \"%.60s\"", tok);
			return -1;
		}
		/* bare "a3s.debug" means a3s.debug=1 */
		why = eq ? unescape(eq + 1) : k == K_DEBUG ? NULL : "needs =VALUE";
		if (!why)
			why = set_key(&cmd, (enum key)k, eq ? eq + 1 : (char *)"1");
		if (why) {
			snprintf(err, errlen, "kernel command line: %.60s: %s", tok, why);
			return -1;
		}
	}
	return 0;
}

static void read_cmdline(void)
{
	int e = 0;
	char *buf = read_file("/proc/cmdline", 65536, &e), err[600];

	if (!buf)
		say("cannot read /proc/cmdline: %s (no overrides)", strerror(e));
	else if (parse_cmdline(buf, err, sizeof err))
		fatal(EXIT_SETUP, "%s", err);
}

/*
 * The effective config, in layers: guest.conf, its drop-ins, the kernel
 * command line, then the defaults for whatever is still unset.
 */
static void load_config(void)
{
	struct config file;
	char err[600];

	memset(&file, 0, sizeof file);
	if (parse_config(CONFIG_PATH, &file, 1, err, sizeof err) ||
	    parse_dropins(CONFIG_DROPIN_DIR, &file, err, sizeof err))
		fatal(EXIT_SETUP, "%s", err);
	overlay_config(&file, &cmd);
	for (int k = 0; k < K_COUNT; k++)
		if (!file.str[k] && defaults[k])
			file.str[k] = (char *)defaults[k];
	cfg = file;
	debug = !strcmp(cfg.str[K_DEBUG], "1");
}

/* ---- mounts ---------------------------------------------------------- */

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

/* ---- kernel modules -------------------------------------------------- */

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
	for (size_t i = 0; i < ncmdline_tokens; i++) {
		const char *t = cmdline_tokens[i], *eq, *opt;
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

static void load_modules(const struct vec *mods)
{
	for (size_t i = 0; i < mods->n; i++) {
		const char *path = mods->v[i];
		char params[1024];
		int flags = 0, fd;

		/* Uncompressed .ko is what the host should pack; compressed ones
		 * only load if the kernel has CONFIG_MODULE_DECOMPRESS. */
		if (has_suffix(path, ".xz") || has_suffix(path, ".zst") || has_suffix(path, ".gz"))
			flags |= MODULE_INIT_COMPRESSED_FILE;
		module_params(path, params, sizeof params);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fatal(EXIT_SETUP, "module %s: %s", path, strerror(errno));
		if (syscall(SYS_finit_module, fd, params, flags) != 0 && errno != EEXIST) {
			int e = errno;
			close(fd);
			fatal(EXIT_SETUP, "module %s: %s%s", path, strerror(e),
			      e == ENOENT ? " (unknown symbol: a dependency is missing or listed after it)" :
			      e == ENOEXEC ? " (not a module for this kernel)" :
			      (e == EOPNOTSUPP || e == EINVAL) && flags ?
			      " (this kernel cannot load compressed modules: decompress on the host)" : "");
		}
		close(fd);
		dbg("loaded module %s %s", path, params);
	}
}

/* ---- channels -------------------------------------------------------- */

/*
 * Turn off module autoloading: with an empty kernel.modprobe the kernel no
 * longer runs /sbin/modprobe (as root, from the image) whenever something
 * asks for a missing driver, e.g. mount -t virtiofs without the module.
 * The modules init was given are the only ones there will be.
 */
static void no_autoload(void)
{
	int fd = open("/proc/sys/kernel/modprobe", O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, "\n", 1) != 1)
		say("cannot disable module autoloading: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Is a virtio-serial device bound to the virtio_console driver? */
static int virtio_console_present(void)
{
	DIR *d = opendir("/sys/bus/virtio/drivers/virtio_console");
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d)))
		found = !strncmp(e->d_name, "virtio", 6);
	closedir(d);
	return found;
}

/*
 * Open a channel device, or return -1 when it does not exist. Virtio
 * console ports are added by a workqueue after the driver binds, so a
 * missing /dev/hvcN is waited for (bounded) when a virtio-serial device
 * exists. ttys are put in raw mode: no echo of host input, no \n -> \r\n.
 */
static int open_channel(const char *path, int flags)
{
	struct termios t;
	int fd;

	if (access(path, F_OK) != 0 && virtio_console_present()) {
		for (int i = 0; i < HVC_WAIT_MS && access(path, F_OK) != 0; i++)
			usleep(1000);
	}
	fd = open(path, flags | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		say("%s: %s (using the console instead)", path, strerror(errno));
		return -1;
	}
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		if (tcsetattr(fd, TCSANOW, &t) != 0)
			say("%s: cannot set raw mode: %s", path, strerror(errno));
	}
	return fd;
}

static void open_channels(void)
{
	int fds[4] = { in_fd, out_fd, err_fd, ctl_fd };

	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	ctl_fd = open_channel(cfg.str[K_CONTROL], O_RDWR);
	/* Only init (root) may write control lines: a non-root agent must not
	 * be able to forge its own exit report. */
	if (ctl_fd >= 0 && fchmod(ctl_fd, 0600) != 0)
		say("chmod %s: %s", cfg.str[K_CONTROL], strerror(errno));
	in_fd = open_channel(cfg.str[K_STDIN], O_RDONLY);
	out_fd = open_channel(cfg.str[K_STDOUT], O_WRONLY);
	err_fd = open_channel(cfg.str[K_STDERR], O_WRONLY);
	if (in_fd < 0 && (in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		fatal(EXIT_SETUP, "open /dev/null: %s", strerror(errno));
}

/* ---- disk mode ------------------------------------------------------- */

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
 * memory underneath (its files are not deleted: it is small).
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
	for (int i = 0; i < ROOT_WAIT_MS / 5 && access(dev, F_OK) != 0; i++)
		usleep(5000);
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

/* ---- sandbox --------------------------------------------------------- */

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
	/* The usual /dev links; already there is fine. */
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < 4; i++)
		if (symlink(links[i][0], links[i][1]) != 0 && errno != EEXIST)
			say("symlink %s: %s", links[i][1], strerror(errno));
}

/*
 * Mount one share by tag: virtio-fs first, then virtio-9p. A tag the host
 * did not provide fails with ENODEV (driver absent), EINVAL (virtio-fs: no
 * such tag) or ENOENT (9p: no such tag); an "optional" share is then
 * skipped, any other failure is fatal.
 */
static void mount_share(const struct share *s)
{
	unsigned long flags = MS_NOSUID | MS_NODEV | (s->ro ? MS_RDONLY : 0);
	int e1, e2;

	if (mount(s->tag, s->path, "virtiofs", flags, NULL) == 0) {
		dbg("share %s on %s: virtiofs %s", s->tag, s->path, s->ro ? "ro" : "rw");
		return;
	}
	e1 = errno;
	if (mount(s->tag, s->path, "9p", flags,
		  "trans=virtio,version=9p2000.L,msize=512000,cache=none") == 0) {
		dbg("share %s on %s: 9p %s", s->tag, s->path, s->ro ? "ro" : "rw");
		return;
	}
	e2 = errno;
	if (s->optional && (e1 == ENODEV || e1 == EINVAL || e1 == ENOENT) &&
	    (e2 == ENODEV || e2 == ENOENT)) {
		dbg("share %s: not provided by the host, skipped", s->tag);
		return;
	}
	fatal(EXIT_SETUP, "share %s on %s: virtiofs: %s; 9p: %s", s->tag, s->path,
	      strerror(e1), strerror(e2));
}

static void loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	/* Not fatal: an agent without networking is still an agent. The
	 * kernel gives lo 127.0.0.1/8 and ::1 when it comes up. */
	if (fd < 0) {
		say("loopback: socket: %s", strerror(errno));
		return;
	}
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
		say("loopback: SIOCGIFFLAGS: %s", strerror(errno));
	} else {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
			say("loopback: SIOCSIFFLAGS: %s", strerror(errno));
	}
	close(fd);
}

/* ---- the agent ------------------------------------------------------- */

struct exec_failure {
	int step; /* 0 chdir, 1 setgroups, 2 setgid, 3 setuid, 4 execve */
	int err;
};

/*
 * fork + execve the agent. A close-on-exec pipe tells the parent whether
 * execve succeeded (EOF) or which step failed (a struct exec_failure).
 */
static void start_agent(const sigset_t *oldmask)
{
	static const char *const steps[] = { "chdir", "setgroups", "setgid", "setuid", "execve" };
	struct exec_failure f = { 0, 0 };
	struct vec argv = { NULL, 0 }, envp = { NULL, 0 };
	int p[2], has_path = 0, status;
	ssize_t n;
	char t[32];

	vec_push(&argv, cfg.str[K_AGENT]);
	for (size_t i = 0; i < cfg.args.n; i++)
		vec_push(&argv, cfg.args.v[i]);
	for (size_t i = 0; i < cfg.env.n; i++) {
		vec_push(&envp, cfg.env.v[i]);
		has_path |= !strncmp(cfg.env.v[i], "PATH=", 5);
	}
	if (!has_path)
		vec_push(&envp, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	if (pipe2(p, O_CLOEXEC) != 0)
		fatal(EXIT_SETUP, "pipe: %s", strerror(errno));
	agent_pid = fork();
	if (agent_pid < 0)
		fatal(EXIT_SETUP, "fork: %s", strerror(errno));
	if (agent_pid == 0) {
		/* Child: a new session (no controlling tty), its own stdio, then
		 * drop privileges: groups, gid, uid, in that order. */
		close(p[0]);
		sigprocmask(SIG_SETMASK, oldmask, NULL);
		setsid();
		dup2(in_fd, 0);
		dup2(out_fd >= 0 ? out_fd : 2, 1);
		dup2(err_fd >= 0 ? err_fd : 2, 2);
		if (chdir(cfg.str[K_CWD]) != 0)
			f.step = 0;
		else if (setgroups(cfg.ngroups, cfg.groups) != 0)
			f.step = 1;
		else if (setgid(cfg.gid) != 0)
			f.step = 2;
		else if (setuid(cfg.uid) != 0)
			f.step = 3;
		else {
			execve(argv.v[0], argv.v, envp.v);
			f.step = 4;
		}
		f.err = errno;
		if (write(p[1], &f, sizeof f) != sizeof f)
			_exit(EXIT_SETUP); /* the parent sees a short report */
		_exit(EXIT_SETUP);
	}
	close(p[1]);
	do
		n = read(p[0], &f, sizeof f);
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == 0) {
		emit("agent-start %s", ms(t));
		dbg("agent %s started, pid %d", argv.v[0], (int)agent_pid);
		return;
	}
	while (waitpid(agent_pid, &status, 0) < 0 && errno == EINTR)
		;
	agent_pid = 0;
	if (n != sizeof f)
		fatal(EXIT_SETUP, "agent start: lost the child's report");
	if (f.step < 4)
		fatal(EXIT_SETUP, "agent: %s %s: %s", steps[f.step],
		      f.step == 0 ? cfg.str[K_CWD] : "", strerror(f.err));
	if (f.err == ENOENT || f.err == ENOTDIR)
		fatal(EXIT_NOTFOUND, "agent %s: %s", argv.v[0],
		      access(argv.v[0], F_OK) == 0 ?
		      "its ELF interpreter (dynamic loader) is missing" : "not found");
	fatal(EXIT_NOEXEC, "agent %s: cannot execute: %s", argv.v[0], strerror(f.err));
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
	if (parse_id(s, &end, &n) == 0 && !*end && n >= 1 && n <= 64)
		return (int)n;
	return -1;
}

static void forward(int sig, const char *from)
{
	char t[32];

	emit("signal %s %d %s", ms(t), sig, from);
	if (agent_pid > 0 && kill(agent_pid, sig) != 0)
		say("forward signal %d: %s", sig, strerror(errno));
}

/* One line of host input on the control channel: "signal SIG". */
static void control_line(char *line)
{
	size_t n = strlen(line);

	if (n && line[n - 1] == '\r')
		line[n - 1] = '\0';
	if (!strncmp(line, "signal ", 7) && signal_number(line + 7) > 0)
		forward(signal_number(line + 7), "control");
	else if (line[0])
		say("control input ignored: \"%.60s\"", line);
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
 * forward signals, read control input. Returns the agent's status.
 */
static int supervise(int sfd, char exit_ms[32])
{
	char line[256];
	size_t len = 0;
	int ctl_in = ctl_fd;

	for (;;) {
		struct pollfd pf[2] = { { sfd, POLLIN, 0 }, { ctl_in, POLLIN, 0 } };
		struct signalfd_siginfo si;
		int st;
		pid_t pid;

		if (poll(pf, ctl_in >= 0 ? 2 : 1, -1) < 0) {
			if (errno != EINTR) {
				say("poll: %s (control input disabled)", strerror(errno));
				ctl_in = -1;
			}
			continue;
		}
		if (pf[0].revents & POLLIN) {
			ssize_t n = read(sfd, &si, sizeof si);
			if (n == sizeof si && si.ssi_signo != SIGCHLD)
				forward((int)si.ssi_signo, "signal");
		}
		/* Reap on every wakeup: SIGCHLD coalesces. */
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			if (pid == agent_pid) {
				agent_pid = 0;
				ms(exit_ms);
				return decode_status(st);
			}
			dbg("reaped orphan %d", (int)pid);
		}
		if (ctl_in >= 0 && pf[1].revents) {
			char c[64];
			ssize_t n = read(ctl_in, c, sizeof c);
			if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN))) {
				ctl_in = -1; /* host closed it or it is broken */
				continue;
			}
			for (ssize_t i = 0; i < n; i++) {
				if (c[i] == '\n') {
					line[len] = '\0';
					control_line(line);
					len = 0;
				} else if (len < sizeof line - 1) {
					line[len++] = c[i];
				}
			}
		}
	}
}

/* ---- --check-config (host side, not PID 1) --------------------------- */

static void put_escaped(const char *v)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '\\') fputs("\\\\", stdout);
		else if (c == '\n') fputs("\\n", stdout);
		else if (c == '\t') fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
		else putchar(c);
	}
}

static void print_escaped(const char *k, const char *v)
{
	printf("%s=", k);
	put_escaped(v);
	putchar('\n');
}

/* Print c in the canonical form: only the keys given, one line each. */
static int print_config(const struct config *c)
{
	char buf[32];

	puts(CONFIG_MAGIC " " CONFIG_VERSION);
	for (int k = 0; k < K_COUNT; k++) {
		if (!(c->seen & BIT(k)))
			continue;
		if (k == K_ARG || k == K_ENV || k == K_MODULE) {
			const struct vec *v = k == K_ARG ? &c->args : k == K_ENV ? &c->env : &c->modules;
			for (size_t i = 0; i < v->n; i++)
				print_escaped(key_names[k], v->v[i]);
		} else if (k == K_SHARE) {
			for (size_t i = 0; i < c->nshares; i++) {
				fputs("share=", stdout);
				put_escaped(c->shares[i].tag);
				putchar(':');
				put_escaped(c->shares[i].path);
				printf(":%s%s\n", c->shares[i].ro ? "ro" : "rw",
				       c->shares[i].optional ? ",optional" : "");
			}
		} else if (k == K_USER) {
			printf("user=%u:%u\n", (unsigned)c->uid, (unsigned)c->gid);
		} else if (k == K_GROUPS) {
			fputs("groups=", stdout);
			for (size_t i = 0; i < c->ngroups; i++) {
				snprintf(buf, sizeof buf, "%s%u", i ? "," : "", (unsigned)c->groups[i]);
				fputs(buf, stdout);
			}
			putchar('\n');
		} else {
			print_escaped(key_names[k], c->str[k]);
		}
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * --check-config FILE [DROPIN...]: FILE with the drop-ins laid over it in
 * the order given (the guest sorts them by name), no command line, no
 * defaults. Every file must exist, so a wrong path cannot pass a test.
 */
static int check_config(char **paths, int n)
{
	struct config c;
	char err[600];

	memset(&c, 0, sizeof c);
	if (parse_config(paths[0], &c, 0, err, sizeof err))
		goto bad;
	for (int i = 1; i < n; i++)
		if (parse_dropin(paths[i], &c, err, sizeof err))
			goto bad;
	return print_config(&c);
bad:
	fprintf(stderr, "%s\n", err);
	return EXIT_SETUP;
}

/* --check-cmdline STRING: the a3s.* overrides STRING gives, as a config. */
static int check_cmdline(char *line)
{
	char err[600];

	if (parse_cmdline(line, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return EXIT_SETUP;
	}
	return print_config(&cmd);
}

/* ---- main ------------------------------------------------------------ */

int main(int argc, char **argv)
{
	sigset_t mask, oldmask;
	char t0[32], t[32];
	int sfd, status;

	ms(t0);
	if (getpid() != 1) {
		if (argc >= 3 && !strcmp(argv[1], "--check-config"))
			return check_config(argv + 2, argc - 2);
		if (argc == 3 && !strcmp(argv[1], "--check-cmdline"))
			return check_cmdline(argv[2]);
		fprintf(stderr, "usage: %s --check-config FILE [DROPIN...]\n"
			"       %s --check-cmdline STRING\n"
			"(a3s-init runs as PID 1 of an A3S guest; see docs/guest-protocol.md)\n",
			argv[0], argv[0]);
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
	reboot(RB_DISABLE_CAD);
	umask(022);

	mount_pseudo();
	open_console();
	no_autoload();
	read_cmdline();
	load_config();
	dbg("init started at %s ms", t0);
	load_modules(&cfg.modules);
	open_channels();
	emit("init-start %s", t0);

	if (cfg.str[K_ROOT][0] && root_is_initramfs()) {
		switch_root(cfg.str[K_ROOT], cfg.str[K_ROOTFSTYPE], cfg.str[K_ROOTFLAGS]);
		load_config(); /* the root file system's own config */
		load_modules(&cfg.modules);
		open_channels();
		emit("root-ready %s", ms(t));
	}

	make_root_readonly();
	mount_tmpfs();
	for (size_t i = 0; i < cfg.nshares; i++)
		mount_share(&cfg.shares[i]);
	if (sethostname(cfg.str[K_HOSTNAME], strlen(cfg.str[K_HOSTNAME])) != 0)
		say("sethostname: %s", strerror(errno));
	loopback_up();

	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		fatal(EXIT_SETUP, "signalfd: %s", strerror(errno));
	start_agent(&oldmask);
	status = supervise(sfd, t);

	/* Leftover processes die first so nothing writes during sync; the
	 * status is reported after sync, so that once the host reads it the
	 * shares are flushed. The time is when the agent was reaped. */
	kill(-1, SIGKILL);
	sync();
	emit("agent-exit %s %d", t, status);
	emit("poweroff %s", ms(t));
	dbg("agent exited with status %d; powering off", status);
	power_off();
}
