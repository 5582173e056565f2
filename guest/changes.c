/*
 * The overlay's upper directory as a tar with whiteouts: see changes.h.
 *
 * Written once, by init, after every process of the agent is gone, so the
 * tree does not change while it is read. The stream is ustar headers with
 * a PAX extended header ('x') in front of a member whose name or link
 * target is longer than the ustar fields, or whose size or ids do not fit
 * them. Names are relative to the workspace ("src/a.c", "src/"), as the
 * host's change-set reader expects (src/boot/change-set.ts).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "changes.h"

#define BLOCK 512
#define NAME_FIELD 100
#define OPAQUE_XATTR "trusted.overlay.opaque"
#define REDIRECT_XATTR "trusted.overlay.redirect"

struct writer {
	int fd;
	int failed;       /* errno of the first failed write, else 0 */
	char *err;
	size_t errlen;
	struct change_counts *counts;
	const char *merged; /* the overlay's mount point: renamed directories are read there */
	size_t len;
	char buf[65536];
};

/*
 * Regular files with more than one name: the first name written for each
 * (dev, ino), so that its other names go into the set as hard links to it
 * (tar type '1'), as the agent made them. An open-addressed table, half
 * full at most; once it is, further names are written as separate files,
 * which is what they hold all the same.
 */
#define LINK_SLOTS 16384
static struct first_name {
	dev_t dev;
	ino_t ino;
	char *path;
} first_names[LINK_SLOTS];
static size_t first_names_used;

/* The first name of st's file if one was written, else NULL (and path is remembered as its first). */
static const char *first_name_of(const struct stat *st, const char *path)
{
	size_t i = ((size_t)st->st_ino * 2654435761u ^ (size_t)st->st_dev) % LINK_SLOTS;

	for (; first_names[i].path; i = (i + 1) % LINK_SLOTS)
		if (first_names[i].ino == st->st_ino && first_names[i].dev == st->st_dev)
			return first_names[i].path;
	if (first_names_used < LINK_SLOTS / 2 && (first_names[i].path = strdup(path))) {
		first_names[i].dev = st->st_dev;
		first_names[i].ino = st->st_ino;
		first_names_used++;
	}
	return NULL;
}

static void flush(struct writer *w)
{
	size_t off = 0;

	while (off < w->len && !w->failed) {
		ssize_t n = write(w->fd, w->buf + off, w->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			w->failed = n < 0 ? errno : EIO;
			snprintf(w->err, w->errlen, "writing the change set: %s", strerror(w->failed));
			break;
		}
		off += (size_t)n;
	}
	w->counts->bytes += off;
	w->len = 0;
}

static void put(struct writer *w, const void *p, size_t n)
{
	const char *s = p;

	while (n && !w->failed) {
		size_t take = sizeof w->buf - w->len < n ? sizeof w->buf - w->len : n;
		memcpy(w->buf + w->len, s, take);
		w->len += take;
		s += take;
		n -= take;
		if (w->len == sizeof w->buf)
			flush(w);
	}
}

static void put_zeros(struct writer *w, size_t n)
{
	static const char zero[BLOCK];

	while (n && !w->failed) {
		size_t take = n < BLOCK ? n : BLOCK;
		put(w, zero, take);
		n -= take;
	}
}

static void pad(struct writer *w, unsigned long long size)
{
	put_zeros(w, (size_t)((BLOCK - size % BLOCK) % BLOCK));
}

/* v in octal, NUL-terminated, in a field of width bytes; 0 if it does not fit. */
static int octal(char *field, size_t width, unsigned long long v)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof tmp, "%0*llo", (int)width - 1, v);

	if (n < 0 || (size_t)n > width - 1)
		return 0;
	memcpy(field, tmp, (size_t)n + 1);
	return 1;
}

/* One PAX record "LEN KEY=VALUE\n" appended to rec (cap bytes); the new length. */
static size_t pax_record(char *rec, size_t used, size_t cap, const char *key, const char *val)
{
	size_t body = strlen(key) + strlen(val) + 3, digits = 1, len;
	char num[24];

	for (;;) {
		len = body + digits;
		if ((size_t)snprintf(num, sizeof num, "%zu", len) == digits)
			break;
		digits++;
	}
	if (used + len > cap)
		return used; /* cannot happen: cap is sized for PATH_MAX names */
	memcpy(rec + used, num, digits);
	snprintf(rec + used + digits, cap - used - digits, " %s=%s\n", key, val);
	return used + len;
}

struct member {
	const char *name, *link;
	char type;
	mode_t mode;
	unsigned long long uid, gid, size, mtime;
};

