/* Task parameters: the tn_kv map, built-ins and $[...] date arithmetic, substitution, the
 * precedence of param layers, setValue scanning and switch conditions (rules in params.h). */
#include "params.h"
#include "mp.h"
#include "tz.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_name_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-';
}

static bool name_valid_n(const char *s, size_t n)
{
    if (n == 0 || n > TN_DEF_PARAM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return false;
    return true;
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Prefix the message already in `msg` (if any) with a label: "global param "dt": ...". */
static tn_err prefix_msg(tn_errmsg *msg, tn_err err, const char *kind, const char *key)
{
    if (!msg)
        return err;
    tn_errmsg tmp = *msg;
    return tn_errmsg_set(msg, err, "%s \"%s\": %s", kind, key, tmp.text);
}

/* ---- tn_kv ---------------------------------------------------------------------------- */

struct tn_kv {
    tn_def_kv *items; /* sorted by key, keys unique */
    uint32_t n, cap;
};

tn_kv *tn_kv_new(void)
{
    return calloc(1, sizeof(tn_kv));
}

void tn_kv_free(tn_kv *kv)
{
    if (!kv)
        return;
    for (uint32_t i = 0; i < kv->n; i++) {
        free(kv->items[i].key);
        free(kv->items[i].value);
    }
    free(kv->items);
    free(kv);
}

/* A stored key against a name of `len` bytes, in byte order. */
static int key_cmp(const char *key, const char *name, size_t len)
{
    size_t kl = strlen(key);
    int c = memcmp(key, name, kl < len ? kl : len);
    if (c)
        return c;
    return kl < len ? -1 : kl > len ? 1 : 0;
}

static uint32_t kv_lower_bound(const tn_kv *kv, const char *name, size_t len, bool *found)
{
    uint32_t lo = 0, hi = kv->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (key_cmp(kv->items[mid].key, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < kv->n && key_cmp(kv->items[lo].key, name, len) == 0;
    return lo;
}

tn_err tn_kv_setn(tn_kv *kv, const char *key, size_t klen, const char *value, size_t vlen)
{
    if (!kv || !key || (!value && vlen))
        return TN_ERR_INVAL;
    if (!name_valid_n(key, klen))
        return TN_ERR_INVAL;
    if (vlen > TN_PARAMS_MAX_VALUE)
        return TN_ERR_TOOBIG;
    if (vlen && memchr(value, '\0', vlen))
        return TN_ERR_INVAL;
    bool found;
    uint32_t at = kv_lower_bound(kv, key, klen, &found);
    if (!found && kv->n >= TN_KV_MAX_ITEMS)
        return TN_ERR_TOOBIG;
    char *v = dup_n(value, vlen);
    if (!v)
        return TN_ERR_NOMEM;
    if (found) {
        free(kv->items[at].value);
        kv->items[at].value = v;
        return TN_OK;
    }
    char *k = dup_n(key, klen);
    if (!k)
        goto fail;
    if (kv->n == kv->cap) {
        uint32_t cap = kv->cap ? kv->cap * 2 : 8;
        tn_def_kv *items = realloc(kv->items, (size_t)cap * sizeof(*items));
        if (!items)
            goto fail;
        kv->items = items;
        kv->cap = cap;
    }
    memmove(&kv->items[at + 1], &kv->items[at], (size_t)(kv->n - at) * sizeof(*kv->items));
    kv->items[at].key = k;
    kv->items[at].value = v;
    kv->n++;
    return TN_OK;
fail:
    free(k);
    free(v);
    return TN_ERR_NOMEM;
}

tn_err tn_kv_set(tn_kv *kv, const char *key, const char *value)
{
    if (!key || !value)
        return TN_ERR_INVAL;
    return tn_kv_setn(kv, key, strlen(key), value, strlen(value));
}

bool tn_kv_del(tn_kv *kv, const char *key)
{
    if (!kv || !key)
        return false;
    bool found;
    uint32_t at = kv_lower_bound(kv, key, strlen(key), &found);
    if (!found)
        return false;
    free(kv->items[at].key);
    free(kv->items[at].value);
    memmove(&kv->items[at], &kv->items[at + 1], (size_t)(kv->n - at - 1) * sizeof(*kv->items));
    kv->n--;
    return true;
}

const char *tn_kv_getn(const tn_kv *kv, const char *name, size_t len)
{
    if (!kv || !name)
        return NULL;
    bool found;
    uint32_t at = kv_lower_bound(kv, name, len, &found);
    return found ? kv->items[at].value : NULL;
}

const char *tn_kv_get(const tn_kv *kv, const char *key)
{
    return key ? tn_kv_getn(kv, key, strlen(key)) : NULL;
}

uint32_t tn_kv_len(const tn_kv *kv)
{
    return kv ? kv->n : 0;
}

const char *tn_kv_key(const tn_kv *kv, uint32_t i)
{
    return kv && i < kv->n ? kv->items[i].key : NULL;
}

const char *tn_kv_value(const tn_kv *kv, uint32_t i)
{
    return kv && i < kv->n ? kv->items[i].value : NULL;
}

tn_err tn_kv_copy(const tn_kv *src, tn_kv **out)
{
    if (!out)
        return TN_ERR_INVAL;
    tn_kv *kv = tn_kv_new();
    if (!kv)
        return TN_ERR_NOMEM;
    uint32_t n = src ? src->n : 0;
    if (n) {
        kv->items = calloc(n, sizeof(*kv->items));
        if (!kv->items)
            goto fail;
        kv->cap = n;
        for (uint32_t i = 0; i < n; i++) {
            kv->items[i].key = strdup(src->items[i].key);
            kv->items[i].value = strdup(src->items[i].value);
            kv->n = i + 1;
            if (!kv->items[i].key || !kv->items[i].value)
                goto fail;
        }
    }
    *out = kv;
    return TN_OK;
fail:
    tn_kv_free(kv);
    return TN_ERR_NOMEM;
}

tn_err tn_kv_merge(tn_kv *dst, const tn_kv *src)
{
    if (!dst)
        return TN_ERR_INVAL;
    if (!src || !src->n)
        return TN_OK;
    uint32_t i = 0, j = 0, r = 0;
    while (i < dst->n || j < src->n) {
        int c = i == dst->n ? 1 :
                j == src->n ? -1 :
                              strcmp(dst->items[i].key, src->items[j].key);
        i += c <= 0;
        j += c >= 0;
        r++;
    }
    if (r > TN_KV_MAX_ITEMS)
        return TN_ERR_TOOBIG;

    /* Copy everything first, so a failure leaves dst as it was. */
    tn_def_kv *items = malloc((size_t)r * sizeof(*items));
    tn_def_kv *copy = calloc(src->n, sizeof(*copy));
    if (!items || !copy)
        goto fail;
    for (j = 0; j < src->n; j++) {
        copy[j].key = strdup(src->items[j].key);
        copy[j].value = strdup(src->items[j].value);
        if (!copy[j].key || !copy[j].value)
            goto fail;
    }
    i = j = r = 0;
    while (i < dst->n || j < src->n) {
        int c = i == dst->n ? 1 :
                j == src->n ? -1 :
                              strcmp(dst->items[i].key, src->items[j].key);
        if (c < 0) {
            items[r++] = dst->items[i++];
        } else if (c > 0) {
            items[r++] = copy[j++];
        } else {
            free(dst->items[i].value);
            free(copy[j].key);
            items[r].key = dst->items[i].key;
            items[r++].value = copy[j].value;
            i++;
            j++;
        }
    }
    free(dst->items);
    free(copy);
    dst->items = items;
    dst->n = dst->cap = r;
    return TN_OK;
fail:
    if (copy) {
        for (j = 0; j < src->n; j++) {
            free(copy[j].key);
            free(copy[j].value);
        }
    }
    free(copy);
    free(items);
    return TN_ERR_NOMEM;
}

tn_err tn_kv_decode(const void *buf, size_t len, tn_kv **out)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    uint32_t n;
    if (!tn_mp_map(&r, TN_KV_MAX_ITEMS, &n))
        return r.err ? r.err : TN_ERR_CORRUPT;
    tn_kv *kv = tn_kv_new();
    if (!kv)
        return TN_ERR_NOMEM;
    tn_err err = TN_OK;
    for (uint32_t i = 0; i < n && !err; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        if (!tn_mp_str(&r, TN_DEF_MAX_NAME, &k, &kl) ||
            !tn_mp_str(&r, TN_PARAMS_MAX_VALUE, &v, &vl))
            err = r.err ? r.err : TN_ERR_CORRUPT;
        else
            err = tn_kv_setn(kv, k, kl, v, vl);
    }
    if (!err && !tn_mp_done(&r))
        err = r.err ? r.err : TN_ERR_CORRUPT;
    if (err) {
        tn_kv_free(kv);
        return err;
    }
    *out = kv;
    return TN_OK;
}

tn_err tn_kv_from_def(const tn_def_kvs *src, tn_kv **out)
{
    if (!out)
        return TN_ERR_INVAL;
    tn_kv *kv = tn_kv_new();
    if (!kv)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; src && i < src->n; i++) {
        tn_err err = tn_kv_set(kv, src->items[i].key, src->items[i].value);
        if (err) {
            tn_kv_free(kv);
            return err;
        }
    }
    *out = kv;
    return TN_OK;
}

/* ---- growable output buffer ----------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    size_t max; /* bytes of content allowed */
} sbuf;

static tn_err sb_add(sbuf *b, const char *s, size_t n)
{
    if (n > b->max - b->len)
        return TN_ERR_TOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return TN_ERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return TN_OK;
}

static tn_err sb_addc(sbuf *b, char c)
{
    return sb_add(b, &c, 1);
}

static tn_err sb_fail(const sbuf *b, tn_err err, tn_errmsg *msg)
{
    if (err == TN_ERR_TOOBIG)
        return tn_errmsg_set(msg, err, "the text exceeds %zu bytes after substitution", b->max);
    if (err == TN_ERR_NOMEM)
        return tn_errmsg_set(msg, err, "out of memory during substitution");
    return err;
}

/* ---- calendar ------------------------------------------------------------------------- */

typedef struct tzinfo {
    bool local;  /* the process's local time */
    int32_t off; /* else a fixed offset east of UTC, seconds */
    tn_tz *zone; /* else an IANA zone (shared, from the cache below) */
} tzinfo;

/* A broken-down time in the context's zone. */
typedef struct dt {
    int64_t y;
    int mo, d, h, mi, s;
} dt;

/* Instants handled, in seconds either side of 1970: enough for years 1..9999 plus any
 * offset that can still land inside them, small enough that nothing overflows. */
#define SEC_LIMIT   400000000000LL
#define DAY_LIMIT   5000000LL /* day offsets */
#define MONTH_LIMIT 200000LL  /* month offsets */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}


static void civil_from_days(int64_t z, dt *out)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    out->d = (int)(doy - (153 * mp + 2) / 5 + 1);
    out->mo = (int)(mp < 10 ? mp + 3 : mp - 9);
    out->y = yoe + era * 400 + (out->mo <= 2);
}

