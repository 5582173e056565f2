/*
 * The disk root (root=DEV): the device, under dm-verity with rootverity=,
 * mounted read-only and made / in place of the initramfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channels.h"
#include "config.h"
#include "dm-verity.h"
#include "init.h"
#include "root.h"

#define SYSROOT "/sysroot"

/*
 * switch_root: mount the root device read-only on /sysroot, move /dev,
 * /proc and /sys into it, make it / and chroot. The initramfs stays in
 * memory underneath (its files are not deleted: it is small). The device
 * is not waited for: its driver probed it before init started or before
 * finit_module returned (see load_modules).
 */
void switch_root(const char *dev, const char *type, const char *flags)
{
	static const char *const types[] = { "erofs", "squashfs", "ext4" };
	static const char *const moved[] = { "/dev", "/proc", "/sys" };
	char err[600] = "", dst[64];
	size_t n = 0;
	int ok = 0;

	if (mkdir(SYSROOT, 0755) != 0 && errno != EEXIST)
		fatal(EXIT_SETUP, "mkdir " SYSROOT ": %s", strerror(errno));
	if (access(dev, F_OK) != 0)
		fatal(EXIT_SETUP, "root device %s: %s (no such disk: is its driver "
		      "built in or among the modules?)", dev, strerror(errno));
	for (size_t i = 0; i < 3 && !ok; i++) {
		const char *t = type[0] ? type : types[i];
		ok = mount(dev, SYSROOT, t, MS_RDONLY, flags) == 0;
		if (!ok)
			n += (size_t)snprintf(err + n, n < sizeof err ? sizeof err - n : 0,
					      "%s%s: %s", n ? "; " : "", t, strerror(errno));
		if (type[0])
			break;
	}
	if (!ok)
		fatal(EXIT_SETUP, "mount root %s read-only: %s", dev, err);
	dbg("mounted root %s on " SYSROOT, dev);
	for (int i = 0; i < 3; i++) {
		snprintf(dst, sizeof dst, SYSROOT "%s", moved[i]);
		if (mount(moved[i], dst, NULL, MS_MOVE, NULL) != 0)
			fatal(EXIT_SETUP, "move %s to %s: %s", moved[i], dst, strerror(errno));
	}
	if (chdir(SYSROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 ||
	    chroot(".") != 0 || chdir("/") != 0)
		fatal(EXIT_SETUP, "switch root to %s: %s", dev, strerror(errno));
}

/*
 * The device to mount as the root: the disk itself, or with rootverity a
 * dm-verity device over it, so that every block the guest reads from the
 * root is checked against the root hash the host gave (dm-verity.c).
 */
const char *verified_root(const char *dev, const char *rootverity)
{
	static char node[64];
	struct verity_root v;
	char err[CONFIG_ERR_MAX];
	const char *why;

	if (!rootverity[0])
		return dev;
	if ((why = config_parse_rootverity(rootverity, &v)))
		fatal(EXIT_SETUP, "%s", why); /* the parser checked it already */
	v.device = dev;
	if (dm_verity_open(&v, "a3s-root", node, sizeof node, err, sizeof err) != 0)
		fatal(EXIT_SETUP, "verified root on %s: %s", dev, err);
	dbg("root %s verified by dm-verity as %s (root hash %.16s...)", dev, node, v.root_hash);
	return node;
}
