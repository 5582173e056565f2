/*
 * a3s-probe: the built-in demo agent. It prints one JSON object (one line)
 * on stdout describing the sandbox it finds itself in, then optionally
 * behaves in ways the tests need (exit codes, signals, orphans).
 *
 *   --exit N            exit with status N (default 0)
 *   --kill-self SIG     die by signal SIG (number or name: TERM, KILL, ...)
 *   --write PATH        create PATH (it is left there), report the result
 *                       (repeatable, up to 8)
 *   --spawn-orphans N   make N grandchildren that outlive their parent, wait
 *                       until init has reaped them, report how many were
 *   --wait-signal       after the report, block until SIGTERM/SIGINT/SIGHUP,
 *                       print {"signal":N}, exit 128+N (or --exit N)
 *   --sleep MS          sleep MS milliseconds after the report
 *   --signal-init SIG   after the report, send SIG to PID 1 (init forwards
 *                       SIGTERM/SIGINT/SIGHUP back: use with --wait-signal)
 *   --stderr TEXT       write TEXT and a newline to stderr after the report
 *   --delay MS          sleep MS milliseconds before anything else
 *   --random N          add N bytes from getrandom(2) to the report, in hex
 *                       ("random"), to tell guests' random states apart
 *   --output-bytes N    after the report, write N bytes of a fixed
 *                       pseudo-random stream to stdout (xorshift32 from
 *                       seed 0x2545f491, each 32-bit word little-endian),
 *                       so the host can check that every byte arrived
 *
 * The report also says whether closing a file on a virtio-fs share skips
 * FUSE_FLUSH ("virtiofs_no_flush": "Y", "N", or null without the parameter)
 * and how many receive buffers each virtio-console port was given
 * ("virtio_console_port_rx_bufs": a number as text, or null without the
 * parameter): both are parameters of the microVM kernel's patches.
 *
 * It says whether the kernel has virtual terminals ("virtual_terminals":
 * whether /sys/class/tty/tty1 exists): the microVM kernel is built without.
 *
 * It says whether a UDP socket binds to 127.0.0.1 and to ::1
 * ("bind_127_0_0_1", "bind_ipv6_loopback": true, or the errno's name).
 *
 * The report always has "realtime_ms", the guest's wall clock (ms since
 * the Unix epoch), to check that a restored guest's clock is current.
 *
 * Static, one file: make -C guest
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITES 8
#define MAX_ORPHANS 64
#define MAX_RANDOM 256

extern char **environ;

static double boottime_ms(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_BOOTTIME, &t) != 0)
		return -1;
	return (double)t.tv_sec * 1000 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(long msec)
{
	struct timespec t = { msec / 1000, (msec % 1000) * 1000000L };

	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* JSON string with proper escaping; invalid UTF-8 becomes U+FFFD. */
