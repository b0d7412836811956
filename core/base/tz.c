/* Time zones: offsets come from ICU's calendar (IANA data) or a fixed offset; civil
 * fields are computed here from the offset, so the calendar arithmetic is one piece. */
#include "tz.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>

struct tn_tz {
    pthread_mutex_t mu;
    UCalendar *cal; /* NULL for a fixed offset */
    int32_t fixed_off;
    char name[TN_TZ_MAX_NAME + 1];
};

#define NS_PER_S 1000000000LL
/* Offsets stay within +-18 h, so the instants a civil time may map to lie within this
 * distance of the civil time read as UTC. */
#define OFF_SPAN (18 * 3600)

/* ---- civil calendar (Howard Hinnant's days_from_civil / civil_from_days) ------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int64_t tn_civil_days_from(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, tn_civil *c)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    c->day = (int32_t)(doy - (153 * mp + 2) / 5 + 1);
    c->month = (int32_t)m;
    c->year = (int32_t)(yoe + era * 400 + (m <= 2));
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int tn_civil_days_in_month(int64_t year, int month)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12)
        return 0;
    return dim[month - 1] + (month == 2 && leap(year));
}

int tn_civil_weekday(int64_t year, int month, int day)
{
    int64_t w = (tn_civil_days_from(year, month, day) + 4) % 7; /* 1970-01-01: Thursday */
    return (int)(w < 0 ? w + 7 : w);
}

/* ---- open / free --------------------------------------------------------------------- */

/* "UTC", "Z", "+HH:MM" or "-HH:MM"; false if the name is none of these. */
static bool parse_fixed(const char *s, int32_t *off)
{
    if (!strcmp(s, "UTC") || !strcmp(s, "Z")) {
        *off = 0;
        return true;
    }
    if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || s[3] != ':')
        return false;
    for (int i = 1; i < 6; i++)
        if (i != 3 && (s[i] < '0' || s[i] > '9'))
            return false;
    int h = (s[1] - '0') * 10 + (s[2] - '0'), m = (s[4] - '0') * 10 + (s[5] - '0');
    if (h > 18 || m > 59 || (h == 18 && m > 0))
        return false;
    *off = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return true;
}

/* Open an ICU calendar for a known IANA id; ICU maps unknown ids to "Etc/Unknown" (GMT)
 * without an error, so the id is checked against ICU's list of system zones first. */
