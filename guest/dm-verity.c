/*
 * The verified root: a dm-verity device over the root disk, made with the
 * device-mapper ioctls (what dmsetup and veritysetup call), so the guest
 * needs no tool for it and it works the same with the kernel's device-mapper
 * built in (the microVM kernel) or loaded as modules (Debian's kernel).
 *
 * The table checks every 4 KiB block read from the root against the hash
 * tree appended to the same disk, up to a root hash that came from the
 * host on the kernel command line. A block that does not match panics the
 * kernel (panic_on_corruption): the agent never reads a corrupt byte, and
 * the host sees the boot end with the kernel's verity message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "dm-verity.h"

/*
 * The ABI of <linux/dm-ioctl.h>, interface version 4, written out because
 * musl-gcc has no kernel headers. The layout is fixed by the kernel.
 */
#define DM_NAME_LEN 128
#define DM_UUID_LEN 129
#define DM_MAX_TYPE_NAME 16
#define DM_READONLY_FLAG (1u << 0)

struct dm_ioctl {
	uint32_t version[3];
	uint32_t data_size;    /* everything passed in, this header included */
	uint32_t data_start;   /* where the payload starts, from this header */
	uint32_t target_count;
	int32_t open_count;
	uint32_t flags;
	uint32_t event_nr;
	uint32_t padding;
	uint64_t dev;          /* out: the new device, encoded as new_encode_dev */
	char name[DM_NAME_LEN];
	char uuid[DM_UUID_LEN];
	char data[7];
};

struct dm_target_spec {
	uint64_t sector_start;
	uint64_t length;
	int32_t status;
	uint32_t next;         /* offset of the next spec from this one */
	char target_type[DM_MAX_TYPE_NAME];
	/* the target's parameter string follows, NUL-terminated */
};

#define DM_IOCTL_TYPE 0xfd
#define DM_DEV_CREATE _IOWR(DM_IOCTL_TYPE, 3, struct dm_ioctl)
#define DM_DEV_SUSPEND _IOWR(DM_IOCTL_TYPE, 6, struct dm_ioctl)
#define DM_TABLE_LOAD _IOWR(DM_IOCTL_TYPE, 9, struct dm_ioctl)

#define CONTROL "/dev/mapper/control"
#define CONTROL_MINOR 236 /* misc device 10:236, as every kernel registers it */
#define SECTORS_PER_BLOCK 8  /* 4096 / 512 */

static void header(struct dm_ioctl *io, size_t size, const char *name)
{
	memset(io, 0, sizeof *io);
	io->version[0] = 4;
	io->data_size = (uint32_t)size;
	io->data_start = sizeof *io;
	snprintf(io->name, sizeof io->name, "%s", name);
}

static int open_control(char *err, size_t errlen)
{
	int fd = open(CONTROL, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		/* devtmpfs makes /dev/mapper/control only once dm is loaded and
		 * not always under that name: make the node ourselves. */
		mkdir("/dev/mapper", 0755);
		if (mknod(CONTROL, S_IFCHR | 0600, makedev(10, CONTROL_MINOR)) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "mknod " CONTROL ": %s", strerror(errno));
			return -1;
		}
		fd = open(CONTROL, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		snprintf(err, errlen, "open " CONTROL ": %s (is device-mapper built in or among the modules?)",
			 strerror(errno));
	return fd;
}

int dm_verity_open(const struct verity_root *v, const char *name, char *node, size_t nodelen,
		   char *err, size_t errlen)
{
	/* One buffer for the table: header, one target spec, its parameters. */
	static union {
		struct dm_ioctl io;
		unsigned char bytes[sizeof(struct dm_ioctl) + sizeof(struct dm_target_spec) + 1024];
	} buf;
	struct dm_target_spec *spec = (struct dm_target_spec *)(buf.bytes + sizeof buf.io);
	char *params = (char *)(spec + 1);
	size_t room = sizeof buf.bytes - sizeof buf.io - sizeof *spec, plen, total;
	int fd, n;
	unsigned maj, min;

	n = snprintf(params, room, "1 %s %s 4096 4096 %llu %llu sha256 %s %s 1 panic_on_corruption",
		     v->device, v->device, (unsigned long long)v->data_blocks,
		     (unsigned long long)v->hash_start_block, v->root_hash, v->salt);
	if (n < 0 || (size_t)n >= room) {
		snprintf(err, errlen, "verity table for %s is too long", v->device);
		return -1;
	}
	if ((fd = open_control(err, errlen)) < 0)
		return -1;

	header(&buf.io, sizeof buf.io, name);
	if (ioctl(fd, DM_DEV_CREATE, &buf.io) != 0) {
		snprintf(err, errlen, "device-mapper create %s: %s", name, strerror(errno));
		goto fail;
	}
	maj = major(buf.io.dev);
	min = minor(buf.io.dev);

	plen = (size_t)n + 1;
	total = (sizeof buf.io + sizeof *spec + plen + 7) & ~(size_t)7;
	header(&buf.io, total, name);
	buf.io.target_count = 1;
	buf.io.flags = DM_READONLY_FLAG;
	memset(spec, 0, sizeof *spec);
	spec->sector_start = 0;
	spec->length = v->data_blocks * SECTORS_PER_BLOCK;
	spec->next = (uint32_t)(total - sizeof buf.io);
	snprintf(spec->target_type, sizeof spec->target_type, "verity");
	if (ioctl(fd, DM_TABLE_LOAD, &buf.io) != 0) {
		/* EINVAL here is the kernel refusing the table: its reason is on
		 * the console ("device-mapper: table: ...: verity: ..."). */
		snprintf(err, errlen, "device-mapper load verity table on %s: %s%s", v->device, strerror(errno),
			 errno == EINVAL ? " (see the kernel's device-mapper message above)" : "");
		goto fail;
	}
	header(&buf.io, sizeof buf.io, name); /* no DM_SUSPEND_FLAG: resume, making the table live */
	if (ioctl(fd, DM_DEV_SUSPEND, &buf.io) != 0) {
		snprintf(err, errlen, "device-mapper resume %s: %s", name, strerror(errno));
		goto fail;
	}
	close(fd);

	/* Our own node, so nothing depends on how devtmpfs names dm devices. */
	snprintf(node, nodelen, "/dev/%s", name);
	if (mknod(node, S_IFBLK | 0400, makedev(maj, min)) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mknod %s: %s", node, strerror(errno));
		return -1;
	}
	return 0;
fail:
	close(fd);
	return -1;
}
