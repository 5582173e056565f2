/*
 * The guest init's channels to the outside: see channels.h and
 * docs/guest-protocol.md §6 (channels) and §7 (control lines).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "channels.h"
#include "config.h"

#define PORT_WAIT_MS 1000  /* at most, per boot: see port_may_come() */
#define CTL_MAX_REPEATABLE 64 /* REPEATABLE control lines per boot */
#define CTL_QUEUE 16384       /* bytes: all a boot's control lines fit */

int debug;

long long now_us(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_BOOTTIME, &t) != 0)
		return 0;
	return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

const char *ms(char buf[32])
{
	long long us = now_us();

	snprintf(buf, 32, "%lld.%03lld", us / 1000, us % 1000);
	return buf;
}

/* All of buf to the console. It may block, and that is fine: the console
 * is not a channel the host's reading paces. */
static void console_write(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(2, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to write to */
		buf += n;
		len -= (size_t)n;
	}
}

void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = snprintf(buf, sizeof buf, "a3s-init: ");

	dbg_flush(); /* what was noted before comes first */

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	console_write(buf, (size_t)n);
}

static char dbg_buf[8192];
static size_t dbg_len;

void dbg_note(long long us, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	n = snprintf(dbg_buf + dbg_len, sizeof dbg_buf - dbg_len, "a3s-init: [%lld.%03lld ms] %s\n",
		     us / 1000, us % 1000, msg);
	if (n < 0 || (size_t)n >= sizeof dbg_buf - dbg_len) {
		dbg_flush(); /* full: out now, and this one on its own */
		say("[%lld.%03lld ms] %s", us / 1000, us % 1000, msg);
		return;
	}
	dbg_len += (size_t)n;
}

void dbg_flush(void)
{
	console_write(dbg_buf, dbg_len);
	dbg_len = 0;
}

/* ---- opening channels ----------------------------------------------- */

/* Entries in dir whose names start with prefix; 0 if it cannot be read. */
static int count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += !strncmp(e->d_name, prefix, strlen(prefix));
	closedir(d);
	return n;
}

static int is_hvc(const char *path)
{
	return !strncmp(path, "/dev/hvc", 8);
}

#define NAMED_PORTS "/dev/virtio-ports/"

/*
 * Named ports: /dev/virtio-ports/NAME, the path udev gives a virtio-serial
 * port the VMM named (QEMU: -device virtserialport,name=NAME). There is no
 * udev in the guest, so init makes the links itself, from the name the
 * kernel lists in /sys/class/virtio-ports/vportNpM/name. The port's number
 * depends on the order of the VMM's devices; its name does not. A name
 * with '/' or a leading '.' is not linked.
 */
void link_named_ports(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;

	if (!d)
		return;
	if (mkdir(NAMED_PORTS, 0755) != 0 && errno != EEXIST) {
		closedir(d);
		return;
	}
	while ((e = readdir(d))) {
		char path[300], name[128], link[300], target[300];
		ssize_t n;
		int fd;

		if (strncmp(e->d_name, "vport", 5) || strlen(e->d_name) > 40)
			continue;
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue; /* no name (yet) */
		n = read(fd, name, sizeof name - 1);
		close(fd);
		while (n > 0 && name[n - 1] == '\n')
			n--;
		if (n <= 0 || name[0] == '.' || memchr(name, '/', (size_t)n))
			continue;
		name[n] = '\0';
		snprintf(link, sizeof link, NAMED_PORTS "%s", name);
		snprintf(target, sizeof target, "../%s", e->d_name);
		if (symlink(target, link) != 0 && errno != EEXIST)
			say("%s: %s", link, strerror(errno));
		dbg("port %s is /dev/%s", name, e->d_name);
	}
	closedir(d);
}

/* Ports the kernel lists, and how many of them have a name yet. */
static void count_ports(int *ports, int *named)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	char path[300];

	*ports = *named = 0;
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "vport", 5) || strlen(e->d_name) > 40)
			continue;
		(*ports)++;
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		*named += access(path, F_OK) == 0;
	}
	closedir(d);
}

/*
 * Can the virtio console port at path still appear? A kernel worker sets
 * ports up after the virtio_console driver binds: the device announces all
 * its ports at once, then each becomes a /dev/vportNpM and, if it is a
 * console, the next /dev/hvcK. With the driver built in that is over before
 * init starts, so only ports behind a module init loaded can still come.
 * Once a console port is usable (hvc_up), every announced port is listed
 * in /sys/class/virtio-ports: an hvc beyond their number cannot come.
 * Only a device that announces no console port at all leaves nothing to
 * tell: PORT_WAIT_MS bounds that case, once per boot.
 *
 * A port's name comes in a message of its own, after the device has
 * announced every port (QEMU answers each port's "ready" with its name),
 * and the kernel creates the port's name file only then. So a named port
 * may still come while a listed port has no name yet, or, after a module
 * load, while no port is listed; once every listed port has its name, a
 * name not among them will not come.
 */
