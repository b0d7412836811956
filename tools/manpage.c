/* Manual pages (roff) and the bash completion of `tern`, written from the same option
 * tables that parse argv and print `--help`: what is installed cannot drift from them. */
#include <ctype.h>
#include <string.h>

#include "manpage.h"

/* Text in roff: backslashes escaped, a leading dot or quote neutralized, dashes as
 * \- so that man renders and searches them as hyphens. */
/* A table may name an option twice (the first one parses): write it once. */
static bool dup_opt(const tn_opt_cmd *c, const tn_opt *o)
{
    for (const tn_opt *p = c->opts; p != o; p++)
        if (strcmp(p->name, o->name) == 0)
            return true;
    return false;
}

static void roff_text(FILE *f, const char *s, size_t n)
{
    bool bol = true;
    for (size_t i = 0; i < n && s[i]; i++) {
        char ch = s[i];
        if (bol && (ch == '.' || ch == '\''))
            fputs("\\&", f);
        bol = ch == '\n';
        if (ch == '\\')
            fputs("\\e", f);
        else if (ch == '-')
            fputs("\\-", f);
        else
            fputc(ch, f);
    }
}

static void roff_str(FILE *f, const char *s)
{
    roff_text(f, s, strlen(s));
}

/* The about text: paragraphs split at blank lines, lines that start with a space (or
 * that look like a table row) kept as they are. */
static void roff_about(FILE *f, const char *about)
{
    fputs(".nf\n", f); /* the help text is laid out by hand: keep its lines */
    roff_str(f, about);
    if (about[0] && about[strlen(about) - 1] != '\n')
        fputc('\n', f);
    fputs(".fi\n", f);
}

static void roff_opt_label(FILE *f, const tn_opt *o)
{
    fputs(".TP\n", f);
    if (o->short_name)
        fprintf(f, "\\fB\\-%c\\fR, ", o->short_name);
    fputs("\\fB\\-\\-", f);
    roff_str(f, o->name);
    fputs("\\fR", f);
    if (o->arg) {
        fputs(" \\fI", f);
        roff_str(f, o->arg);
        fputs("\\fR", f);
    }
    fputc('\n', f);
}

static void roff_synopsis(FILE *f, const tn_opt_cmd *c)
{
    fputs(".SH SYNOPSIS\n", f);
    const char *const *syn = c->synopsis;
    for (int i = 0; !syn || syn[i] || i == 0; i++) {
        if (i)
            fputs(".br\n", f);
        fprintf(f, "\\fBtern %s\\fR", c->name);
        if (syn && syn[i]) {
            fputc(' ', f);
            roff_str(f, syn[i]);
        }
        fputs(" [\\fIOPTIONS\\fR]\n", f);
        if (!syn || !syn[i])
            break;
    }
}

static void roff_header(FILE *f, const char *page, const char *summary, const char *version)
{
    char up[64];
    size_t i = 0;
    for (; page[i] && i < sizeof(up) - 1; i++)
        up[i] = (char)toupper((unsigned char)page[i]);
    up[i] = 0;
    fprintf(f, ".\\\" generated from the option tables of tern %s; do not edit\n", version);
    fprintf(f, ".TH %s 1 \"\" \"tern %s\" \"tern manual\"\n.SH NAME\n", up, version);
    roff_str(f, page);
    fputs(" \\- ", f);
    roff_str(f, summary);
    fputc('\n', f);
}

