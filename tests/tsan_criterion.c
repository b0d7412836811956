/* Linked into the test programs of the ThreadSanitizer build only.
 *
 * Criterion's sandbox (BoxFort) maps the arena it shares with its workers at
 * 0x200000000000 + (rand_r() & 0x3fffff) * 16 MiB, with MAP_FIXED, trying three random
 * addresses. ThreadSanitizer refuses a fixed mapping outside the ranges it leaves to the
 * program, so nearly every run stops before the first test ("Could not initialize
 * inheritable arena", or a crash in libcriterion when a worker cannot map it). This
 * rand_r, called from libcriterion only, draws in the range TSan leaves to position-
 * independent programs (0x550000000000-0x568000000000), which BoxFort still checks is
 * free before mapping; from anywhere else it is the C library's. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

int rand_r(unsigned *seed)
{
    static int (*libc_rand_r)(unsigned *);
    Dl_info who;
    if (dladdr(__builtin_return_address(0), &who) && who.dli_fname &&
        strstr(who.dli_fname, "libcriterion")) {
        *seed = *seed * 1103515245u + 12345u;
        return (int)(0x350000u + (*seed >> 8) % 0x18000u); /* 0x5500... to 0x5680... */
    }
    if (!libc_rand_r)
        libc_rand_r = (int (*)(unsigned *))dlsym(RTLD_NEXT, "rand_r");
    return libc_rand_r(seed);
}