static int port_may_come(const char *path, int ports_pending, int hvc_up)
{
	char sys[80];
	const char *end;
	unsigned k;
	int ports, named;

	if (!count_entries("/sys/bus/virtio/drivers/virtio_console", "virtio"))
		return 0;
	if (!strncmp(path, NAMED_PORTS, sizeof NAMED_PORTS - 1)) {
		count_ports(&ports, &named);
		return named < ports || (ports == 0 && ports_pending);
	}
	if (!ports_pending)
		return 0;
	if (is_hvc(path) && !config_parse_uint(path + 8, &end, &k) && !*end)
		return !hvc_up || k < (unsigned)count_entries("/sys/class/virtio-ports", "vport");
	if (!strncmp(path, "/dev/vport", 10) && strlen(path) < 40) {
		snprintf(sys, sizeof sys, "/sys/class/virtio-ports/%s", path + 5);
		return !hvc_up || access(sys, F_OK) == 0;
	}
	return 0;
}

/*
 * A virtio-serial port whose host side the guest does not know to be
 * connected yet: its poll says POLLHUP. The kernel learns it from a
 * message of its own (QEMU sends "port open" right after the port's name,
 * and a kernel worker handles it), so a port opened the moment its device
 * node exists, just after init loaded virtio_console, can still say so
 * for a moment; a channel that said "hung up" then would end the boot
 * (the host "hung up before it sent a job"). A host that connects at
 * start-up (QEMU's chardevs do) is soon known.
 */
static int host_unknown(int fd)
{
	struct pollfd p = { fd, POLLOUT, 0 };

	return !isatty(fd) && poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

/* A tty (an hvc console) is put in raw mode; a virtio-serial port is not a tty. */
static int open_one(const char *path, int flags)
{
	struct termios t;
	int fd = open(path, flags | O_NOCTTY | O_CLOEXEC);

	if (fd >= 0 && tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		if (tcsetattr(fd, TCSANOW, &t) != 0)
			say("%s: cannot set raw mode: %s", path, strerror(errno));
	}
	return fd;
}

void open_channels(int n, const char *const paths[], const int flags[], int fds[],
		   int ports_pending)
{
	static long long wait_end; /* one limit for the whole boot */
	int errs[8], hvc_up = 0, named = 0, rounds;

	if (n > 8)
		n = 8;
	/* Names cost a scan of sysfs: under TCG the first walk of kernfs
	 * (lookup, readdir, an attribute read) is some 10 ms of the boot. A
	 * host that knows its VMM's port numbers names /dev/vportNpM instead
	 * (the kernel command line, §4), and then no scan is made. */
	for (int i = 0; i < n; i++)
		named |= !strncmp(paths[i], NAMED_PORTS, sizeof NAMED_PORTS - 1);
	for (rounds = 0;; rounds++) {
		int waiting = 0;

		if (named)
			link_named_ports();
		for (int i = 0; i < n; i++) {
			if (rounds > 0 && fds[i] >= 0)
				continue;
			fds[i] = open_one(paths[i], flags[i]);
			errs[i] = errno;
			hvc_up |= fds[i] >= 0 && is_hvc(paths[i]);
		}
		for (int i = 0; i < n; i++)
			waiting |= fds[i] < 0 ? (errs[i] == ENOENT || errs[i] == ENODEV ||
						 errs[i] == ENXIO) &&
						port_may_come(paths[i], ports_pending, hvc_up)
					      : ports_pending && host_unknown(fds[i]);
		if (!waiting)
			break;
		if (!wait_end)
			wait_end = now_us() + PORT_WAIT_MS * 1000LL;
		if (now_us() >= wait_end) {
			/* Said once: the limit is one for the whole boot. */
			static int said;
			if (!said++)
				dbg("channels: stopped waiting for ports at the %d ms limit", PORT_WAIT_MS);
			break;
		}
		usleep(1000); /* lets the kernel worker that adds ports run */
	}
	dbg("channels looked for %d time%s", rounds + 1, rounds ? "s" : "");
	for (int i = 0; i < n; i++)
		if (fds[i] < 0)
			say("%s: %s (using the console instead)", paths[i], strerror(errs[i]));
}

/* ---- control lines --------------------------------------------------- */

/*
 * Control lines go to a channel the host drains. A blocking write would
 * let a host that stops reading stall PID 1, and with it the reaping of
 * zombies and the forwarding of signals. So the channel is non-blocking: a
 * line goes into a queue, which is written out at once as far as the
 * channel takes it, and the rest whenever poll says the channel is
 * writable again (init's supervise loop watches it). Before power-off init
 * waits, bounded, for the queue to drain (control_drain), so the last
 * lines reach a host that is slow but alive.
 *
 * A stalled host must also not make the guest lose the lines that matter.
 * QEMU's virtconsole never pushes back: what its chardev cannot take is
 * dropped, because Linux's hvc driver writes with a spinlock held. A Unix
 * socket chardev holds only a few hundred writes while the host does not
 * read (each small write is charged ~700 bytes of the ~200 KiB send
 * buffer). So a boot writes at most CTL_MAX_REPEATABLE repeatable lines
 * (signal; the rest are counted and reported on the console) besides its
 * handful of ONCE lines: all of them fit in the host's buffer, and in the
 * queue, however long the host stalls. (A throttled port, e.g. a QEMU
 * virtserialport, or another VMM, does push back: the queue absorbs it.)
 */
static int ctl_fd = -1;
static size_t ctl_len;
static unsigned ctl_repeatable, ctl_dropped;
static char ctl_buf[CTL_QUEUE];

static const char console_prefix[] = "\na3s-control: ";

/* The channel is broken or the host is gone: what is queued, and every
 * later line, goes to the console, where the host looks for them too. */
static void fall_back(const char *why)
{
	say("control channel: %s; control lines go to the console now", why);
	close(ctl_fd);
	ctl_fd = -1;
	for (char *p = ctl_buf, *end = ctl_buf + ctl_len, *nl; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p)); /* every queued line ends in one */
		console_write(console_prefix, sizeof console_prefix - 1);
		console_write(p, (size_t)(nl + 1 - p));
	}
	ctl_len = 0;
}

