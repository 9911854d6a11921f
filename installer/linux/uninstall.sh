#!/bin/sh
# Remove a Hearth that install.sh put under PREFIX (this script lives in PREFIX/lib/hearth).
# Removes the files install.sh listed in installed-files and the bundle; leaves your models,
# chats and settings alone (they are in ~/.local/share/Hearth, ~/.config/Hearth).
set -eu

lib="$(cd "$(dirname "$0")" && pwd)"
PREFIX="$(cd "$lib/../.." && pwd)"
manifest="$lib/installed-files"
say() { printf 'hearth: %s\n' "$*"; }

[ -x "$lib/hearth" ] && [ -f "$manifest" ] || {
    say "$lib does not look like an install.sh installation of Hearth; nothing removed" >&2
    exit 1
}

while read -r f; do
    case "$f" in
        ""|/*|*..*) continue ;;  # only relative paths inside PREFIX
        bin/hearth)
            # Only our link: never a `hearth` something else put there.
            if [ -L "$PREFIX/$f" ] && [ "$(readlink "$PREFIX/$f")" = "$lib/hearth" ]; then
                rm -f "$PREFIX/$f"
            fi ;;
        *) rm -f "$PREFIX/$f" ;;
    esac
done <"$manifest"

share="$PREFIX/share"
if command -v update-mime-database >/dev/null 2>&1 && [ -d "$share/mime/packages" ]; then
    update-mime-database "$share/mime"
fi
if command -v update-desktop-database >/dev/null 2>&1 && [ -d "$share/applications" ]; then
    update-desktop-database -q "$share/applications" || true
fi
conf="${XDG_CONFIG_HOME:-$HOME/.config}/mimeapps.list"
if [ -f "$conf" ]; then
    sed -i '/^application\/x-gguf=hearth\.desktop;\{0,1\}$/d' "$conf"
fi

rm -rf "$lib"
say "removed Hearth from $PREFIX (your models, chats and settings were left in place)"
