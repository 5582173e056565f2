/*
 * The workspace side of a job: the shares (virtio-fs, else 9p), a share
 * in overlay mode with its upper directory on a tmpfs or the scratch disk,
 * the change set sent back when the agent has ended, and the tmpfs
 * volumes (docs/guest-protocol.md §8).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "changes.h"
#include "channels.h"
#include "init.h"
#include "workspace.h"

/* ---- shares ------------------------------------------------------------ */

/*
 * Does the host provide tag? Without a "shares" key (from a job) it is
 * known only by trying to mount it; with one, only the tags it lists are
 * provided: a VM restored from a snapshot has the devices of every share
 * its template had, the ones this job does not use included.
 */
static int share_provided(const char *tag)
{
	const char *list = cfg.str[K_SHARES];
	size_t n = strlen(tag);

	if (!list)
		return 1;
	for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
		if (strcspn(p, ",") == n && !strncmp(p, tag, n))
			return 1;
	}
	return 0;
}

/*
 * Mount one share's device on path: virtio-fs first, then virtio-9p. A tag
 * the host did not provide fails with ENODEV (driver absent), EINVAL
 * (virtio-fs: no such tag) or ENOENT (9p: no such tag); an "optional"
 * share is then skipped (returns 0), any other failure is fatal.
 */
static int mount_share_on(const struct share *s, const char *path, int ro)
{
	unsigned long flags = MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
	int e1, e2;

	if (mount(s->tag, path, "virtiofs", flags, NULL) == 0) {
		dbg("share %s on %s: virtiofs %s", s->tag, path, ro ? "ro" : "rw");
		return 1;
	}
	e1 = errno;
	if (mount(s->tag, path, "9p", flags,
		  "trans=virtio,version=9p2000.L,msize=512000,cache=none") == 0) {
		dbg("share %s on %s: 9p %s", s->tag, path, ro ? "ro" : "rw");
		return 1;
	}
	e2 = errno;
	if (s->optional && (e1 == ENODEV || e1 == EINVAL || e1 == ENOENT) &&
	    (e2 == ENODEV || e2 == ENOENT)) {
		dbg("share %s: not provided by the host, skipped", s->tag);
		return 0;
	}
	fatal(EXIT_SETUP, "share %s on %s: virtiofs: %s; 9p: %s", s->tag, path,
	      strerror(e1), strerror(e2));
}

/* ---- overlay mode (docs/guest-protocol.md §8, "The change set") ------- */

#define OVERLAY_DIR "/run/a3s-overlay"
#define OVERLAY_LOWER OVERLAY_DIR "/lower"
#define OVERLAY_LAYER OVERLAY_DIR "/layer"
#define OVERLAY_UPPER OVERLAY_LAYER "/upper"
#define OVERLAY_WORK OVERLAY_LAYER "/work"
#define CHANGES_PORT "/dev/virtio-ports/a3s.changes"

int overlay_mounted; /* the change set is to be sent when the agent ends */

static void must_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST)
		fatal(EXIT_SETUP, "mkdir %s: %s", path, strerror(errno));
}

/*
 * The block device whose virtio serial is `serial` (the scratch disk the
 * host attached), as /dev/NAME in dev. Found by serial, not by name: the
 * names (vda, vdb) follow the order the devices were probed in.
 */
static void disk_by_serial(const char *serial, char *dev, size_t devlen)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;

	if (!d)
		fatal(EXIT_SETUP, "scratch disk %s: /sys/block: %s", serial, strerror(errno));
	while ((e = readdir(d))) {
		char p[300], v[64];
		int fd, n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "/sys/block/%s/serial", e->d_name);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = (int)read(fd, v, sizeof v - 1);
		close(fd);
		if (n <= 0)
			continue;
		v[n] = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (!strcmp(v, serial)) {
			snprintf(dev, devlen, "/dev/%s", e->d_name);
			closedir(d);
			return;
		}
	}
	closedir(d);
	fatal(EXIT_SETUP, "scratch disk %s: no block device has this serial (is "
	      "virtio_blk built in or among the modules?)", serial);
}

/*
 * Overlay mode: the share goes read-only under OVERLAY_LOWER, and an
 * overlayfs on its path takes every write into an upper directory on
 * guest-local storage: a tmpfs, or the scratch disk (ext4) with scratch=.
 * index and metacopy are off so that the upper directory holds whole
 * files, whiteouts and opaque directories; redirect_dir is on so that the
 * agent can rename a directory that has lower entries (without it rename(2)
 * fails with EXDEV, and programs other than mv rarely copy instead): the
 * change set writes such a directory whole, from the overlay (changes.c).
 */
static char overlay_merged[PATH_MAX];