static void jstr(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	while (*p) {
		unsigned c = *p;
		int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
			  (c & 0xf8) == 0xf0 ? 4 : 0;
		int ok = len > 0 && !(len == 2 && c < 0xc2) && !(len == 4 && c > 0xf4);

		for (int i = 1; ok && i < len; i++)
			ok = (p[i] & 0xc0) == 0x80;
		/* reject overlong 3/4-byte forms and UTF-16 surrogates */
		if (ok && len == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
			ok = 0;
		if (ok && len == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
			ok = 0;
		if (!ok) {
			fputs("\\ufffd", stdout);
			p++;
		} else if (len > 1) {
			fwrite(p, 1, (size_t)len, stdout);
			p += len;
		} else {
			if (c == '"' || c == '\\')
				printf("\\%c", c);
			else if (c == '\n')
				fputs("\\n", stdout);
			else if (c == '\t')
				fputs("\\t", stdout);
			else if (c == '\r')
				fputs("\\r", stdout);
			else if (c < 0x20 || c == 0x7f)
				printf("\\u%04x", c);
			else
				putchar((int)c);
			p++;
		}
	}
	putchar('"');
}

static const char *errno_name(int e)
{
	static const struct { int e; const char *n; } t[] = {
		{ EROFS, "EROFS" }, { EACCES, "EACCES" }, { EPERM, "EPERM" },
		{ ENOENT, "ENOENT" }, { ENOTDIR, "ENOTDIR" }, { EEXIST, "EEXIST" },
		{ ENOSPC, "ENOSPC" }, { EISDIR, "EISDIR" }, { EINVAL, "EINVAL" },
		{ EIO, "EIO" }, { EDQUOT, "EDQUOT" }, { ENOSYS, "ENOSYS" },
		{ EOPNOTSUPP, "EOPNOTSUPP" }, { EAFNOSUPPORT, "EAFNOSUPPORT" },
		{ EADDRNOTAVAIL, "EADDRNOTAVAIL" },
	};

	for (size_t i = 0; i < sizeof t / sizeof *t; i++)
		if (t[i].e == e)
			return t[i].n;
	return NULL;
}

/*
 * {"writable":bool,"errno":N,"error":"ENAME"} for creating a file at path.
 * keep_name (the --write option): name the path and leave the file there
 * so the host can see it; otherwise remove it again.
 */
static void try_write(const char *path, int keep_name)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), e = errno;

	if (fd >= 0) {
		int w = write(fd, "a3s-probe\n", 10) == 10;
		e = errno;
		close(fd);
		if (!keep_name && unlink(path) != 0 && w)
			e = errno, w = 0;
		if (w) {
			fputs("{", stdout);
			if (keep_name) {
				fputs("\"path\":", stdout);
				jstr(path);
				putchar(',');
			}
			fputs("\"writable\":true}", stdout);
			return;
		}
	}
	putchar('{');
	if (keep_name) {
		fputs("\"path\":", stdout);
		jstr(path);
		putchar(',');
	}
	printf("\"writable\":false,\"errno\":%d,\"error\":", e);
	jstr(errno_name(e) ? errno_name(e) : strerror(e));
	putchar('}');
}

static void dir_report(const char *dir, int list)
{
	char path[256];
	struct stat st;

	printf("{\"exists\":%s", stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? "true" : "false");
	if (list) {
		DIR *d = opendir(dir);
		struct dirent *e;
		int n = 0;

		fputs(",\"entries\":[", stdout);
		while (d && n < 10 && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				if (n++)
					putchar(',');
				jstr(e->d_name);
			}
		if (d)
			closedir(d);
		putchar(']');
	}
	snprintf(path, sizeof path, "%s/.a3s-probe-%d", dir, (int)getpid());
	fputs(",\"write\":", stdout);
	try_write(path, 0);
	putchar('}');
}

/* /proc/mounts fields escape space, tab, newline and backslash as \ooo. */
static char *unoctal(char *s)
{
	char *w = s, *r = s;

	for (; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return s;
}

static void mounts_report(void)
{
	FILE *f = fopen("/proc/mounts", "re");
	char line[4096];
	int n = 0;

	if (!f) {
		fputs("null", stdout);
		return;
	}
	putchar('[');
	while (fgets(line, sizeof line, f)) {
		char *fld[4], *save = NULL;
		int k;

		for (k = 0; k < 4 && (fld[k] = strtok_r(k ? NULL : line, " \n", &save)); k++)
			;
		if (k < 4)
			continue;
		if (n++)
			putchar(',');
		fputs("{\"source\":", stdout);
		jstr(unoctal(fld[0]));
		fputs(",\"target\":", stdout);
		jstr(unoctal(fld[1]));
		fputs(",\"type\":", stdout);
		jstr(unoctal(fld[2]));
		fputs(",\"options\":", stdout);
		jstr(unoctal(fld[3]));
		putchar('}');
	}
	fclose(f);
	putchar(']');
}

static void shells_report(void)
{
	static const char *const shells[] = {
		"/bin/sh", "/bin/bash", "/bin/ash", "/bin/dash", "/bin/zsh", "/bin/busybox",
		"/usr/bin/sh", "/usr/bin/bash", "/usr/bin/ash", "/usr/bin/dash", "/usr/bin/zsh",
		"/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox",
	};
	struct stat st;
	int n = 0;

	putchar('[');
	for (size_t i = 0; i < sizeof shells / sizeof *shells; i++)
		if (lstat(shells[i], &st) == 0) {
			if (n++)
				putchar(',');
			jstr(shells[i]);
		}
	printf("],\"shell_found\":%s", n ? "true" : "false");
}

/* "CapEff" from /proc/self/status, as the hex string the kernel prints. */
static void capeff(char out[32])
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];

	strcpy(out, "");
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "CapEff:\t", 8)) {
			snprintf(out, 32, "%.16s", line + 8);
			break;
		}
	if (f)
		fclose(f);
}

