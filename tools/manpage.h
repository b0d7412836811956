/* What `meson install` puts beside the binary, generated at build time from the option
 * tables (opt.h) by hidden `tern help` forms: the manual pages tern(1) and tern-CMD(1)
 * (`tern help --man [CMD]`) and the bash completion (`tern help --completion bash`). */
#ifndef TN_MANPAGE_H
#define TN_MANPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "opt.h"

typedef struct tn_man_entry {
    const char *name, *summary;
    const tn_opt_cmd *spec; /* NULL: a command without a table (help) */
} tn_man_entry;

/* tern-CMD(1) in roff: name, synopsis, the about text, every option of the table with its
 * help, the config file when the command reads one. */
void tn_man_command(const tn_opt_cmd *c, const char *summary, const char *version, FILE *f);
/* tern(1): the commands and where their pages are. */
void tn_man_index(const tn_man_entry *cmds, size_t n, const char *version, FILE *f);
/* A bash completion script: the commands, each command's options and sub-commands, file
 * names after the options whose value is a path. */
void tn_completion_bash(const tn_man_entry *cmds, size_t n, FILE *f);

/* `--check-config` of the daemons: every option a config file may set, as `key = value`
 * lines with the value the parse left in obj (durations in ms, sizes in bytes); an unset
 * one as "# KEY: default". */
void tn_opt_config_dump(const tn_opt_cmd *c, const void *obj, FILE *f);

#endif