/* ISO weekday: 1 = Monday .. 7 = Sunday. 1970-01-01 was a Thursday. */
static int iso_wday(int64_t z)
{
    return (int)(((z + 3) % 7 + 7) % 7) + 1;
}

/* IANA zones opened once per process and kept: opening one costs an ICU calendar, and a
 * tn_tz is safe to share between threads. Bounded: a name past the cache is opened
 * anyway and refused only if the cache is full of other names. */
#define TZ_CACHE 32u
static struct {
    pthread_mutex_t mu;
    uint32_t n;
    tn_tz *z[TZ_CACHE];
} tz_cache = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};

static tn_tz *zone_get(const char *name, tn_errmsg *msg)
{
    pthread_mutex_lock(&tz_cache.mu);
    tn_tz *found = NULL;
    for (uint32_t i = 0; i < tz_cache.n && !found; i++)
        if (!strcmp(tn_tz_name(tz_cache.z[i]), name))
            found = tz_cache.z[i];
    if (!found && tz_cache.n < TZ_CACHE && tn_tz_open(name, &found, msg) == TN_OK)
        tz_cache.z[tz_cache.n++] = found;
    else if (!found && tz_cache.n >= TZ_CACHE)
        tn_errmsg_set(msg, TN_ERR_TOOBIG, "more than %u time zones in use", TZ_CACHE);
    pthread_mutex_unlock(&tz_cache.mu);
    return found;
}

