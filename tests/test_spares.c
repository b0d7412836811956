/* Tests of the spare exec dirs and log files (core/worker/spares.c): made ahead, renamed
 * into place, an exec dir given back only when empty and as made, a previous run's removed,
 * none left behind. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spares.h"
#include "util.h"
#include "testutil.h"

static char *tmp;
static tn_spares *S;

static void setup(void)
{
    tmp = tu_tmpdir();
}

static void teardown(void)
{
    tn_spares_free(S);
    S = NULL;
    if (tmp)
        tu_rm_rf(tmp);
    free(tmp);
    tmp = NULL;
}

TestSuite(spares, .init = setup, .fini = teardown, .timeout = 60);

static int count_spares(void)
{
    DIR *d = opendir(tmp);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strncmp(de->d_name, ".spare-", 7) == 0;
    if (d)
        closedir(d);
    return n;
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Until the filler has made n (it runs on its own thread). */
static void wait_len(uint32_t n)
{
    for (int i = 0; i < 5000 && tn_spares_len(S) < n; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(tn_spares_len(S), n);
}

static void path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", tmp, name);
}

Test(spares, dirs_made_ahead_are_renamed_into_place_empty)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_DIR, 8, 4, &S, NULL), TN_OK);
    wait_len(4);
    cr_assert_eq(count_spares(), 4);
    char p[600];
    path(p, sizeof(p), "12-1");
    cr_assert(tn_spares_take(S, p));
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(entries(p), 0);
    wait_len(4); /* the filler makes up for it */
}

/* The common case: an attempt's dir ends empty, becomes a spare, and the next attempt gets
 * it at its own path, empty. A dir a task wrote into is refused (the caller removes it). */
Test(spares, an_empty_dir_comes_back_at_the_next_path_a_used_one_does_not)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_DIR, 8, 0, &S, NULL), TN_OK);
    char a[600], b[600], c[600], f[700];
    path(a, sizeof(a), "1-1");
    path(b, sizeof(b), "2-1");
    path(c, sizeof(c), "3-1");
    cr_assert_not(tn_spares_take(S, a), "none made ahead, none given yet");
    cr_assert_eq(mkdir(a, 0755), 0);
    cr_assert_eq(mkdir(b, 0755), 0);
    snprintf(f, sizeof(f), "%s/out.txt", b);
    FILE *fp = fopen(f, "w");
    cr_assert_not_null(fp);
    fputs("left by task 2\n", fp);
    fclose(fp);
    cr_assert_not(tn_spares_give(S, b), "a dir with a file in it is not kept");
    cr_assert_eq(access(f, F_OK), 0, "and is left to the caller as it was");
    cr_assert(tn_spares_give(S, a), "an empty one is kept");
    cr_assert_neq(access(a, F_OK), 0, "under a spare's name");
    cr_assert_eq(tn_spares_len(S), 1);
    cr_assert(tn_spares_take(S, c));
    cr_assert_eq(entries(c), 0, "the next attempt's dir is empty");
    cr_assert_eq(tn_spares_len(S), 0);
}

/* A dir changed by its task (mode, owner: a tenant's) is not handed to the next one. */
Test(spares, a_changed_dir_is_not_kept)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_DIR, 8, 0, &S, NULL), TN_OK);
    char a[600];
    path(a, sizeof(a), "1-1");
    cr_assert_eq(mkdir(a, 0755), 0);
    cr_assert_eq(chmod(a, 0777), 0);
    cr_assert_not(tn_spares_give(S, a), "a chmodded dir");
    if (geteuid() == 0) {
        cr_assert_eq(chmod(a, 0755 & ~(mode_t)022), 0);
        cr_assert_eq(chown(a, 65534, 65534), 0);
        cr_assert_not(tn_spares_give(S, a), "a dir chowned to a tenant");
    }
    cr_assert_eq(tn_spares_len(S), 0);
}

/* Log files: made ahead (unnamed: nothing shows in the dir, nothing stays after a crash),
 * put in place empty with the time of the take, not of their making (log retention reads
 * it), and an existing log is never replaced. */
Test(spares, log_files_are_put_in_place_with_fresh_times)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_FILE, 4, 2, &S, NULL), TN_OK);
    wait_len(2);
    cr_assert_eq(entries(tmp), 0, "spare files have no name until taken");
    time_t made = time(NULL); /* the spares were made at or before this second */
    while (time(NULL) <= made) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    char p[600], q[600];
    path(p, sizeof(p), "5-1.log");
    path(q, sizeof(q), "6-1.log");
    cr_assert(tn_spares_take(S, p));
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_size, 0);
    cr_assert_gt(st.st_mtim.tv_sec, made, "mtime is the take's, not the spare's making");
    FILE *fp = fopen(q, "w");
    fputs("attempt 6's log\n", fp);
    fclose(fp);
    cr_assert_not(tn_spares_take(S, q), "an existing log is not replaced");
    cr_assert_eq(stat(q, &st), 0);
    cr_assert_gt(st.st_size, 0, "and keeps what it holds");
    tn_spares_free(S);
    S = NULL;
    cr_assert_eq(entries(tmp), 2, "only the two logs are left");
}

