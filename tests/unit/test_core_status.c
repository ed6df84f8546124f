/* SPDX-License-Identifier: ISC */
/* Unit tests for core/status.c: names and messages from LV_STATUS_MAP, lv_err_set(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/status.h"

static void test_names_and_messages(void **state)
{
	assert_string_equal(lv_status_name(LV_OK), "OK");
	assert_string_equal(lv_status_msg(LV_OK), "ok");
	assert_string_equal(lv_status_name(LV_EPROTO), "EPROTO");
	assert_string_equal(lv_status_msg(LV_EPROTO), "protocol violation");
	assert_string_equal(lv_status_name(LV_ENOMEM), "ENOMEM");
	assert_string_equal(lv_status_msg(LV_ESYNTAX), "syntax error");
	assert_string_equal(lv_status_name(12345), "UNKNOWN");
	assert_string_equal(lv_status_msg(-999), "unknown status");
}

/* Every entry of the map has a distinct non-positive code, a name and a message. */
static void test_map_is_consistent(void **state)
{
	static const struct {
		int code;
		const char *name;
	} all[] = {
#define XX(name, code, msg) {code, #name},
		LV_STATUS_MAP(XX)
#undef XX
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(all); i++) {
		assert_true(all[i].code <= 0);
		assert_string_equal(lv_status_name(all[i].code), all[i].name);
		assert_string_not_equal(lv_status_msg(all[i].code), "unknown status");
		for (size_t j = i + 1; j < LV_ARRAY_LEN(all); j++)
			assert_int_not_equal(all[i].code, all[j].code);
	}
}

static void test_err_set(void **state)
{
	lv_err_t err = {0};
	assert_int_equal(lv_err_set(&err, LV_EINVAL, "bad value %d for %s", 7, "port"), LV_EINVAL);
	assert_int_equal(err.code, LV_EINVAL);
	assert_string_equal(err.msg, "bad value 7 for port");
	/* NULL err: just the code back. */
	assert_int_equal(lv_err_set(NULL, LV_ERANGE, "ignored %s", "x"), LV_ERANGE);

	/* Long messages are truncated to the buffer, still terminated. */
	char big[LV_ERR_MSG_LEN * 2];
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(lv_err_set(&err, LV_ETOOBIG, "%s", big), LV_ETOOBIG);
	assert_int_equal(strlen(err.msg), LV_ERR_MSG_LEN - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_messages),
		cmocka_unit_test(test_map_is_consistent),
		cmocka_unit_test(test_err_set),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