static void header(struct writer *w, const struct member *m)
{
	char h[BLOCK], rec[3 * PATH_MAX], num[24];
	size_t nrec = 0;
	unsigned sum = 0;

	memset(h, 0, sizeof h);
	if (strlen(m->name) > NAME_FIELD)
		nrec = pax_record(rec, nrec, sizeof rec, "path", m->name);
	if (m->link && strlen(m->link) > NAME_FIELD)
		nrec = pax_record(rec, nrec, sizeof rec, "linkpath", m->link);
	if (!octal(h + 124, 12, m->size)) {
		snprintf(num, sizeof num, "%llu", m->size);
		nrec = pax_record(rec, nrec, sizeof rec, "size", num);
	}
	if (!octal(h + 108, 8, m->uid)) {
		snprintf(num, sizeof num, "%llu", m->uid);
		nrec = pax_record(rec, nrec, sizeof rec, "uid", num);
	}
	if (!octal(h + 116, 8, m->gid)) {
		snprintf(num, sizeof num, "%llu", m->gid);
		nrec = pax_record(rec, nrec, sizeof rec, "gid", num);
	}
	if (nrec) {
		struct member x = { "PaxHeader", NULL, 'x', 0644, 0, 0, nrec, m->mtime };
		header(w, &x);
		put(w, rec, nrec);
		pad(w, nrec);
		memset(h, 0, sizeof h);
		octal(h + 108, 8, m->uid > 07777777 ? 0 : m->uid);
		octal(h + 116, 8, m->gid > 07777777 ? 0 : m->gid);
		if (!octal(h + 124, 12, m->size))
			octal(h + 124, 12, 0);
	}
	memcpy(h, m->name, strlen(m->name) > NAME_FIELD ? NAME_FIELD : strlen(m->name));
	octal(h + 100, 8, m->mode & 07777);
	octal(h + 136, 12, m->mtime);
	h[156] = m->type;
	if (m->link)
		memcpy(h + 157, m->link, strlen(m->link) > NAME_FIELD ? NAME_FIELD : strlen(m->link));
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < BLOCK; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	put(w, h, BLOCK);
	if (m->type != 'x')
		w->counts->entries++;
}

static int fail(struct writer *w, const char *what, const char *path)
{
	if (!w->failed) {
		w->failed = errno ? errno : EIO;
		snprintf(w->err, w->errlen, "%s %s: %s", what, path, strerror(w->failed));
	}
	return -1;
}

