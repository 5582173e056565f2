/*
 * The A3S guest config language: see config.h and docs/guest-protocol.md
 * §3 (the file and its drop-ins) and §4 (the kernel command line).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

const char *const config_key_names[K_COUNT] = {
	"agent", "arg", "env", "cwd", "user", "groups", "hostname", "share",
	"module", "root", "rootfstype", "rootflags", "rootverity", "stdin", "stdout",
	"stderr", "control", "debug", "job", "shares", "entropy", "clock", "overlay",
	"scratch", "tmpfs",
};

static const char *const defaults[K_COUNT] = {
	[K_AGENT] = "/a3s/agent/a3s-box-code",
	[K_CWD] = "/workspace",
	[K_HOSTNAME] = "a3s-box",
	[K_ROOT] = "",
	[K_ROOTFSTYPE] = "",
	[K_ROOTFLAGS] = "",
	[K_ROOTVERITY] = "",
	[K_STDIN] = "/dev/null",
	[K_STDOUT] = "/dev/virtio-ports/a3s.stdout",
	[K_STDERR] = "/dev/virtio-ports/a3s.stderr",
	[K_CONTROL] = "/dev/virtio-ports/a3s.control",
	[K_DEBUG] = "0",
	[K_JOB] = "0",
};

/* Keys that may appear more than once in a file. */
#define REPEATABLE (KEY_BIT(K_ARG) | KEY_BIT(K_ENV) | KEY_BIT(K_SHARE) | KEY_BIT(K_MODULE) | \
	KEY_BIT(K_TMPFS))
/* Keys accepted as a3s.KEY=VALUE on the kernel command line. */
#define ON_CMDLINE (KEY_BIT(K_AGENT) | KEY_BIT(K_ARG) | KEY_BIT(K_ENV) | \
	KEY_BIT(K_CWD) | KEY_BIT(K_USER) | KEY_BIT(K_GROUPS) | KEY_BIT(K_HOSTNAME) | \
	KEY_BIT(K_SHARE) | KEY_BIT(K_ROOT) | KEY_BIT(K_ROOTFSTYPE) | \
	KEY_BIT(K_ROOTFLAGS) | KEY_BIT(K_ROOTVERITY) | KEY_BIT(K_DEBUG) | KEY_BIT(K_JOB) | \
	KEY_BIT(K_STDOUT) | KEY_BIT(K_STDERR) | KEY_BIT(K_CONTROL))
/*
 * Keys a job may set: what the agent runs and how, its shares, and the
 * per-run state of a machine that may be one of many restored from one
 * snapshot (entropy, clock). Not the boot's own keys: the modules are
 * loaded, the root mounted and the channels open before a job comes.
 */
#define IN_JOB (KEY_BIT(K_AGENT) | KEY_BIT(K_ARG) | KEY_BIT(K_ENV) | \
	KEY_BIT(K_CWD) | KEY_BIT(K_USER) | KEY_BIT(K_GROUPS) | KEY_BIT(K_HOSTNAME) | \
	KEY_BIT(K_SHARE) | KEY_BIT(K_DEBUG) | KEY_BIT(K_SHARES) | KEY_BIT(K_ENTROPY) | \
	KEY_BIT(K_CLOCK) | KEY_BIT(K_OVERLAY) | KEY_BIT(K_SCRATCH) | KEY_BIT(K_TMPFS))
/* shares, entropy and clock belong to one run: baked into an image or
 * written on the kernel command line (which every process can read in
 * /proc/cmdline), every machine restored from a snapshot would share them.
 * So do the workspace's mode (overlay, scratch) and the tmpfs volumes: the
 * host that asks for them is the one that must take the change set back. */
#define JOB_ONLY (KEY_BIT(K_SHARES) | KEY_BIT(K_ENTROPY) | KEY_BIT(K_CLOCK) | \
	KEY_BIT(K_OVERLAY) | KEY_BIT(K_SCRATCH) | KEY_BIT(K_TMPFS))
#define IN_FILE (((1u << K_COUNT) - 1) & ~JOB_ONLY)

/* Bytes of entropy a job may carry (hex: twice as many digits). */
#define ENTROPY_MIN 16
#define ENTROPY_MAX 512

