/*
 * The bootstrap's reader of COPY text lines (bootstrap_parse_copy_line):
 * fields, NULLs and every escape PostgreSQL's COPY TO writes, and lines it
 * must refuse.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "bootstrap.h"

#define MAXV 8

typedef struct parsed {
    cdc_buf scratch;
    pgo_value v[MAXV];
    int n;
} parsed;

static void parse(parsed *p, const char *line, size_t len)
{
    memset(p, 0, sizeof *p);
    p->n = bootstrap_parse_copy_line(line, len, &p->scratch, p->v, MAXV);
}

static void expect_text(const parsed *p, int i, const char *want, size_t want_len)
{
    cr_assert_lt(i, p->n);
    cr_assert_eq(p->v[i].kind, 't', "field %d is not a value", i);
    cr_assert_eq(p->v[i].len, want_len, "field %d: length %u, want %zu", i, p->v[i].len, want_len);
    cr_assert_eq(memcmp(p->v[i].data, want, want_len), 0, "field %d differs", i);
}

Test(copyline, plain_fields_nulls_and_empty_values)
{
    parsed p;
    const char line[] = "42\tEUR\t\\N\t\tlast";
    parse(&p, line, strlen(line));
    cr_assert_eq(p.n, 5);
    expect_text(&p, 0, "42", 2);
    expect_text(&p, 1, "EUR", 3);
    cr_assert_eq(p.v[2].kind, 'n', "\\N is NULL");
    expect_text(&p, 3, "", 0);
    expect_text(&p, 4, "last", 4);
    cdc_buf_free(&p.scratch);
}

Test(copyline, every_escape_is_undone)
{
    parsed p;
    const char line[] = "a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh\tx\\x41\\x4a\\xz\t\\101\\0\\7777\t\\\\N\t\\q";
    parse(&p, line, strlen(line));
    cr_assert_eq(p.n, 5);
    expect_text(&p, 0, "a\tb\nc\rd\\e\bf\fg\vh", 15);
    /* \x takes one or two hex digits; without any it is the letter x. */
    expect_text(&p, 1, "xAJxz", 5);
    /* Octal: up to three digits (\777 then a 7). */
    expect_text(&p, 2, "A\0\3777", 4);
    expect_text(&p, 3, "\\N", 2); /* an escaped backslash before N is not NULL */
    expect_text(&p, 4, "q", 1);
    cdc_buf_free(&p.scratch);
}

Test(copyline, values_survive_a_second_line_in_another_buffer)
{
    parsed a, b;
    parse(&a, "1\tone", 5);
    parse(&b, "2\ttwo", 5);
    expect_text(&a, 1, "one", 3);
    expect_text(&b, 1, "two", 3);
    cdc_buf_free(&a.scratch);
    cdc_buf_free(&b.scratch);
}

Test(copyline, malformed_lines_are_refused)
{
    parsed p;
    parse(&p, "abc\\", 4);
    cr_assert_eq(p.n, -1, "a trailing backslash");
    cdc_buf_free(&p.scratch);
    parse(&p, "a\\\tb", 4);
    cr_assert_eq(p.n, -1, "a backslash ending a field");
    cdc_buf_free(&p.scratch);
    parse(&p, "1\t2\t3\t4\t5\t6\t7\t8\t9", 17);
    cr_assert_eq(p.n, -1, "more fields than allowed");
    cdc_buf_free(&p.scratch);
}

Test(copyline, an_empty_line_is_one_empty_field)
{
    parsed p;
    parse(&p, "", 0);
    cr_assert_eq(p.n, 1);
    expect_text(&p, 0, "", 0);
    cdc_buf_free(&p.scratch);
}
