/*
 * share-mount.h: finding and replacing the mount of a share, for the
 * in-guest bench agents (fsbench.c, coherence.c). The guest init mounts
 * shares with fixed options; remounting from the agent lets the benchmarks
 * try others (9p cache modes, msize) without changing init. Needs root.
 */
#ifndef SHARE_MOUNT_H
#define SHARE_MOUNT_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/* The source (tag), type and options of the visible mount on DIR, from /proc/self/mounts. */
static int share_mount_of(const char *dir, char source[1024], char type[64], char opts[2048])
{
	FILE *f = fopen("/proc/self/mounts", "r");
	char line[4096];
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f)) {
		char src[1024], target[1024], ty[64], op[2048];

		if (sscanf(line, "%1023s %1023s %63s %2047s", src, target, ty, op) != 4)
			continue;
		if (strcmp(target, dir) != 0)
			continue;
		/* The last mount on DIR is the visible one. */
		memcpy(source, src, sizeof src);
		memcpy(type, ty, sizeof ty);
		memcpy(opts, op, sizeof op);
		found = 1;
	}
	fclose(f);
	return found;
}

/*
 * Unmounts DIR and mounts its share again as SPEC = TYPE:OPTIONS (e.g.
 * "9p:trans=virtio,version=9p2000.L,msize=131072,cache=loose"). A virtio-9p
 * channel serves one mount at a time, so the old mount must go first.
 * Returns NULL, or a message in ERR.
 */
static const char *share_remount(const char *dir, const char *spec, char *err, size_t n)
{
	char source[1024], type[64], opts[2048], newtype[64];
	const char *colon = strchr(spec, ':');

	if (!colon || colon - spec >= (long)sizeof newtype)
		return snprintf(err, n, "--remount needs TYPE:OPTIONS, got \"%s\"", spec), err;
	snprintf(newtype, sizeof newtype, "%.*s", (int)(colon - spec), spec);
	if (!share_mount_of(dir, source, type, opts))
		return snprintf(err, n, "%s is not a mount point", dir), err;
	/* Our working directory may be DIR itself (init starts agents in /workspace). */
	if (chdir("/") != 0)
		return snprintf(err, n, "chdir /: %s", strerror(errno)), err;
	if (umount2(dir, 0) != 0)
		return snprintf(err, n, "umount %s: %s", dir, strerror(errno)), err;
	if (mount(source, dir, newtype, MS_NOSUID | MS_NODEV, colon + 1) != 0)
		return snprintf(err, n, "mount -t %s %s %s -o %s: %s", newtype, source, dir, colon + 1, strerror(errno)), err;
	return NULL;
}

#endif
