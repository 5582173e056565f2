/*
 * Control input and the job (control.c): what the host writes on the
 * control channel, and the machine identity a job brings.
 */
#ifndef A3S_CONTROL_H
#define A3S_CONTROL_H

/* Read what the host wrote and act on it; 0 when the input has ended or broken. */
int read_control(void);

/*
 * Wait on the signalfd and the control channel until done() says so, for
 * at most timeout_ms (-1: no limit). 0 when done, 1 on timeout, 2 when
 * the host hung up, or the number of a signal that reached init.
 */
int wait_control(int (*done)(void), int timeout_ms);

/* With job=1: "a3s ready", then the job read and laid over the config. */
void wait_for_job(void);

/* The host said "poweroff". */
int poweroff_asked(void);

/* Add the host's entropy (hex) and reseed the CRNG; wipes hex. */
void reseed(char *hex);

/* Set the wall clock to "SECONDS[.FRACTION]". */
void set_clock(const char *v);

#endif