static bool parse_offset(const char *tz, tzinfo *out)
{
    if (!strcmp(tz, "UTC") || !strcmp(tz, "GMT") || !strcmp(tz, "Z"))
        return true;
    if ((tz[0] != '+' && tz[0] != '-') || !is_digit(tz[1]) || !is_digit(tz[2]))
        return false;
    int h = (tz[1] - '0') * 10 + (tz[2] - '0'), m = 0;
    const char *p = tz + 3;
    if (*p) {
        if (*p == ':')
            p++;
        if (!is_digit(p[0]) || !is_digit(p[1]) || p[2])
            return false;
        m = (p[0] - '0') * 10 + (p[1] - '0');
    }
    if (h > 23 || m > 59)
        return false;
    out->off = (tz[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return true;
}

/* NULL: local time; "UTC" or a fixed offset; else an IANA name through ICU. */
static tn_err parse_tz(const char *tz, tzinfo *out, tn_errmsg *msg)
{
    memset(out, 0, sizeof(*out));
    if (!tz) {
        out->local = true;
        return TN_OK;
    }
    if (parse_offset(tz, out))
        return TN_OK;
    tn_errmsg m = {{0}};
    if ((out->zone = zone_get(tz, &m)))
        return TN_OK;
    if (m.text[0]) /* base/tz's message names the zone and the accepted forms */
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s", m.text);
    return tn_errmsg_set(msg, TN_ERR_INVAL,
                         "unknown time zone \"%.64s\": use an IANA name such as "
                         "\"Asia/Shanghai\", \"UTC\", or an offset such as \"+08:00\"",
                         tz);
}

/* The zone's offset at an instant; instants past what ICU takes (int64 ns) use the
 * offset at the nearest one it takes. */
static bool zone_offset(tn_tz *z, int64_t sec, int32_t *off)
{
    const int64_t lim = INT64_MAX / 1000000000LL - 1;
    int64_t s = sec > lim ? lim : sec < -lim ? -lim : sec;
    return tn_tz_offset(z, s * 1000000000LL, off) == TN_OK;
}

static bool year_ok(int64_t y)
{
    return y >= 1 && y <= 9999;
}

static bool to_dt(const tzinfo *tz, int64_t sec, dt *out)
{
    if (sec < -SEC_LIMIT || sec > SEC_LIMIT)
        return false;
    if (tz->local) {
        time_t t = (time_t)sec;
        struct tm tm;
        if (!localtime_r(&t, &tm))
            return false;
        out->y = (int64_t)tm.tm_year + 1900;
        out->mo = tm.tm_mon + 1;
        out->d = tm.tm_mday;
        out->h = tm.tm_hour;
        out->mi = tm.tm_min;
        out->s = tm.tm_sec > 59 ? 59 : tm.tm_sec;
    } else {
        int32_t off = tz->off;
        if (tz->zone && !zone_offset(tz->zone, sec, &off))
            return false;
        int64_t s = sec + off;
        int64_t z = floor_div(s, 86400), r = s - z * 86400;
        civil_from_days(z, out);
        out->h = (int)(r / 3600);
        out->mi = (int)(r / 60 % 60);
        out->s = (int)(r % 60);
    }
    return year_ok(out->y);
}

static bool from_dt(const tzinfo *tz, const dt *d, int64_t *sec)
{
    if (!year_ok(d->y))
        return false;
    if (tz->local) {
        struct tm tm = {0};
        tm.tm_year = (int)(d->y - 1900);
        tm.tm_mon = d->mo - 1;
        tm.tm_mday = d->d;
        tm.tm_hour = d->h;
        tm.tm_min = d->mi;
        tm.tm_sec = d->s;
        tm.tm_isdst = -1;
        errno = 0;
        time_t t = mktime(&tm);
        if (t == (time_t)-1 && errno)
            return false;
        *sec = (int64_t)t;
        return true;
    }
    int64_t civil =
        tn_civil_days_from(d->y, d->mo, d->d) * 86400 + d->h * 3600 + d->mi * 60 + d->s;
    int32_t off = tz->off;
    if (tz->zone) {
        /* the offset in force at the instant; a time in a DST gap reads with the offset
         * before the gap (02:30 -> 03:30), as Java and mktime do */
        int32_t o1, o2;
        if (!zone_offset(tz->zone, civil, &o1) || !zone_offset(tz->zone, civil - o1, &o2))
            return false;
        off = o2;
        if (o1 != o2 && (!zone_offset(tz->zone, civil - o2, &o1) || o1 != o2))
            off = o1 < o2 ? o1 : o2; /* a gap: the pre-gap offset, the smaller one */
    }
    *sec = civil - off;
    return true;
}

/* Calendar arithmetic on the date; the time of day is kept. */
static void dt_add_days(dt *d, int64_t n)
{
    dt c;
    civil_from_days(tn_civil_days_from(d->y, d->mo, d->d) + n, &c);
    d->y = c.y;
    d->mo = c.mo;
    d->d = c.d;
}

static void dt_add_months(dt *d, int64_t n)
{
    int64_t t = d->y * 12 + (d->mo - 1) + n;
    d->y = floor_div(t, 12);
    d->mo = (int)(t - d->y * 12) + 1;
    int dim = days_in_month(d->y, d->mo);
    if (d->d > dim)
        d->d = dim;
}

static int dt_wday(const dt *d)
{
    return iso_wday(tn_civil_days_from(d->y, d->mo, d->d));
}

/* yyyy MM dd HH mm ss are replaced; every other byte is copied. */
static tn_err fmt_dt(const char *f, size_t n, const dt *d, sbuf *out)
{
    char num[16];
    tn_err err = TN_OK;
    for (size_t i = 0; i < n && !err;) {
        int w = 0;
        if (n - i >= 4 && !memcmp(f + i, "yyyy", 4)) {
            snprintf(num, sizeof(num), "%04d", (int)d->y);
            w = 4;
        } else if (n - i >= 2 && f[i] == f[i + 1]) {
            int v = -1;
            switch (f[i]) {
            case 'M': v = d->mo; break;
            case 'd': v = d->d; break;
            case 'H': v = d->h; break;
            case 'm': v = d->mi; break;
            case 's': v = d->s; break;
            default: break;
            }
            if (v >= 0) {
                snprintf(num, sizeof(num), "%02d", v);
                w = 2;
            }
        }
        if (w) {
            err = sb_add(out, num, strlen(num));
            i += (size_t)w;
        } else {
            err = sb_addc(out, f[i++]);
        }
    }
    return err;
}

/* Week of the year with weeks starting on ISO day `first`, week 1 being the first with
 * at least 4 days in the year. */
static int64_t week1_start(int64_t y, int first)
{
    int64_t j = tn_civil_days_from(y, 1, 1);
    int back = (iso_wday(j) - first + 7) % 7;
    return 7 - back >= 4 ? j - back : j - back + 7;
}

static void year_week(const dt *d, int first, int64_t *wy, int *wk)
{
    int64_t z = tn_civil_days_from(d->y, d->mo, d->d), y = d->y;
    int64_t s = week1_start(y, first);
    if (z < s) {
        y--;
        s = week1_start(y, first);
    } else {
        int64_t next = week1_start(y + 1, first);
        if (z >= next) {
            y++;
            s = next;
        }
    }
    *wy = y;
    *wk = (int)((z - s) / 7) + 1;
}

/* ---- integer arithmetic of offsets: exact rationals ----------------------------------- */

typedef struct rat {
    int64_t n, d; /* d > 0, reduced */
} rat;

typedef struct apar {
    const char *s;
    size_t n, pos;
    unsigned depth;
    const char *err;
} apar;

static int64_t gcd64(int64_t a, int64_t b)
{
    if (a < 0)
        a = -a;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a ? a : 1;
}

static bool rat_make(int64_t n, int64_t d, rat *out)
{
    if (d < 0) {
        if (n == INT64_MIN || d == INT64_MIN)
            return false;
        n = -n;
        d = -d;
    }
    int64_t g = gcd64(n, d);
    out->n = n / g;
    out->d = d / g;
    return true;
}

static bool rat_op(char op, rat a, rat b, rat *out)
{
    int64_t x, y, d;
    switch (op) {
    case '+':
    case '-':
        if (__builtin_mul_overflow(a.n, b.d, &x) || __builtin_mul_overflow(b.n, a.d, &y) ||
            __builtin_mul_overflow(a.d, b.d, &d))
            return false;
        if (op == '+' ? __builtin_add_overflow(x, y, &x) : __builtin_sub_overflow(x, y, &x))
            return false;
        return rat_make(x, d, out);
    case '*':
        if (__builtin_mul_overflow(a.n, b.n, &x) || __builtin_mul_overflow(a.d, b.d, &d))
            return false;
        return rat_make(x, d, out);
    default: /* '/' with b.n != 0 */
        if (__builtin_mul_overflow(a.n, b.d, &x) || __builtin_mul_overflow(a.d, b.n, &d))
            return false;
        return rat_make(x, d, out);
    }
}

static void a_ws(apar *p)
{
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

static bool a_sum(apar *p, rat *out);

static bool a_factor(apar *p, rat *out)
{
    a_ws(p);
    if (p->pos >= p->n) {
        p->err = "expected a number";
        return false;
    }
    char c = p->s[p->pos];
    if (c == '+' || c == '-') {
        p->pos++;
        if (++p->depth > TN_EXPR_MAX_DEPTH) {
            p->err = "the offset nests too deeply";
            return false;
        }
        if (!a_factor(p, out))
            return false;
        p->depth--;
        if (c == '-')
            out->n = -out->n;
        return true;
    }
    if (c == '(') {
        p->pos++;
        if (++p->depth > TN_EXPR_MAX_DEPTH) {
            p->err = "the offset nests too deeply";
            return false;
        }
        if (!a_sum(p, out))
            return false;
        p->depth--;
        a_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ')') {
            p->err = "expected \")\"";
            return false;
        }
        p->pos++;
        return true;
    }
    if (!is_digit(c)) {
        p->err = "expected a number";
        return false;
    }
    int64_t v = 0;
    while (p->pos < p->n && is_digit(p->s[p->pos])) {
        v = v * 10 + (p->s[p->pos++] - '0');
        if (v > 1000000000000LL) {
            p->err = "a number in the offset is too large";
            return false;
        }
    }
    out->n = v;
    out->d = 1;
    return true;
}

/* a * b / c ... over factors, or (is_sum) a + b - c ... over those. */
static bool a_level(apar *p, bool is_sum, rat *out)
{
    if (!(is_sum ? a_level(p, false, out) : a_factor(p, out)))
        return false;
    for (;;) {
        a_ws(p);
        if (p->pos >= p->n)
            return true;
        char op = p->s[p->pos];
        if (is_sum ? op != '+' && op != '-' : op != '*' && op != '/')
            return true;
        p->pos++;
        rat b;
        if (!(is_sum ? a_level(p, false, &b) : a_factor(p, &b)))
            return false;
        if (op == '/' && b.n == 0) {
            p->err = "division by zero";
            return false;
        }
        if (!rat_op(op, *out, b, out)) {
            p->err = "the offset is too large";
            return false;
        }
    }
}

static bool a_sum(apar *p, rat *out)
{
    return a_level(p, true, out);
}

static bool arith(const char *s, size_t n, rat *out, const char **why)
{
    apar p = {.s = s, .n = n};
    if (!a_sum(&p, out)) {
        *why = p.err;
        return false;
    }
    a_ws(&p);
    if (p.pos != n) {
        *why = "unexpected text after the offset";
        return false;
    }
    return true;
}

/* ---- $[...] date expressions ---------------------------------------------------------- */

enum {
    F_ADD_MONTHS,
    F_MONTH_BEGIN,
    F_MONTH_END,
    F_WEEK_BEGIN,
    F_WEEK_END,
    F_MONTH_FIRST_DAY,
    F_MONTH_LAST_DAY,
    F_WEEK_FIRST_DAY,
    F_WEEK_LAST_DAY,
    F_THIS_DAY,
    F_LAST_DAY,
    F_YEAR_WEEK,
    F_UNIX_S,
    F_UNIX_MS,
    F_UNIX_US,
    F_UNIX_NS,
};

static const struct dfn {
    const char *name;
    int fn;
    uint8_t min_args, max_args;
    const char *usage;
} dfns[] = {
    {"add_months", F_ADD_MONTHS, 2, 2, "add_months(format, months)"},
    {"month_begin", F_MONTH_BEGIN, 2, 2, "month_begin(format, days)"},
    {"month_end", F_MONTH_END, 2, 2, "month_end(format, days)"},
    {"week_begin", F_WEEK_BEGIN, 2, 2, "week_begin(format, days)"},
    {"week_end", F_WEEK_END, 2, 2, "week_end(format, days)"},
    {"month_first_day", F_MONTH_FIRST_DAY, 1, 2, "month_first_day(format[, months])"},
    {"month_last_day", F_MONTH_LAST_DAY, 1, 2, "month_last_day(format[, months])"},
    {"week_first_day", F_WEEK_FIRST_DAY, 1, 2, "week_first_day(format[, weeks])"},
    {"week_last_day", F_WEEK_LAST_DAY, 1, 2, "week_last_day(format[, weeks])"},
    {"this_day", F_THIS_DAY, 1, 1, "this_day(format)"},
    {"last_day", F_LAST_DAY, 1, 1, "last_day(format)"},
    {"year_week", F_YEAR_WEEK, 1, 2, "year_week(format[, first day of week 1..7])"},
    {"timestamp", F_UNIX_S, 1, 1, "timestamp(expression)"},
    {"unixtime", F_UNIX_S, 1, 1, "unixtime(expression)"},
    {"milli_unixtime", F_UNIX_MS, 1, 1, "milli_unixtime(expression)"},
    {"micro_unixtime", F_UNIX_US, 1, 1, "micro_unixtime(expression)"},
    /* DolphinScheduler's spelling */
    {"mirco_unixtime", F_UNIX_US, 1, 1, "mirco_unixtime(expression)"},
    {"nano_unixtime", F_UNIX_NS, 1, 1, "nano_unixtime(expression)"},
};

#define DATE_MAX_NEST 4u /* unixtime(...) around another expression */

typedef struct dctx {
    tzinfo tz;
    int64_t base; /* seconds */
} dctx;

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_ws(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_ws((*s)[*n - 1]))
        (*n)--;
}

/* A whole number from an argument; on failure a reason in why. */
static bool int_arg(const char *s, size_t n, int64_t limit, int64_t *out, char *why, size_t wl)
{
    rat r;
    const char *e = NULL;
    if (!n) {
        snprintf(why, wl, "an argument is empty");
        return false;
    }
    if (!arith(s, n, &r, &e)) {
        snprintf(why, wl, "bad number \"%.*s\": %s", (int)(n > 40 ? 40 : n), s, e);
        return false;
    }
    if (r.d != 1) {
        snprintf(why, wl, "\"%.*s\" is not a whole number", (int)(n > 40 ? 40 : n), s);
        return false;
    }
    if (r.n < -limit || r.n > limit) {
        snprintf(why, wl, "\"%.*s\" is out of range", (int)(n > 40 ? 40 : n), s);
        return false;
    }
    *out = r.n;
    return true;
}

static tn_err date_eval(const dctx *c, const char *s, size_t n, unsigned depth, sbuf *out,
                        char *why, size_t wl);

/* unixtime and friends: evaluate the inner expression, read it as yyyyMMddHHmmss. */
static tn_err date_unix(const dctx *c, int fn, const char *arg, size_t an, unsigned depth,
                        sbuf *out, char *why, size_t wl)
{
    sbuf in = {.max = 256};
    tn_err err = date_eval(c, arg, an, depth + 1, &in, why, wl);
    if (err) {
        if (!why[0] && err == TN_ERR_TOOBIG)
            snprintf(why, wl, "the inner expression gives more than %zu bytes", in.max);
        goto done;
    }
    const char *p = in.p ? in.p : "";
    bool shaped = in.len == 14;
    for (size_t i = 0; shaped && i < 14; i++)
        shaped = is_digit(p[i]);
    dt d = {0};
    if (shaped) {
        d.y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
        d.mo = (p[4] - '0') * 10 + (p[5] - '0');
        d.d = (p[6] - '0') * 10 + (p[7] - '0');
        d.h = (p[8] - '0') * 10 + (p[9] - '0');
        d.mi = (p[10] - '0') * 10 + (p[11] - '0');
        d.s = (p[12] - '0') * 10 + (p[13] - '0');
        shaped = year_ok(d.y) && d.mo >= 1 && d.mo <= 12 && d.d >= 1 &&
                 d.d <= days_in_month(d.y, d.mo) && d.h < 24 && d.mi < 60 && d.s < 60;
    }
    if (!shaped) {
        snprintf(why, wl, "\"%.40s\" does not read as a time yyyyMMddHHmmss", p);
        err = TN_ERR_PARSE;
        goto done;
    }
    int64_t sec, v;
    if (!from_dt(&c->tz, &d, &sec)) {
        snprintf(why, wl, "the time is out of range");
        err = TN_ERR_INVAL;
        goto done;
    }
    int64_t mul = fn == F_UNIX_S  ? 1 :
                  fn == F_UNIX_MS ? 1000 :
                  fn == F_UNIX_US ? 1000000 :
                                    1000000000;
    if (__builtin_mul_overflow(sec, mul, &v)) {
        snprintf(why, wl, "the time is out of range");
        err = TN_ERR_INVAL;
        goto done;
    }
    char num[32];
    snprintf(num, sizeof(num), "%" PRId64, v);
    err = sb_add(out, num, strlen(num));
done:
    free(in.p);
    return err;
}

/* Split the arguments of a call at its top-level commas, trimmed. A fourth argument
 * stops the split; the caller reports the count. */
static tn_err split_args(const char *inner, size_t in, const char **arg, size_t *al,
                         unsigned *na, char *why, size_t wl)
{
    unsigned nest = 0;
    size_t start = 0;
    *na = 0;
    for (size_t i = 0; i <= in; i++) {
        if (i < in && inner[i] == '(') {
            nest++;
        } else if (i < in && inner[i] == ')') {
            if (!nest--)
                goto unbalanced;
        } else if (i == in || (inner[i] == ',' && !nest)) {
            if (*na == 3)
                break;
            arg[*na] = inner + start;
            al[*na] = i - start;
            trim(&arg[*na], &al[*na]);
            (*na)++;
            start = i + 1;
        }
    }
    if (!nest)
        return TN_OK;
unbalanced:
    snprintf(why, wl, "unbalanced parentheses");
    return TN_ERR_PARSE;
}

/* Move d as a date function does, by n months, days or weeks. */
static void date_move(dt *d, int fn, int64_t n)
{
    switch (fn) {
    case F_ADD_MONTHS: dt_add_months(d, n); break;
    case F_MONTH_BEGIN:
        d->d = 1;
        dt_add_days(d, n);
        break;
    case F_MONTH_END:
        d->d = days_in_month(d->y, d->mo);
        dt_add_days(d, n);
        break;
    case F_WEEK_BEGIN: dt_add_days(d, 1 - dt_wday(d) + n); break;
    case F_WEEK_END: dt_add_days(d, 7 - dt_wday(d) + n); break;
    case F_MONTH_FIRST_DAY:
        d->d = 1;
        dt_add_months(d, n);
        break;
    case F_MONTH_LAST_DAY:
        dt_add_months(d, n);
        d->d = days_in_month(d->y, d->mo);
        break;
    case F_WEEK_FIRST_DAY: dt_add_days(d, 1 - dt_wday(d) + 7 * n); break;
    case F_WEEK_LAST_DAY: dt_add_days(d, 7 - dt_wday(d) + 7 * n); break;
    case F_LAST_DAY: dt_add_days(d, -1); break;
    default: break; /* this_day */
    }
}

static tn_err date_call(const dctx *c, const struct dfn *f, const char *inner, size_t in,
                        unsigned depth, sbuf *out, char *why, size_t wl)
{
    const char *arg[3];
    size_t al[3];
    unsigned na;
    tn_err err = split_args(inner, in, arg, al, &na, why, wl);
    if (err)
        return err;
    if (na < f->min_args || na > f->max_args) {
        snprintf(why, wl, "expected %s", f->usage);
        return TN_ERR_PARSE;
    }
    if (!al[0]) {
        snprintf(why, wl, "no date format: expected %s", f->usage);
        return TN_ERR_PARSE;
    }
    if (f->fn >= F_UNIX_S)
        return date_unix(c, f->fn, arg[0], al[0], depth, out, why, wl);

    int64_t n = 0;
    int64_t limit = DAY_LIMIT;
    if (f->fn == F_ADD_MONTHS || f->fn == F_MONTH_FIRST_DAY || f->fn == F_MONTH_LAST_DAY)
        limit = MONTH_LIMIT;
    else if (f->fn == F_WEEK_FIRST_DAY || f->fn == F_WEEK_LAST_DAY)
        limit = DAY_LIMIT / 7;
    if (na == 2 && !int_arg(arg[1], al[1], limit, &n, why, wl))
        return TN_ERR_PARSE;
    dt d;
    if (!to_dt(&c->tz, c->base, &d)) {
        snprintf(why, wl, "the schedule time is out of range");
        return TN_ERR_INVAL;
    }
    if (f->fn == F_YEAR_WEEK) {
        if (na == 2 && (n < 1 || n > 7)) {
            snprintf(why, wl, "the first day of the week must be 1 (Monday) .. 7 (Sunday)");
            return TN_ERR_PARSE;
        }
        int64_t wy;
        int wk;
        year_week(&d, na == 2 ? (int)n : 1, &wy, &wk);
        char num[32];
        snprintf(num, sizeof(num), "%04d%s%02d", (int)wy, memchr(arg[0], '-', al[0]) ? "-" : "",
                 wk);
        return sb_add(out, num, strlen(num));
    }
    date_move(&d, f->fn, n);
    if (!year_ok(d.y)) {
        snprintf(why, wl, "the date is out of range (years 1..9999)");
        return TN_ERR_INVAL;
    }
    return fmt_dt(arg[0], al[0], &d, out);
}

static bool is_format_letter(char c)
{
    return c == 'y' || c == 'M' || c == 'd' || c == 'H' || c == 'm' || c == 's';
}

static tn_err date_eval(const dctx *c, const char *s, size_t n, unsigned depth, sbuf *out,
                        char *why, size_t wl)
{
    if (depth > DATE_MAX_NEST) {
        snprintf(why, wl, "expressions nest too deeply");
        return TN_ERR_PARSE;
    }
    const char *t = s;
    size_t tn = n;
    trim(&t, &tn);
    if (!tn) {
        snprintf(why, wl, "empty expression");
        return TN_ERR_PARSE;
    }

    /* name( ... ) is a function call, unless the name is only format letters. */
    size_t k = 0;
    while (k < tn && ((t[k] >= 'a' && t[k] <= 'z') || t[k] == '_'))
        k++;
    if (k && k < tn && t[k] == '(') {
        const struct dfn *f = NULL;
        for (size_t i = 0; i < TN_ARRAY_LEN(dfns) && !f; i++)
            if (strlen(dfns[i].name) == k && !memcmp(dfns[i].name, t, k))
                f = &dfns[i];
        bool letters = true;
        for (size_t i = 0; i < k && letters; i++)
            letters = is_format_letter(t[i]);
        if (f) {
            if (t[tn - 1] != ')') {
                snprintf(why, wl, "expected \")\" at the end: %s", f->usage);
                return TN_ERR_PARSE;
            }
            return date_call(c, f, t + k + 1, tn - k - 2, depth, out, why, wl);
        }
        if (!letters) {
            snprintf(why, wl, "unknown function \"%.*s\"", (int)(k > 40 ? 40 : k), t);
            return TN_ERR_PARSE;
        }
    }

    /* FORMAT, then an optional offset in days: the first + or - before a digit or "(". */
    size_t off = n;
    for (size_t i = 0; i + 1 < n; i++) {
        if ((s[i] == '+' || s[i] == '-') && (is_digit(s[i + 1]) || s[i + 1] == '(')) {
            off = i;
            break;
        }
    }
    if (!off) {
        snprintf(why, wl, "no date format before the offset");
        return TN_ERR_PARSE;
    }
    int64_t sec = c->base;
    if (off < n) {
        rat r;
        const char *e = NULL;
        if (!arith(s + off, n - off, &r, &e)) {
            snprintf(why, wl, "bad offset \"%.*s\": %s", (int)(n - off > 40 ? 40 : n - off),
                     s + off, e);
            return TN_ERR_PARSE;
        }
        /* days -> seconds, truncated toward zero */
        int64_t x;
        if (__builtin_mul_overflow(r.n, (int64_t)86400, &x) || x / r.d < -SEC_LIMIT ||
            x / r.d > SEC_LIMIT) {
            snprintf(why, wl, "the offset is out of range");
            return TN_ERR_INVAL;
        }
        sec += x / r.d;
    }
    dt d;
    if (!to_dt(&c->tz, sec, &d)) {
        snprintf(why, wl, "the date is out of range (years 1..9999)");
        return TN_ERR_INVAL;
    }
    return fmt_dt(s, off, &d, out);
}

/* ---- substitution --------------------------------------------------------------------- */

typedef tn_err (*lookup_fn)(void *arg, const char *name, size_t len, const char **val,
                            tn_errmsg *msg);

typedef struct sub {
    const tn_param_ctx *ctx; /* NULL: no built-ins, no dates */
    dctx dc;
    lookup_fn lookup;
    void *arg;
    size_t max; /* output bound */
} sub;

#define SUB_NO_DATES (1u << 16) /* internal: ${} inside $[...] */

static tn_err sub_init(sub *c, const tn_param_ctx *ctx, tn_errmsg *msg)
{
    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
    c->max = TN_PARAMS_MAX_OUT;
    if (!ctx)
        return TN_OK;
    tn_err err = parse_tz(ctx->tz, &c->dc.tz, msg);
    if (err)
        return err;
    c->dc.base = floor_div(ctx->sched_ns ? ctx->sched_ns : ctx->now_ns, 1000000000LL);
    return TN_OK;
}

static bool is_number(const char *v, size_t n)
{
    size_t i = 0;
    if (i < n && v[i] == '-')
        i++;
    size_t d0 = i;
    while (i < n && is_digit(v[i]))
        i++;
    if (i == d0)
        return false;
    if (i < n && v[i] == '.') {
        size_t f0 = ++i;
        while (i < n && is_digit(v[i]))
            i++;
        if (i == f0)
            return false;
    }
    return i == n;
}

/* Insert a substituted value; with QUOTE, as an expression literal (see params.h). */
static tn_err emit(sbuf *out, const char *v, size_t n, unsigned flags, char quote)
{
    if (!(flags & TN_PARAMS_QUOTE))
        return sb_add(out, v, n);
    if (!quote && (is_number(v, n) || (n == 4 && !memcmp(v, "true", 4)) ||
                   (n == 5 && !memcmp(v, "false", 5))))
        return sb_add(out, v, n);
    char q = quote ? quote : '\'';
    tn_err err = quote ? TN_OK : sb_addc(out, q);
    size_t run = 0;
    for (size_t i = 0; i < n && !err; i++) {
        if (v[i] != '\\' && v[i] != q)
            continue;
        err = sb_add(out, v + run, i - run);
        if (!err)
            err = sb_addc(out, '\\');
        run = i;
    }
    if (!err)
        err = sb_add(out, v + run, n - run);
    if (!err && !quote)
        err = sb_addc(out, q);
    return err;
}

/* A built-in's value into buf; *found says whether `name` is one. */
static tn_err builtin(const sub *c, const char *name, size_t len, char *buf, size_t bl,
                      bool *found, tn_errmsg *msg)
{
    static const char *const names[] = {"system.biz.date", "system.biz.curdate",
                                        "system.datetime", "system.workflow.instance.id",
                                        "system.task.instance.id"};
    int which = -1;
    for (int i = 0; i < (int)TN_ARRAY_LEN(names) && which < 0; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len))
            which = i;
    *found = which >= 0;
    if (which < 0)
        return TN_OK;
    if (which == 3 || which == 4) {
        snprintf(buf, bl, "%" PRIu64, which == 3 ? c->ctx->wf_id : c->ctx->task_id);
        return TN_OK;
    }
    dt d;
    if (!to_dt(&c->dc.tz, c->dc.base, &d))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "${%s}: the schedule time is out of range",
                             names[which]);
    if (which == 0)
        dt_add_days(&d, -1);
    if (!year_ok(d.y))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "${%s}: the date is out of range",
                             names[which]);
    if (which == 2)
        snprintf(buf, bl, "%04d%02d%02d%02d%02d%02d", (int)d.y, d.mo, d.d, d.h, d.mi, d.s);
    else
        snprintf(buf, bl, "%04d%02d%02d", (int)d.y, d.mo, d.d);
    return TN_OK;
}