/*
 * A kernel module's parameter as sysfs shows it, as a JSON string, or null
 * when the kernel has no such parameter (Debian's, or the module not
 * loaded).
 */
static void module_param_report(const char *module, const char *param)
{
	char path[128], value[32] = "";
	FILE *f;

	snprintf(path, sizeof path, "/sys/module/%s/parameters/%s", module, param);
	f = fopen(path, "re");
	if (f && fgets(value, sizeof value, f))
		value[strcspn(value, "\n")] = 0;
	if (f)
		fclose(f);
	if (*value)
		jstr(value);
	else
		fputs("null", stdout);
}

/*
 * Fork n children that each fork a grandchild and exit at once: the
 * grandchildren reparent to PID 1 and exit 50 ms later. Wait (at most 5 s)
 * until /proc/PID is gone for each, i.e. init reaped the zombie.
 */
static void orphans(int n, int *spawned, int *reaped, double *wait_ms)
{
	pid_t pids[MAX_ORPHANS];
	int p[2];
	double t0;

	*spawned = *reaped = 0;
	if (n > MAX_ORPHANS)
		n = MAX_ORPHANS;
	if (pipe(p) != 0)
		return;
	for (int i = 0; i < n; i++) {
		pid_t c = fork();
		if (c == 0) {
			pid_t g = fork();
			if (g == 0) {
				close(p[0]);
				close(p[1]);
				sleep_ms(50);
				_exit(0);
			}
			if (g > 0 && write(p[1], &g, sizeof g) != sizeof g)
				_exit(1);
			_exit(0);
		}
		if (c > 0)
			while (waitpid(c, NULL, 0) < 0 && errno == EINTR)
				;
	}
	close(p[1]);
	while (*spawned < n && read(p[0], &pids[*spawned], sizeof *pids) == sizeof *pids)
		(*spawned)++;
	close(p[0]);
	t0 = boottime_ms();
	for (;;) {
		char path[32];
		*reaped = 0;
		for (int i = 0; i < *spawned; i++) {
			snprintf(path, sizeof path, "/proc/%d", (int)pids[i]);
			*reaped += access(path, F_OK) != 0;
		}
		*wait_ms = boottime_ms() - t0;
		if (*reaped == *spawned || *wait_ms > 5000)
			break;
		sleep_ms(10);
	}
}

/* n bytes of xorshift32 from a fixed seed: the host computes the same. */
static int output_bytes(long long n)
{
	static unsigned char buf[65536];
	uint32_t x = 0x2545f491u;

	while (n > 0) {
		size_t len = n < (long long)sizeof buf ? (size_t)n : sizeof buf;

		for (size_t i = 0; i < len; i += 4) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			for (size_t j = 0; j < 4 && i + j < len; j++)
				buf[i + j] = (unsigned char)(x >> (8 * j));
		}
		for (size_t off = 0; off < len;) {
			ssize_t w = write(1, buf + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return -1;
			off += (size_t)w;
		}
		n -= (long long)len;
	}
	return 0;
}

static void random_report(int n)
{
	unsigned char b[MAX_RANDOM];
	int got = 0;

	while (got < n) {
		ssize_t r = getrandom(b + got, (size_t)(n - got), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fputs(",\"random\":null", stdout);
			return;
		}
		got += (int)r;
	}
	fputs(",\"random\":\"", stdout);
	for (int i = 0; i < n; i++)
		printf("%02x", b[i]);
	putchar('"');
}

static int signal_number(const char *s)
{
	static const struct { const char *n; int s; } t[] = {
		{ "TERM", SIGTERM }, { "KILL", SIGKILL }, { "INT", SIGINT }, { "HUP", SIGHUP },
		{ "SEGV", SIGSEGV }, { "ABRT", SIGABRT }, { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 },
	};
	char *end;
	long v;

	if (!strncmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof t / sizeof *t; i++)
		if (!strcmp(s, t[i].n))
			return t[i].s;
	v = strtol(s, &end, 10);
	return *s && !*end && v > 0 && v < 65 ? (int)v : -1;
}