void control_hangup(void)
{
	if (ctl_fd >= 0)
		fall_back("the host hung up");
}

void control_flush(void)
{
	while (ctl_len > 0 && ctl_fd >= 0) {
		ssize_t n = write(ctl_fd, ctl_buf, ctl_len);
		if (n > 0) {
			ctl_len -= (size_t)n;
			memmove(ctl_buf, ctl_buf + n, ctl_len);
		} else if (n < 0 && errno == EAGAIN) {
			return; /* the host has not read yet: poll tells when */
		} else if (!(n < 0 && errno == EINTR)) {
			fall_back(n < 0 ? strerror(errno) : "closed");
		}
	}
}

void control_detach(void)
{
	if (ctl_fd >= 0)
		close(ctl_fd);
	ctl_fd = -1;
}

void control_attach(int fd)
{
	if (ctl_fd >= 0 && ctl_fd != fd)
		close(ctl_fd);
	ctl_fd = fd;
	control_flush();
}

int control_fd(void)
{
	return ctl_fd;
}

int control_pending(void)
{
	return ctl_len > 0;
}

unsigned control_dropped(void)
{
	return ctl_dropped;
}

void control_drain(int max_ms)
{
	long long end = now_us() + max_ms * 1000LL;

	for (control_flush(); ctl_fd >= 0 && ctl_len > 0; control_flush()) {
		struct pollfd p = { ctl_fd, POLLOUT, 0 };
		long long left = (end - now_us()) / 1000;

		if (left <= 0) {
			say("control channel: the host took nothing for %d ms; %zu bytes "
			    "not delivered", max_ms, ctl_len);
			return;
		}
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return;
		if ((p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLOUT))
			control_hangup();
	}
}

/*
 * Control characters are replaced so that one report is always one line.
 * Without a control channel the line goes to the console, prefixed
 * "a3s-control: " on a fresh line, so the host can find it among the
 * kernel's messages.
 */
void emit(enum line_kind kind, const char *fmt, ...)
{
	const size_t p = sizeof console_prefix - 1;
	char buf[1200];
	size_t m;
	va_list ap;
	int r;

	memcpy(buf, console_prefix, p);
	memcpy(buf + p, "a3s ", 4);
	va_start(ap, fmt);
	r = vsnprintf(buf + p + 4, sizeof buf - p - 5, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	m = 4 + ((size_t)r < sizeof buf - p - 6 ? (size_t)r : sizeof buf - p - 6);
	for (size_t i = p; i < p + m; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	buf[p + m++] = '\n';
	if (kind == REPEATABLE && ++ctl_repeatable > CTL_MAX_REPEATABLE) {
		ctl_dropped++;
	} else if (ctl_fd < 0) {
		console_write(buf, p + m);
	} else if (ctl_len + m > sizeof ctl_buf) {
		ctl_dropped++; /* cannot happen: see above */
	} else {
		memcpy(ctl_buf + ctl_len, buf + p, m);
		ctl_len += m;
		control_flush();
	}
}
