/* Kernel modules: autoloading off, the config's modules loaded (modules.c). */
#ifndef A3S_MODULES_H
#define A3S_MODULES_H

#include "config.h"

/* Stop the kernel from running /sbin/modprobe for a missing driver. */
void no_autoload(void);

/* Load mods in order (fatal on failure); 1 when one was loaded. */
int load_modules(const struct strvec *mods);

#endif
