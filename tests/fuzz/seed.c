/* Writes seed inputs for the ctl target into DIR (tests/fuzz/corpus/ctl): valid requests
 * and replies from the real encoders, and malformed ones in the style of the tests. The
 * first byte of each file picks request (even) or reply (odd), as fuzz_ctl.c reads it.
 *   clang -Icore/base -Itransport tests/fuzz/seed.c transport/ctl.c core/base/{err,str,util}.c \
 *       -lmsgpackc -o build-fuzz/seed && build-fuzz/seed tests/fuzz/corpus/ctl */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char *dir;

static void put(const char *name, int reply, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (!f || fputc(reply ? 1 : 0, f) == EOF || fwrite(p, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void put_buf(const char *name, int reply, msgpack_sbuffer *sb)
{
    put(name, reply, sb->data, sb->size);
    msgpack_sbuffer_clear(sb);
}

static void kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void kv_u(msgpack_packer *pk, const char *k, uint64_t v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

static void valid(void)
{
    static tn_ctl_req r;
    tn_buf b = {0};
    memset(&r, 0, sizeof(r));
    r.cmd = tn_str_c("start");
    r.name = tn_str_c("etl");
    r.mode = tn_str_c("serial_wait");
    r.file = tn_str_c("examples/etl.yaml");
    r.bytes = tn_str_c("\x92\x01\xa3"
                       "etl");
    r.token = tn_str_c("t0k3n");
    r.dry_run = true;
    r.slots = -1;
    r.nparams = 2;
    r.pkeys[0] = tn_str_c("dt"), r.pvals[0] = tn_str_c("20240101");
    r.pkeys[1] = tn_str_c("n"), r.pvals[1] = tn_str_c("\"quoted\"\n");
    r.nfrom = 1;
    r.from[0] = tn_str_c("extract");
    if (tn_ctl_req_encode(&r, &b))
        exit(1);
    put("req-start", 0, b.data, b.size);
    b.size = 0;
    memset(&r, 0, sizeof(r));
    r.cmd = tn_str_c("logs");
    r.id = 1ull << 40;
    r.attempt = 3;
    r.offset = 4096;
    r.cert = tn_str_c("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n");
    r.sig = tn_str_c("0123456789abcdef0123456789abcdef");
    r.ts = 1795000000000;
    if (tn_ctl_req_encode(&r, &b))
        exit(1);
    put("req-logs-signed", 0, b.data, b.size);
    b.size = 0;
    tn_ctl_rep p = {0};
    p.ok = true;
    p.text = tn_str_c("started etl: instance 7\n");
    p.json = tn_str_c("{\"id\":7}");
    if (tn_ctl_rep_encode(&p, &b))
        exit(1);
    put("rep-ok", 1, b.data, b.size);
    b.size = 0;
    memset(&p, 0, sizeof(p));
    p.code = 3;
    p.data = tn_str_c("line 1\nline \x01\x7f\n");
    p.offset = 77;
    p.eof = true;
    p.running = true;
    p.url = tn_str_c("tls+tcp://127.0.0.1:7001");
    if (tn_ctl_rep_encode(&p, &b))
        exit(1);
    put("rep-logs", 1, b.data, b.size);
    tn_buf_free(&b);
}

static void malformed(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 2), kv_str(&pk, "cmd", "ls");
    put_buf("bad-version", 0, &sb);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 1), kv_str(&pk, "nope", "x");
    put_buf("bad-unknown-key", 0, &sb);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 1), kv_u(&pk, "cmd", 5);
    put_buf("bad-cmd-int", 0, &sb);
    msgpack_pack_map(&pk, 3), kv_u(&pk, "v", 1), kv_str(&pk, "cmd", "a"),
        kv_str(&pk, "cmd", "b");
    put_buf("bad-dup-key", 0, &sb);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 1);
    msgpack_pack_str_with_body(&pk, "params", 6), msgpack_pack_map(&pk, 300);
    put_buf("bad-params-claim", 0, &sb);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 1);
    msgpack_pack_str_with_body(&pk, "from", 4), msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a", 1), msgpack_pack_nil(&pk);
    put_buf("bad-from-nil", 0, &sb);
    msgpack_pack_array(&pk, 1), msgpack_pack_uint8(&pk, 1);
    put_buf("bad-array", 0, &sb);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 1), kv_str(&pk, "ok", "yes");
    put_buf("bad-rep-ok-str", 1, &sb);
    msgpack_pack_map(&pk, 2), kv_u(&pk, "v", 1);
    msgpack_pack_str_with_body(&pk, "code", 4), msgpack_pack_int64(&pk, INT64_MIN);
    put_buf("bad-rep-code-min", 1, &sb);
    msgpack_pack_map(&pk, 1), kv_u(&pk, "v", 1), msgpack_pack_nil(&pk);
    put_buf("bad-rep-trailing", 1, &sb);
    msgpack_sbuffer_destroy(&sb);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seed DIR\n");
        return 2;
    }
    dir = argv[1];
    valid();
    malformed();
    return 0;
}