static long number(const char *opt, const char *s, long max)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < 0 || v > max) {
		fprintf(stderr, "a3s-probe: %s: bad number \"%s\"\n", opt, s);
		exit(2);
	}
	return v;
}

/* Is lo up? IFF_UP (bit 0) of /sys/class/net/lo/flags, which reads "0x9" when it is. */
static int loopback_up(void)
{
	char buf[32] = "";
	FILE *f = fopen("/sys/class/net/lo/flags", "r");

	if (!f)
		return 0;
	if (!fgets(buf, sizeof buf, f))
		buf[0] = '\0';
	fclose(f);
	return (strtoul(buf, NULL, 16) & 1) != 0;
}

/*
 * Can a UDP socket of this family be bound to the loopback address? That is
 * what a test server listening on 127.0.0.1 or ::1 needs. Returns 0 or the
 * errno of the step that failed.
 */
static int loopback_bind(int family)
{
	struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0), e = 0;

	if (fd < 0)
		return errno;
	if ((family == AF_INET ? bind(fd, (struct sockaddr *)&v4, sizeof v4)
			       : bind(fd, (struct sockaddr *)&v6, sizeof v6)) != 0)
		e = errno;
	close(fd);
	return e;
}

/* ,"key":true or ,"key":"ENAME" (EAFNOSUPPORT: the kernel has no such protocol) */
static void print_loopback_bind(const char *key, int family)
{
	int e = loopback_bind(family);

	printf(",\"%s\":", key);
	if (!e)
		fputs("true", stdout);
	else
		jstr(errno_name(e) ? errno_name(e) : strerror(e));
}

