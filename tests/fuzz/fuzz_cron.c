/* libFuzzer target over cron parsing and the next-fire search: any bytes must parse or be
 * refused with a message, and a parsed expression's fire times must be consistent and
 * follow the DST rule (each the first occurrence of a civil time that exists). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const zones[] = {
    "UTC",    "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
    "+05:45", "Pacific/Apia"};
#define NZONES (sizeof(zones) / sizeof(zones[0]))
static tn_tz *tzs[NZONES];

static void fail(const char *what, const char *expr, int64_t a, int64_t b)
{
    fprintf(stderr, "fuzz_cron: %s: \"%s\" %lld %lld\n", what, expr, (long long)a,
            (long long)b);
    abort();
}

/* Input: one byte picking the zone, eight bytes of after_ns, the expression. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9 || size > 9 + 300)
        return 0;
    unsigned z = data[0] % NZONES;
    if (!tzs[z] && tn_tz_open(zones[z], &tzs[z], NULL))
        abort();
    int64_t after;
    memcpy(&after, data + 1, 8);
    char expr[320];
    memcpy(expr, data + 9, size - 9);
    expr[size - 9] = 0;
    tn_cron c;
    tn_errmsg e = {{0}};
    tn_err err = tn_cron_parse(expr, &c, &e);
    if (err) {
        if (strncmp(e.text, "cron: ", 6) != 0)
            fail("error without a message", expr, err, 0);
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        int64_t next;
        err = tn_cron_next(&c, tzs[z], after, &next, &e);
        if (err == TN_ERR_NOENT)
            return 0;
        if (err)
            fail("next failed", expr, after, err);
        if (next <= after || next % 1000000000LL != 0)
            fail("next not after, or not a whole second", expr, after, next);
        int64_t again;
        if (tn_cron_next(&c, tzs[z], next - 1, &again, &e) || again != next)
            fail("next(next - 1 ns) != next", expr, next, again);
        /* Quartz's DST rule: a fire time is the first occurrence of a civil time that
         * exists (never a gap time moved, never the repeat in an overlap) */
        tn_civil civ;
        int64_t first;
        if (tn_tz_to_civil(tzs[z], next, &civ) ||
            tn_tz_from_civil(tzs[z], &civ, TN_TZ_GAP_REFUSE, TN_TZ_OVERLAP_EARLIER, &first,
                             NULL) ||
            first != next)
            fail("fire time not the first occurrence of its civil time", expr, next, first);
        /* and its civil time matches the fields (a gap time moved forward would not) */
        int yi = civ.year - TN_CRON_YEAR_MIN;
        if (!(c.sec >> civ.second & 1) || !(c.min >> civ.minute & 1) ||
            !(c.hour >> civ.hour & 1) || !(c.month >> civ.month & 1) ||
            !(c.year[yi / 64] >> (yi % 64) & 1))
            fail("fire time's civil time does not match the fields", expr, next, 0);
        after = next;
    }
    return 0;
}
