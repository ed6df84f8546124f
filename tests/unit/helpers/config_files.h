/* SPDX-License-Identifier: ISC */
/*
 * Helpers shared by the config unit tests (test_config_config.c and
 * test_config_config_rules.c): load a file and assert it loads, write config
 * text to a temporary directory, and collect the errors of a load. Linked by
 * naming tests/unit/helpers/config_files.c on the test's levee-test-deps line.
 * Failures are cmocka assertions, so these run only inside a cmocka test.
 */
#ifndef LEVEE_TESTS_CONFIG_FILES_H
#define LEVEE_TESTS_CONFIG_FILES_H

#include "config/config.h"
#include "core/buf.h"

/* The buffer's bytes as a NUL-terminated string (owned by the buffer; len is unchanged). */
const char *lv_test_buf_str(lv_buf_t *b);
/* Loads path and fails the test, printing the errors, when it does not load cleanly. */
lv_config_t *lv_test_load_ok(const char *path);
/* Writes text to name in the temporary directory (made on first use); returns its path (static). */
const char *lv_test_write_temp(const char *name, const char *text);
/* cmocka group teardown: removes the temporary directory and the files in it. */
int lv_test_remove_temp(void **state);
/*
 * Loads text written as name in the temporary directory and returns its
 * error text with the directory cut from each path ("" when it loaded);
 * the caller lv_frees it.
 */
char *lv_test_load_errors(const char *name, const char *text);

#endif
