/*
 * a3s-config-check: the guest's config parser (config.c), run on the host.
 *
 *   config-check FILE [DROPIN...]   FILE with each DROPIN laid over it, in
 *                                   the order given (the guest sorts them by
 *                                   name); no command line, no defaults
 *   config-check --cmdline STRING   the a3s.* overrides of a kernel command
 *                                   line
 *   config-check --job FILE         FILE as a job (the text before the
 *                                   "end" line, docs/guest-protocol.md §8)
 *
 * Prints the result in the canonical form (the header, then one line per
 * value, keys in the order of the table in docs/guest-protocol.md §3,
 * canonical escapes) and exits 0; or prints the error and exits 125, the
 * status the guest would report; 2 for a usage error. Host tests use it to
 * check the config writer against the parser the guest really runs.
 *
 * Built from the same config.c as the init: make -C guest
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define EXIT_SETUP 125

void config_out_of_memory(void)
{
	fputs("config-check: out of memory\n", stderr);
	exit(EXIT_SETUP);
}

static void put_escaped(const char *v)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '\\') fputs("\\\\", stdout);
		else if (c == '\n') fputs("\\n", stdout);
		else if (c == '\t') fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
		else putchar(c);
	}
}

static void print_value(const char *key, const char *v)
{
	printf("%s=", key);
	put_escaped(v);
	putchar('\n');
}

/* c in the canonical form: only the keys given, one line per value. */
static int print_config(const struct config *c)
{
	printf("%s %s\n", CONFIG_MAGIC, config_version_of(c));
	for (int k = 0; k < K_COUNT; k++) {
		const char *name = config_key_names[k];

		if (!(c->seen & KEY_BIT(k)))
			continue;
		if (k == K_ARG || k == K_ENV || k == K_MODULE || k == K_TMPFS) {
			const struct strvec *v = k == K_ARG ? &c->args : k == K_ENV ? &c->env :
						 k == K_TMPFS ? &c->tmpfs : &c->modules;
			for (size_t i = 0; i < v->n; i++)
				print_value(name, v->v[i]);
		} else if (k == K_SHARE) {
			for (size_t i = 0; i < c->nshares; i++) {
				fputs("share=", stdout);
				put_escaped(c->shares[i].tag);
				putchar(':');
				put_escaped(c->shares[i].path);
				printf(":%s%s\n", c->shares[i].ro ? "ro" : "rw",
				       c->shares[i].optional ? ",optional" : "");
			}
		} else if (k == K_USER) {
			printf("user=%u:%u\n", (unsigned)c->uid, (unsigned)c->gid);
		} else if (k == K_GROUPS) {
			fputs("groups=", stdout);
			for (size_t i = 0; i < c->ngroups; i++)
				printf("%s%u", i ? "," : "", (unsigned)c->groups[i]);
			putchar('\n');
		} else {
			print_value(name, c->str[k]);
		}
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	static struct config c;
	static struct cmdline cmd;
	char err[CONFIG_ERR_MAX];

	if (argc == 3 && !strcmp(argv[1], "--cmdline")) {
		if (config_parse_cmdline(argv[2], &cmd, err))
			goto bad;
		return print_config(&cmd.overrides);
	}
	if (argc == 3 && !strcmp(argv[1], "--job")) {
		int e = 0;
		char *text = config_read_file(argv[2], CONFIG_MAX, &e);

		if (!text) {
			snprintf(err, sizeof err, "%s: %s", argv[2], strerror(e));
			goto bad;
		}
		if (config_parse_text("job", text, SRC_JOB, &c, err))
			goto bad;
		return print_config(&c);
	}
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: %s FILE [DROPIN...]\n"
			"       %s --cmdline STRING\n"
			"       %s --job FILE\n"
			"Checks an A3S guest config as the guest init reads it "
			"(docs/guest-protocol.md).\n", argv[0], argv[0], argv[0]);
		return 2;
	}
	/* Every file must exist, so that a wrong path cannot pass a test. */
	if (config_parse_file(argv[1], &c, 0, err))
		goto bad;
	for (int i = 2; i < argc; i++)
		if (config_parse_dropin(argv[i], &c, err))
			goto bad;
	return print_config(&c);
bad:
	fprintf(stderr, "%s\n", err);
	return EXIT_SETUP;
}
