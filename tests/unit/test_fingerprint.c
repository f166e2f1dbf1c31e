/*
 * CRC-64-AVRO and Parsing Canonical Form against the vectors the Avro project
 * publishes: apache/avro share/test/data/schema-tests.txt (fingerprints as
 * Java signed longs, cross-checked there against the Java implementation) and
 * the FINGERPRINT_EXAMPLES of lang/py/avro/test/test_schema.py (hex of the
 * little-endian bytes, the order they take in a single-object header).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc/fingerprint.h"

typedef struct vector {
    const char *id;
    const char *input;
    const char *canonical;
    int64_t fingerprint; /* as published: Java long */
} vector;

/* schema-tests.txt, cases with a published fingerprint. */
static const vector schema_tests[] = {
    {"000", "\"null\"", "\"null\"", INT64_C(7195948357588979594)},
    {"002", "\"boolean\"", "\"boolean\"", INT64_C(-6970731678124411036)},
    {"004", "\"int\"", "\"int\"", INT64_C(8247732601305521295)},
    {"006", "\"long\"", "\"long\"", INT64_C(-3434872931120570953)},
    {"008", "\"float\"", "\"float\"", INT64_C(5583340709985441680)},
    {"010", "\"double\"", "\"double\"", INT64_C(-8181574048448539266)},
    {"012", "\"bytes\"", "\"bytes\"", INT64_C(5746618253357095269)},
    {"014", "\"string\"", "\"string\"", INT64_C(-8142146995180207161)},
    {"016", "[  ]", "[]", INT64_C(-1241056759729112623)},
    {"017", "[ \"int\"  ]", "[\"int\"]", INT64_C(-5232228896498058493)},
    {"018", "[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]",
     INT64_C(5392556393470105090)},
    {"019", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"020", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(5916914534497305771)},
    {"021", "{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4616218487480524110)},
    {"022", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"023", "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"024",
     "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"foo\", "
     "\"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"025",
     "{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], \"type\":\"record\", "
     "\"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
     INT64_C(7843277075252814651)},
    {"026",
     "{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", \"default\":\"true\"},\n"
     "            {\"order\":\"descending\",\"name\":\"f2\",\"doc\":\"Hello\",\"type\":\"int\"}],\n"
     "  \"type\":\"record\", \"name\":\"foo\"\n}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"},"
     "{\"name\":\"f2\",\"type\":\"int\"}]}",
     INT64_C(-4860222112080293046)},
    {"027", "{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}",
     INT64_C(-6342190197741309591)},
    {"028",
     "{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"symbols\":[\"A1\", \"A2\"]}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}",
     INT64_C(-4448647247586288245)},
    {"029", "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", INT64_C(1756455273707447556)},
    {"030",
     "{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"size\":32}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}",
     INT64_C(-3064184465700546786)},
    {"031", "{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
     "{\"type\":\"array\",\"items\":\"null\"}", INT64_C(-589620603366471059)},
    {"032", "{ \"values\":\"string\", \"type\":\"map\"}",
     "{\"type\":\"map\",\"values\":\"string\"}", INT64_C(-8732877298790414990)},
    {"033",
     "  {\"name\":\"PigValue\",\"type\":\"record\",\n"
     "   \"fields\":[{\"name\":\"value\", \"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\",\"type\":"
     "[\"null\",\"int\",\"long\",\"PigValue\"]}]}",
     INT64_C(-1759257747318642341)},
};

/* schema-tests.txt cases published with a canonical form only. */
static const vector schema_tests_long_form[] = {
    {"001", "{\"type\":\"null\"}", "\"null\"", INT64_C(7195948357588979594)},
    {"003", "{\"type\":\"boolean\"}", "\"boolean\"", INT64_C(-6970731678124411036)},
    {"005", "{\"type\":\"int\"}", "\"int\"", INT64_C(8247732601305521295)},
    {"007", "{\"type\":\"long\"}", "\"long\"", INT64_C(-3434872931120570953)},
    {"009", "{\"type\":\"float\"}", "\"float\"", INT64_C(5583340709985441680)},
    {"011", "{\"type\":\"double\"}", "\"double\"", INT64_C(-8181574048448539266)},
    {"013", "{\"type\":\"bytes\"}", "\"bytes\"", INT64_C(5746618253357095269)},
    {"015", "{\"type\":\"string\"}", "\"string\"", INT64_C(-8142146995180207161)},
};

