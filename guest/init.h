/*
 * What init.c shares with the files that do parts of PID 1's work
 * (modules.c, control.c, workspace.c): the effective config, the exit
 * statuses and the one way to fail. Logging (say, dbg, emit) is channels.h.
 */
#ifndef A3S_INIT_H
#define A3S_INIT_H

#include "config.h"

/* Exit statuses for failures of init itself (same meaning as in sh/docker). */
#define EXIT_SETUP 125    /* bad config, failed mount, module, chdir, setuid */
#define EXIT_NOEXEC 126   /* agent exists but cannot be executed */
#define EXIT_NOTFOUND 127 /* agent (or its ELF interpreter) not found */

extern struct config cfg;      /* the effective config */
extern struct cmdline cmdline; /* the kernel command line */
extern int sig_fd;             /* signalfd: SIGCHLD and the forwarded signals */

/*
 * PID 1 must never exit (the kernel panics), so every error path ends
 * here: print, report status as "a3s error", kill what is left, power off.
 */
void fatal(int status, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* mount(2), or fatal() with what failed. */
void must_mount(const char *src, const char *dst, const char *type,
		unsigned long flags, const char *data);

/* Send sig to the agent (if it runs) and report it as a "signal" line;
 * from says who sent it ("signal", "control"). */
void forward_signal(int sig, const char *from);

#endif