static void report_unknown(const sub *c, const char *name, size_t len)
{
    if (!c->ctx || !c->ctx->on_unknown)
        return;
    char nm[TN_DEF_PARAM_KEY_MAX + 1];
    memcpy(nm, name, len);
    nm[len] = '\0';
    c->ctx->on_unknown(c->ctx->on_unknown_arg, nm);
}

static void line_col(const char *s, size_t pos, unsigned *line, unsigned *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static tn_err subst_span(const sub *c, const char *s, size_t n, unsigned flags, sbuf *out,
                         tn_errmsg *msg);

/* $[ ... ] at s[i]; `close` is the index of its ']'. */
static tn_err subst_date(const sub *c, const char *s, size_t i, size_t close, unsigned flags,
                         char quote, sbuf *out, tn_errmsg *msg)
{
    const char *e = s + i + 2;
    size_t en = close - i - 2;
    int shown = (int)(en > 200 ? 200 : en);
    if (!c->ctx)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "\"$[%.*s]\": date arithmetic needs a schedule time", shown, e);
    sbuf inner = {.max = 4096}, res = {.max = TN_PARAMS_MAX_VALUE};
    tn_err err = TN_OK;
    if (memmem(e, en, "${", 2)) {
        err = subst_span(c, e, en, SUB_NO_DATES, &inner, msg);
        if (err)
            goto done;
        e = inner.p;
        en = inner.len;
    }
    char why[200];
    why[0] = '\0';
    err = date_eval(&c->dc, e, en, 0, &res, why, sizeof(why));
    if (err) {
        if (why[0])
            tn_errmsg_set(msg, err, "bad date expression \"$[%.*s]\": %s", shown, s + i + 2,
                          why);
        else
            sb_fail(&res, err, msg);
        goto done;
    }
    err = emit(out, res.p ? res.p : "", res.len, flags, quote);
    if (err)
        sb_fail(out, err, msg);
done:
    free(inner.p);
    free(res.p);
    return err;
}