static void check_vector(const vector *v)
{
    char err[256] = "";
    char *pcf = cdc_avro_canonical_form(v->input, err, sizeof err);
    cr_assert_not_null(pcf, "vector %s: %s", v->id, err);
    cr_expect_str_eq(pcf, v->canonical, "vector %s", v->id);
    cr_expect_eq(cdc_crc64_avro(pcf, strlen(pcf)), (uint64_t)v->fingerprint,
                 "vector %s: crc of canonical form", v->id);
    free(pcf);

    uint64_t fp = 0;
    cr_assert_eq(cdc_avro_fingerprint(v->input, &fp, err, sizeof err), 0, "%s", err);
    cr_expect_eq(fp, (uint64_t)v->fingerprint, "vector %s: fingerprint", v->id);
}

Test(fingerprint, crc_of_empty_input_is_the_empty_constant)
{
    cr_expect_eq(cdc_crc64_avro("", 0), UINT64_C(0xc15d213aa4d7a795));
}

Test(fingerprint, schema_tests_vectors_match)
{
    for (size_t i = 0; i < sizeof schema_tests / sizeof schema_tests[0]; i++)
        check_vector(&schema_tests[i]);
}

Test(fingerprint, primitive_objects_reduce_to_names)
{
    for (size_t i = 0; i < sizeof schema_tests_long_form / sizeof schema_tests_long_form[0]; i++)
        check_vector(&schema_tests_long_form[i]);
}

/*
 * lang/py test_schema.py FINGERPRINT_EXAMPLES: hex is the little-endian byte
 * order, so it is converted before comparing. Canonical forms for these are
 * in the same file's CanonicalFormTestCase (Interop) or follow from the rules.
 */
typedef struct py_vector {
    const char *input;
    const char *canonical;
    const char *le_hex;
} py_vector;

