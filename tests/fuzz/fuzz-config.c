/*
 * fuzz-config.c - libFuzzer target: ferryd's settings.
 *
 * Each input is used twice, on fresh options each time:
 *   1. as a config file: written to a scratch file, read with
 *      options_load_file(), then checked with options_check();
 *   2. as a command line: split into arguments at NULs if it holds any,
 *      else at spaces, tabs and newlines, after argv[0] = "ferryd", and
 *      given to options_parse().  An argument holding '@' has it replaced
 *      by the scratch file's path, so "-c @" reads the input as the config
 *      file too.  Inputs with an argument holding '/' are not parsed:
 *      --config would read any file (a FIFO or /dev/zero never ends).
 * --help and errors print to stdout and stderr; run with -close_fd_mask=3
 * to keep that off the terminal (sanitizer reports still show).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "options.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64

static char top[PATH_MAX];
static char path[PATH_MAX];

static void
cleanup(void)
{
	fuzz_rm_rf(top);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_logs();
	fuzz_mkdtemp(top, sizeof(top), "config");
	snprintf(path, sizeof(path), "%s/ferryd.conf", top);
	atexit(cleanup);
	return 0;
}

static void
load_file(const uint8_t *data, size_t size)
{
	struct options o;
	char err[512];
	FILE *f;

	if (!(f = fopen(path, "we")))
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	if (options_init(&o) < 0)
		return;
	if (options_load_file(&o, path, err, sizeof(err)) == 0)
		options_check(&o, err, sizeof(err));
	options_fini(&o);
}

/* "x@y" -> "x<path>y", malloc'd; s itself when there is no '@'. */
static char *
expand(char *s)
{
	char *at = strchr(s, '@'), *r;
	size_t n;

	if (!at)
		return s;
	n = strlen(s) + strlen(path);
	if (!(r = malloc(n)))
		abort();
	snprintf(r, n, "%.*s%s%s", (int)(at - s), s, path, at + 1);
	return r;
}

static void
parse_args(const uint8_t *data, size_t size)
{
	char *copy, *p, *end, *argv[MAX_ARGS + 2], *mine[MAX_ARGS + 2];
	char owned[MAX_ARGS + 2] = {0};
	const char *seps;
	struct options o;
	int argc = 0, i;

	if (!(copy = malloc(size + 1)))
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	seps = memchr(data, '\0', size) ? "" : " \t\n";
	mine[argc] = argv[argc] = "ferryd";
	argc++;
	for (p = copy, end = copy + size; p < end && argc <= MAX_ARGS;
	    p += strlen(p) + 1) {
		if (*seps)
			p[strcspn(p, seps)] = '\0';
		if (!*p && *seps)
			continue;	/* runs of separators */
		if (strchr(p, '/'))
			goto out;
		mine[argc] = argv[argc] = expand(p);
		owned[argc] = mine[argc] != p;
		argc++;
	}
	argv[argc] = NULL;
	if (options_init(&o) < 0)
		goto out;
	optind = 0;		/* getopt keeps state between calls */
	options_parse(&o, argc, argv);
	options_fini(&o);
out:
	/* getopt permutes argv: free from our own list. */
	for (i = 1; i < argc; i++)
		if (owned[i])
			free(mine[i]);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	load_file(data, size);
	parse_args(data, size);
	return 0;
}