/* What a killed worker left (its spares, one holding a file) is removed at the next start
 * and counted; what is not a spare stays. */
Test(spares, a_previous_runs_spares_are_removed_at_start)
{
    char a[600], b[600], f[700], keep[600];
    path(a, sizeof(a), ".spare-0");
    path(b, sizeof(b), ".spare-7");
    path(keep, sizeof(keep), "9-1");
    cr_assert_eq(mkdir(a, 0755), 0);
    cr_assert_eq(mkdir(b, 0755), 0);
    cr_assert_eq(mkdir(keep, 0755), 0);
    snprintf(f, sizeof(f), "%s/x", b);
    FILE *fp = fopen(f, "w");
    fclose(fp);
    uint32_t removed = 99;
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_DIR, 4, 0, &S, &removed), TN_OK);
    cr_assert_eq(removed, 2);
    cr_assert_eq(count_spares(), 0);
    cr_assert_eq(access(keep, F_OK), 0, "an attempt's dir is not a spare");
}

Test(spares, free_leaves_no_spare)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_DIR, 16, 16, &S, NULL), TN_OK);
    wait_len(16);
    tn_spares_free(S);
    S = NULL;
    cr_assert_eq(count_spares(), 0);
}

static ino_t inode_of(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0, "%s: %s", p, strerror(errno));
    return st.st_ino;
}

static void make_log(const char *p, const char *text)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640); /* as the spawn */
    cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
    if (text)
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The common case for logs: an attempt's log ends empty; its name stays, an empty file
 * (the one all such names share), and its inode is the next attempt's log. */
Test(spares, an_empty_log_keeps_its_name_and_its_inode_serves_the_next_attempt)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_FILE, 4, 0, &S, NULL), TN_OK);
    char a[600], b[600], c[600];
    path(a, sizeof(a), "1-1.log");
    path(b, sizeof(b), "2-1.log");
    path(c, sizeof(c), "3-1.log");
    make_log(a, NULL);
    make_log(b, NULL);
    ino_t ia = inode_of(a), ib = inode_of(b);
    cr_assert(tn_spares_give(S, a));
    cr_assert(tn_spares_give(S, b));
    cr_assert_eq(tn_spares_len(S), 2);
    struct stat sa, sb;
    cr_assert_eq(stat(a, &sa), 0, "the name stays");
    cr_assert_eq(stat(b, &sb), 0);
    cr_assert(S_ISREG(sa.st_mode) && sa.st_size == 0, "an empty log");
    cr_assert_neq(sa.st_ino, ia, "no longer its own inode");
    cr_assert_eq(sa.st_ino, sb.st_ino, "both names share one empty file");
    cr_assert_eq(tn_spares_take(S, c), true);
    ino_t ic = inode_of(c);
    cr_assert(ic == ia || ic == ib, "the next log is a given inode, not a new one");
    struct stat sc;
    cr_assert_eq(stat(c, &sc), 0);
    cr_assert_eq(sc.st_nlink, 1, "with its one name");
    cr_assert_eq(sc.st_size, 0);
    tn_spares_free(S);
    S = NULL;
    cr_assert_eq(count_spares(), 0, "free leaves no spare, nor the shared file's name");
    cr_assert_eq(entries(tmp), 3, "the three logs stay");
    cr_assert_eq(stat(a, &sa), 0, "and still read as empty logs");
    cr_assert_eq(sa.st_size, 0);
}

/* A log with output, changed by its task or with another name is left as it is. */
Test(spares, a_log_with_output_or_changed_is_not_kept)
{
    cr_assert_eq(tn_spares_new(tmp, TN_SPARE_FILE, 4, 0, &S, NULL), TN_OK);
    char a[600], b[600], c[600], d[600];
    path(a, sizeof(a), "1-1.log");
    path(b, sizeof(b), "2-1.log");
    path(c, sizeof(c), "3-1.log");
    path(d, sizeof(d), "3-1.copy");
    make_log(a, "attempt 1 said something\n");
    make_log(b, NULL);
    cr_assert_eq(chmod(b, 0666), 0);
    make_log(c, NULL);
    cr_assert_eq(link(c, d), 0);
    ino_t ia = inode_of(a), ib = inode_of(b), ic = inode_of(c);
    cr_assert_not(tn_spares_give(S, a), "a log with output");
    cr_assert_not(tn_spares_give(S, b), "a chmodded log");
    cr_assert_not(tn_spares_give(S, c), "a log with a second name");
    cr_assert_eq(inode_of(a), ia);
    cr_assert_eq(inode_of(b), ib);
    cr_assert_eq(inode_of(c), ic);
    struct stat st;
    cr_assert_eq(stat(a, &st), 0);
    cr_assert_gt(st.st_size, 0, "and keeps what it holds");
    cr_assert_eq(tn_spares_len(S), 0);
}