static const py_vector py_tests[] = {
    {"{\"type\": \"fixed\", \"name\": \"Test\", \"size\": 1}",
     "{\"name\":\"Test\",\"type\":\"fixed\",\"size\":1}", "6869897b4049355b"},
    {"{\"type\": \"fixed\", \"name\": \"MyFixed\", \"namespace\": \"org.apache.hadoop.avro\", "
     "\"size\": 1}",
     "{\"name\":\"org.apache.hadoop.avro.MyFixed\",\"type\":\"fixed\",\"size\":1}",
     "fadbd138e85bdf45"},
    {"{\"type\": \"enum\", \"name\": \"Test\", \"symbols\": [\"A\", \"B\"]}",
     "{\"name\":\"Test\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}", "03a2f2c2e27f7a16"},
    {"{\"type\": \"enum\", \"name\": \"Test\", \"symbols\": [\"A\", \"B\"], \"doc\": \"Doc String\"}",
     "{\"name\":\"Test\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}", "03a2f2c2e27f7a16"},
    {"{\"type\": \"array\", \"items\": \"long\"}", "{\"type\":\"array\",\"items\":\"long\"}",
     "715e2ea28bc91654"},
    {"{\"type\": \"array\", \"items\": {\"type\": \"enum\", \"name\": \"Test\", \"symbols\": "
     "[\"A\", \"B\"]}}",
     "{\"type\":\"array\",\"items\":{\"name\":\"Test\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}}",
     "10d9ade1fa3a0387"},
    {"{\"type\": \"map\", \"values\": \"long\"}", "{\"type\":\"map\",\"values\":\"long\"}",
     "6f74f4e409b1334e"},
    {"{\"type\": \"map\", \"values\": {\"type\": \"enum\", \"name\": \"Test\", \"symbols\": "
     "[\"A\", \"B\"]}}",
     "{\"type\":\"map\",\"values\":{\"name\":\"Test\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}}",
     "df2ab0626f6b812d"},
    {"[\"string\", \"null\", \"long\"]", "[\"string\",\"null\",\"long\"]", "65a5be410d687566"},
    {"{\"type\": \"record\", \"name\": \"Test\", \"fields\": [{\"name\": \"f\", \"type\": \"long\"}]}",
     "{\"name\":\"Test\",\"type\":\"record\",\"fields\":[{\"name\":\"f\",\"type\":\"long\"}]}",
     "ed94e5f5e6eb588e"},
    {"{\"type\": \"record\", \"name\": \"Node\", \"fields\": [{\"name\": \"label\", \"type\": "
     "\"string\"}, {\"name\": \"children\", \"type\": {\"type\": \"array\", \"items\": \"Node\"}}]}",
     "{\"name\":\"Node\",\"type\":\"record\",\"fields\":[{\"name\":\"label\",\"type\":\"string\"},"
     "{\"name\":\"children\",\"type\":{\"type\":\"array\",\"items\":\"Node\"}}]}",
     "52cba544c3e756b7"},
    {"{\"type\": \"record\", \"name\": \"Lisp\", \"fields\": [{\"name\": \"value\", \"type\": "
     "[\"null\", \"string\", {\"type\": \"record\", \"name\": \"Cons\", \"fields\": [{\"name\": "
     "\"car\", \"type\": \"Lisp\"}, {\"name\": \"cdr\", \"type\": \"Lisp\"}]}]}]}",
     "{\"name\":\"Lisp\",\"type\":\"record\",\"fields\":[{\"name\":\"value\",\"type\":[\"null\","
     "\"string\",{\"name\":\"Cons\",\"type\":\"record\",\"fields\":[{\"name\":\"car\",\"type\":"
     "\"Lisp\"},{\"name\":\"cdr\",\"type\":\"Lisp\"}]}]}]}",
     "68d91a23eda0b306"},
    {"{\"type\": \"record\", \"name\": \"HandshakeResponse\", \"namespace\": "
     "\"org.apache.avro.ipc\", \"fields\": [{\"name\": \"match\", \"type\": {\"type\": \"enum\", "
     "\"name\": \"HandshakeMatch\", \"symbols\": [\"BOTH\", \"CLIENT\", \"NONE\"]}}, {\"name\": "
     "\"serverProtocol\", \"type\": [\"null\", \"string\"]}, {\"name\": \"serverHash\", \"type\": "
     "[\"null\", {\"name\": \"MD5\", \"size\": 16, \"type\": \"fixed\"}]}, {\"name\": \"meta\", "
     "\"type\": [\"null\", {\"type\": \"map\", \"values\": \"bytes\"}]}]}",
     "{\"name\":\"org.apache.avro.ipc.HandshakeResponse\",\"type\":\"record\",\"fields\":[{\"name\":"
     "\"match\",\"type\":{\"name\":\"org.apache.avro.ipc.HandshakeMatch\",\"type\":\"enum\","
     "\"symbols\":[\"BOTH\",\"CLIENT\",\"NONE\"]}},{\"name\":\"serverProtocol\",\"type\":[\"null\","
     "\"string\"]},{\"name\":\"serverHash\",\"type\":[\"null\",{\"name\":\"org.apache.avro.ipc.MD5\","
     "\"type\":\"fixed\",\"size\":16}]},{\"name\":\"meta\",\"type\":[\"null\",{\"type\":\"map\","
     "\"values\":\"bytes\"}]}]}",
     "00feee01de4ea50e"},
    {"{\"type\": \"record\", \"name\": \"Interop\", \"namespace\": \"org.apache.avro\", \"fields\": "
     "[{\"name\": \"intField\", \"type\": \"int\"}, {\"name\": \"longField\", \"type\": \"long\"}, "
     "{\"name\": \"stringField\", \"type\": \"string\"}, {\"name\": \"boolField\", \"type\": "
     "\"boolean\"}, {\"name\": \"floatField\", \"type\": \"float\"}, {\"name\": \"doubleField\", "
     "\"type\": \"double\"}, {\"name\": \"bytesField\", \"type\": \"bytes\"}, {\"name\": "
     "\"nullField\", \"type\": \"null\"}, {\"name\": \"arrayField\", \"type\": {\"type\": \"array\", "
     "\"items\": \"double\"}}, {\"name\": \"mapField\", \"type\": {\"type\": \"map\", \"values\": "
     "{\"name\": \"Foo\", \"type\": \"record\", \"fields\": [{\"name\": \"label\", \"type\": "
     "\"string\"}]}}}, {\"name\": \"unionField\", \"type\": [\"boolean\", \"double\", {\"type\": "
     "\"array\", \"items\": \"bytes\"}]}, {\"name\": \"enumField\", \"type\": {\"type\": \"enum\", "
     "\"name\": \"Kind\", \"symbols\": [\"A\", \"B\", \"C\"]}}, {\"name\": \"fixedField\", \"type\": "
     "{\"type\": \"fixed\", \"name\": \"MD5\", \"size\": 16}}, {\"name\": \"recordField\", \"type\": "
     "{\"type\": \"record\", \"name\": \"Node\", \"fields\": [{\"name\": \"label\", \"type\": "
     "\"string\"}, {\"name\": \"children\", \"type\": {\"type\": \"array\", \"items\": "
     "\"Node\"}}]}}]}",
     "{\"name\":\"org.apache.avro.Interop\",\"type\":\"record\",\"fields\":[{\"name\":\"intField\","
     "\"type\":\"int\"},{\"name\":\"longField\",\"type\":\"long\"},{\"name\":\"stringField\","
     "\"type\":\"string\"},{\"name\":\"boolField\",\"type\":\"boolean\"},{\"name\":\"floatField\","
     "\"type\":\"float\"},{\"name\":\"doubleField\",\"type\":\"double\"},{\"name\":\"bytesField\","
     "\"type\":\"bytes\"},{\"name\":\"nullField\",\"type\":\"null\"},{\"name\":\"arrayField\","
     "\"type\":{\"type\":\"array\",\"items\":\"double\"}},{\"name\":\"mapField\",\"type\":{\"type\":"
     "\"map\",\"values\":{\"name\":\"org.apache.avro.Foo\",\"type\":\"record\",\"fields\":[{\"name\":"
     "\"label\",\"type\":\"string\"}]}}},{\"name\":\"unionField\",\"type\":[\"boolean\",\"double\","
     "{\"type\":\"array\",\"items\":\"bytes\"}]},{\"name\":\"enumField\",\"type\":{\"name\":"
     "\"org.apache.avro.Kind\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\",\"C\"]}},{\"name\":"
     "\"fixedField\",\"type\":{\"name\":\"org.apache.avro.MD5\",\"type\":\"fixed\",\"size\":16}},"
     "{\"name\":\"recordField\",\"type\":{\"name\":\"org.apache.avro.Node\",\"type\":\"record\","
     "\"fields\":[{\"name\":\"label\",\"type\":\"string\"},{\"name\":\"children\",\"type\":{\"type\":"
     "\"array\",\"items\":\"org.apache.avro.Node\"}}]}}]}",
     "e82c0a93a6a0b5a4"},
    {"{\"type\": \"record\", \"name\": \"ipAddr\", \"fields\": [{\"name\": \"addr\", \"type\": "
     "[{\"name\": \"IPv6\", \"type\": \"fixed\", \"size\": 16}, {\"name\": \"IPv4\", \"type\": "
     "\"fixed\", \"size\": 4}]}]}",
     "{\"name\":\"ipAddr\",\"type\":\"record\",\"fields\":[{\"name\":\"addr\",\"type\":[{\"name\":"
     "\"IPv6\",\"type\":\"fixed\",\"size\":16},{\"name\":\"IPv4\",\"type\":\"fixed\",\"size\":4}]}]}",
     "8d961b4e298a1844"},
    {"{\"type\": \"record\", \"name\": \"TestDoc\", \"doc\": \"Doc string\", \"fields\": [{\"name\": "
     "\"name\", \"type\": \"string\", \"doc\": \"Doc String\"}]}",
     "{\"name\":\"TestDoc\",\"type\":\"record\",\"fields\":[{\"name\":\"name\",\"type\":\"string\"}]}",
     "0e6660f02bcdc109"},
};