/*
 * Memory. The guest parses a config or two of a few hundred bytes and frees
 * nothing, and under TCG the first uses of malloc cost milliseconds (musl's
 * allocator maps and faults in fresh pages for each size class). So blocks
 * come from a static arena, each after a 16-byte header holding its size,
 * and from malloc only once the arena is full (the host-side checker on a
 * large config).
 */
#define ARENA_SIZE (64 << 10)
static unsigned char arena[ARENA_SIZE] __attribute__((aligned(16)));
static size_t arena_used;

static int in_arena(const void *p)
{
	return (const unsigned char *)p >= arena && (const unsigned char *)p < arena + ARENA_SIZE;
}

void *config_realloc(void *p, size_t n)
{
	size_t old = p ? ((size_t *)p)[-2] : 0;
	unsigned char *q;

	if (p && !in_arena(p)) {
		if (!(q = realloc(p, n ? n : 1)))
			config_out_of_memory();
		return q;
	}
	n = (n + 15) & ~(size_t)15;
	if (n <= old)
		return p;
	if (p && (unsigned char *)p + old == arena + arena_used && arena_used + n - old <= ARENA_SIZE) {
		arena_used += n - old; /* the last block grows in place */
		((size_t *)p)[-2] = n;
		return p;
	}
	if (arena_used + 16 + n <= ARENA_SIZE) {
		q = arena + arena_used + 16;
		((size_t *)q)[-2] = n;
		arena_used += 16 + n;
	} else if (!(q = malloc(n))) {
		config_out_of_memory();
	}
	if (old)
		memcpy(q, p, old);
	return q;
}

void config_free(void *p)
{
	if (p && !in_arena(p))
		free(p);
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(config_realloc(NULL, n), s, n);
}

void strvec_push(struct strvec *v, char *s)
{
	if (v->n + 2 > v->cap) {
		v->cap = v->cap ? 2 * v->cap : 8;
		v->v = config_realloc(v->v, v->cap * sizeof *v->v);
	}
	v->v[v->n++] = s;
	v->v[v->n] = NULL;
}

/*
 * Undo the escapes of the config format in place: \\ \n \t \xHH. Returns
 * NULL on success or a description of the bad escape.
 */
static const char *unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (*r != '\\') {
			*w++ = *r;
			continue;
		}
		switch (*++r) {
		case '\\': *w++ = '\\'; break;
		case 'n': *w++ = '\n'; break;
		case 't': *w++ = '\t'; break;
		case 'x': {
			unsigned v = 0;
			for (int i = 0; i < 2; i++) {
				char c = *++r;
				if (c >= '0' && c <= '9') v = v * 16 + (unsigned)(c - '0');
				else if (c >= 'a' && c <= 'f') v = v * 16 + (unsigned)(c - 'a' + 10);
				else if (c >= 'A' && c <= 'F') v = v * 16 + (unsigned)(c - 'A' + 10);
				else return "\\x needs two hex digits";
			}
			if (v == 0)
				return "\\x00 is not allowed";
			*w++ = (char)v;
			break;
		}
		case '\0': return "trailing backslash";
		default: return "unknown escape (use \\\\ \\n \\t or \\xHH)";
		}
	}
	*w = '\0';
	return NULL;
}

int config_parse_uint(const char *s, const char **end, unsigned *out)
{
	unsigned long long v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned)(*s - '0');
		if (v >= 0xffffffffULL)
			return -1;
	}
	*end = s;
	*out = (unsigned)v;
	return 0;
}

/* A decimal block count, below 2^48 (far past any disk this guest mounts). */
static int parse_blocks(const char *s, const char **end, unsigned long long *out)
{
	unsigned long long v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned)(*s - '0');
		if (v >= (1ULL << 48))
			return -1;
	}
	*end = s;
	*out = v;
	return 0;
}

/* share=TAG:PATH[:OPTS], OPTS a comma list of rw|ro|optional. */
static const char *parse_share(struct config *c, char *val)
{
	struct share s = { val, strchr(val, ':'), 0, 0 };
	char *o;

	if (!s.path || s.path == val)
		return "share must be TAG:PATH[:rw|ro[,optional]]";
	*s.path++ = '\0';
	o = strchr(s.path, ':');
	if (o)
		*o++ = '\0';
	if (s.path[0] != '/')
		return "share path must be absolute";
	while (o && *o) {
		size_t n = strcspn(o, ",");
		if (n == 2 && !strncmp(o, "rw", 2)) s.ro = 0;
		else if (n == 2 && !strncmp(o, "ro", 2)) s.ro = 1;
		else if (n == 8 && !strncmp(o, "optional", 8)) s.optional = 1;
		else return "share options are rw, ro, optional";
		o += n + (o[n] == ',');
	}
	c->shares = config_realloc(c->shares, (c->nshares + 1) * sizeof *c->shares);
	c->shares[c->nshares++] = s;
	return NULL;
}

