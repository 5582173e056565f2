/* The disk root: switching to it, verified or not (root.c). */
#ifndef A3S_ROOT_H
#define A3S_ROOT_H

/* The device to mount as the root: dev itself, or with rootverity a
 * dm-verity device over it. */
const char *verified_root(const char *dev, const char *rootverity);

/* Mount dev read-only (type, or the first of erofs, squashfs, ext4 that
 * works) with flags, and make it / with /dev, /proc and /sys moved in. */
void switch_root(const char *dev, const char *type, const char *flags);

#endif