static uint64_t le_hex_to_u64(const char *hex)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        unsigned byte;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &byte), 1);
        v = (v << 8) | byte;
    }
    return v;
}

Test(fingerprint, python_fingerprint_examples_match)
{
    for (size_t i = 0; i < sizeof py_tests / sizeof py_tests[0]; i++) {
        const py_vector *v = &py_tests[i];
        char err[256] = "";
        char *pcf = cdc_avro_canonical_form(v->input, err, sizeof err);
        cr_assert_not_null(pcf, "py vector %zu: %s", i, err);
        cr_expect_str_eq(pcf, v->canonical, "py vector %zu", i);
        free(pcf);
        uint64_t fp = 0;
        cr_assert_eq(cdc_avro_fingerprint(v->input, &fp, err, sizeof err), 0, "%s", err);
        cr_expect_eq(fp, le_hex_to_u64(v->le_hex), "py vector %zu", i);
    }
}

/*
 * A second use of a named type is a reference and stays a name, as in Java
 * and in schema-tests 033. (Python's test_schema.py expands the definition
 * again for HandshakeRequest, so its published 43818703b7b5d769 differs.)
 */
Test(fingerprint, repeated_named_type_stays_a_reference)
{
    const char *in =
        "{\"type\":\"record\",\"name\":\"HandshakeRequest\",\"namespace\":\"org.apache.avro.ipc\","
        "\"fields\":[{\"name\":\"clientHash\",\"type\":{\"type\":\"fixed\",\"name\":\"MD5\","
        "\"size\":16}},{\"name\":\"clientProtocol\",\"type\":[\"null\",\"string\"]},"
        "{\"name\":\"serverHash\",\"type\":\"MD5\"},{\"name\":\"meta\",\"type\":[\"null\","
        "{\"type\":\"map\",\"values\":\"bytes\"}]}]}";
    char err[256];
    char *pcf = cdc_avro_canonical_form(in, err, sizeof err);
    cr_assert_not_null(pcf, "%s", err);
    cr_expect_str_eq(pcf,
                     "{\"name\":\"org.apache.avro.ipc.HandshakeRequest\",\"type\":\"record\","
                     "\"fields\":[{\"name\":\"clientHash\",\"type\":{\"name\":"
                     "\"org.apache.avro.ipc.MD5\",\"type\":\"fixed\",\"size\":16}},{\"name\":"
                     "\"clientProtocol\",\"type\":[\"null\",\"string\"]},{\"name\":\"serverHash\","
                     "\"type\":\"org.apache.avro.ipc.MD5\"},{\"name\":\"meta\",\"type\":[\"null\","
                     "{\"type\":\"map\",\"values\":\"bytes\"}]}]}");
    free(pcf);
}

