/*
 * coherence: the in-guest side of bench/workspace-coherence. It watches
 * what the guest sees of files the host changes, and writes files for the
 * host to watch, printing one JSON line per event on stdout (the host reads
 * them as they come).
 *
 *   coherence DIR [--remount TYPE:OPTIONS]
 *
 * At start it opens DIR/edit.txt and keeps that descriptor ("held"), writes
 * DIR/from-guest.txt with write+close ("wrote"), and writes
 * DIR/from-guest-held.txt with write only, the file left open ("wrote-held").
 * Then, every 10 ms, it looks at:
 *   reopen  the first bytes of DIR/edit.txt, opened afresh each time
 *   held    the first bytes read with pread from the held descriptor
 *   size    stat(DIR/edit.txt).st_size
 *   new     whether DIR/new.txt exists (stat)
 * and prints {"t":MS,...} whenever one of them changes. It ends when
 * reopen reads "stop", or after 30 s. --remount: see share-mount.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "share-mount.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1000 + (double)t.tv_nsec / 1e6;
}

/* The first bytes of a file, up to the first newline; "" on error. */
static void first_line(int fd, char *out, size_t n)
{
	ssize_t r = pread(fd, out, n - 1, 0);

	out[r > 0 ? r : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

static int write_file(const char *path, const char *text, int keep_open)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		fprintf(stderr, "coherence: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!keep_open)
		close(fd);
	return fd;
}

int main(int argc, char **argv)
{
	char path[1024], edit[1024], fresh[64], held[64], last_reopen[64] = "?", last_held[64] = "?";
	long long last_size = -2;
	int last_new = -1, held_fd;
	double start = now_ms();

	if ((argc != 2 && !(argc == 4 && strcmp(argv[2], "--remount") == 0)) || strlen(argv[1]) > 900) {
		fprintf(stderr, "usage: coherence DIR [--remount TYPE:OPTIONS]\n");
		return 2;
	}
	if (argc == 4 && share_remount(argv[1], argv[3], path, sizeof path)) {
		fprintf(stderr, "coherence: %s\n", path);
		return 1;
	}
	snprintf(edit, sizeof edit, "%s/edit.txt", argv[1]);
	held_fd = open(edit, O_RDONLY);
	if (held_fd < 0) {
		fprintf(stderr, "coherence: %s: %s\n", edit, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof path, "%s/from-guest.txt", argv[1]);
	if (write_file(path, "g1\n", 0) < 0)
		return 1;
	printf("{\"t\":%.1f,\"event\":\"wrote\"}\n", now_ms() - start);
	snprintf(path, sizeof path, "%s/from-guest-held.txt", argv[1]);
	if (write_file(path, "g2\n", 1) < 0)
		return 1;
	printf("{\"t\":%.1f,\"event\":\"wrote-held\"}\n", now_ms() - start);
	fflush(stdout);

	while (now_ms() - start < 30000) {
		struct stat st;
		int fd = open(edit, O_RDONLY), is_new;
		long long size = stat(edit, &st) == 0 ? (long long)st.st_size : -1;

		fresh[0] = '\0';
		if (fd >= 0) {
			first_line(fd, fresh, sizeof fresh);
			close(fd);
		}
		first_line(held_fd, held, sizeof held);
		snprintf(path, sizeof path, "%s/new.txt", argv[1]);
		is_new = stat(path, &st) == 0;
		if (strcmp(fresh, last_reopen) || strcmp(held, last_held) || size != last_size || is_new != last_new) {
			printf("{\"t\":%.1f,\"reopen\":\"%s\",\"held\":\"%s\",\"size\":%lld,\"new\":%s}\n", now_ms() - start, fresh, held,
			       size, is_new ? "true" : "false");
			fflush(stdout);
			snprintf(last_reopen, sizeof last_reopen, "%s", fresh);
			snprintf(last_held, sizeof last_held, "%s", held);
			last_size = size;
			last_new = is_new;
		}
		if (strcmp(fresh, "stop") == 0)
			return 0;
		usleep(10000);
	}
	return 0;
}
