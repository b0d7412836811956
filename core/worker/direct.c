/* Commands run without /bin/sh: one simple command with nothing for the shell to expand.
 *
 * `sh -e -c 'CMD ARGS'` (dash) starts, forks, execs CMD in the child and waits for it:
 * two processes, two execs and the shell's own start for a command the shell adds nothing
 * to. For a command whose every byte is outside the shell's syntax the worker splits the
 * words and execs it itself, with what the shell would have done around it: the search of
 * the task environment's PATH, PWD exported, a file without a #! line run by /bin/sh,
 * its exit status and message when nothing runs (127 "not found", 126 "Permission
 * denied"). */
#include "proc_int.h"

/* Bytes that are literal in every position of an unquoted shell word (dash and bash):
 * letters, digits and _ . / : , + @ % - =. '=' is refused in the command word
 * (NAME=value before a command is an assignment). Everything else (blanks aside) is
 * syntax somewhere: quotes, $, `, \, globs, ~, #, redirections, separators, braces. */
static bool literal_byte(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("_./:,+@%-=", ch) != NULL;
}

/* Names the shell answers itself (dash's builtins and reserved words): such a command
 * word goes to the shell, where it means what the shell says. `true` and `false` with no
 * argument excepted: the programs end as the builtins do. */
static bool shell_word(const char *w, bool has_args)
{
    static const char *const names[] = {
        ".",       ":",       "[",        "alias", "bg",       "break",  "case",   "cd",
        "chdir",   "command", "continue", "do",    "done",     "echo",   "elif",   "else",
        "esac",    "eval",    "exec",     "exit",  "export",   "false",  "fc",     "fg",
        "fi",      "for",     "getopts",  "hash",  "if",       "in",     "jobs",   "kill",
        "local",   "printf",  "pwd",      "read",  "readonly", "return", "set",    "shift",
        "test",    "then",    "times",    "trap",  "true",     "type",   "ulimit", "umask",
        "unalias", "unset",   "until",    "wait",  "while"};
    if (!has_args && (strcmp(w, "true") == 0 || strcmp(w, "false") == 0))
        return false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(w, names[i]) == 0)
            return true;
    return false;
}

size_t tn_proc_simple_words(const char *cmd, char *buf, size_t cap, char **words, size_t max)
{
    size_t len = strlen(cmd);
    if (len + 1 > cap || max < 2)
        return 0;
    size_t n = 0;
    char *o = buf;
    for (const char *p = cmd; *p;) {
        if (*p == ' ' || *p == '\t') {
            p++;
            continue;
        }
        if (n + 1 >= max)
            return 0;
        words[n++] = o;
        while (*p && *p != ' ' && *p != '\t') {
            if (!literal_byte((unsigned char)*p))
                return 0;
            *o++ = *p++;
        }
        *o++ = '\0';
    }
    size_t first = n > 0 && strcmp(words[0], "exec") == 0; /* `exec CMD`: the same here */
    if (first >= n || strchr(words[first], '=') || shell_word(words[first], n - first > 1))
        return 0;
    memmove(words, words + first, (n - first) * sizeof(*words));
    n -= first;
    words[n] = NULL;
    return n;
}

/* What follows runs in the vfork-style child (spawn.c's child_run): system calls and
 * plain loops only, no libc call that may lock or allocate. */

__attribute__((no_sanitize_address)) static size_t cstrlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

__attribute__((no_sanitize_address)) static void say(const char *a, const char *b)
{
    (void)!write(2, "tern: ", 6);
    (void)!write(2, a, cstrlen(a));
    (void)!write(2, b, cstrlen(b));
}

/* execve, and for a file the kernel will not run (no #! line) `sh FILE ARGS`, as the shell
 * does; argv[-1] is a free slot for "sh". Returns the errno of the exec. */
__attribute__((no_sanitize_address)) static int try_exec(const char *path, char **argv,
                                                         char *const *envp)
{
    execve(path, argv, envp);
    int e = errno;
    if (e == ENOEXEC) {
        char **sh = argv - 1;
        sh[0] = (char *)"sh";
        argv[0] = (char *)path;
        execve("/bin/sh", sh, envp);
    }
    return e;
}

/* Errors of the exec that are not about the file: the shell's own exec would have met
 * them first, so they fail the start as that would (the caller's stage report). */
static bool not_the_file(int e)
{
    return e == E2BIG || e == ENOMEM || e == EAGAIN || e == EFAULT;
}

__attribute__((no_sanitize_address)) int pr_exec_direct(char **argv, char *const *envp,
                                                        const char *path_var)
{
    const char *file = argv[0];
    bool slash = false;
    for (const char *q = file; *q; q++)
        slash |= *q == '/';
    int e = ENOENT;
    bool denied = false;
    if (slash) {
        e = try_exec(file, argv, envp);
        denied = e == EACCES;
    } else {
        char full[4096];
        size_t flen = cstrlen(file);
        for (const char *d = path_var; !not_the_file(e);) {
            const char *end = d;
            while (*end && *end != ':')
                end++;
            size_t dlen = (size_t)(end - d);
            if (dlen + flen + 2 <= sizeof(full)) {
                size_t k = 0;
                if (dlen == 0) /* an empty entry is the current directory */
                    full[k++] = '.';
                for (size_t i = 0; i < dlen; i++)
                    full[k++] = d[i];
                full[k++] = '/';
                for (size_t i = 0; i <= flen; i++)
                    full[k++] = file[i];
                int x = try_exec(full, argv, envp);
                argv[0] = (char *)file;
                if (x == EACCES)
                    denied = true;
                else if (x != ENOENT && x != ENOTDIR)
                    e = x;
            }
            if (!*end)
                break;
            d = end + 1;
        }
    }
    if (not_the_file(e))
        return e;
    /* dash: 127 after a PATH search, whatever it met; 126 for a path that would not run */
    bool missing = !denied && (e == ENOENT || e == ENOTDIR);
    say(file, denied  ? ": Permission denied\n" :
              missing ? ": not found\n" :
                        ": cannot execute\n");
    _exit(slash && !missing ? 126 : 127);
}