/* Set one key in c. Returns NULL or what is wrong with the value. */
static const char *set_key(struct config *c, enum key k, char *val)
{
	const char *end, *why;
	unsigned a, b;

	switch (k) {
	case K_ARG: strvec_push(&c->args, val); break;
	case K_MODULE: strvec_push(&c->modules, val); break;
	case K_ENV:
		if (!strchr(val, '=') || val[0] == '=')
			return "env must be NAME=VALUE";
		strvec_push(&c->env, val);
		break;
	case K_USER:
		if (config_parse_uint(val, &end, &a) || *end != ':' ||
		    config_parse_uint(end + 1, &end, &b) || *end)
			return "user must be UID:GID (decimal numbers)";
		c->uid = a;
		c->gid = b;
		break;
	case K_GROUPS:
		c->ngroups = 0;
		for (const char *p = val; *p; p = *end ? end + 1 : end) {
			if (config_parse_uint(p, &end, &a) || (*end && *end != ','))
				return "groups must be GID,GID,... (decimal numbers)";
			c->groups = config_realloc(c->groups, (c->ngroups + 1) * sizeof *c->groups);
			c->groups[c->ngroups++] = a;
		}
		break;
	case K_SHARE:
		if ((why = parse_share(c, val)))
			return why;
		break;
	case K_DEBUG:
	case K_JOB:
		if (strcmp(val, "0") && strcmp(val, "1"))
			return k == K_JOB ? "job must be 0 or 1" : "debug must be 0 or 1";
		c->str[k] = val;
		break;
	case K_SHARES:
		/* TAG,TAG,... or empty: the tags the host provides */
		for (const char *p = val; *p; p++)
			if (*p == ':' || (*p == ',' && (p == val || p[1] == ',' || !p[1])))
				return "shares must be TAG,TAG,... (no ':', no empty tag) or empty";
		c->str[k] = val;
		break;
	case K_OVERLAY:
		/* TAG: the share mounted read-only under an overlay (§8) */
		if (!val[0] || strpbrk(val, ":,/"))
			return "overlay must be a share's TAG (no ':', ',' or '/')";
		c->str[k] = val;
		break;
	case K_SCRATCH:
		/* SERIAL: the virtio disk that holds the overlay's upper layer */
		if (!val[0] || strlen(val) > 20 ||
		    strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(val))
			return "scratch must be a disk serial: 1 to 20 of A-Z a-z 0-9 . _ -";
		c->str[k] = val;
		break;
	case K_TMPFS: {
		/* PATH[:SIZE], SIZE digits with an optional k, m, g or % (tmpfs's size=) */
		char *colon = strchr(val, ':');
		if (val[0] != '/')
			return "tmpfs must be PATH[:SIZE] with an absolute PATH";
		if (colon) {
			size_t d = strspn(colon + 1, "0123456789");
			if (d == 0 || (colon[1 + d] && (strchr("kKmMgG%", colon[1 + d]) == NULL || colon[2 + d])))
				return "tmpfs SIZE must be a number with an optional k, m, g or %";
		}
		strvec_push(&c->tmpfs, val);
		break;
	}
	case K_ENTROPY: {
		size_t n = strlen(val);
		if (n % 2 || n < 2 * ENTROPY_MIN || n > 2 * ENTROPY_MAX ||
		    strspn(val, "0123456789abcdefABCDEF") != n)
			return "entropy must be 16 to 512 bytes in hex";
		c->str[k] = val;
		break;
	}
	case K_CLOCK: {
		const char *frac;
		unsigned sec;
		size_t nfrac;
		/* seconds since the Unix epoch, optionally with up to 9 decimals */
		if (config_parse_uint(val, &end, &sec) ||
		    (*end && (*end != '.' || (nfrac = strspn(frac = end + 1, "0123456789")) < 1 ||
			      nfrac > 9 || frac[nfrac])))
			return "clock must be SECONDS[.FRACTION] since 1970 (up to 9 decimals)";
		c->str[k] = val;
		break;
	}
	case K_HOSTNAME:
		if (strlen(val) > 64)
			return "hostname is longer than 64 bytes";
		c->str[k] = val;
		break;
	case K_ROOTVERITY:
		if (val[0]) {
			struct verity_root v;
			if ((why = config_parse_rootverity(val, &v)))
				return why;
		}
		c->str[k] = val; /* may be empty: "none" */
		break;
	case K_ROOT: case K_ROOTFSTYPE: case K_ROOTFLAGS:
		c->str[k] = val; /* may be empty: "none" */
		break;
	default: /* paths */
		if (val[0] != '/')
			return "must be an absolute path";
		c->str[k] = val;
		break;
	}
	c->seen |= KEY_BIT(k);
	return NULL;
}

