/* The verified root: a dm-verity device over the root disk (dm-verity.c). */
#ifndef A3S_DM_VERITY_H
#define A3S_DM_VERITY_H

#include <stddef.h>

#include "config.h"

/*
 * Opens a read-only dm-verity device called `name` for the root described
 * by v (config_parse_rootverity), with panic_on_corruption, and makes its
 * block device node at /dev/NAME, written to `node`. Returns 0, or -1 with
 * a message for people in err.
 */
int dm_verity_open(const struct verity_root *v, const char *name, char *node, size_t nodelen,
		   char *err, size_t errlen);

#endif