static void mount_overlay(const struct share *s)
{
	char opts[600], dev[300];
	struct stat lower;

	must_mkdir(OVERLAY_DIR, 0700);
	must_mkdir(OVERLAY_LOWER, 0755);
	must_mkdir(OVERLAY_LAYER, 0755);
	if (!mount_share_on(s, OVERLAY_LOWER, 1))
		fatal(EXIT_SETUP, "overlay=%s: the host does not provide that share", s->tag);
	if (cfg.str[K_SCRATCH]) {
		disk_by_serial(cfg.str[K_SCRATCH], dev, sizeof dev);
		/* noatime: reads write nothing back to a disk nobody keeps */
		must_mount(dev, OVERLAY_LAYER, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL);
	} else {
		must_mount("tmpfs", OVERLAY_LAYER, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	}
	must_mkdir(OVERLAY_UPPER, 0755);
	must_mkdir(OVERLAY_WORK, 0700);
	/* The overlay's root takes the upper directory's owner and mode: the
	 * share's, so that an agent that could write there still can. */
	if (stat(OVERLAY_LOWER, &lower) != 0 || chown(OVERLAY_UPPER, lower.st_uid, lower.st_gid) != 0 ||
	    chmod(OVERLAY_UPPER, lower.st_mode & 07777) != 0)
		fatal(EXIT_SETUP, "overlay=%s: the upper directory: %s", s->tag, strerror(errno));
	snprintf(opts, sizeof opts, "lowerdir=" OVERLAY_LOWER ",upperdir=" OVERLAY_UPPER
		 ",workdir=" OVERLAY_WORK ",redirect_dir=on,index=off,metacopy=off");
	must_mount("overlay", s->path, "overlay", MS_NOSUID | MS_NODEV, opts);
	snprintf(overlay_merged, sizeof overlay_merged, "%s", s->path);
	overlay_mounted = 1;
	dbg("share %s on %s: overlay, upper on %s", s->tag, s->path,
	    cfg.str[K_SCRATCH] ? dev : "tmpfs");
}

/*
 * Send the change set: the upper directory as a tar on the changes port,
 * then "a3s changes BYTES ENTRIES SKIPPED" (or "a3s changes-error MSG"),
 * before agent-exit. The host applies nothing unless it received exactly
 * BYTES bytes and the tar is whole (docs/guest-protocol.md §8, "The change set").
 */
void send_changes(void)
{
	struct change_counts c;
	char err[400];
	int fd;

	/* The host names the channels' device nodes on the command line, so no
	 * link by name exists yet: made here, once, for this port alone. */
	if (access(CHANGES_PORT, F_OK) != 0)
		link_named_ports();
	fd = open(CHANGES_PORT, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		emit(ONCE, "changes-error opening %s: %s", CHANGES_PORT, strerror(errno));
		return;
	}
	if (changes_write(OVERLAY_UPPER, overlay_merged, fd, &c, err, sizeof err) != 0)
		emit(ONCE, "changes-error %s", err);
	else
		emit(ONCE, "changes %llu %llu %llu", c.bytes, c.entries, c.skipped);
	close(fd);
	dbg("change set: %llu bytes, %llu entries, %llu skipped", c.bytes, c.entries, c.skipped);
}

/*
 * Mount one share by tag on its path, or under an overlay (overlay=TAG).
 * Without a "shares" key it is known only by trying whether the host
 * provides it; with one, only the tags it lists are provided.
 */
void mount_share(const struct share *s)
{
	if (!share_provided(s->tag)) {
		if (!s->optional)
			fatal(EXIT_SETUP, "share %s on %s: the host does not provide it (its job "
			      "lists shares=%s)", s->tag, s->path, cfg.str[K_SHARES]);
		dbg("share %s: not provided by the host (job), skipped", s->tag);
		return;
	}
	if (cfg.str[K_OVERLAY] && !strcmp(cfg.str[K_OVERLAY], s->tag) && !s->ro)
		mount_overlay(s);
	else
		mount_share_on(s, s->path, s->ro);
}

/*
 * tmpfs=PATH[:SIZE]: guest-local writable volumes, mounted after the
 * shares so that one can sit inside a share (/workspace/node_modules). The
 * mount point is made if missing (in the share, then) and the volume
 * belongs to the agent's user. Nothing in it comes back to the host.
 */
void mount_volumes(void)
{
	for (size_t i = 0; i < cfg.tmpfs.n; i++) {
		char path[PATH_MAX], data[96];
		const char *v = cfg.tmpfs.v[i], *colon = strchr(v, ':');
		size_t n = colon ? (size_t)(colon - v) : strlen(v);

		if (n >= sizeof path)
			fatal(EXIT_SETUP, "tmpfs %s: path too long", v);
		memcpy(path, v, n);
		path[n] = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			fatal(EXIT_SETUP, "tmpfs %s: mkdir: %s%s", path, strerror(errno),
			      errno == EROFS ? " (the root is read-only: choose a path in a "
			      "share or one the image has)" : "");
		snprintf(data, sizeof data, "mode=0755,uid=%u,gid=%u%s%s", (unsigned)cfg.uid,
			 (unsigned)cfg.gid, colon ? ",size=" : "", colon ? colon + 1 : "");
		must_mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, data);
	}
}