Test(fingerprint, nested_types_inherit_and_override_namespace)
{
    const char *in =
        "{\"type\":\"record\",\"name\":\"Outer\",\"namespace\":\"a.b\",\"fields\":["
        " {\"name\":\"x\",\"type\":{\"type\":\"record\",\"name\":\"Inner\",\"fields\":["
        "   {\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"namespace\":\"c\","
        "     \"symbols\":[\"S\"]}},"
        "   {\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}},"
        "   {\"name\":\"g\",\"type\":\"c.E\"}]}},"
        " {\"name\":\"y\",\"type\":{\"type\":\"record\",\"name\":\"d.Dotted\",\"fields\":["
        "   {\"name\":\"z\",\"type\":{\"type\":\"fixed\",\"name\":\"G\",\"size\":1}}]}},"
        " {\"name\":\"r\",\"type\":[\"null\",\"Inner\",\"c.E\",\"d.G\"]}]}";
    char err[256];
    char *pcf = cdc_avro_canonical_form(in, err, sizeof err);
    cr_assert_not_null(pcf, "%s", err);
    cr_expect_str_eq(pcf,
                     "{\"name\":\"a.b.Outer\",\"type\":\"record\",\"fields\":["
                     "{\"name\":\"x\",\"type\":{\"name\":\"a.b.Inner\",\"type\":\"record\","
                     "\"fields\":[{\"name\":\"e\",\"type\":{\"name\":\"c.E\",\"type\":\"enum\","
                     "\"symbols\":[\"S\"]}},{\"name\":\"f\",\"type\":{\"name\":\"a.b.F\","
                     "\"type\":\"fixed\",\"size\":2}},{\"name\":\"g\",\"type\":\"c.E\"}]}},"
                     "{\"name\":\"y\",\"type\":{\"name\":\"d.Dotted\",\"type\":\"record\","
                     "\"fields\":[{\"name\":\"z\",\"type\":{\"name\":\"d.G\",\"type\":\"fixed\","
                     "\"size\":1}}]}},"
                     "{\"name\":\"r\",\"type\":[\"null\",\"a.b.Inner\",\"c.E\",\"d.G\"]}]}");
    free(pcf);
}

