/*
 * The agent's output, from its pipes to the channels: see pump.h and
 * docs/guest-protocol.md §6.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "channels.h"
#include "pump.h"

void pump_start(struct pump *p, const char *name, int to, int *agent_end)
{
	int fds[2];

	memset(p, 0, sizeof *p);
	p->name = name;
	p->to = to;
	p->from = -1;
	*agent_end = -1;
	if (to < 0)
		return;
	if (pipe2(fds, O_CLOEXEC) != 0) {
		say("%s: pipe: %s (the agent writes to the channel itself)", name, strerror(errno));
		return;
	}
	/* init never waits on either end: poll says when each is ready */
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(to, F_SETFL, fcntl(to, F_GETFL) | O_NONBLOCK) != 0)
		say("%s: O_NONBLOCK: %s", name, strerror(errno));
	p->from = fds[0];
	*agent_end = fds[1];
}

void pump_last(struct pump *p)
{
	p->last = 1;
}

void pump_poll(const struct pump *p, struct pollfd *pf)
{
	pf->revents = 0;
	if (p->off < p->len) {
		pf->fd = p->to;
		pf->events = POLLOUT;
	} else {
		pf->fd = p->from;
		pf->events = POLLIN;
	}
}

/* The host is gone or the channel broke: what the agent writes from now
 * on is read and dropped, so that it never blocks on a full pipe. */
static void drop_channel(struct pump *p, const char *why)
{
	say("%s channel: %s; the agent's further %s is dropped", p->name, why, p->name);
	p->to = -1;
	p->off = p->len = 0;
}

/* Write what is pending, as far as the channel takes it now. */
static void flush(struct pump *p)
{
	while (p->off < p->len && p->to >= 0) {
		ssize_t n = write(p->to, p->buf + p->off, p->len - p->off);

		if (n > 0) {
			p->off += (size_t)n;
			p->sent += (unsigned long long)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return; /* the host has not taken it yet: poll says when */
		} else {
			drop_channel(p, n < 0 ? strerror(errno) : "closed");
		}
	}
	if (p->to < 0)
		p->off = p->len = 0;
}

void pump_step(struct pump *p, short revents)
{
	if (p->off < p->len) {
		if (revents & POLLOUT)
			flush(p);
		else if (revents & (POLLHUP | POLLERR | POLLNVAL))
			drop_channel(p, "the host hung up");
		return;
	}
	if (p->from < 0 || !(p->last || (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))))
		return;
	for (;;) {
		ssize_t n = read(p->from, p->buf, sizeof p->buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && !p->last)
			return;
		if (n <= 0) { /* every writer has closed it (or it broke) */
			close(p->from);
			p->from = -1;
			return;
		}
		p->off = 0;
		p->len = (size_t)n;
		flush(p);
		if (p->off < p->len)
			return; /* the channel is full: wait until it is writable */
	}
}

int pump_done(const struct pump *p)
{
	return p->from < 0 && p->off >= p->len;
}