/* n hex digits and nothing else, copied into out (n + 1 bytes). */
static const char *hex_field(const char *p, size_t n, char *out, size_t max)
{
	if (n == 0 || n > max || n % 2)
		return "an even number of hex digits";
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
			return "hex digits only";
		out[i] = ch;
	}
	out[n] = 0;
	return NULL;
}

const char *config_parse_rootverity(const char *val, struct verity_root *v)
{
	const char *c1 = strchr(val, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	const char *c3 = c2 ? strchr(c2 + 1, ':') : NULL;
	const char *end;

	memset(v, 0, sizeof *v);
	if (!c3)
		return "rootverity must be ROOTHASH:SALT:DATABLOCKS:HASHSTART";
	if ((size_t)(c1 - val) != 64 || hex_field(val, 64, v->root_hash, 64))
		return "rootverity: the root hash must be 64 hex digits (sha256)";
	if (c2 - c1 - 1 == 1 && c1[1] == '-')
		strcpy(v->salt, "-");
	else if (hex_field(c1 + 1, (size_t)(c2 - c1 - 1), v->salt, 512))
		return "rootverity: the salt must be hex (at most 256 bytes) or -";
	if (parse_blocks(c2 + 1, &end, &v->data_blocks) || end != c3 || v->data_blocks == 0)
		return "rootverity: DATABLOCKS must be a positive decimal number";
	if (parse_blocks(c3 + 1, &end, &v->hash_start_block) || *end || v->hash_start_block <= v->data_blocks)
		return "rootverity: HASHSTART must be a decimal block number past the data";
	return NULL;
}

static int find_key(const char *name, size_t len)
{
	for (int k = 0; k < K_COUNT; k++)
		if (strlen(config_key_names[k]) == len && !strncmp(config_key_names[k], name, len))
			return k;
	return -1;
}

char *config_read_file(const char *path, size_t max, int *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 1024;
	struct stat st;
	char *buf;
	ssize_t n = 0;

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	/* A regular file gets a buffer of its size, with room for the NUL and
	 * the read that sees EOF; /proc files report size 0 and grow one. */
	if (fstat(fd, &st) == 0 && st.st_size > 0 && (size_t)st.st_size <= max)
		cap = (size_t)st.st_size + 2;
	buf = config_realloc(NULL, cap);
	for (;;) {
		if (len + 1 == cap) {
			if (len > max)
				break;
			buf = config_realloc(buf, cap *= 2);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	*err = n < 0 ? errno : len > max ? EFBIG : 0;
	close(fd);
	buf[len] = '\0';
	if (!*err && strlen(buf) != len)
		*err = EINVAL; /* a NUL byte: not a text file */
	if (*err) {
		config_free(buf);
		return NULL;
	}
	return buf;
}

/* The first line: the magic and a version this parser reads (1 or 2). */
static int check_header(const char *name, const char *line, int *version, char *err)
{
	size_t m = strlen(CONFIG_MAGIC);

	if (strncmp(line, CONFIG_MAGIC " ", m + 1)) {
		snprintf(err, CONFIG_ERR_MAX, "%s:1: not an a3s guest config (the first "
			 "line must be \"" CONFIG_MAGIC " " CONFIG_VERSION "\")", name);
		return -1;
	}
	line += m + 1;
	if (strcmp(line, "1") && strcmp(line, "2")) {
		snprintf(err, CONFIG_ERR_MAX, "%s:1: unsupported config version \"%.40s\" "
			 "(this init reads versions 1 to " CONFIG_VERSION ")", name, line);
		return -1;
	}
	*version = line[0] - '0';
	return 0;
}

static unsigned keys_of(enum config_source source)
{
	return source == SRC_JOB ? IN_JOB : source == SRC_CMDLINE ? ON_CMDLINE : IN_FILE;
}

int config_parse_text(const char *name, char *text, enum config_source source,
		      struct config *c, char *err)
{
	int lineno = 0, version = 0;
	char *line, *next;

	for (line = text; line; line = next) {
		char *eq;
		const char *why;
		int k;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (++lineno == 1) {
			if (check_header(name, line, &version, err))
				return -1;
			continue;
		}
		if (line[0] == '\0' || line[0] == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			snprintf(err, CONFIG_ERR_MAX, "%s:%d: expected KEY=VALUE", name, lineno);
			return -1;
		}
		k = find_key(line, (size_t)(eq - line));
		if (k < 0) {
			snprintf(err, CONFIG_ERR_MAX, "%s:%d: unknown key \"%.*s\"", name, lineno,
				 (int)(eq - line) > 60 ? 60 : (int)(eq - line), line);
			return -1;
		}
		if (!(keys_of(source) & KEY_BIT(k))) {
			snprintf(err, CONFIG_ERR_MAX, "%s:%d: key \"%s\" cannot be set %s", name,
				 lineno, config_key_names[k], source == SRC_JOB ?
				 "by a job (it belongs to the boot)" :
				 "in a config file (it belongs to one job: docs/guest-protocol.md §8)");
			return -1;
		}
		if (version < 2 && (KEYS_V2 & KEY_BIT(k))) {
			snprintf(err, CONFIG_ERR_MAX, "%s:%d: key \"%s\" needs version 2 "
				 "(the first line \"" CONFIG_MAGIC " 2\")", name, lineno,
				 config_key_names[k]);
			return -1;
		}
		if ((c->seen & KEY_BIT(k)) && !(REPEATABLE & KEY_BIT(k))) {
			snprintf(err, CONFIG_ERR_MAX, "%s:%d: key \"%s\" given twice", name,
				 lineno, config_key_names[k]);
			return -1;
		}
		why = unescape(eq + 1);
		if (!why)
			why = set_key(c, (enum key)k, eq + 1);
		if (why) {
			snprintf(err, CONFIG_ERR_MAX, "%s:%d: %s: %s", name, lineno,
				 config_key_names[k], why);
			return -1;
		}
	}
	return 0;
}

int config_parse_file(const char *path, struct config *c, int missing_ok, char *err)
{
	int e = 0;
	char *buf = config_read_file(path, CONFIG_MAX, &e);

	if (!buf) {
		if (e == ENOENT && missing_ok)
			return 0;
		snprintf(err, CONFIG_ERR_MAX, "%s: %s", path,
			 e == EFBIG ? "larger than 1 MiB" :
			 e == EINVAL ? "contains a NUL byte" : strerror(e));
		return -1;
	}
	/* buf stays allocated: the config points into it */
	return config_parse_text(path, buf, SRC_FILE, c, err);
}

const char *config_version_of(const struct config *c)
{
	return c->seen & KEYS_V2 ? "2" : "1";
}

/*
 * A single-valued key in top wins. module and env lines are added (a
 * drop-in brings the modules of the kernel the host chose). arg and share
 * lines, if top has any, replace base's: an override states the whole
 * command line or share set, or it could never remove an entry.
 */
void config_overlay(struct config *base, const struct config *top)
{
	for (int k = 0; k < K_COUNT; k++)
		if (top->str[k])
			base->str[k] = top->str[k];
	if (top->seen & KEY_BIT(K_USER)) {
		base->uid = top->uid;
		base->gid = top->gid;
	}
	if (top->seen & KEY_BIT(K_GROUPS)) {
		base->groups = top->groups;
		base->ngroups = top->ngroups;
	}
	if (top->args.n)
		base->args = top->args;
	if (top->nshares) {
		base->shares = top->shares;
		base->nshares = top->nshares;
	}
	for (size_t i = 0; i < top->env.n; i++)
		strvec_push(&base->env, top->env.v[i]);
	for (size_t i = 0; i < top->modules.n; i++)
		strvec_push(&base->modules, top->modules.v[i]);
	for (size_t i = 0; i < top->tmpfs.n; i++)
		strvec_push(&base->tmpfs, top->tmpfs.v[i]);
	base->seen |= top->seen;
}

int config_parse_dropin(const char *path, struct config *c, char *err)
{
	struct config d;

	memset(&d, 0, sizeof d);
	if (config_parse_file(path, &d, 0, err))
		return -1;
	config_overlay(c, &d);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/*
 * Names in byte order (strcmp: an order the host can predict whatever its
 * locale, so its 50-kernel.conf lands after an image's 10-*.conf). Names
 * starting with '.' are skipped, like a shell glob. No directory means no
 * drop-ins; an old init, which does not know the directory, ignores it.
 */
int config_parse_dropins(const char *dir, struct config *c, char *err)
{
	/* getdents rather than opendir, which would be init's only malloc */
	union { struct dirent e; char bytes[4096]; } ents;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), got, rc = 0;
	char **names = NULL, path[512];
	size_t n = 0;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, CONFIG_ERR_MAX, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((got = getdents(fd, &ents.e, sizeof ents)) > 0) {
		for (int off = 0; off < got;) {
			struct dirent *e = (struct dirent *)(ents.bytes + off);

			off += e->d_reclen;
			if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".conf"))
				continue;
			names = config_realloc(names, (n + 1) * sizeof *names);
			names[n++] = xstrdup(e->d_name);
		}
	}
	if (got < 0) {
		snprintf(err, CONFIG_ERR_MAX, "%s: %s", dir, strerror(errno));
		rc = -1;
	}
	close(fd);
	if (n > 1)
		qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n && !rc; i++) {
		struct stat st;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			rc = config_parse_dropin(path, c, err);
	}
	for (size_t i = 0; i < n; i++)
		config_free(names[i]);
	config_free(names);
	return rc;
}

