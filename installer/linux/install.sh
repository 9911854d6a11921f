#!/bin/sh
# Install Hearth for this user (no root): run from the unpacked hearth-VERSION-linux-*.tar.gz.
#
#   ./install.sh                  into ~/.local
#   PREFIX=/opt/x ./install.sh    elsewhere (bin/, lib/hearth/, share/ under PREFIX)
#
# Puts the bundle in PREFIX/lib/hearth (replacing an older one), a `hearth` link in PREFIX/bin,
# the .desktop entry in PREFIX/share/applications, the icons in PREFIX/share/icons/hicolor
# and the application/x-gguf MIME type in PREFIX/share/mime; updates those databases and
# makes Hearth the default application for .gguf files. PREFIX/lib/hearth/uninstall.sh
# removes exactly what this installed.
set -eu

src="$(cd "$(dirname "$0")" && pwd)"
PREFIX="${PREFIX:-$HOME/.local}"
lib="$PREFIX/lib/hearth"
bin="$PREFIX/bin"
share="$PREFIX/share"
manifest="$lib/installed-files"

say() { printf 'hearth: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ -x "$src/hearth/hearth" ] || die "no bundle next to install.sh ($src/hearth/hearth)"
mkdir -p "$PREFIX/lib" "$bin" "$share/applications" "$share/mime/packages"

# The bundle: copy beside the old one, then swap, so a failed copy leaves the old intact.
rm -rf "$lib.new"
cp -a "$src/hearth" "$lib.new"
install -m 755 "$src/uninstall.sh" "$lib.new/uninstall.sh"
if [ -e "$lib" ]; then
    rm -rf "$lib.old"
    mv "$lib" "$lib.old"
fi
mv "$lib.new" "$lib"
rm -rf "$lib.old"
: >"$manifest"

ln -sfn "$lib/hearth" "$bin/hearth"
echo "bin/hearth" >>"$manifest"

# The desktop entry runs the installed launcher by its full path: ~/.local/bin is not on
# every desktop session's PATH.
sed -e "s|^Exec=hearth |Exec=$bin/hearth |" -e "s|^TryExec=hearth\$|TryExec=$bin/hearth|" \
    "$src/share/applications/hearth.desktop" >"$share/applications/hearth.desktop"
echo "share/applications/hearth.desktop" >>"$manifest"

cp "$src/share/mime/packages/hearth-gguf.xml" "$share/mime/packages/hearth-gguf.xml"
echo "share/mime/packages/hearth-gguf.xml" >>"$manifest"

(cd "$src/share" && find icons -type f) | while read -r f; do
    mkdir -p "$(dirname "$share/$f")"
    cp "$src/share/$f" "$share/$f"
    echo "share/$f" >>"$manifest"
done

# Databases: what file managers and launchers read.
if command -v update-mime-database >/dev/null 2>&1; then
    update-mime-database "$share/mime"
else
    say "update-mime-database not found (package shared-mime-info): .gguf files are not recognised until it runs"
fi
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$share/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$share/icons/hicolor/index.theme" ]; then
    gtk-update-icon-cache -q -t -f "$share/icons/hicolor" || true
fi

# Hearth opens .gguf files by default (double-click in the file manager).
if command -v xdg-mime >/dev/null 2>&1; then
    xdg-mime default hearth.desktop application/x-gguf
else
    # What xdg-mime does on most desktops: the [Default Applications] entry in mimeapps.list.
    conf="${XDG_CONFIG_HOME:-$HOME/.config}/mimeapps.list"
    mkdir -p "$(dirname "$conf")"
    touch "$conf"
    awk -v entry="application/x-gguf=hearth.desktop" '
        /^\[/ { if (section && !done) { print entry; done = 1 }
                section = ($0 == "[Default Applications]") }
        section && /^application\/x-gguf=/ { next }
        { print }
        END { if (!done) { if (!section) print "[Default Applications]"; print entry } }
    ' "$conf" >"$conf.new"
    mv "$conf.new" "$conf"
fi

say "installed Hearth $("$bin/hearth" --version | sed 's/^Hearth //') in $lib"
case ":$PATH:" in
    *":$bin:"*) say "run it with: hearth   (check the installation: hearth --self-test)" ;;
    *) say "run it with: $bin/hearth   ($bin is not on your PATH)" ;;
esac
say "uninstall with: $lib/uninstall.sh"
