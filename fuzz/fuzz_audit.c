/*
 * Audit rows and the verifier (src/common/auditfmt.c): the input is a log
 * file's bytes. Every line goes through audit_parse_row and the verifier,
 * as `hpcc audit verify` and `hpcc inspect` read them.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auditfmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit_verifier *v = NULL;
	if (audit_verifier_new(true, &v) < 0)
		return 0;
	audit_verifier_begin_file(v, "fuzz.tsv");
	const char *text = (const char *)data;
	size_t start = 0;
	while (start < size) {
		const char *nl = memchr(text + start, '\n', size - start);
		size_t end = nl ? (size_t)(nl - text) : size;
		if (!nl) {
			audit_verifier_end_file(v, end - start);
			break;
		}
		audit_verifier_line(v, text + start, end - start);
		struct audit_parsed p;
		struct error err = { 0 };
		if (end - start <= AUDIT_ROW_MAX && audit_parse_row(text + start, end - start, &p, &err) == 0) {
			(void)audit_row_matches(&p, "sha256:abcd");
			audit_parsed_free(&p);
		}
		start = end + 1;
		if (start >= size)
			audit_verifier_end_file(v, 0);
	}
	if (size == 0)
		audit_verifier_end_file(v, 0);
	(void)audit_verifier_finish(v);
	audit_verifier_free(v);
	return 0;
}