void tn_man_command(const tn_opt_cmd *c, const char *summary, const char *version, FILE *f)
{
    char page[64];
    snprintf(page, sizeof(page), "tern-%s", c->name);
    roff_header(f, page, summary, version);
    roff_synopsis(f, c);
    fputs(".SH DESCRIPTION\n", f);
    roff_about(f, c->about ? c->about : "");
    bool cfg = false;
    if (c->opts && c->opts->name) {
        fputs(".SH OPTIONS\n", f);
        for (const tn_opt *o = c->opts; o->name; o++) {
            if (dup_opt(c, o))
                continue;
            roff_opt_label(f, o);
            roff_str(f, o->help ? o->help : "");
            if (o->kind == TN_OPT_KV || o->kind == TN_OPT_LIST)
                fputs(" (repeatable)", f);
            if (o->flags & TN_OPT_CFG) {
                fputs(" (config key: \\fB", f);
                roff_str(f, o->name);
                fputs("\\fR)", f);
            }
            fputc('\n', f);
            cfg |= (o->flags & TN_OPT_CFG) != 0;
        }
    }
    fputs(".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nprint the help and exit\n", f);
    if (cfg)
        fputs(".SH CONFIGURATION FILE\n"
              "\\fB\\-\\-config\\fR \\fIFILE\\fR reads `key = value' lines first; a key is the "
              "long name of an option marked \"config key\" above, # starts a comment, "
              "options on the command line win. Keys of the sibling daemons (master, "
              "worker, standalone) are ignored, so that one file can serve them all.\n",
              f);
    fputs(".SH EXIT STATUS\n0 on success, 1 on failure, 2 on a usage error.\n"
          ".SH SEE ALSO\n\\fBtern\\fR(1)\n",
          f);
}

void tn_man_index(const tn_man_entry *cmds, size_t n, const char *version, FILE *f)
{
    roff_header(f, "tern", "a distributed workflow scheduler on an event-sourced core",
                version);
    fputs(".SH SYNOPSIS\n\\fBtern\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n"
          ".br\n\\fBtern help\\fR [\\fICOMMAND\\fR]\n.br\n\\fBtern \\-\\-version\\fR\n"
          ".SH DESCRIPTION\n"
          "One binary for the daemons (master, worker, standalone), the control client, "
          "replay and audit. Every workflow and task transition is an event appended to "
          "an LMDB log in the data directory; every state is the replay of that log.\n"
          ".PP\nEvery command takes \\fB\\-\\-help\\fR. Commands that read a store take "
          "\\fB\\-\\-data\\fR \\fIDIR\\fR (default ./tern\\-data); commands that report state "
          "take \\fB\\-\\-json\\fR.\n.SH COMMANDS\n",
          f);
    for (size_t i = 0; i < n; i++) {
        fputs(".TP\n\\fB", f);
        roff_str(f, cmds[i].name);
        fputs("\\fR\n", f);
        roff_str(f, cmds[i].summary);
        if (cmds[i].spec)
            fprintf(f, " (\\fBtern\\-%s\\fR(1))", cmds[i].name);
        fputc('\n', f);
    }
    fputs(".SH FILES\n.TP\n/etc/tern/master.conf, /etc/tern/worker.conf\n"
          "the daemons' configuration files as the systemd units read them\n"
          ".TP\n/var/lib/tern\nthe data directories of the units (StateDirectory)\n"
          ".SH EXIT STATUS\n0 on success, 1 on failure, 2 on a usage error.\n"
          ".SH SEE ALSO\n",
          f);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (!cmds[i].spec)
            continue;
        fprintf(f, "%s\\fBtern\\-%s\\fR(1)", first ? "" : ",\n", cmds[i].name);
        first = false;
    }
    fputs("\n", f);
}

/* The first word of each synopsis form that names a sub-command ("apply FILE..." ->
 * "apply"; "dot|md ..." -> "dot md"), space-separated into buf. */
static void subcommands(const tn_opt_cmd *c, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    for (const char *const *s = c->synopsis; s && *s; s++) {
        const char *p = *s;
        while (*p && islower((unsigned char)*p)) {
            size_t w = strspn(p, "abcdefghijklmnopqrstuvwxyz-");
            if (at + w + 2 < len) {
                at += (size_t)snprintf(buf + at, len - at, "%s%.*s", at ? " " : "", (int)w, p);
            }
            p += w;
            if (*p != '|')
                break;
            p++;
        }
    }
}

/* Whether an option's value names a file or a directory (completed as paths). */
static bool takes_path(const tn_opt *o)
{
    static const char *const args[] = {"DIR", "FILE", "F", "D", "PATH"};
    for (size_t i = 0; o->arg && i < sizeof(args) / sizeof(args[0]); i++)
        if (strcmp(o->arg, args[i]) == 0)
            return true;
    return o->kind == TN_OPT_CONFIG;
}

