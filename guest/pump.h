/*
 * The agent's stdout and stderr, carried by init from a pipe to a channel
 * (docs/guest-protocol.md §6). Init, not the agent, writes to the channel
 * so that it can count what it wrote: a virtio-serial port holds what the
 * host has not taken yet in its virtqueue (tens of MiB), and that would be
 * lost if the VM powered off before the host had it. The counts go into
 * the agent-exit line; the host says when it has them all.
 */
#ifndef A3S_PUMP_H
#define A3S_PUMP_H

#include <poll.h>
#include <stddef.h>

struct pump {
	int from;                 /* the pipe's read end; -1 once at its end */
	int to;                   /* the channel (non-blocking); -1 = discard */
	const char *name;         /* for messages: "stdout", "stderr" */
	unsigned long long sent;  /* bytes the channel took */
	size_t len, off;          /* buf[off..len) is still to be written */
	int last;                 /* the pipe ends when it is empty (pump_last) */
	char buf[65536];
};

/* A pipe for the agent's end (*agent_end, close-on-exec) carried to `to`,
 * which is made non-blocking. -1 in *agent_end when there is no channel
 * (to < 0) or a pipe cannot be made: the agent then writes to it itself. */
void pump_start(struct pump *p, const char *name, int to, int *agent_end);
/* The poll entry for this pump's next step (fd -1 when it has none). */
void pump_poll(const struct pump *p, struct pollfd *pf);
/* One step after poll: read the pipe or write the channel, as far as they go. */
void pump_step(struct pump *p, short revents);
/* No process is left to write to the pipe but one that may never close it
 * (stuck in the kernel): take what is in it now and end there. */
void pump_last(struct pump *p);
/* Done: the pipe has ended and everything read was written (or dropped). */
int pump_done(const struct pump *p);

#endif
