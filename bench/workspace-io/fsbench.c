/*
 * fsbench: the in-guest agent of bench/workspace-io. It runs agent-like file
 * system workloads in one directory and prints one JSON line of timings.
 *
 *   fsbench DIR [--remount TYPE:OPTIONS] [--files N] [--dirs D] [--size BYTES]
 *               [--seq-mib M] [--tar FILE]
 *
 *   (a) create  N files of BYTES bytes spread over D directories, like a
 *               package install (open O_CREAT, write, close)
 *   (b) stat    walk the D directories and fstatat every entry, like a
 *               status scan
 *   (c) read    open, read and close every file
 *   (d) seq     write M MiB in 1 MiB writes and fsync, then read it back
 *   (e) tar     BusyBox `tar -xf FILE` (a static binary, a real tool) into
 *               DIR, then `find` over what it extracted
 *
 * --remount first unmounts DIR and mounts its share again with TYPE and
 * OPTIONS (e.g. 9p:trans=virtio,version=9p2000.L,msize=131072,cache=loose):
 * the guest init mounts shares with fixed options, and this lets the bench
 * measure others without changing init. It needs root in the guest.
 *
 * Errors name the phase and the path; the exit status is then 1.
 * Static, one file: musl-gcc -static -O2 -Wno-format-truncation -o fsbench fsbench.c
 * (bench/workspace-io.ts builds it).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "share-mount.h"

#define MIB (1024 * 1024)

static const char *phase = "setup";

/*
 * Where (a) and (c) spend their time, summed per system call: what makes
 * one way of sharing slower than another (one clock read per call; the
 * phases' own totals are timed apart from these).
 */
enum { OP_MKDIR, OP_CREATE_OPEN, OP_CREATE_WRITE, OP_CREATE_CLOSE, OP_READ_OPEN, OP_READ_READ, OP_READ_CLOSE, OP_COUNT };
static const char *const op_names[OP_COUNT] = {
	"mkdir", "create_open", "create_write", "create_close", "read_open", "read_read", "read_close",
};
static double op[OP_COUNT];

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fsbench: %s: ", phase);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1000 + (double)t.tv_nsec / 1e6;
}

static long number(const char *flag, const char *v)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < 0)
		die("%s needs a non-negative number, got \"%s\"", flag, v);
	return n;
}

static void remount(const char *dir, const char *spec)
{
	char err[4096];

	phase = "remount";
	if (share_remount(dir, spec, err, sizeof err))
		die("%s", err);
}

static void xwrite(int fd, const char *buf, size_t len, const char *path)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write %s: %s", path, strerror(errno));
		}
		buf += w;
		len -= (size_t)w;
	}
}

/* Reads FD to its end; returns the byte count. */
static long long drain(int fd, char *buf, size_t size, const char *path)
{
	long long total = 0;

	for (;;) {
		ssize_t r = read(fd, buf, size);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("read %s: %s", path, strerror(errno));
		}
		if (r == 0)
			return total;
		total += r;
	}
}