Test(fingerprint, reference_falls_back_to_null_namespace)
{
    const char *in =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        " {\"name\":\"a\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},"
        " {\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"S\",\"namespace\":\"n\","
        "   \"fields\":[{\"name\":\"c\",\"type\":\"E\"}]}}]}";
    char err[256];
    char *pcf = cdc_avro_canonical_form(in, err, sizeof err);
    cr_assert_not_null(pcf, "%s", err);
    cr_expect_str_eq(pcf,
                     "{\"name\":\"R\",\"type\":\"record\",\"fields\":[{\"name\":\"a\",\"type\":"
                     "{\"name\":\"E\",\"type\":\"enum\",\"symbols\":[\"X\"]}},{\"name\":\"b\","
                     "\"type\":{\"name\":\"n.S\",\"type\":\"record\",\"fields\":[{\"name\":\"c\","
                     "\"type\":\"E\"}]}}]}");
    free(pcf);
}

Test(fingerprint, logical_types_and_custom_properties_are_stripped)
{
    const char *in =
        "{\"type\":\"record\",\"name\":\"Row\",\"namespace\":\"cdc.db\",\"doc\":\"d\","
        "\"pg.table\":\"t\",\"fields\":["
        "{\"name\":\"amount\",\"pg.type\":\"numeric\",\"default\":null,"
        " \"type\":[\"null\",{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":18,"
        "\"scale\":2}]},"
        "{\"name\":\"day\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"},\"aliases\":[\"d\"]},"
        "{\"name\":\"id\",\"type\":{\"type\":\"string\",\"logicalType\":\"uuid\"},\"order\":\"ignore\"}]}";
    char err[256];
    char *pcf = cdc_avro_canonical_form(in, err, sizeof err);
    cr_assert_not_null(pcf, "%s", err);
    cr_expect_str_eq(pcf,
                     "{\"name\":\"cdc.db.Row\",\"type\":\"record\",\"fields\":[{\"name\":\"amount\","
                     "\"type\":[\"null\",\"bytes\"]},{\"name\":\"day\",\"type\":\"int\"},"
                     "{\"name\":\"id\",\"type\":\"string\"}]}");
    free(pcf);
}

Test(fingerprint, escapes_are_replaced_by_utf8)
{
    char err[256];
    char *pcf = cdc_avro_canonical_form(
        "{\"type\":\"enum\",\"name\":\"\\u0041\",\"symbols\":[\"\\u0042\"],\"doc\":\"\\u00e9\"}",
        err, sizeof err);
    cr_assert_not_null(pcf, "%s", err);
    cr_expect_str_eq(pcf, "{\"name\":\"A\",\"type\":\"enum\",\"symbols\":[\"B\"]}");
    free(pcf);
}

