/* SPDX-License-Identifier: ISC */
/*
 * The config unit tests' shared helpers (see config_files.h). Owns one
 * temporary directory per test program, made on the first write and removed
 * by lv_test_remove_temp() as the group teardown. Single-threaded, like the
 * tests.
 */
#include "core/lv.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

#include "config_files.h"
#include "core/mem.h"

/* The directory for files written by tests; "" until the first write. */
static char temp_dir[64];

const char *lv_test_buf_str(lv_buf_t *b)
{
	assert_true(lv_buf_put_u8(b, 0));
	b->len--;
	return (const char *)b->data;
}

lv_config_t *lv_test_load_ok(const char *path)
{
	lv_buf_t errors;
	lv_buf_init(&errors);
	lv_config_t *cfg = lv_config_load(path, &errors);
	if (!cfg || errors.len)
		print_error("%s: %s\n", path,
			    errors.len ? lv_test_buf_str(&errors) : "(no message)");
	assert_non_null(cfg);
	assert_int_equal(errors.len, 0);
	lv_buf_cleanup(&errors);
	return cfg;
}

const char *lv_test_write_temp(const char *name, const char *text)
{
	static char path[128];
	if (!temp_dir[0]) {
		snprintf(temp_dir, sizeof(temp_dir), "/tmp/levee-test-config-XXXXXX");
		assert_non_null(mkdtemp(temp_dir));
	}
	snprintf(path, sizeof(path), "%s/%s", temp_dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

int lv_test_remove_temp(void **state)
{
	(void)state;
	if (!temp_dir[0])
		return 0;
	DIR *d = opendir(temp_dir);
	struct dirent *e;
	char path[512];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", temp_dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	return rmdir(temp_dir);
}

char *lv_test_load_errors(const char *name, const char *text)
{
	lv_buf_t errors;
	lv_buf_init(&errors);
	lv_config_t *cfg = lv_config_load(lv_test_write_temp(name, text), &errors);
	assert_true(cfg ? errors.len == 0 : errors.len > 0);
	lv_config_unref(cfg);
	char *out = lv_xstrdup(lv_test_buf_str(&errors));
	lv_buf_cleanup(&errors);
	/* Drop the directory part of each line's path. */
	char *dir = strstr(out, temp_dir);
	while (dir) {
		size_t n = strlen(temp_dir) + 1;
		memmove(dir, dir + n, strlen(dir + n) + 1);
		dir = strstr(dir, temp_dir);
	}
	return out;
}