/* Runs argv with stdout on /dev/null; dies unless it exits 0. */
static void run(char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		execv(argv[0], argv);
		fprintf(stderr, "fsbench: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("%s %s failed (status 0x%x)", argv[0], argv[1], status);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *remount_spec = NULL, *tar = NULL;
	long files = 2000, dirs = 50, size = 4096, seq_mib = 256;
	char path[4096], root[1024], source[1024], type[64], opts[2048];
	char *buf;
	double t, create_ms, stat_ms, read_ms, seq_write_ms = -1, seq_read_ms = -1, tar_ms = -1, find_ms = -1;
	long long bytes = 0;
	long seen = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (a[0] != '-') {
			dir = a;
			continue;
		}
		if (!v)
			die("%s needs a value", a);
		i++;
		if (strcmp(a, "--remount") == 0)
			remount_spec = v;
		else if (strcmp(a, "--files") == 0)
			files = number(a, v);
		else if (strcmp(a, "--dirs") == 0)
			dirs = number(a, v);
		else if (strcmp(a, "--size") == 0)
			size = number(a, v);
		else if (strcmp(a, "--seq-mib") == 0)
			seq_mib = number(a, v);
		else if (strcmp(a, "--tar") == 0)
			tar = v;
		else
			die("unknown option %s", a);
	}
	if (!dir || dir[0] != '/' || strlen(dir) > 512)
		die("usage: fsbench /ABSOLUTE/DIR [options] (DIR at most 512 bytes)");
	if (dirs < 1)
		dirs = 1;
	if (remount_spec)
		remount(dir, remount_spec);
	phase = "setup";
	if (!share_mount_of(dir, source, type, opts))
		snprintf(type, sizeof type, "(not a mount point)"), opts[0] = '\0';
	buf = malloc(MIB > size ? MIB : (size_t)size);
	if (!buf)
		die("out of memory");
	for (long i = 0; i < (MIB > size ? MIB : size); i++)
		buf[i] = (char)('a' + i % 26);
	snprintf(root, sizeof root, "%s/fsbench", dir);
	if (mkdir(root, 0755) != 0)
		die("mkdir %s: %s", root, strerror(errno));

	/* The tarball is read once first, so (e) times the extraction, not the root disk. */
	if (tar) {
		int fd = open(tar, O_RDONLY);

		if (fd < 0)
			die("open %s: %s", tar, strerror(errno));
		drain(fd, buf, MIB, tar);
		close(fd);
	}

	phase = "create";
	t = now_ms();
	for (long d = 0; d < dirs; d++) {
		snprintf(path, sizeof path, "%s/d%03ld", root, d);
		if (mkdir(path, 0755) != 0)
			die("mkdir %s: %s", path, strerror(errno));
	}
	op[OP_MKDIR] = now_ms() - t;
	for (long i = 0; i < files; i++) {
		int fd;
		double t0, t1, t2;

		snprintf(path, sizeof path, "%s/d%03ld/f%05ld", root, i % dirs, i);
		t0 = now_ms();
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		t1 = now_ms();
		xwrite(fd, buf, (size_t)size, path);
		t2 = now_ms();
		if (close(fd) != 0)
			die("close %s: %s", path, strerror(errno));
		op[OP_CREATE_OPEN] += t1 - t0;
		op[OP_CREATE_WRITE] += t2 - t1;
		op[OP_CREATE_CLOSE] += now_ms() - t2;
	}
	create_ms = now_ms() - t;

	phase = "stat";
	t = now_ms();
	for (long d = 0; d < dirs; d++) {
		DIR *dp;
		struct dirent *e;

		snprintf(path, sizeof path, "%s/d%03ld", root, d);
		dp = opendir(path);
		if (!dp)
			die("opendir %s: %s", path, strerror(errno));
		while ((e = readdir(dp))) {
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			if (fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
				die("stat %s/%s: %s", path, e->d_name, strerror(errno));
			if (st.st_size != size)
				die("%s/%s has %lld bytes, not %ld", path, e->d_name, (long long)st.st_size, size);
			seen++;
		}
		closedir(dp);
	}
	stat_ms = now_ms() - t;
	if (seen != files)
		die("found %ld files, not %ld", seen, files);

	phase = "read";
	t = now_ms();
	for (long i = 0; i < files; i++) {
		int fd;
		double t0, t1, t2;

		snprintf(path, sizeof path, "%s/d%03ld/f%05ld", root, i % dirs, i);
		t0 = now_ms();
		fd = open(path, O_RDONLY);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		t1 = now_ms();
		bytes += drain(fd, buf, MIB, path);
		t2 = now_ms();
		close(fd);
		op[OP_READ_OPEN] += t1 - t0;
		op[OP_READ_READ] += t2 - t1;
		op[OP_READ_CLOSE] += now_ms() - t2;
	}
	read_ms = now_ms() - t;
	if (bytes != (long long)files * size)
		die("read %lld bytes, not %lld", bytes, (long long)files * size);

	if (seq_mib > 0) {
		int fd;

		phase = "seq-write";
		snprintf(path, sizeof path, "%s/seq.bin", root);
		t = now_ms();
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		for (long i = 0; i < seq_mib; i++)
			xwrite(fd, buf, MIB, path);
		/* Until fsync returns the data may be only in the guest's page cache. */
		if (fsync(fd) != 0)
			die("fsync %s: %s", path, strerror(errno));
		close(fd);
		seq_write_ms = now_ms() - t;

		phase = "seq-read";
		t = now_ms();
		fd = open(path, O_RDONLY);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		if (drain(fd, buf, MIB, path) != (long long)seq_mib * MIB)
			die("%s is short", path);
		close(fd);
		seq_read_ms = now_ms() - t;
	}

	if (tar) {
		char target[1100];
		char *tar_argv[] = { "/bin/busybox", "tar", "-xf", (char *)tar, "-C", target, NULL };
		char *find_argv[] = { "/bin/busybox", "find", target, "-type", "f", NULL };

		snprintf(target, sizeof target, "%s/tar", root);
		phase = "tar";
		if (mkdir(target, 0755) != 0)
			die("mkdir %s: %s", target, strerror(errno));
		t = now_ms();
		run(tar_argv);
		tar_ms = now_ms() - t;
		phase = "find";
		t = now_ms();
		run(find_argv);
		find_ms = now_ms() - t;
	}

	printf("{\"ops_ms\":{");
	for (int k = 0; k < OP_COUNT; k++)
		printf("%s\"%s\":%.1f", k ? "," : "", op_names[k], op[k]);
	printf("},");
	printf("\"dir\":\"%s\",\"fstype\":\"%s\",\"options\":\"%s\",\"files\":%ld,\"dirs\":%ld,\"size\":%ld,\"seq_mib\":%ld,"
	       "\"create_ms\":%.1f,\"stat_ms\":%.1f,\"read_ms\":%.1f,\"seq_write_ms\":%.1f,\"seq_read_ms\":%.1f,"
	       "\"tar_ms\":%.1f,\"find_ms\":%.1f}\n",
	       dir, type, opts, files, dirs, size, seq_mib, create_ms, stat_ms, read_ms, seq_write_ms, seq_read_ms, tar_ms,
	       find_ms);
	return 0;
}