Test(fingerprint, quoted_size_with_leading_zeros_becomes_integer)
{
    char err[256];
    char *pcf = cdc_avro_canonical_form("{\"type\":\"fixed\",\"name\":\"foo\",\"size\":\"015\"}",
                                        err, sizeof err);
    cr_assert_not_null(pcf, "%s", err);
    cr_expect_str_eq(pcf, "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}");
    free(pcf);
}

Test(fingerprint, invalid_json_is_rejected_with_message)
{
    char err[256] = "";
    cr_expect_null(cdc_avro_canonical_form("{\"type\":", err, sizeof err));
    cr_expect_neq(err[0], '\0');
    uint64_t fp = 42;
    err[0] = '\0';
    cr_expect_eq(cdc_avro_fingerprint("not json", &fp, err, sizeof err), -1);
    cr_expect_neq(err[0], '\0');
    cr_expect_eq(fp, 42);
}

Test(fingerprint, non_schema_json_is_rejected_with_message)
{
    static const char *const bad[] = {
        "42",
        "null",
        "\"nosuchtype\"",
        "{\"type\":\"record\",\"fields\":[]}",
        "{\"type\":\"record\",\"name\":\"R\"}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\"}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"Unknown\"}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
        "{\"type\":\"fixed\",\"name\":\"R\",\"size\":1}}]}",
        "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"has space\"]}",
        "{\"type\":\"enum\",\"name\":\"E\"}",
        "{\"type\":\"fixed\",\"name\":\"F\"}",
        "{\"type\":\"fixed\",\"name\":\"F\",\"size\":-1}",
        "{\"type\":\"fixed\",\"name\":\"F\",\"size\":1.5}",
        "{\"type\":\"fixed\",\"name\":\"1F\",\"size\":1}",
        "{\"type\":\"fixed\",\"name\":\"int\",\"size\":1}",
        "{\"type\":\"array\"}",
        "{\"type\":\"map\",\"values\":7}",
        "{\"type\":{\"type\":\"int\"}}",
        "[\"null\",[\"int\"]]",
        "{\"type\":\"int\",\"type\":\"long\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        char *pcf = cdc_avro_canonical_form(bad[i], err, sizeof err);
        cr_expect_null(pcf, "accepted %s as %s", bad[i], pcf ? pcf : "");
        cr_expect_neq(err[0], '\0', "no message for %s", bad[i]);
        free(pcf);
    }
}

Test(fingerprint, hex_round_trips_most_significant_first)
{
    char hex[17];
    uint64_t fp = UINT64_C(0x63dd24e7cc258f8a);
    cdc_fingerprint_hex(fp, hex);
    cr_expect_str_eq(hex, "63dd24e7cc258f8a");
    uint64_t back = 0;
    cr_expect_eq(cdc_fingerprint_parse_hex(hex, &back), 0);
    cr_expect_eq(back, fp);
    cr_expect_eq(cdc_fingerprint_parse_hex("63DD24E7CC258F8A", &back), 0);
    cr_expect_eq(back, fp);
    cdc_fingerprint_hex(0, hex);
    cr_expect_str_eq(hex, "0000000000000000");
}

Test(fingerprint, hex_parse_rejects_bad_input)
{
    uint64_t v = 7;
    cr_expect_eq(cdc_fingerprint_parse_hex("", &v), -1);
    cr_expect_eq(cdc_fingerprint_parse_hex("63dd24e7cc258f8", &v), -1);
    cr_expect_eq(cdc_fingerprint_parse_hex("63dd24e7cc258f8a0", &v), -1);
    cr_expect_eq(cdc_fingerprint_parse_hex("63dd24e7cc258f8g", &v), -1);
    cr_expect_eq(cdc_fingerprint_parse_hex("0x3dd24e7cc258f8a", &v), -1);
    cr_expect_eq(cdc_fingerprint_parse_hex(NULL, &v), -1);
    cr_expect_eq(v, 7);
}
