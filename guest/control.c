/*
 * Control input and the job (docs/guest-protocol.md §8): what the host
 * writes on the control channel (a job's text while init waits for one,
 * then "signal SIG" and "poweroff" lines), waiting on it, and the per-run
 * machine identity a job brings (entropy, the clock).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channels.h"
#include "control.h"
#include "init.h"

/* Not in musl's headers (they come from linux/random.h). */
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)

/* ---- control input (docs/guest-protocol.md §8) ------------------------- */

/* A signal by name (TERM, SIGTERM) or number (1-64); -1 if it is neither. */
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
		forward_signal(signal_number(line + 7), "control");
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
int read_control(void)
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
int wait_control(int (*done)(void), int timeout_ms)
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
void wait_for_job(void)
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

int poweroff_asked(void)
{
	return ctl_in.poweroff;
}

/* ---- the machine's identity for this run ------------------------------ */

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
void reseed(char *hex)
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
void set_clock(const char *v)
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
