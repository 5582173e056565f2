/*
 * The A3S guest config language (docs/guest-protocol.md §3 and §4): the
 * file /etc/a3s/guest.conf, its drop-ins, the a3s.* kernel command line,
 * and the one rule that lays them over each other.
 *
 * Two programs use it: the guest init (init.c), which reads the config as
 * PID 1, and the host-side checker (config-check.c), which lets the host
 * test its config writer against this very parser.
 *
 * Parsed values point into the buffers the text was read into; nothing is
 * freed (the programs are short-lived or PID 1). Parsing a guest config
 * calls no malloc (see config_realloc). When memory runs out, config.c
 * calls config_out_of_memory(), which each program defines.
 */
#ifndef A3S_CONFIG_H
#define A3S_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

#define CONFIG_PATH "/etc/a3s/guest.conf"
#define CONFIG_DROPIN_DIR "/etc/a3s/guest.conf.d"
#define CONFIG_MAGIC "a3s-guest-config"
#define CONFIG_VERSION "2"       /* the newest version this parser reads */
#define CONFIG_MAX (1 << 20)     /* bytes per file */
#define CONFIG_ERR_MAX 600       /* size of the err buffers below */
#define CMDLINE_MAX_TOKENS 256

/* The keys, in the order of the table in docs/guest-protocol.md §3. */
enum key {
	K_AGENT, K_ARG, K_ENV, K_CWD, K_USER, K_GROUPS, K_HOSTNAME, K_SHARE,
	K_MODULE, K_ROOT, K_ROOTFSTYPE, K_ROOTFLAGS, K_ROOTVERITY, K_STDIN, K_STDOUT,
	K_STDERR, K_CONTROL, K_DEBUG, K_JOB, K_SHARES, K_ENTROPY, K_CLOCK, K_OVERLAY,
	K_SCRATCH, K_TMPFS, K_COUNT
};
#define KEY_BIT(k) (1u << (k))

/* Keys added by version 2: a file that uses one must say version 2. */
#define KEYS_V2 (KEY_BIT(K_JOB) | KEY_BIT(K_SHARES) | KEY_BIT(K_ENTROPY) | KEY_BIT(K_CLOCK) | \
	KEY_BIT(K_OVERLAY) | KEY_BIT(K_SCRATCH) | KEY_BIT(K_TMPFS))

/* Where a text comes from, and so which keys it may set (config.c). */
enum config_source {
	SRC_FILE,    /* guest.conf and its drop-ins */
	SRC_CMDLINE, /* a3s.KEY=VALUE on the kernel command line */
	SRC_JOB,     /* the job the host sends on the control channel (§8) */
};

extern const char *const config_key_names[K_COUNT];

struct strvec {
	char **v; /* NULL-terminated once non-empty */
	size_t n, cap;
};

struct share {
	char *tag, *path;
	int ro, optional;
};

/* rootverity=ROOTHASH:SALT:DATABLOCKS:HASHSTART: the root disk's dm-verity
 * parameters (sha256, 4 KiB blocks, the hash tree on the same disk starting
 * at block HASHSTART; SALT "-" for none). */
struct verity_root {
	const char *device;      /* the root disk, from the root key */
	char root_hash[65];
	char salt[513];
	unsigned long long data_blocks, hash_start_block;
};

struct config {
	unsigned seen;      /* KEY_BIT(key) for every key given */
	char *str[K_COUNT]; /* single-valued keys, NULL = not given */
	struct strvec args, env, modules;
	struct strvec tmpfs; /* tmpfs=PATH[:SIZE] values, checked */
	struct share *shares;
	size_t nshares;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t ngroups;
};

/* A kernel command line: its a3s.* overrides, and every token, so that
 * MODULE.PARAM=VALUE options can be given to modules as modprobe would. */
struct cmdline {
	struct config overrides;
	char *tokens[CMDLINE_MAX_TOKENS];
	size_t ntokens;
};

/*
 * Every parse function returns 0, or -1 with a message for people in err
 * (CONFIG_ERR_MAX bytes) that names the file and line.
 */

/* A rootverity value into v (its device left unset); NULL, or why it is invalid. */
const char *config_parse_rootverity(const char *val, struct verity_root *v);

/* One config file into c. A missing file is no error when missing_ok. */
int config_parse_file(const char *path, struct config *c, int missing_ok, char *err);
/* A config text (modified in place; it must outlive c) from `source`,
 * named `name` in messages, into c. */
int config_parse_text(const char *name, char *text, enum config_source source,
		      struct config *c, char *err);
/* The lowest version whose keys c uses: "1" or "2". */
const char *config_version_of(const struct config *c);
/* One drop-in (it must exist), laid over c. */
int config_parse_dropin(const char *path, struct config *c, char *err);
/* Every *.conf in dir, in byte order of the names, laid over c in turn. */
int config_parse_dropins(const char *dir, struct config *c, char *err);
/* Split line in place (it must outlive out) and collect its a3s.* keys. */
int config_parse_cmdline(char *line, struct cmdline *out, char *err);
/* Lay top over base: the rule shared by drop-ins and the command line. */
void config_overlay(struct config *base, const struct config *top);
/* The effective config, in layers: guest.conf (missing = empty), its
 * drop-ins, then overrides, then the defaults for what is still unset. */
int config_load(struct config *out, const struct config *overrides, char *err);

/* A decimal number below 2^32-1 at s: digits only; *end after them. */
int config_parse_uint(const char *s, const char **end, unsigned *out);
/* A whole file (at most max bytes, no NUL byte), NUL-terminated; NULL and
 * *err = errno (EFBIG: too large, EINVAL: a NUL byte) on failure. */
char *config_read_file(const char *path, size_t max, int *err);
void strvec_push(struct strvec *v, char *s);
/* Memory for configs: realloc, mostly from a static arena (see config.c). */
void *config_realloc(void *p, size_t n);
void config_free(void *p);

/* Defined by each program: what to do when memory runs out. */
void config_out_of_memory(void) __attribute__((noreturn));

#endif
