#!/usr/bin/env bash
# `meson install --destdir` into a temp dir: the binary, the manual pages, the systemd
# units, the sysusers entry, the bash completion and the example configs must all be
# there, the units must start the installed binary, and the installed binary must accept
# the installed example configs. Usage: install.sh BUILD_DIR
set -euo pipefail
build=$1
dest=$(mktemp -d /tmp/tern-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >/dev/null
prefix=$(meson introspect "$build" --buildoptions |
    python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
root=$dest$prefix
echo "installed under $root:"
(cd "$root" && find . -type f | sort)
fail=0
want() {
    if [ -e "$root/$1" ]; then echo "ok   $1"; else echo "MISSING $1" >&2; fail=1; fi
}
want bin/tern
want share/man/man1/tern.1
for c in master worker standalone gc status audit replay logs; do
    want "share/man/man1/tern-$c.1"
done
want lib/systemd/system/tern-master.service
want lib/systemd/system/tern-worker.service
want lib/sysusers.d/tern.conf
want share/bash-completion/completions/tern
want share/doc/tern/examples/master.conf
want share/doc/tern/examples/worker.conf
for f in index.html app.js style.css; do # the web UI (docs/UI.md)
    want "share/tern/ui/$f"
done
[ $fail -eq 0 ] || exit 1
# the units run the binary where it was installed, as user tern, with sd_notify
for u in master worker; do
    f=$root/lib/systemd/system/tern-$u.service
    grep -qx "ExecStart=$prefix/bin/tern $u --config .*/tern/$u.conf" "$f" ||
        { echo "tern-$u.service: ExecStart does not run $prefix/bin/tern $u" >&2; exit 1; }
    grep -qx "Type=notify" "$f" || { echo "tern-$u.service: not Type=notify" >&2; exit 1; }
    grep -qx "User=tern" "$f" || { echo "tern-$u.service: not User=tern" >&2; exit 1; }
    grep -q "^KillMode=" "$f" || { echo "tern-$u.service: no KillMode" >&2; exit 1; }
    # the installed binary takes the installed example
    "$root/bin/tern" "$u" --config "$root/share/doc/tern/examples/$u.conf" --check-config \
        >/dev/null
done
grep -q '^u tern ' "$root/lib/sysusers.d/tern.conf"
# where systemd's tools are at hand: the units parse (a missing binary or manual page on
# this host is not theirs to fix) and sysusers makes the user
if command -v systemd-analyze >/dev/null; then
    for u in master worker; do
        out=$(systemd-analyze verify "$root/lib/systemd/system/tern-$u.service" 2>&1 || true)
        if grep -Ei "unknown (key|section)|invalid|failed to parse|bad |not valid" <<<"$out"; then
            echo "tern-$u.service does not parse" >&2
            exit 1
        fi
    done
fi
if command -v systemd-sysusers >/dev/null; then
    out=$(systemd-sysusers --root="$dest" --dry-run "$root/lib/sysusers.d/tern.conf" 2>&1)
    grep -q "Creating user 'tern'" <<<"$out" || { echo "sysusers: $out" >&2; exit 1; }
fi
echo "install: OK"