/* The file's data, exactly st_size bytes: the agent is gone, so it cannot change. */
static int put_file(struct writer *w, int fd, const char *path, unsigned long long size)
{
	unsigned long long left = size;

	while (left && !w->failed) {
		size_t room = sizeof w->buf - w->len;
		ssize_t n = read(fd, w->buf + w->len, room < left ? room : (size_t)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(w, "reading", path);
		if (n == 0) {
			errno = EIO;
			return fail(w, "reading (it shrank)", path);
		}
		w->len += (size_t)n;
		left -= (unsigned long long)n;
		if (w->len == sizeof w->buf)
			flush(w);
	}
	pad(w, size);
	return w->failed ? -1 : 0;
}

/*
 * A directory the agent renamed while it had entries in the lower layer
 * (overlayfs's redirect_dir): its upper directory holds only what changed
 * in it, and an xattr naming where it came from. In the change set it is
 * whole: opaque, with every entry as the overlay shows it (read at
 * merged/path), so the host needs nothing from the old path, which the
 * rename left a whiteout at. The stat and the open by path are checked to
 * be the same directory on the overlay, not something mounted there.
 */
static int walk(struct writer *w, int dirfd, char *path, size_t plen, dev_t dev, int whole);

static int walk_renamed(struct writer *w, char *path, size_t plen, const struct member *m)
{
	char full[2 * PATH_MAX + 64], opq[PATH_MAX + 64];
	struct member o = { opq, NULL, '0', 0600, 0, 0, 0, m->mtime };
	struct stat root, st;
	int fd;

	snprintf(opq, sizeof opq, "%s.wh..wh..opq", path);
	header(w, &o);
	snprintf(full, sizeof full, "%s/%s", w->merged, path);
	if (stat(w->merged, &root) != 0)
		return fail(w, "stat", w->merged);
	fd = open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(w, "opening", full);
	if (fstat(fd, &st) != 0 || st.st_dev != root.st_dev) {
		close(fd);
		errno = EXDEV;
		return fail(w, "reading the renamed directory", full);
	}
	return walk(w, fd, path, plen, root.st_dev, 1);
}

/*
 * Every entry of the directory dirfd, whose name in the tar is path (plen
 * bytes, "" or "a/b/"), staying on file system dev. whole: dirfd is on the
 * merged overlay (walk_renamed), where there are no whiteouts and every
 * entry is written.
 */
static int walk(struct writer *w, int dirfd, char *path, size_t plen, dev_t dev, int whole)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *e;
	int r = 0;

	if (!d) {
		close(dirfd);
		return fail(w, "opening", plen ? path : ".");
	}
	while (r == 0 && !w->failed && (errno = 0, e = readdir(d))) {
		const char *n = e->d_name;
		size_t nlen = strlen(n);
		struct stat st;
		struct member m;

		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (plen + nlen + 2 + sizeof ".wh..wh..opq" > PATH_MAX) {
			errno = ENAMETOOLONG;
			r = fail(w, "a name under", plen ? path : ".");
			break;
		}
		memcpy(path + plen, n, nlen + 1);
		if (fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			r = fail(w, "stat", path);
			break;
		}
		m = (struct member){ path, NULL, '0', st.st_mode, st.st_uid, st.st_gid, 0,
				     (unsigned long long)(st.st_mtime < 0 ? 0 : st.st_mtime) };
		if (!whole && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
			/* overlayfs's whiteout: NAME was deleted */
			char wh[PATH_MAX + 64];
			snprintf(wh, sizeof wh, "%.*s.wh.%s", (int)plen, path, n);
			m.name = wh;
			m.mode = 0600;
			header(w, &m);
		} else if (S_ISREG(st.st_mode) && st.st_nlink > 1 && (m.link = first_name_of(&st, path))) {
			m.type = '1'; /* another name of a file already in the set */
			header(w, &m);
		} else if (S_ISREG(st.st_mode)) {
			int fd = openat(dirfd, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				r = fail(w, "opening", path);
				break;
			}
			m.size = (unsigned long long)st.st_size;
			header(w, &m);
			r = put_file(w, fd, path, m.size);
			close(fd);
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t t = readlinkat(dirfd, n, target, sizeof target - 1);
			if (t < 0) {
				r = fail(w, "readlink", path);
				break;
			}
			target[t] = '\0';
			m.type = '2';
			m.link = target;
			header(w, &m);
		} else if (S_ISDIR(st.st_mode) && st.st_dev != dev) {
			/* A mount a root agent left on the upper directory: not its changes. */
			w->counts->skipped++;
		} else if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			char v[2];
			if (sub < 0) {
				r = fail(w, "opening", path);
				break;
			}
			path[plen + nlen] = '/';
			path[plen + nlen + 1] = '\0';
			m.type = '5';
			header(w, &m);
			if (!whole && fgetxattr(sub, REDIRECT_XATTR, NULL, 0) >= 0) {
				close(sub);
				r = walk_renamed(w, path, plen + nlen + 1, &m);
				path[plen] = '\0';
				continue;
			}
			/* an opaque directory hides everything the lower layer has in it */
			if (!whole && fgetxattr(sub, OPAQUE_XATTR, v, sizeof v) == 1 && v[0] == 'y') {
				char opq[PATH_MAX + 64];
				struct member o = { opq, NULL, '0', 0600, 0, 0, 0, m.mtime };
				snprintf(opq, sizeof opq, "%s.wh..wh..opq", path);
				header(w, &o);
			}
			r = walk(w, sub, path, plen + nlen + 1, dev, whole);
		} else {
			w->counts->skipped++; /* FIFOs, sockets, devices: nothing a workspace carries */
		}
		path[plen] = '\0';
	}
	if (r == 0 && !w->failed && errno)
		r = fail(w, "reading the directory", plen ? path : ".");
	closedir(d);
	return w->failed ? -1 : r;
}

int changes_write(const char *upper, const char *merged, int fd, struct change_counts *counts, char *err, size_t errlen)
{
	static struct writer w;
	static char path[PATH_MAX + 32];
	int dirfd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;

	memset(counts, 0, sizeof *counts);
	w.fd = fd;
	w.failed = 0;
	w.err = err;
	w.errlen = errlen;
	w.counts = counts;
	w.len = 0;
	w.merged = merged;
	if (dirfd < 0 || fstat(dirfd, &st) != 0) {
		snprintf(err, errlen, "opening %s: %s", upper, strerror(errno));
		return -1;
	}
	path[0] = '\0';
	if (walk(&w, dirfd, path, 0, st.st_dev, 0) != 0)
		return -1;
	put_zeros(&w, 2 * BLOCK); /* the end-of-archive marker */
	flush(&w);
	return w.failed ? -1 : 0;
}