static tn_err subst_span(const sub *c, const char *s, size_t n, unsigned flags, sbuf *out,
                         tn_errmsg *msg)
{
    char quote = 0; /* QUOTE: the string literal of the template we are in */
    tn_err err = TN_OK;
    size_t i = 0;
    while (i < n) {
        char ch = s[i];
        if (flags & TN_PARAMS_QUOTE) {
            if (quote && ch == '\\' && i + 1 < n) {
                if ((err = sb_add(out, s + i, 2)))
                    return sb_fail(out, err, msg);
                i += 2;
                continue;
            }
            if (quote && ch == quote)
                quote = 0;
            else if (!quote && (ch == '\'' || ch == '"'))
                quote = ch;
        }
        bool brace = i + 1 < n && s[i + 1] == '{';
        bool bracket = i + 1 < n && s[i + 1] == '[' && !(flags & SUB_NO_DATES);
        if (ch != '$' || (!brace && !bracket)) {
            size_t j = i + 1;
            while (j < n && s[j] != '$' && s[j] != '\'' && s[j] != '"' && s[j] != '\\')
                j++;
            if ((err = sb_add(out, s + i, j - i)))
                return sb_fail(out, err, msg);
            i = j;
            continue;
        }
        const char *p = s + i + 2;
        size_t rest = n - i - 2;
        if (bracket) {
            const char *close = memchr(p, ']', rest);
            if (!close) {
                unsigned line, col;
                line_col(s, i, &line, &col);
                return tn_errmsg_set(msg, TN_ERR_PARSE,
                                     "unclosed \"$[\" at line %u, column %u: close the date "
                                     "expression with \"]\"",
                                     line, col);
            }
            size_t ci = (size_t)(close - s);
            if ((err = subst_date(c, s, i, ci, flags, quote, out, msg)))
                return err;
            i = ci + 1;
            continue;
        }
        /* ${ */
        if (rest >= 9 && !memcmp(p, "setValue(", 9)) {
            if ((err = sb_add(out, s + i, 11)))
                return sb_fail(out, err, msg);
            i += 11;
            continue;
        }
        const char *close = memchr(p, '}', rest);
        size_t len = close ? (size_t)(close - p) : 0;
        if (!close || !name_valid_n(p, len)) {
            /* shell syntax, or an unclosed ${: copy the ${ and go on inside */
            if ((err = sb_add(out, s + i, 2)))
                return sb_fail(out, err, msg);
            i += 2;
            continue;
        }
        const char *v = NULL;
        char bbuf[32];
        if (c->ctx && len > 7 && !memcmp(p, "system.", 7)) {
            bool found;
            if ((err = builtin(c, p, len, bbuf, sizeof(bbuf), &found, msg)))
                return err;
            if (found)
                v = bbuf;
        }
        if (!v && c->lookup && (err = c->lookup(c->arg, p, len, &v, msg)))
            return err;
        if (v) {
            err = emit(out, v, strlen(v), flags, quote);
        } else {
            report_unknown(c, p, len);
            err = sb_add(out, s + i, len + 3);
        }
        if (err)
            return sb_fail(out, err, msg);
        i += len + 3;
    }
    return TN_OK;
}

/* Substitute a whole NUL-terminated string into a new string of at most `max` bytes. */
static tn_err subst_str(const sub *c, const char *in, unsigned flags, size_t max, char **out,
                        tn_errmsg *msg)
{
    sbuf b = {.max = max};
    tn_err err = sb_add(&b, "", 0);
    if (err)
        return sb_fail(&b, err, msg);
    err = subst_span(c, in, strlen(in), flags, &b, msg);
    if (err) {
        free(b.p);
        return err;
    }
    *out = b.p;
    return TN_OK;
}

static tn_err kv_lookup(void *arg, const char *name, size_t len, const char **val,
                        tn_errmsg *msg)
{
    (void)msg;
    *val = tn_kv_getn(arg, name, len);
    return TN_OK;
}

tn_err tn_params_subst(const char *in, const tn_kv *vars, const tn_param_ctx *ctx,
                       unsigned flags, char **out, tn_errmsg *msg)
{
    if (!in || !out)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "no text to substitute");
    if (flags & ~TN_PARAMS_QUOTE)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "unknown substitution flags 0x%x", flags);
    sub c;
    tn_err err = sub_init(&c, ctx, msg);
    if (err)
        return err;
    c.lookup = kv_lookup;
    c.arg = (void *)vars;
    return subst_str(&c, in, flags, TN_PARAMS_MAX_OUT, out, msg);
}

/* ---- civil time in a context's zone ----------------------------------------------------- */

tn_err tn_params_civil(const char *tz, int64_t sec, tn_civil *out, tn_errmsg *msg)
{
    tzinfo z;
    tn_err err = parse_tz(tz, &z, msg);
    if (err)
        return err;
    dt d;
    if (!to_dt(&z, sec, &d))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "the time is out of range (years 1..9999)");
    *out = (tn_civil){(int32_t)d.y,
                      d.mo,
                      d.d,
                      d.h,
                      d.mi,
                      d.s,
                      iso_wday(tn_civil_days_from(d.y, d.mo, d.d)) % 7};
    return TN_OK;
}

tn_err tn_params_instant(const char *tz, const tn_civil *c, int64_t *sec, tn_errmsg *msg)
{
    tzinfo z;
    tn_err err = parse_tz(tz, &z, msg);
    if (err)
        return err;
    dt d = {c->year, c->month, c->day, c->hour, c->minute, c->second};
    if (d.mo < 1 || d.mo > 12 || d.d < 1 || d.d > days_in_month(d.y, d.mo) || d.h < 0 ||
        d.h > 23 || d.mi < 0 || d.mi > 59 || d.s < 0 || d.s > 59 || !from_dt(&z, &d, sec))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "the civil time is out of range");
    return TN_OK;
}

/* ---- the business date of a run ------------------------------------------------------- */

static const char *const biz_keys[] = {"system.datetime", "system.biz.curdate",
                                       "system.biz.date"};

