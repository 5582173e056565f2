/*
 * Kernel modules for PID 1: autoloading turned off, then the modules the
 * config lists loaded in order with finit_module(2), each with its options
 * from the kernel command line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "channels.h"
#include "init.h"
#include "modules.h"

/* Not in musl's headers (it comes from linux/module.h). */
#define MODULE_INIT_COMPRESSED_FILE 4

/*
 * Turn off module autoloading: with an empty kernel.modprobe the kernel no
 * longer runs /sbin/modprobe (as root, from the image) whenever something
 * asks for a missing driver, e.g. mount -t virtiofs without the module.
 * The modules init was given are the only ones there will be. A kernel
 * without module support has no such file and nothing to turn off; it
 * answers finit_module with ENOSYS (a module kernel, with EBADF for fd -1),
 * which is asked first: a sysctl lookup is a kernel path run for nothing
 * there, about 1.4 ms under TCG.
 */
void no_autoload(void)
{
	int fd;

	if (syscall(SYS_finit_module, -1, "", 0) != 0 && errno == ENOSYS)
		return;
	fd = open("/proc/sys/kernel/modprobe", O_WRONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		return;
	if (fd < 0 || write(fd, "\n", 1) != 1)
		say("cannot disable module autoloading: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * Options for a module from the kernel command line (MODULE.PARAM=VALUE),
 * as modprobe would pass them: the kernel applies those only to built-in
 * code. '-' and '_' are the same in module names.
 */
static void module_params(const char *path, char *out, size_t outlen)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	char name[64];
	size_t n = 0, used = 0;

	for (; base[n] && base[n] != '.' && n < sizeof name - 1; n++)
		name[n] = base[n] == '-' ? '_' : base[n];
	name[n] = '\0';
	out[0] = '\0';
	for (size_t i = 0; i < cmdline.ntokens; i++) {
		const char *t = cmdline.tokens[i], *eq, *opt;
		size_t j;
		int w;

		for (j = 0; j < n && (t[j] == name[j] || (t[j] == '-' && name[j] == '_')); j++)
			;
		if (j != n || t[n] != '.' || !t[n + 1])
			continue;
		opt = t + n + 1;
		eq = strchr(opt, '=');
		/* values are re-quoted: the tokenizer removed the quotes */
		w = eq ? snprintf(out + used, outlen - used, "%s%.*s\"%s\"", used ? " " : "",
				  (int)(eq + 1 - opt), opt, eq + 1)
		       : snprintf(out + used, outlen - used, "%s%s", used ? " " : "", opt);
		if (w < 0 || (size_t)w >= outlen - used)
			fatal(EXIT_SETUP, "module %s: command line options too long", name);
		used += (size_t)w;
	}
}

/*
 * finit_module(2) returns once the module's init has run, including the
 * probing of the devices it drives (the kernel waits for asynchronous
 * probes too), so a device that is not there afterwards will not come.
 * Returns 1 when it loaded a module (0: all were there already).
 */
int load_modules(const struct strvec *mods)
{
	int loaded = 0;

	for (size_t i = 0; i < mods->n; i++) {
		const char *path = mods->v[i], *ext = strrchr(path, '.');
		char params[1024];
		int flags = 0, fd, r;

		/* Uncompressed .ko is what the host should pack; compressed ones
		 * only load if the kernel has CONFIG_MODULE_DECOMPRESS. */
		if (ext && (!strcmp(ext, ".xz") || !strcmp(ext, ".zst") || !strcmp(ext, ".gz")))
			flags |= MODULE_INIT_COMPRESSED_FILE;
		module_params(path, params, sizeof params);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fatal(EXIT_SETUP, "module %s: %s", path, strerror(errno));
		r = (int)syscall(SYS_finit_module, fd, params, flags);
		if (r != 0 && errno != EEXIST) {
			int e = errno;
			fatal(EXIT_SETUP, "module %s: %s%s", path, strerror(e),
			      e == ENOENT ? " (unknown symbol: a dependency is missing or listed after it)" :
			      e == ENOEXEC ? " (not a module for this kernel)" :
			      (e == EOPNOTSUPP || e == EINVAL) && flags ?
			      " (this kernel cannot load compressed modules: decompress on the host)" : "");
		}
		close(fd);
		loaded |= r == 0;
		dbg("loaded module %s %s%s", path, params, r ? "(already there)" : "");
	}
	return loaded;
}
