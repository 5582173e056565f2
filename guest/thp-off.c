/*
 * thp-off: run a program with transparent huge pages turned off for it
 * (and for any child it forks): thp-off PROGRAM [ARG...].
 *
 * A host-side helper, like config-check: `run` boots QEMU through it under
 * TCG (src/boot/qemu-launch.ts says why, with the measurements). QEMU asks
 * for huge pages on the guest's RAM and its translation buffer (madvise
 * MADV_HUGEPAGE), and where the host honours that, each first touch of a
 * 2 MiB region costs a whole huge page allocated and cleared: on this
 * project's machines a boot was faster without. PR_SET_THP_DISABLE is
 * inherited by forks and kept across execve, and needs no privilege;
 * util-linux has no tool that sets it, hence this one.
 *
 * Exit status: PROGRAM's own (this process becomes it), or 127 when it
 * could not be executed, 126 when the flag could not be set (a kernel
 * older than 3.15), each with the reason on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_THP_DISABLE
#define PR_SET_THP_DISABLE 41
#endif

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: thp-off PROGRAM [ARG...]\n");
		return 2;
	}
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) {
		fprintf(stderr, "thp-off: prctl(PR_SET_THP_DISABLE): %s\n", strerror(errno));
		return 126;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "thp-off: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
