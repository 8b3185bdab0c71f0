/*
 * Signs iotchain readings with the C API of the device SDK, as firmware would.
 *
 *   sign_reading info  ALG SECRET_HEX                  -> "address public_key" (hex)
 *   sign_reading sign  ALG SECRET_HEX SEQ TS STREAM N [CHAIN_HEX]
 *                                                      -> N readings, one hex line each,
 *                                                          seq SEQ.., data = the integer seq
 *
 * ALG is "ed25519" or "p256"; SECRET_HEX is 64 hex digits; STREAM "-" means none; CHAIN_HEX
 * is the chain's genesis hash (64 hex digits, `reading_aad` in GET /v1/status), signed as
 * COSE external_aad (omitted: none, for a chain whose readings do not name it).
 * Build: gcc -I crates/device-ffi/include sign_reading.c target/debug/libiotchain_device_ffi.a
 *        -lpthread -ldl -lm
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotchain_device.h"

static int parse_hex(const char *hex, uint8_t *out, size_t len) {
    if (strlen(hex) != 2 * len) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) return -1;
        out[i] = (uint8_t)b;
    }
    return 0;
}

static void print_hex(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

/* A CBOR unsigned integer in its shortest form. */
static size_t cbor_uint(uint64_t v, uint8_t *out) {
    if (v < 24) { out[0] = (uint8_t)v; return 1; }
    if (v <= 0xff) { out[0] = 24; out[1] = (uint8_t)v; return 2; }
    if (v <= 0xffff) { out[0] = 25; out[1] = (uint8_t)(v >> 8); out[2] = (uint8_t)v; return 3; }
    if (v <= 0xffffffffu) {
        out[0] = 26;
        for (int i = 0; i < 4; i++) out[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        return 5;
    }
    out[0] = 27;
    for (int i = 0; i < 8; i++) out[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    return 9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s info|sign ed25519|p256 SECRET_HEX [SEQ TS STREAM N]\n", argv[0]);
        return 2;
    }
    uint8_t alg = strcmp(argv[2], "p256") == 0 ? IOTCHAIN_ALG_P256 : IOTCHAIN_ALG_ED25519;
    uint8_t secret[32];
    if (parse_hex(argv[3], secret, 32) != 0) {
        fprintf(stderr, "secret must be 64 hex digits\n");
        return 2;
    }
    uint64_t seq = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    IotchainDevice dev; /* caller-owned: no allocation anywhere */
    int rc = iotchain_device_init(&dev, alg, secret, seq);
    if (rc != IOTCHAIN_OK) {
        fprintf(stderr, "init failed: %d\n", rc);
        return 1;
    }
    if (strcmp(argv[1], "info") == 0) {
        uint8_t address[20], key[65];
        iotchain_device_address(&dev, address);
        size_t n = iotchain_device_public_key(&dev, key);
        print_hex(address, 20);
        printf(" ");
        print_hex(key, n);
        printf("\n");
        return 0;
    }
    if (argc < 8) {
        fprintf(stderr, "sign needs SEQ TS STREAM N\n");
        return 2;
    }
    uint64_t ts = strtoull(argv[5], NULL, 10);
    const char *stream = strcmp(argv[6], "-") == 0 ? NULL : argv[6];
    size_t stream_len = stream ? strlen(stream) : 0;
    long count = strtol(argv[7], NULL, 10);
    if (argc > 8) {
        uint8_t chain[32];
        if (parse_hex(argv[8], chain, 32) != 0) {
            fprintf(stderr, "CHAIN_HEX must be 64 hex digits\n");
            return 2;
        }
        if (iotchain_device_set_chain(&dev, chain) != IOTCHAIN_OK) return 1;
    }
    if (iotchain_device_set_chain(&dev, NULL) != IOTCHAIN_ERR_NULL) return 3;
    uint8_t out[1024];
    for (long i = 0; i < count; i++) {
        uint8_t data[9];
        size_t data_len = cbor_uint(iotchain_device_next_seq(&dev), data);
        if (iotchain_device_buffer_len(data_len, stream_len) > sizeof out) return 1;
        size_t len = 0;
        rc = iotchain_device_sign(&dev, ts + (uint64_t)i, (const uint8_t *)stream, stream_len,
                                  data, data_len, out, sizeof out, &len);
        if (rc != IOTCHAIN_OK) {
            fprintf(stderr, "sign failed: %d\n", rc);
            return 1;
        }
        print_hex(out, len);
        printf("\n");
    }
    /* Bad input is refused, not crashed on: two CBOR items, a tiny buffer, null pointers. */
    uint8_t two[2] = {0x01, 0x02};
    size_t len = 0;
    if (iotchain_device_sign(&dev, ts, NULL, 0, two, 2, out, sizeof out, &len) != IOTCHAIN_ERR_INVALID_INPUT) return 3;
    if (iotchain_device_sign(&dev, ts, NULL, 0, two, 1, out, 8, &len) != IOTCHAIN_ERR_BUFFER_TOO_SMALL) return 3;
    if (iotchain_device_sign(NULL, ts, NULL, 0, two, 1, out, sizeof out, &len) != IOTCHAIN_ERR_NULL) return 3;
    fprintf(stderr, "next seq %" PRIu64 "\n", iotchain_device_next_seq(&dev));
    return 0;
}