static tn_err open_icu(const char *name, UCalendar **out, tn_errmsg *e)
{
    UChar id[TN_TZ_MAX_NAME + 1], canon[128];
    int32_t len = 0;
    for (; name[len]; len++) {
        if ((unsigned char)name[len] > 0x7e || (unsigned char)name[len] < 0x21)
            goto unknown;
        id[len] = (UChar)name[len];
    }
    id[len] = 0;
    UErrorCode st = U_ZERO_ERROR;
    UBool sys = 0;
    ucal_getCanonicalTimeZoneID(id, len, canon, 128, &sys, &st);
    if (U_FAILURE(st) || !sys || !strcmp(name, "Etc/Unknown"))
        goto unknown;
    UCalendar *cal = ucal_open(id, len, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (U_FAILURE(st) || !cal)
        return tn_errmsg_set(e, TN_ERR_INTERNAL, "time zone \"%s\": ICU cannot open it: %s",
                             name, u_errorName(st));
    UChar got[128];
    int32_t n = ucal_getTimeZoneID(cal, got, 128, &st);
    static const UChar unk[] = {'E', 't', 'c', '/', 'U', 'n', 'k', 'n', 'o', 'w', 'n', 0};
    if (U_FAILURE(st) || (n == 11 && !u_strncmp(got, unk, 11))) {
        ucal_close(cal);
        goto unknown;
    }
    *out = cal;
    return TN_OK;
unknown:
    return tn_errmsg_set(e, TN_ERR_NOENT,
                         "time zone \"%s\" is unknown: use an IANA name such as "
                         "\"Europe/Berlin\", \"UTC\", or a fixed offset such as \"+08:00\"",
                         name);
}

tn_err tn_tz_open(const char *name, tn_tz **out, tn_errmsg *e)
{
    if (!name || !out)
        return tn_errmsg_set(e, TN_ERR_INVAL, "time zone: no name given");
    if (strlen(name) > TN_TZ_MAX_NAME)
        return tn_errmsg_set(e, TN_ERR_TOOBIG,
                             "time zone \"%.64s...\": name longer than %u bytes", name,
                             TN_TZ_MAX_NAME);
    tn_tz *tz = calloc(1, sizeof(*tz));
    if (!tz)
        return tn_errmsg_set(e, TN_ERR_NOMEM, "time zone \"%s\": out of memory", name);
    strcpy(tz->name, name);
    if (!parse_fixed(name, &tz->fixed_off)) {
        tn_err err = open_icu(name, &tz->cal, e);
        if (err) {
            free(tz);
            return err;
        }
    }
    pthread_mutex_init(&tz->mu, NULL);
    *out = tz;
    return TN_OK;
}

void tn_tz_free(tn_tz *tz)
{
    if (!tz)
        return;
    if (tz->cal)
        ucal_close(tz->cal);
    pthread_mutex_destroy(&tz->mu);
    free(tz);
}

const char *tn_tz_name(const tn_tz *tz)
{
    return tz->name;
}

/* ---- conversions --------------------------------------------------------------------- */

/* Offset in seconds at unix second t; the mutex is held. */
static tn_err offset_locked(tn_tz *tz, int64_t t, int32_t *off)
{
    if (!tz->cal) {
        *off = tz->fixed_off;
        return TN_OK;
    }
    UErrorCode st = U_ZERO_ERROR;
    ucal_setMillis(tz->cal, (UDate)t * 1000.0, &st);
    int32_t raw = ucal_get(tz->cal, UCAL_ZONE_OFFSET, &st);
    int32_t dst = ucal_get(tz->cal, UCAL_DST_OFFSET, &st);
    if (U_FAILURE(st))
        return TN_ERR_INTERNAL;
    *off = (raw + dst) / 1000;
    return TN_OK;
}

tn_err tn_tz_offset(tn_tz *tz, int64_t unix_ns, int32_t *offset_s)
{
    pthread_mutex_lock(&tz->mu);
    tn_err err = offset_locked(tz, floor_div(unix_ns, NS_PER_S), offset_s);
    pthread_mutex_unlock(&tz->mu);
    return err;
}

tn_err tn_tz_to_civil(tn_tz *tz, int64_t unix_ns, tn_civil *out)
{
    int64_t t = floor_div(unix_ns, NS_PER_S);
    int32_t off;
    pthread_mutex_lock(&tz->mu);
    tn_err err = offset_locked(tz, t, &off);
    pthread_mutex_unlock(&tz->mu);
    if (err)
        return err;
    tn_civil_from_seconds(t + off, out);
    return TN_OK;
}

void tn_civil_from_seconds(int64_t local, tn_civil *out)
{
    int64_t days = floor_div(local, 86400), sod = local - days * 86400;
    civil_from_days(days, out);
    out->hour = (int32_t)(sod / 3600);
    out->minute = (int32_t)(sod / 60 % 60);
    out->second = (int32_t)(sod % 60);
    out->weekday = (int32_t)((days % 7 + 11) % 7); /* day 0 was a Thursday */
}

/* The first second at or after which the offset differs from the one at lo, given that
 * it differs at hi (lo < hi); the mutex is held. */
static tn_err transition_locked(tn_tz *tz, int64_t lo, int64_t hi, int64_t *at)
{
    int32_t olo, omid;
    tn_err err = offset_locked(tz, lo, &olo);
    while (!err && hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        err = offset_locked(tz, mid, &omid);
        if (omid == olo)
            lo = mid;
        else
            hi = mid;
    }
    *at = hi;
    return err;
}

/* Both candidate readings of local second L: with the offset well before (a) and well
 * after (b); each is valid when the zone really has that offset at that instant. */
static tn_err resolve_locked(tn_tz *tz, int64_t L, tn_tz_gap gap, tn_tz_overlap overlap,
                             int64_t *t, tn_tz_kind *kind)
{
    int32_t oa, ob, at_a, at_b;
    tn_err err = offset_locked(tz, L - OFF_SPAN, &oa);
    if (!err)
        err = offset_locked(tz, L + OFF_SPAN, &ob);
    int64_t ta = L - oa, tb = L - ob;
    if (!err)
        err = offset_locked(tz, ta, &at_a);
    if (!err)
        err = offset_locked(tz, tb, &at_b);
    if (err)
        return err;
    bool va = at_a == oa, vb = at_b == ob;
    if (va && vb && ta != tb) {
        *kind = TN_TZ_OVERLAP;
        if (overlap == TN_TZ_OVERLAP_REFUSE)
            return TN_ERR_EXISTS;
        *t = (overlap == TN_TZ_OVERLAP_LATER) == (ta > tb) ? ta : tb;
        return TN_OK;
    }
    if (va || vb) {
        *kind = TN_TZ_UNIQUE;
        *t = va ? ta : tb;
        return TN_OK;
    }
    *kind = TN_TZ_GAP;
    if (gap == TN_TZ_GAP_REFUSE)
        return TN_ERR_NOENT;
    if (gap == TN_TZ_GAP_SHIFT) {
        *t = ta;
        return TN_OK;
    }
    return transition_locked(tz, tb < ta ? tb : ta, tb < ta ? ta : tb, t);
}

tn_err tn_tz_transition(tn_tz *tz, int64_t lo_ns, int64_t hi_ns, int64_t *at_ns)
{
    int64_t lo = floor_div(lo_ns, NS_PER_S), hi = floor_div(hi_ns, NS_PER_S), at = 0;
    int32_t olo = 0, ohi = 0;
    pthread_mutex_lock(&tz->mu);
    tn_err err = offset_locked(tz, lo, &olo);
    if (!err)
        err = offset_locked(tz, hi, &ohi);
    if (!err && (hi <= lo || olo == ohi))
        err = TN_ERR_NOENT;
    if (!err)
        err = transition_locked(tz, lo, hi, &at);
    pthread_mutex_unlock(&tz->mu);
    if (!err)
        *at_ns = at * NS_PER_S;
    return err;
}

tn_err tn_tz_from_civil(tn_tz *tz, const tn_civil *c, tn_tz_gap gap, tn_tz_overlap overlap,
                        int64_t *unix_ns, tn_tz_kind *kind)
{
    if (c->month < 1 || c->month > 12 || c->day < 1 ||
        c->day > tn_civil_days_in_month(c->year, c->month) || c->hour < 0 || c->hour > 23 ||
        c->minute < 0 || c->minute > 59 || c->second < 0 || c->second > 59)
        return TN_ERR_INVAL;
    int64_t L = tn_civil_days_from(c->year, c->month, c->day) * 86400 + c->hour * 3600 +
                c->minute * 60 + c->second;
    int64_t t = 0;
    tn_tz_kind k = TN_TZ_UNIQUE;
    if (L > INT64_MAX / NS_PER_S + 86400 || L < INT64_MIN / NS_PER_S - 86400)
        return TN_ERR_TOOBIG; /* and keep ICU within the range it accepts */
    pthread_mutex_lock(&tz->mu);
    tn_err err = resolve_locked(tz, L, gap, overlap, &t, &k);
    pthread_mutex_unlock(&tz->mu);
    if (kind && (err == TN_OK || err == TN_ERR_EXISTS || err == TN_ERR_NOENT))
        *kind = k;
    if (err)
        return err;
    if (t > INT64_MAX / NS_PER_S || t < INT64_MIN / NS_PER_S)
        return TN_ERR_TOOBIG;
    *unix_ns = t * NS_PER_S;
    return TN_OK;
}
