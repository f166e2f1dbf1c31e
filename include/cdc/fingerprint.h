/*
 * Schema fingerprints as the Avro specification defines them: CRC-64-AVRO
 * (the Rabin fingerprint with EMPTY = 0xc15d213aa4d7a795) over the schema's
 * Parsing Canonical Form.
 */
#ifndef CDC_FINGERPRINT_H
#define CDC_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

uint64_t cdc_crc64_avro(const void *data, size_t len);

/*
 * Parsing Canonical Form of a schema given as JSON text. Returns a malloc'd
 * string owned by the caller, or NULL with errstr filled (invalid JSON or not
 * an Avro schema).
 */
char *cdc_avro_canonical_form(const char *schema_json, char *errstr,
                              size_t errstr_size);

/* CRC-64-AVRO of the canonical form. Returns 0, or -1 with errstr filled. */
int cdc_avro_fingerprint(const char *schema_json, uint64_t *out, char *errstr,
                         size_t errstr_size);

/* 16 lowercase hex digits, most significant first, plus NUL. */
void cdc_fingerprint_hex(uint64_t fp, char out[17]);
/* Inverse of cdc_fingerprint_hex; returns 0 or -1. */
int cdc_fingerprint_parse_hex(const char *hex, uint64_t *out);

#endif