/* Digits only, exactly n of them, as a broken-down time (the rest zero). */
static bool parse_stamp(const char *v, size_t n, dt *d)
{
    if (strlen(v) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_digit(v[i]))
            return false;
    int x[6] = {0};
    static const int w[6] = {4, 2, 2, 2, 2, 2};
    for (size_t i = 0, at = 0; at < n; at += (size_t)w[i], i++)
        for (int k = 0; k < w[i]; k++)
            x[i] = x[i] * 10 + (v[at + (size_t)k] - '0');
    *d = (dt){x[0], x[1], x[2], x[3], x[4], x[5]};
    return d->y >= 1 && d->y <= 9999 && d->mo >= 1 && d->mo <= 12 && d->d >= 1 &&
           d->d <= days_in_month(d->y, d->mo) && d->h < 24 && d->mi < 60 && d->s < 60;
}

tn_err tn_params_biz_time(const char *const *keys, const char *const *values, uint32_t n,
                          const char *tz, int64_t *sched_ns, bool *found, tn_errmsg *msg)
{
    *found = false;
    int which = -1;
    const char *val = NULL;
    for (int k = 0; k < 3 && which < 0; k++)
        for (uint32_t i = 0; i < n; i++)
            if (!strcmp(keys[i], biz_keys[k])) {
                which = k;
                val = values[i];
            }
    if (which < 0)
        return TN_OK;
    tzinfo z;
    tn_err err = parse_tz(tz, &z, msg);
    if (err)
        return err;
    dt d;
    bool ok = parse_stamp(val, which == 0 ? 14 : 8, &d);
    if (ok && which == 2)
        dt_add_days(&d, 1); /* the business date is the day before the schedule day */
    int64_t sec;
    if (!ok || !year_ok(d.y) || !from_dt(&z, &d, &sec))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s=\"%.40s\" is not a valid %s: write %s",
                             biz_keys[which], val, which == 0 ? "date and time" : "date",
                             which == 0 ? "yyyyMMddHHmmss (20260131235900)" :
                                          "yyyyMMdd (20260131)");
    /* the other keys given must agree with the one that sets the time */
    tn_param_ctx c = {.sched_ns = sec * 1000000000LL, .tz = tz};
    for (uint32_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            if (k == which || strcmp(keys[i], biz_keys[k]))
                continue;
            char in[64], *got = NULL;
            snprintf(in, sizeof(in), "${%s}", biz_keys[k]);
            if ((err = tn_params_subst(in, NULL, &c, 0, &got, msg)))
                return err;
            bool same = !strcmp(got, values[i]);
            free(got);
            if (!same)
                return tn_errmsg_set(msg, TN_ERR_INVAL,
                                     "%s=\"%.40s\" disagrees with %s=\"%.40s\": give one of "
                                     "them, or values of the same run",
                                     keys[i], values[i], biz_keys[which], val);
        }
    *sched_ns = sec * 1000000000LL;
    *found = true;
    return TN_OK;
}

/* ---- precedence ----------------------------------------------------------------------- */

/* Resolving global params in dependency order. */
typedef struct gres {
    const tn_def_kvs *g;
    sub c;
    char **val;     /* resolved values */
    uint8_t *state; /* 0 = to do, 1 = being resolved, 2 = done */
    uint32_t stack[TN_PARAMS_MAX_CHAIN];
    unsigned depth;
    bool named; /* the message already names a param */
} gres;

static int32_t def_find(const tn_def_kvs *g, const char *name, size_t len)
{
    uint32_t lo = 0, hi = g->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(g->items[mid].key, name, len);
        if (!c)
            return (int32_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static tn_err g_resolve(gres *g, uint32_t i, tn_errmsg *msg);

static tn_err g_lookup(void *arg, const char *name, size_t len, const char **val,
                       tn_errmsg *msg)
{
    gres *g = arg;
    int32_t j = def_find(g->g, name, len);
    *val = NULL;
    if (j < 0)
        return TN_OK;
    if (g->state[j] == 1) {
        char chain[400];
        size_t cl = 0;
        unsigned from = 0;
        while (g->stack[from] != (uint32_t)j)
            from++;
        for (unsigned k = from; k < g->depth && cl < sizeof(chain); k++) {
            int w = snprintf(chain + cl, sizeof(chain) - cl, "%s -> ",
                             g->g->items[g->stack[k]].key);
            cl += w > 0 ? (size_t)w : 0;
        }
        g->named = true;
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "global params refer to each other in a cycle: %s%s; a param "
                             "cannot depend on its own value",
                             chain, g->g->items[j].key);
    }
    if (g->state[j] == 0) {
        tn_err err = g_resolve(g, (uint32_t)j, msg);
        if (err)
            return err;
    }
    *val = g->val[j];
    return TN_OK;
}

static tn_err g_resolve(gres *g, uint32_t i, tn_errmsg *msg)
{
    const char *key = g->g->items[i].key;
    if (g->depth >= TN_PARAMS_MAX_CHAIN) {
        g->named = true;
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "global param \"%s\": references between global params nest "
                             "more than %u deep",
                             key, TN_PARAMS_MAX_CHAIN);
    }
    g->state[i] = 1;
    g->stack[g->depth++] = i;
    char *v = NULL;
    tn_err err = subst_str(&g->c, g->g->items[i].value, 0, TN_PARAMS_MAX_VALUE, &v, msg);
    g->depth--;
    if (err) {
        if (!g->named)
            prefix_msg(msg, err, "global param", key);
        g->named = true;
        return err;
    }
    g->val[i] = v;
    g->state[i] = 2;
    return TN_OK;
}

static tn_err check_sorted(const tn_def_kvs *kvs, const char *what, tn_errmsg *msg)
{
    for (uint32_t i = 0; kvs && i < kvs->n; i++) {
        if (!kvs->items[i].key || !kvs->items[i].value)
            return tn_errmsg_set(msg, TN_ERR_INVAL, "%s params: entry %u is incomplete", what,
                                 i);
        if (i && strcmp(kvs->items[i - 1].key, kvs->items[i].key) >= 0)
            return tn_errmsg_set(msg, TN_ERR_INVAL,
                                 "%s params are not sorted by key or repeat \"%s\"", what,
                                 kvs->items[i].key);
    }
    return TN_OK;
}