static void bash_case(const tn_opt_cmd *c, FILE *f)
{
    char subs[512];
    subcommands(c, subs, sizeof(subs));
    fprintf(f, "    %s)\n        opts=\"", c->name);
    for (const tn_opt *o = c->opts; o && o->name; o++) {
        if (dup_opt(c, o))
            continue;
        fprintf(f, "--%s ", o->name);
        if (o->short_name)
            fprintf(f, "-%c ", o->short_name);
    }
    fprintf(f, "--help\"\n        subs=\"%s\"\n        paths=\"", subs);
    bool first = true;
    for (const tn_opt *o = c->opts; o && o->name; o++)
        if (takes_path(o) && !dup_opt(c, o)) {
            fprintf(f, "%s--%s", first ? "" : " ", o->name);
            first = false;
        }
    fputs("\"\n        ;;\n", f);
}

void tn_completion_bash(const tn_man_entry *cmds, size_t n, FILE *f)
{
    fputs("# bash completion for tern; generated from its option tables, do not edit\n"
          "_tern() {\n"
          "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
          "    local opts=\"\" subs=\"\" paths=\"\" p\n"
          "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
          "        COMPREPLY=($(compgen -W \"",
          f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? " " : "", cmds[i].name);
    fputs(" --help --version\" -- \"$cur\"))\n        return\n    fi\n"
          "    case ${COMP_WORDS[1]} in\n",
          f);
    for (size_t i = 0; i < n; i++)
        if (cmds[i].spec)
            bash_case(cmds[i].spec, f);
    fputs("    help)\n        subs=\"", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? " " : "", cmds[i].name);
    fputs("\"\n        ;;\n    esac\n"
          "    for p in $paths; do\n"
          "        if [ \"$prev\" = \"$p\" ]; then\n"
          "            COMPREPLY=($(compgen -f -- \"$cur\"))\n"
          "            return\n"
          "        fi\n"
          "    done\n"
          "    if [[ $cur == -* ]]; then\n"
          "        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
          "    elif [ \"$COMP_CWORD\" -eq 2 ] && [ -n \"$subs\" ]; then\n"
          "        COMPREPLY=($(compgen -W \"$subs\" -- \"$cur\"))\n"
          "    else\n"
          "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
          "    fi\n"
          "}\n"
          "complete -F _tern tern\n",
          f);
}

/* One option's value as a config line; false when it holds nothing to print. */
static bool dump_one(const tn_opt *o, const void *field, FILE *f)
{
    switch (o->kind) {
    case TN_OPT_FLAG:
        fprintf(f, "%s = %s\n", o->name, *(const bool *)field ? "true" : "false");
        return true;
    case TN_OPT_STR:
        if (!*(const char *const *)field)
            return false;
        fprintf(f, "%s = %s\n", o->name, *(const char *const *)field);
        return true;
    /* 0 leaves the daemon's default */
    case TN_OPT_U64:
    case TN_OPT_SIZE:
    case TN_OPT_DURATION: {
        unsigned long long v = *(const uint64_t *)field;
        if (v)
            fprintf(f, "%s = %llu%s\n", o->name, v, o->kind == TN_OPT_DURATION ? "ms" : "");
        return v != 0;
    }
    case TN_OPT_U32:
        if (*(const uint32_t *)field)
            fprintf(f, "%s = %u\n", o->name, *(const uint32_t *)field);
        return *(const uint32_t *)field != 0;
    case TN_OPT_LIST: {
        const tn_opt_list *l = field;
        for (uint32_t i = 0; i < l->n; i++)
            fprintf(f, "%s = %s\n", o->name, l->v[i]);
        return l->n > 0;
    }
    case TN_OPT_CUSTOM:
        /* converted by the command's parse function: shown as set, not as its raw form */
        if (*(const uint32_t *)field)
            fprintf(f, "%s = (set)\n", o->name);
        return *(const uint32_t *)field != 0;
    default: return false;
    }
}

void tn_opt_config_dump(const tn_opt_cmd *c, const void *obj, FILE *f)
{
    fprintf(f, "# tern %s: the options in effect (config file, then flags)\n", c->name);
    for (const tn_opt *o = c->opts; o && o->name; o++) {
        if (!(o->flags & TN_OPT_CFG) || dup_opt(c, o))
            continue;
        if (!dump_one(o, (const char *)obj + o->off, f))
            fprintf(f, "# %s: default\n", o->name);
    }
}