/*
 * Tokens split the way the kernel splits them (double quotes group, and
 * are removed), stopping at "--" (what follows is init's argv).
 */
int config_parse_cmdline(char *line, struct cmdline *out, char *err)
{
	for (char *p = line; *p;) {
		char *tok, *w, *eq;
		int quoted = 0, k;
		const char *why;

		while (*p == ' ' || *p == '\n' || *p == '\t')
			p++;
		if (!*p)
			break;
		tok = w = p;
		for (; *p && (quoted || (*p != ' ' && *p != '\n' && *p != '\t')); p++) {
			if (*p == '"')
				quoted = !quoted;
			else
				*w++ = *p;
		}
		if (*p)
			p++;
		*w = '\0';
		if (!strcmp(tok, "--"))
			break;
		if (out->ntokens < CMDLINE_MAX_TOKENS)
			out->tokens[out->ntokens++] = tok;
		if (strncmp(tok, "a3s.", 4))
			continue;
		eq = strchr(tok, '=');
		k = find_key(tok + 4, eq ? (size_t)(eq - tok - 4) : strlen(tok + 4));
		if (k < 0) {
			snprintf(err, CONFIG_ERR_MAX, "kernel command line: unknown key \"%.60s\"", tok);
			return -1;
		}
		if (!(ON_CMDLINE & KEY_BIT(k))) {
			snprintf(err, CONFIG_ERR_MAX, "kernel command line: \"%.60s\": key \"%s\" "
				 "cannot be set on the kernel command line", tok, config_key_names[k]);
			return -1;
		}
		/* bare "a3s.debug" means a3s.debug=1 */
		why = eq ? unescape(eq + 1) : k == K_DEBUG ? NULL : "needs =VALUE";
		if (!why)
			why = set_key(&out->overrides, (enum key)k, eq ? eq + 1 : (char *)"1");
		if (why) {
			snprintf(err, CONFIG_ERR_MAX, "kernel command line: %.60s: %s", tok, why);
			return -1;
		}
	}
	return 0;
}

int config_load(struct config *out, const struct config *overrides, char *err)
{
	memset(out, 0, sizeof *out);
	if (config_parse_file(CONFIG_PATH, out, 1, err) ||
	    config_parse_dropins(CONFIG_DROPIN_DIR, out, err))
		return -1;
	config_overlay(out, overrides);
	for (int k = 0; k < K_COUNT; k++)
		if (!out->str[k] && defaults[k])
			out->str[k] = (char *)defaults[k];
	return 0;
}