int main(int argc, char **argv)
{
	double start = boottime_ms();
	const char *writes[MAX_WRITES];
	const char *stderr_text = NULL;
	int nwrites = 0, exit_code = -1, kill_sig = 0, n_orphans = -1, wait_sig = 0;
	int init_sig = 0;
	int spawned = 0, reaped = 0;
	long sleep_for = 0, delay = 0;
	long long out_bytes = 0;
	int nrandom = 0;
	struct timespec now;
	double orphan_ms = 0;
	struct utsname u;
	char cwd[4096], host[256], cap[32];
	gid_t groups[64];
	int ng;
	sigset_t set;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(o, "--wait-signal")) {
			wait_sig = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "a3s-probe: unknown option or missing value: %s\n", o);
			return 2;
		}
		i++;
		if (!strcmp(o, "--exit"))
			exit_code = (int)number(o, v, 255);
		else if (!strcmp(o, "--kill-self") && (kill_sig = signal_number(v)) > 0)
			;
		else if (!strcmp(o, "--signal-init") && (init_sig = signal_number(v)) > 0)
			;
		else if (!strcmp(o, "--write") && nwrites < MAX_WRITES)
			writes[nwrites++] = v;
		else if (!strcmp(o, "--spawn-orphans"))
			n_orphans = (int)number(o, v, MAX_ORPHANS);
		else if (!strcmp(o, "--sleep"))
			sleep_for = number(o, v, 86400000L);
		else if (!strcmp(o, "--stderr"))
			stderr_text = v;
		else if (!strcmp(o, "--delay"))
			delay = number(o, v, 86400000L);
		else if (!strcmp(o, "--random"))
			nrandom = (int)number(o, v, MAX_RANDOM);
		else if (!strcmp(o, "--output-bytes"))
			out_bytes = number(o, v, 1L << 40);
		else {
			fprintf(stderr, "a3s-probe: bad option: %s %s\n", o, v);
			return 2;
		}
	}
	/* Block the signals to wait for now, so none is lost before sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (wait_sig)
		sigprocmask(SIG_BLOCK, &set, NULL);
	sleep_ms(delay);
	if (n_orphans >= 0)
		orphans(n_orphans, &spawned, &reaped, &orphan_ms);

	if (uname(&u) != 0)
		memset(&u, 0, sizeof u);
	if (!getcwd(cwd, sizeof cwd))
		strcpy(cwd, "");
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "");
	capeff(cap);

	if (clock_gettime(CLOCK_REALTIME, &now) != 0)
		memset(&now, 0, sizeof now);
	printf("{\"probe\":1,\"uptime_ms\":%.3f,\"realtime_ms\":%lld,\"kernel\":", start,
	       (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
	jstr(u.release);
	fputs(",\"machine\":", stdout);
	jstr(u.machine);
	fputs(",\"hostname\":", stdout);
	jstr(host);
	printf(",\"loopback_up\":%s", loopback_up() ? "true" : "false");
	print_loopback_bind("bind_127_0_0_1", AF_INET);
	print_loopback_bind("bind_ipv6_loopback", AF_INET6);
	printf(",\"pid\":%d,\"ppid\":%d,\"uid\":%d,\"gid\":%d,\"euid\":%d,\"egid\":%d,\"groups\":[",
	       (int)getpid(), (int)getppid(), (int)getuid(), (int)getgid(),
	       (int)geteuid(), (int)getegid());
	ng = getgroups(64, groups);
	for (int i = 0; i < ng; i++)
		printf("%s%d", i ? "," : "", (int)groups[i]);
	fputs("],\"cap_eff\":", stdout);
	jstr(cap);
	fputs(",\"cwd\":", stdout);
	jstr(cwd);
	fputs(",\"argv\":[", stdout);
	for (int i = 0; i < argc; i++) {
		if (i)
			putchar(',');
		jstr(argv[i]);
	}
	fputs("],\"env\":[", stdout);
	for (char **e = environ; e && *e; e++) {
		if (e != environ)
			putchar(',');
		jstr(*e);
	}
	printf("],\"stdio_tty\":[%s,%s,%s],\"root\":", isatty(0) ? "true" : "false",
	       isatty(1) ? "true" : "false", isatty(2) ? "true" : "false");
	snprintf(cwd, sizeof cwd, "/.a3s-probe-%d", (int)getpid());
	try_write(cwd, 0);
	fputs(",\"workspace\":", stdout);
	dir_report("/workspace", 1);
	fputs(",\"skills\":", stdout);
	dir_report("/skills", 0);
	fputs(",\"tmp\":", stdout);
	dir_report("/tmp", 0);
	fputs(",\"writes\":[", stdout);
	for (int i = 0; i < nwrites; i++) {
		if (i)
			putchar(',');
		try_write(writes[i], 1);
	}
	fputs("],\"mounts\":", stdout);
	mounts_report();
	fputs(",\"virtiofs_no_flush\":", stdout);
	module_param_report("virtiofs", "no_flush");
	fputs(",\"virtio_console_port_rx_bufs\":", stdout);
	module_param_report("virtio_console", "port_rx_bufs");
	printf(",\"virtual_terminals\":%s", access("/sys/class/tty/tty1", F_OK) == 0 ? "true" : "false");
	fputs(",\"shells\":", stdout);
	shells_report();
	if (nrandom)
		random_report(nrandom);
	if (n_orphans >= 0)
		printf(",\"orphans\":{\"spawned\":%d,\"reaped\":%d,\"wait_ms\":%.3f}",
		       spawned, reaped, orphan_ms);
	fputs("}\n", stdout);
	if (fflush(stdout) != 0)
		return 1;
	if (out_bytes && output_bytes(out_bytes) != 0)
		return 1;

	if (stderr_text)
		fprintf(stderr, "%s\n", stderr_text);
	if (sleep_for)
		sleep_ms(sleep_for);
	if (init_sig && kill(1, init_sig) != 0)
		fprintf(stderr, "a3s-probe: kill 1: %s\n", strerror(errno));
	if (wait_sig) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			return 1;
		printf("{\"signal\":%d}\n", sig);
		fflush(stdout);
		return exit_code >= 0 ? exit_code : 128 + sig;
	}
	if (kill_sig) {
		fflush(NULL);
		signal(kill_sig, SIG_DFL);
		sigemptyset(&set);
		sigaddset(&set, kill_sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		kill(getpid(), kill_sig);
		sleep_ms(1000); /* delivery is immediate; this is a safety net */
		return 1;
	}
	return exit_code >= 0 ? exit_code : 0;
}