tn_err tn_params_globals(const tn_def_kvs *global, const tn_param_ctx *ctx, tn_kv **out,
                         tn_errmsg *msg)
{
    if (!out)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "no place for the result");
    tn_err err = check_sorted(global, "global", msg);
    if (err)
        return err;
    uint32_t n = global ? global->n : 0;
    gres *g = calloc(1, sizeof(*g));
    tn_kv *kv = tn_kv_new();
    if (!g || !kv) {
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory resolving global params");
        goto fail;
    }
    if ((err = sub_init(&g->c, ctx, msg)))
        goto fail;
    g->g = global;
    g->c.lookup = g_lookup;
    g->c.arg = g;
    if (n) {
        g->val = calloc(n, sizeof(*g->val));
        g->state = calloc(n, 1);
        if (!g->val || !g->state) {
            err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory resolving global params");
            goto fail;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        if (g->state[i] == 0 && (err = g_resolve(g, i, msg)))
            goto fail;
    for (uint32_t i = 0; i < n; i++) {
        if ((err = tn_kv_set(kv, global->items[i].key, g->val[i]))) {
            tn_errmsg_set(msg, err, "global param \"%.64s\": cannot be stored: %s",
                          global->items[i].key, tn_strerror(err));
            goto fail;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        free(g->val[i]);
    free(g->val);
    free(g->state);
    free(g);
    *out = kv;
    return TN_OK;
fail:
    if (g) {
        for (uint32_t i = 0; g->val && i < n; i++)
            free(g->val[i]);
        free(g->val);
        free(g->state);
        free(g);
    }
    tn_kv_free(kv);
    return err;
}

tn_err tn_params_task(const tn_kv *globals, const tn_kv *upstream, const tn_def_kvs *local,
                      const tn_kv *overrides, const tn_param_ctx *ctx, tn_kv **out,
                      tn_errmsg *msg)
{
    if (!out)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "no place for the result");
    tn_err err = check_sorted(local, "local", msg);
    if (err)
        return err;
    sub c;
    if ((err = sub_init(&c, ctx, msg)))
        return err;
    tn_kv *base = NULL, *res = NULL;
    char *v = NULL;
    /* What local values see: the globals overlaid with the upstream values. */
    if ((err = tn_kv_copy(globals, &base)) || (err = tn_kv_merge(base, upstream)) ||
        (err = tn_kv_copy(base, &res))) {
        tn_errmsg_set(msg, err, "cannot combine global and upstream params: %s",
                      tn_strerror(err));
        goto fail;
    }
    c.lookup = kv_lookup;
    c.arg = base;
    for (uint32_t i = 0; local && i < local->n; i++) {
        const char *key = local->items[i].key, *val = local->items[i].value;
        if (!*val) {
            const char *up = tn_kv_get(upstream, key);
            err = tn_kv_set(res, key, up ? up : "");
        } else {
            err = subst_str(&c, val, 0, TN_PARAMS_MAX_VALUE, &v, msg);
            if (err) {
                prefix_msg(msg, err, "local param", key);
                goto fail;
            }
            err = tn_kv_set(res, key, v);
            free(v);
            v = NULL;
        }
        if (err) {
            tn_errmsg_set(msg, err, "local param \"%.64s\": cannot be stored: %s", key,
                          tn_strerror(err));
            goto fail;
        }
    }
    if ((err = tn_kv_merge(res, overrides))) {
        tn_errmsg_set(msg, err, "cannot apply the start-time params: %s", tn_strerror(err));
        goto fail;
    }
    tn_kv_free(base);
    *out = res;
    return TN_OK;
fail:
    tn_kv_free(base);
    tn_kv_free(res);
    return err;
}

tn_err tn_params_effective(const tn_def_kvs *global, const tn_kv *upstream,
                           const tn_def_kvs *local, const tn_kv *overrides,
                           const tn_param_ctx *ctx, tn_kv **out, tn_errmsg *msg)
{
    tn_kv *g = NULL;
    tn_err err = tn_params_globals(global, ctx, &g, msg);
    if (err)
        return err;
    err = tn_params_task(g, upstream, local, overrides, ctx, out, msg);
    tn_kv_free(g);
    return err;
}

/* ---- setValue scanning ---------------------------------------------------------------- */

enum {
    SC_SCAN,
    SC_PREFIX,
    SC_KEY,
    SC_VAL
};

/* What follows the leading '$' or '#' of a marker. */
static const char SV_TAIL[] = "{setValue(";
#define SV_TAIL_LEN (sizeof(SV_TAIL) - 1)

void tn_params_scanner_init(tn_params_scanner *s)
{
    memset(s, 0, sizeof(*s));
}

void tn_params_scanner_fini(tn_params_scanner *s)
{
    if (!s)
        return;
    free(s->val);
    memset(s, 0, sizeof(*s));
}

static void sc_drop(tn_params_scanner *s)
{
    s->dropped++;
    s->state = SC_SCAN;
}

static bool sc_push(tn_params_scanner *s, char ch)
{
    if (s->val_len == s->val_cap) {
        size_t cap = s->val_cap ? s->val_cap * 2 : 64;
        if (cap > TN_PARAMS_MAX_VALUE)
            cap = TN_PARAMS_MAX_VALUE;
        char *p = realloc(s->val, cap);
        if (!p)
            return false;
        s->val = p;
        s->val_cap = cap;
    }
    s->val[s->val_len++] = ch;
    return true;
}

/* One byte in a state other than SC_SCAN. Returns 1 when the byte must be looked at again
 * (in SC_SCAN), 0 when consumed, -1 when out of memory. */
static int sc_step(tn_params_scanner *s, char ch, tn_kv *dst, bool *toobig)
{
    switch (s->state) {
    case SC_PREFIX:
        if (ch != SV_TAIL[s->matched]) {
            s->state = SC_SCAN;
            return 1;
        }
        if (++s->matched == SV_TAIL_LEN) {
            s->state = SC_KEY;
            s->key_len = 0;
        }
        return 0;
    case SC_KEY:
        if (ch == '=' && s->key_len) {
            s->state = SC_VAL;
            s->val_len = 0;
            s->paren = false;
            return 0;
        }
        if (ch != '=' && is_name_char(ch) && s->key_len < TN_DEF_PARAM_KEY_MAX) {
            s->key[s->key_len++] = ch;
            return 0;
        }
        sc_drop(s);
        return 1;
    default: /* SC_VAL */
        if (s->paren) {
            if (ch == '}') {
                s->state = SC_SCAN;
                if (!tn_kv_getn(dst, s->key, s->key_len) &&
                    tn_kv_len(dst) >= TN_PARAMS_MAX_OUTPUTS) {
                    s->dropped++;
                    s->too_many++;
                    *toobig = true;
                    return 0;
                }
                tn_err err = tn_kv_setn(dst, s->key, s->key_len, s->val, s->val_len);
                if (err == TN_ERR_NOMEM)
                    return -1;
                if (err)
                    s->dropped++;
                return 0;
            }
            if (s->val_len >= TN_PARAMS_MAX_VALUE) {
                s->too_long++;
                sc_drop(s);
                return 1;
            }
            if (!sc_push(s, ')'))
                goto nomem;
            s->paren = false;
        }
        if (ch == ')') {
            s->paren = true;
            return 0;
        }
        if (ch == '\0' || s->val_len >= TN_PARAMS_MAX_VALUE) {
            s->too_long += ch != '\0';
            sc_drop(s);
            return 1;
        }
        if (!sc_push(s, ch))
            goto nomem;
        return 0;
    }
nomem:
    sc_drop(s);
    return -1;
}

tn_err tn_params_scanner_feed(tn_params_scanner *s, const char *chunk, size_t len, tn_kv *dst)
{
    if (!s || !dst || (!chunk && len))
        return TN_ERR_INVAL;
    bool toobig = false;
    size_t i = 0;
    while (i < len) {
        if (s->state == SC_SCAN) {
            while (i < len && chunk[i] != '$' && chunk[i] != '#')
                i++;
            if (i == len)
                break;
            s->state = SC_PREFIX;
            s->matched = 0;
            i++;
            continue;
        }
        int r = sc_step(s, chunk[i], dst, &toobig);
        if (r < 0)
            return TN_ERR_NOMEM;
        if (r == 0)
            i++;
    }
    return toobig ? TN_ERR_TOOBIG : TN_OK;
}

tn_err tn_params_scan_outputs(const char *text, size_t len, tn_kv *dst)
{
    tn_params_scanner s;
    tn_params_scanner_init(&s);
    tn_err err = tn_params_scanner_feed(&s, text, len, dst);
    tn_params_scanner_fini(&s);
    return err;
}

tn_err tn_params_scan_file(const char *path, tn_kv *dst)
{
    return tn_params_scan_file_why(path, dst, NULL, 0);
}

tn_err tn_params_scan_file_why(const char *path, tn_kv *dst, char *why, size_t wl)
{
    FILE *f = path ? fopen(path, "re") : NULL;
    if (!f)
        return TN_ERR_IO;
    tn_params_scanner sc;
    tn_params_scanner_init(&sc);
    char buf[65536];
    size_t n;
    tn_err err = TN_OK;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        tn_err fe = tn_params_scanner_feed(&sc, buf, n, dst);
        if (fe && !err)
            err = fe;
    }
    uint64_t too_long = sc.too_long, too_many = sc.too_many;
    tn_params_scanner_fini(&sc);
    fclose(f);
    if ((too_long || too_many) && (!err || err == TN_ERR_TOOBIG)) {
        err = TN_ERR_TOOBIG;
        if (why && too_long)
            snprintf(why, wl,
                     "%" PRIu64 " ${setValue(...)} output(s) not passed on: a value over the "
                     "%u-byte limit",
                     too_long, (unsigned)TN_PARAMS_MAX_VALUE);
        else if (why)
            snprintf(why, wl,
                     "%" PRIu64 " ${setValue(...)} output(s) not passed on: more than %u "
                     "distinct keys",
                     too_many, (unsigned)TN_PARAMS_MAX_OUTPUTS);
    }
    return err;
}

/* ---- switch conditions ---------------------------------------------------------------- */

typedef enum {
    V_BOOL,
    V_NUM,
    V_STR
} vkind;

typedef struct val {
    vkind k;
    bool b;
    const char *s; /* NUM: its text; STR: decoded bytes */
    size_t n;
} val;

typedef struct epar {
    const char *src;
    size_t len, pos;
    char *arena; /* decoded strings; never longer than the source */
    size_t alen;
    unsigned depth;
    tn_errmsg *msg;
} epar;

enum {
    OP_EQ = 1,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE
};

static const char *const op_text[] = {"", "==", "!=", "<", "<=", ">", ">="};
static const char *const kind_name[] = {"boolean", "number", "string"};

static tn_err e_fail(epar *p, tn_err err, size_t at, const char *what, const char *hint)
{
    return tn_errmsg_set(p->msg, err, "%s at column %zu%s", what, at + 1, hint ? hint : "");
}

static void e_ws(epar *p)
{
    while (p->pos < p->len && is_ws(p->src[p->pos]))
        p->pos++;
}

/* A decimal number split into sign, integer digits without leading zeros and fraction
 * digits without trailing zeros, so equal values split equally. */
typedef struct dec {
    bool neg;
    const char *ip, *fp;
    size_t il, fl;
} dec;

static dec dec_split(const char *s, size_t n)
{
    dec d = {0};
    d.neg = n && s[0] == '-';
    if (d.neg) {
        s++;
        n--;
    }
    const char *dot = memchr(s, '.', n);
    d.ip = s;
    d.il = dot ? (size_t)(dot - s) : n;
    d.fp = dot ? dot + 1 : s + n;
    d.fl = dot ? n - d.il - 1 : 0;
    while (d.il && *d.ip == '0') {
        d.ip++;
        d.il--;
    }
    while (d.fl && d.fp[d.fl - 1] == '0')
        d.fl--;
    if (!d.il && !d.fl)
        d.neg = false;
    return d;
}

static int sign_of(int c)
{
    return (c > 0) - (c < 0);
}

static int dec_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    dec x = dec_split(a, an), y = dec_split(b, bn);
    if (x.neg != y.neg)
        return x.neg ? -1 : 1;
    int c;
    if (x.il != y.il) {
        c = x.il < y.il ? -1 : 1;
    } else if ((c = sign_of(memcmp(x.ip, y.ip, x.il))) == 0) {
        size_t m = x.fl < y.fl ? x.fl : y.fl;
        c = sign_of(memcmp(x.fp, y.fp, m));
        if (!c)
            c = x.fl < y.fl ? -1 : x.fl > y.fl ? 1 : 0;
    }
    return x.neg ? -c : c;
}

static bool truthy(const val *v)
{
    if (v->k == V_BOOL)
        return v->b;
    if (v->k == V_STR)
        return v->n > 0;
    dec d = dec_split(v->s, v->n);
    return d.il || d.fl;
}

static val vbool(bool b)
{
    val v = {.k = V_BOOL, .b = b};
    return v;
}

static tn_err e_or(epar *p, val *out);

static bool is_word_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '_';
}

/* ( condition ) */
static tn_err e_group(epar *p, val *out)
{
    size_t at = p->pos;
    if (++p->depth > TN_EXPR_MAX_DEPTH)
        return e_fail(p, TN_ERR_TOOBIG, at, "the condition nests too deeply", NULL);
    p->pos++;
    tn_err err = e_or(p, out);
    if (err)
        return err;
    e_ws(p);
    if (p->pos >= p->len || p->src[p->pos] != ')') {
        char what[80];
        snprintf(what, sizeof(what), "expected \")\" to close the \"(\" of column %zu", at + 1);
        return e_fail(p, TN_ERR_PARSE, p->pos, what, NULL);
    }
    p->pos++;
    p->depth--;
    return TN_OK;
}

