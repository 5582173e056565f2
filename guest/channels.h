/*
 * How the guest init talks to the outside (docs/guest-protocol.md §6-§7):
 * messages for people on the console, control lines for the host, and the
 * virtio console channels that carry them and the agent's stdio.
 */
#ifndef A3S_CHANNELS_H
#define A3S_CHANNELS_H

/* Microseconds since the kernel started (CLOCK_BOOTTIME). */
long long now_us(void);
/* The same in milliseconds, as control lines write it: "123.456". */
const char *ms(char buf[32]);

/* A message on the console (init's fd 2): "a3s-init: ...". */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Progress messages, only with a3s.debug, each with the boot time it was
 * noted at. They are kept in memory and printed by dbg_flush(), which init
 * calls before it waits for anything and once the agent runs: a console
 * write under TCG takes milliseconds of the guest's only CPU (the UART is
 * emulated byte by byte), which would land inside the very steps the
 * times measure.
 */
extern int debug;
void dbg_note(long long us, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dbg_flush(void);
#define dbg(fmt, ...) do { \
	if (debug) \
		dbg_note(now_us(), fmt, ##__VA_ARGS__); \
} while (0)
/* The same for a moment taken earlier (now_us()). */
#define dbg_at(us, fmt, ...) do { \
	if (debug) \
		dbg_note(us, fmt, ##__VA_ARGS__); \
} while (0)

/*
 * Open n channel devices into fds, -1 (and a console message) for each
 * one that is not there. ttys are put in raw mode. A virtio console port
 * that may still appear is waited for (see channels.c), all of them
 * within one time limit per boot. ports_pending: init loaded kernel
 * modules in this boot, so ports may still be being set up.
 */
/*
 * Makes /dev/virtio-ports/NAME for every named port the kernel lists, for a
 * port opened by its name after the channels were opened by device node.
 */
void link_named_ports(void);

void open_channels(int n, const char *const paths[], const int flags[], int fds[],
		   int ports_pending);

/* Control lines: "a3s EVENT FIELDS...". */
enum line_kind {
	ONCE,       /* a handful per boot: always sent */
	REPEATABLE, /* signal: at most 64 per boot are sent (see channels.c) */
};
void emit(enum line_kind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send control lines to fd (non-blocking), or to the console if fd < 0;
 * lines still queued for the previous channel go to the new one. */
void control_attach(int fd);
/* Close the channel but keep what is queued, for the next control_attach
 * (lines emitted in between go to the console). */
void control_detach(void);
int control_fd(void);
/* Bytes waiting for the host; control_flush() writes what it takes now. */
int control_pending(void);
void control_flush(void);
/* The channel reported a hangup or error: use the console from now on. */
void control_hangup(void);
/* Wait, at most max_ms, until the host has taken every queued line. */
void control_drain(int max_ms);
unsigned control_dropped(void);

#endif
