/*
 * The change set of a workspace in overlay mode (docs/guest-protocol.md §8, "The change set"):
 * the overlay's upper directory written as a tar stream with OCI-style
 * whiteouts, for the host to apply to its workspace (or keep for review).
 */
#ifndef A3S_CHANGES_H
#define A3S_CHANGES_H

#include <stddef.h>

struct change_counts {
	unsigned long long bytes;   /* the tar's length, end-of-archive blocks included */
	unsigned long long entries; /* members written (whiteouts included, PAX headers not) */
	unsigned long long skipped; /* FIFOs, sockets and device nodes: not part of a change set */
};

/*
 * Write the tree under `upper` (an overlayfs upper directory) to fd as a
 * tar: directories, regular files and symlinks as they are; a whiteout
 * (a 0:0 character device) as an empty file ".wh.NAME"; an opaque
 * directory (xattr trusted.overlay.opaque=y) as its entry followed by an
 * empty file "DIR/.wh..wh..opq". A directory renamed from the lower layer
 * (xattr trusted.overlay.redirect) is written whole, as an opaque
 * directory with everything the overlay mounted at `merged` shows in it.
 * A file with several names is written once, its other names as tar hard
 * links to the first.
 * The walk does not cross into another file system mounted below `upper`
 * or `merged`. Returns 0, or -1 with a message in err.
 */
int changes_write(const char *upper, const char *merged, int fd, struct change_counts *counts, char *err,
		  size_t errlen);

#endif