/* 'text' or "text", a backslash taking the next character as it is. */
static tn_err e_string(epar *p, val *out)
{
    const char *s = p->src;
    size_t at = p->pos;
    char *d = p->arena + p->alen, quote = s[at];
    size_t n = 0;
    for (size_t i = at + 1; i < p->len; i++) {
        if (s[i] == quote) {
            p->pos = i + 1;
            p->alen += n;
            out->k = V_STR;
            out->s = d;
            out->n = n;
            return TN_OK;
        }
        if (s[i] == '\\' && i + 1 < p->len)
            i++;
        d[n++] = s[i];
    }
    return e_fail(p, TN_ERR_PARSE, at, "unterminated string", NULL);
}

/* -12, 3.5: digits with an optional sign and decimals, kept as written. */
static tn_err e_number(epar *p, val *out)
{
    const char *s = p->src;
    size_t at = p->pos, i = at + (s[at] == '-');
    while (i < p->len && is_digit(s[i]))
        i++;
    if (i < p->len && s[i] == '.' && i + 1 < p->len && is_digit(s[i + 1])) {
        i++;
        while (i < p->len && is_digit(s[i]))
            i++;
    }
    if (i < p->len && (is_word_char(s[i]) || s[i] == '.')) {
        size_t e = i;
        while (e < p->len && (is_word_char(s[e]) || s[e] == '.'))
            e++;
        char what[96];
        snprintf(what, sizeof(what), "bad number \"%.*s\"", (int)(e - at > 40 ? 40 : e - at),
                 s + at);
        return e_fail(p, TN_ERR_PARSE, at, what, ": quote strings ('...')");
    }
    out->k = V_NUM;
    out->s = s + at;
    out->n = i - at;
    p->pos = i;
    return TN_OK;
}

/* true or false; any other bare word is a mistake (most often an unquoted string). */
static tn_err e_word(epar *p, val *out)
{
    const char *s = p->src;
    size_t at = p->pos, e = at;
    while (e < p->len && is_word_char(s[e]))
        e++;
    if (e - at == 4 && !memcmp(s + at, "true", 4)) {
        *out = vbool(true);
    } else if (e - at == 5 && !memcmp(s + at, "false", 5)) {
        *out = vbool(false);
    } else {
        char what[96];
        snprintf(what, sizeof(what), "unknown word \"%.*s\"", (int)(e - at > 40 ? 40 : e - at),
                 s + at);
        return e_fail(p, TN_ERR_PARSE, at, what,
                      ": quote strings ('...'); the words are true and false");
    }
    p->pos = e;
    return TN_OK;
}

static tn_err e_primary(epar *p, val *out)
{
    e_ws(p);
    if (p->pos >= p->len)
        return e_fail(p, TN_ERR_PARSE, p->pos, "expected an operand", NULL);
    const char *s = p->src;
    size_t at = p->pos;
    char c = s[at];
    if (c == '(')
        return e_group(p, out);
    if (c == '\'' || c == '"')
        return e_string(p, out);
    if (is_digit(c) || (c == '-' && at + 1 < p->len && is_digit(s[at + 1])))
        return e_number(p, out);
    if (is_alpha(c) || c == '_')
        return e_word(p, out);
    if (c == '$' && at + 1 < p->len && s[at + 1] == '{') {
        const char *close = memchr(s + at, '}', p->len - at);
        size_t e = close ? (size_t)(close - s) + 1 : p->len;
        char what[120];
        snprintf(what, sizeof(what), "unresolved parameter \"%.*s\"",
                 (int)(e - at > 80 ? 80 : e - at), s + at);
        return e_fail(p, TN_ERR_PARSE, at, what, ": no param of that name is defined");
    }
    return e_fail(p, TN_ERR_PARSE, at, "expected an operand", NULL);
}

static tn_err e_unary(epar *p, val *out)
{
    e_ws(p);
    if (p->pos < p->len && p->src[p->pos] == '!' &&
        !(p->pos + 1 < p->len && p->src[p->pos + 1] == '=')) {
        if (++p->depth > TN_EXPR_MAX_DEPTH)
            return e_fail(p, TN_ERR_TOOBIG, p->pos, "the condition nests too deeply", NULL);
        p->pos++;
        val v;
        tn_err err = e_unary(p, &v);
        if (err)
            return err;
        p->depth--;
        *out = vbool(!truthy(&v));
        return TN_OK;
    }
    return e_primary(p, out);
}

/* The comparison operator at the current position, and its length; 0 if none. */
static int cmp_op(const epar *p, size_t *len)
{
    const char *s = p->src + p->pos;
    size_t n = p->len - p->pos;
    *len = 2;
    if (n >= 2 && s[1] == '=') {
        switch (s[0]) {
        case '=': return OP_EQ;
        case '!': return OP_NE;
        case '<': return OP_LE;
        case '>': return OP_GE;
        default: break;
        }
    }
    *len = 1;
    if (n >= 1 && s[0] == '<')
        return OP_LT;
    if (n >= 1 && s[0] == '>')
        return OP_GT;
    return 0;
}

static tn_err e_compare(epar *p, const val *a, const val *b, int op, size_t at, bool *res)
{
    if (a->k != b->k) {
        if (op == OP_EQ || op == OP_NE) {
            *res = op == OP_NE;
            return TN_OK;
        }
        char what[120];
        snprintf(what, sizeof(what), "cannot order a %s and a %s with \"%s\"", kind_name[a->k],
                 kind_name[b->k], op_text[op]);
        return e_fail(p, TN_ERR_TYPE, at, what, NULL);
    }
    int c = 0;
    if (a->k == V_BOOL) {
        if (op != OP_EQ && op != OP_NE) {
            char what[80];
            snprintf(what, sizeof(what), "booleans cannot be ordered with \"%s\"", op_text[op]);
            return e_fail(p, TN_ERR_TYPE, at, what, NULL);
        }
        c = (int)a->b - (int)b->b;
    } else if (a->k == V_NUM) {
        c = dec_cmp(a->s, a->n, b->s, b->n);
    } else {
        size_t m = a->n < b->n ? a->n : b->n;
        c = sign_of(memcmp(a->s, b->s, m));
        if (!c)
            c = a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
    }
    switch (op) {
    case OP_EQ: *res = c == 0; break;
    case OP_NE: *res = c != 0; break;
    case OP_LT: *res = c < 0; break;
    case OP_LE: *res = c <= 0; break;
    case OP_GT: *res = c > 0; break;
    default: *res = c >= 0; break;
    }
    return TN_OK;
}

static tn_err e_cmp(epar *p, val *out)
{
    val a, b;
    tn_err err = e_unary(p, &a);
    if (err)
        return err;
    e_ws(p);
    size_t oplen;
    int op = cmp_op(p, &oplen);
    if (!op) {
        if (p->pos < p->len && p->src[p->pos] == '=')
            return e_fail(p, TN_ERR_PARSE, p->pos, "\"=\" is not an operator",
                          ": compare with ==");
        *out = a;
        return TN_OK;
    }
    size_t at = p->pos;
    p->pos += oplen;
    if ((err = e_unary(p, &b)))
        return err;
    bool r = false;
    if ((err = e_compare(p, &a, &b, op, at, &r)))
        return err;
    e_ws(p);
    if (cmp_op(p, &oplen))
        return e_fail(p, TN_ERR_PARSE, p->pos, "comparisons do not chain",
                      ": join them with && (a < b && b < c)");
    *out = vbool(r);
    return TN_OK;
}

/* a && b && ... over comparisons, or a || b || ... over those. Both sides are always
 * evaluated, so a mistake on either side is reported. */
static tn_err e_logic(epar *p, bool is_or, val *out)
{
    const char *op = is_or ? "||" : "&&";
    tn_err err = is_or ? e_logic(p, false, out) : e_cmp(p, out);
    while (!err) {
        e_ws(p);
        if (p->len - p->pos < 2 || memcmp(p->src + p->pos, op, 2))
            break;
        p->pos += 2;
        val b;
        if ((err = is_or ? e_logic(p, false, &b) : e_cmp(p, &b)))
            break;
        *out = vbool(is_or ? truthy(out) || truthy(&b) : truthy(out) && truthy(&b));
    }
    return err;
}

static tn_err e_or(epar *p, val *out)
{
    return e_logic(p, true, out);
}

tn_err tn_expr_eval(const char *expr, bool *result, tn_errmsg *msg)
{
    if (!expr || !result)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "no condition to evaluate");
    size_t len = strnlen(expr, (size_t)TN_EXPR_MAX_LEN + 1);
    if (len > TN_EXPR_MAX_LEN)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG, "the condition is longer than %u bytes",
                             TN_EXPR_MAX_LEN);
    epar p = {.src = expr, .len = len, .msg = msg};
    p.arena = malloc(len + 1);
    if (!p.arena)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory evaluating a condition");
    tn_err err;
    val v;
    e_ws(&p);
    if (p.pos == len) {
        err = tn_errmsg_set(msg, TN_ERR_PARSE, "the condition is empty");
        goto done;
    }
    if ((err = e_or(&p, &v)))
        goto done;
    e_ws(&p);
    if (p.pos < len) {
        char what[64];
        size_t e = p.pos;
        while (e < len && e - p.pos < 16 && !is_ws(expr[e]))
            e++;
        snprintf(what, sizeof(what), "unexpected \"%.*s\"", (int)(e - p.pos), expr + p.pos);
        err = e_fail(&p, TN_ERR_PARSE, p.pos, what,
                     expr[p.pos] == ')' ? ": no \"(\" opens it" : ": expected && or ||");
        goto done;
    }
    *result = truthy(&v);
done:
    free(p.arena);
    return err;
}
