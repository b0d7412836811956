/* The control protocol: requests and replies as msgpack maps of named fields. */
#include "ctl.h"

#include <msgpack.h>
#include <string.h>

#include "mp.h"

#define MAXS (64u << 20)

static void kstr(msgpack_packer *pk, const char *k, tn_str v)
{
    if (!v.len)
        return;
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_str_with_body(pk, v.p, v.len);
}

static void kbin(msgpack_packer *pk, const char *k, tn_str v)
{
    if (!v.len)
        return;
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_bin_with_body(pk, v.p, v.len);
}

static void ku64(msgpack_packer *pk, const char *k, uint64_t v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

static void ki64(msgpack_packer *pk, const char *k, int64_t v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_int64(pk, v);
}

static void kbool(msgpack_packer *pk, const char *k, bool v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static unsigned nz(tn_str s)
{
    return s.len ? 1 : 0;
}

tn_err tn_ctl_req_encode(const tn_ctl_req *r, tn_buf *out)
{
    if (r->nparams > TN_CTL_MAX_LIST || r->nfrom > TN_CTL_MAX_LIST)
        return TN_ERR_TOOBIG;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    unsigned n = 6 + nz(r->cmd) + nz(r->name) + nz(r->state) + nz(r->mode) + nz(r->file) +
                 nz(r->bytes) + nz(r->actor) + nz(r->token) + nz(r->cert) + nz(r->sig) +
                 (r->ts ? 1 : 0) + (r->nparams ? 1 : 0) + (r->nfrom ? 1 : 0);
    msgpack_pack_map(&pk, n);
    ku64(&pk, "v", TN_CTL_VERSION);
    kstr(&pk, "cmd", r->cmd);
    ku64(&pk, "id", r->id);
    ku64(&pk, "attempt", r->attempt);
    kstr(&pk, "name", r->name);
    kstr(&pk, "state", r->state);
    kstr(&pk, "mode", r->mode);
    kstr(&pk, "file", r->file);
    kbin(&pk, "bytes", r->bytes);
    kstr(&pk, "actor", r->actor);
    kstr(&pk, "token", r->token);
    kstr(&pk, "cert", r->cert);
    kbin(&pk, "sig", r->sig);
    if (r->ts)
        ki64(&pk, "ts", r->ts);
    kbool(&pk, "dry_run", r->dry_run);
    ki64(&pk, "slots", r->slots);
    ku64(&pk, "offset", r->offset);
    if (r->nparams) {
        msgpack_pack_str_with_body(&pk, "params", 6);
        msgpack_pack_map(&pk, r->nparams);
        for (uint32_t i = 0; i < r->nparams; i++) {
            msgpack_pack_str_with_body(&pk, r->pkeys[i].p, r->pkeys[i].len);
            msgpack_pack_str_with_body(&pk, r->pvals[i].p, r->pvals[i].len);
        }
    }
    if (r->nfrom) {
        msgpack_pack_str_with_body(&pk, "from", 4);
        msgpack_pack_array(&pk, r->nfrom);
        for (uint32_t i = 0; i < r->nfrom; i++)
            msgpack_pack_str_with_body(&pk, r->from[i].p, r->from[i].len);
    }
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

tn_err tn_ctl_rep_encode(const tn_ctl_rep *r, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    unsigned n = 6 + nz(r->text) + nz(r->json) + nz(r->data) + nz(r->url);
    msgpack_pack_map(&pk, n);
    ku64(&pk, "v", TN_CTL_VERSION);
    kbool(&pk, "ok", r->ok);
    ki64(&pk, "code", r->code);
    kstr(&pk, "text", r->text);
    kstr(&pk, "json", r->json);
    kbin(&pk, "data", r->data);
    kstr(&pk, "url", r->url);
    ku64(&pk, "offset", r->offset);
    kbool(&pk, "eof", r->eof);
    kbool(&pk, "running", r->running);
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

static bool key_is(tn_str k, const char *s)
{
    return tn_str_eq(k, s);
}

static bool any_str(tn_mp *m, tn_str *out)
{
    int t = tn_mp_peek(m);
    bool bin = t == 0xc4 || t == 0xc5 || t == 0xc6;
    return tn_mp_bytes(m, bin, MAXS, &out->p, &out->len);
}

static bool read_u64(tn_mp *m, uint64_t *v)
{
    return tn_mp_u64(m, v);
}

tn_err tn_ctl_req_decode(const void *buf, size_t len, tn_ctl_req *r)
{
    memset(r, 0, sizeof(*r));
    tn_mp m;
    tn_mp_init(&m, buf, len);
    uint32_t n;
    if (!tn_mp_map(&m, 64, &n))
        return m.err;
    for (uint32_t i = 0; i < n; i++) {
        tn_str k;
        uint64_t u;
        if (!tn_mp_str(&m, 32, &k.p, &k.len))
            return m.err;
        if (key_is(k, "v")) {
            if (read_u64(&m, &u) && u != TN_CTL_VERSION)
                return TN_ERR_VERSION;
        } else if (key_is(k, "cmd")) {
            any_str(&m, &r->cmd);
        } else if (key_is(k, "id")) {
            read_u64(&m, &r->id);
        } else if (key_is(k, "attempt")) {
            if (tn_mp_uint_max(&m, UINT32_MAX, &u))
                r->attempt = (uint32_t)u;
        } else if (key_is(k, "name")) {
            any_str(&m, &r->name);
        } else if (key_is(k, "state")) {
            any_str(&m, &r->state);
        } else if (key_is(k, "mode")) {
            any_str(&m, &r->mode);
        } else if (key_is(k, "file")) {
            any_str(&m, &r->file);
        } else if (key_is(k, "bytes")) {
            any_str(&m, &r->bytes);
        } else if (key_is(k, "actor")) {
            any_str(&m, &r->actor);
        } else if (key_is(k, "token")) {
            any_str(&m, &r->token);
        } else if (key_is(k, "cert")) {
            any_str(&m, &r->cert);
        } else if (key_is(k, "sig")) {
            any_str(&m, &r->sig);
        } else if (key_is(k, "ts")) {
            tn_mp_i64(&m, &r->ts);
        } else if (key_is(k, "dry_run")) {
            tn_mp_bool(&m, &r->dry_run);
        } else if (key_is(k, "slots")) {
            tn_mp_i64(&m, &r->slots);
        } else if (key_is(k, "offset")) {
            read_u64(&m, &r->offset);
        } else if (key_is(k, "params")) {
            if (!tn_mp_map(&m, TN_CTL_MAX_LIST, &r->nparams))
                return m.err;
            for (uint32_t j = 0; j < r->nparams; j++)
                if (!any_str(&m, &r->pkeys[j]) || !any_str(&m, &r->pvals[j]))
                    return m.err;
        } else if (key_is(k, "from")) {
            if (!tn_mp_array(&m, TN_CTL_MAX_LIST, &r->nfrom))
                return m.err;
            for (uint32_t j = 0; j < r->nfrom; j++)
                if (!any_str(&m, &r->from[j]))
                    return m.err;
        } else {
            return TN_ERR_CORRUPT;
        }
        if (m.err)
            return m.err;
    }
    return tn_mp_done(&m) ? TN_OK : m.err;
}

tn_err tn_ctl_rep_decode(const void *buf, size_t len, tn_ctl_rep *r)
{
    memset(r, 0, sizeof(*r));
    tn_mp m;
    tn_mp_init(&m, buf, len);
    uint32_t n;
    if (!tn_mp_map(&m, 64, &n))
        return m.err;
    for (uint32_t i = 0; i < n; i++) {
        tn_str k;
        uint64_t u;
        int64_t v;
        if (!tn_mp_str(&m, 32, &k.p, &k.len))
            return m.err;
        if (key_is(k, "v")) {
            if (read_u64(&m, &u) && u != TN_CTL_VERSION)
                return TN_ERR_VERSION;
        } else if (key_is(k, "ok")) {
            tn_mp_bool(&m, &r->ok);
        } else if (key_is(k, "code")) {
            if (tn_mp_i64(&m, &v))
                r->code = (int)v;
        } else if (key_is(k, "text")) {
            any_str(&m, &r->text);
        } else if (key_is(k, "json")) {
            any_str(&m, &r->json);
        } else if (key_is(k, "data")) {
            any_str(&m, &r->data);
        } else if (key_is(k, "url")) {
            any_str(&m, &r->url);
        } else if (key_is(k, "offset")) {
            read_u64(&m, &r->offset);
        } else if (key_is(k, "eof")) {
            tn_mp_bool(&m, &r->eof);
        } else if (key_is(k, "running")) {
            tn_mp_bool(&m, &r->running);
        } else {
            return TN_ERR_CORRUPT;
        }
        if (m.err)
            return m.err;
    }
    return tn_mp_done(&m) ? TN_OK : m.err;
}

size_t tn_ctl_escape(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && cap; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\')
            snprintf(e, sizeof(e), "\\%c", c);
        else if (c == '\n' || c == '\r' || c == '\t')
            snprintf(e, sizeof(e), "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        else if (c < 0x20 || c == 0x7f)
            snprintf(e, sizeof(e), "\\x%02x", c);
        else
            snprintf(e, sizeof(e), "%c", c);
        size_t el = strlen(e);
        if (k + el >= cap)
            break;
        memcpy(out + k, e, el);
        k += el;
    }
    if (cap)
        out[k] = '\0';
    return k;
}
