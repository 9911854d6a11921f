#!/usr/bin/env bash
# Build Hearth for Linux: the PyInstaller bundle, then an installable archive and a .deb.
#
#   ./installer/linux/build.sh                 # everything, into dist/
#   ./installer/linux/build.sh --reuse-bundle  # repackage dist/hearth without rebuilding it
#   ./installer/linux/build.sh --gpu cuda      # a GPU variant (cuda or vulkan): hearth-cuda
#
# Writes
#   dist/hearth/                                  the one-folder bundle (dist/hearth/hearth)
#   dist/hearth-VERSION-linux-x86_64.tar.gz       unpack, run ./install.sh (to ~/.local)
#   dist/hearth_VERSION_amd64.deb                 sudo apt install ./hearth_VERSION_amd64.deb
# and checks the bundle with `hearth --self-test` before packaging it.
#
# --gpu BACKEND first sets .venv up with llama.cpp built for it (HEARTH_GPU=BACKEND
# ./dev.sh setup: compiles on a machine without a GPU) and names the packages hearth-BACKEND
# (the .deb Provides and Conflicts with hearth). The GPU runtime is not bundled: the .deb
# Depends on it (libcudart, libcublas; libvulkan1) and Recommends the driver; the self-test
# of a CUDA bundle needs the NVIDIA driver and is skipped without it.
#
# Options: --dist DIR / --work DIR (instead of dist/ and build/), --reuse-bundle,
# --no-self-test, --no-deb, --no-tar, --fast (gzip the .deb instead of xz: ~35 s instead of
# ~1.5 min on 2 cores, 85 MB instead of 64 MB). Uses .venv (made by ./dev.sh setup when
# missing) and installs PyInstaller into it from pyproject's `bundle` extra when needed.
#
# The bundle runs on Linux distributions with a glibc at least as new as the build machine's
# (the .deb's Depends says which): build on the oldest system you want to support.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

DIST="$root/dist"
WORK="$root/build"
REUSE=0
SELF_TEST=1
DEB=1
TAR=1
DEB_COMPRESSION=xz
GPU=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dist) DIST="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
        --work) WORK="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
        --reuse-bundle) REUSE=1 ;;
        --no-self-test) SELF_TEST=0 ;;
        --no-deb) DEB=0 ;;
        --no-tar) TAR=0 ;;
        --fast) DEB_COMPRESSION=gzip ;;
        --gpu)
            case "${2:-}" in
                cuda | vulkan) GPU="$2" ;;
                *) echo "--gpu takes cuda or vulkan, not '${2:-}'" >&2; exit 2 ;;
            esac
            shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '\033[1mbuild:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f s", b - a }'; }
size() { du -sh "$1" | cut -f1; }

started="$(now)"
PY="$root/.venv/bin/python"
NAME="hearth${GPU:+-$GPU}"  # the package's name
BUNDLE="$DIST/hearth"
if [ ! -x "$PY" ] && [ "$REUSE" -eq 1 ] && [ -x "$BUNDLE/hearth" ]; then
    PY="$(command -v python3)"  # repackaging runs only app's standard-library helpers
elif [ -n "$GPU" ] && { [ "$REUSE" -eq 0 ] || [ ! -x "$BUNDLE/hearth" ]; }; then
    say "llama.cpp for $GPU: HEARTH_GPU=$GPU ./dev.sh setup"
    HEARTH_GPU="$GPU" ./dev.sh setup
elif [ ! -x "$PY" ]; then
    say "no .venv yet: ./dev.sh setup"
    ./dev.sh setup
fi
VERSION="$("$PY" -c 'import app; print(app.__version__)')"
if [ "$REUSE" -eq 0 ] || [ ! -x "$BUNDLE/hearth" ]; then
    built_for="$("$PY" -c 'from app.engine import hardware; print(hardware.llama_gpu_backend() or "")')"
    [ "$built_for" = "$GPU" ] || die "the llama.cpp in .venv is built for '${built_for:-the CPU}', not '${GPU:-the CPU}': run ${GPU:+HEARTH_GPU=$GPU }./dev.sh setup first"
fi

# --- 1. the bundle ---------------------------------------------------------------------
if [ "$REUSE" -eq 0 ] || [ ! -x "$BUNDLE/hearth" ]; then
    if ! "$PY" -c 'import PyInstaller' 2>/dev/null; then
        say "installing PyInstaller (pyproject's bundle extra) into .venv"
        "$PY" - <<'EOF' | xargs -d '\n' "$PY" -m pip install -q
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bundle"]))
EOF
    fi
    t="$(now)"
    say "PyInstaller: installer/hearth.spec -> $BUNDLE"
    "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$DIST" --workpath "$WORK/pyinstaller" installer/hearth.spec
    say "bundle built in $(since "$t"): $(size "$BUNDLE")"
fi

if [ "$SELF_TEST" -eq 1 ] && [ "$GPU" = cuda ] && ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q 'libcuda\.so\.1 '; then
    say "self-test skipped: a CUDA bundle needs the NVIDIA driver (libcuda.so.1), which this machine lacks"
    SELF_TEST=0
fi
if [ "$SELF_TEST" -eq 1 ]; then
    t="$(now)"
    say "self-test of the bundle"
    (cd / && env -u PYTHONPATH -u VIRTUAL_ENV "$BUNDLE/hearth" --self-test) \
        || die "the bundle's self-test failed"
    say "self-test passed in $(since "$t")"
fi

# --- 2. the files a desktop needs, shared by both packages -----------------------------
# stage_share PREFIX EXEC: the .desktop entry (Exec/TryExec = EXEC), icons, MIME type.
stage_share() {
    local share="$1/share" exec_path="$2"
    mkdir -p "$share/applications" "$share/mime/packages"
    sed -e "s|^Exec=hearth |Exec=$exec_path |" -e "s|^TryExec=hearth$|TryExec=$exec_path|" \
        resources/linux/hearth.desktop >"$share/applications/hearth.desktop"
    cp resources/linux/hearth-gguf.xml "$share/mime/packages/hearth-gguf.xml"
    local png n
    for png in resources/icons/hicolor/*/apps/hearth.png; do
        n="$(basename "$(dirname "$(dirname "$png")")")"
        install -D -m 644 "$png" "$share/icons/hicolor/$n/apps/hearth.png"
        # The same picture for .gguf files in file managers (application/x-gguf's icon).
        install -D -m 644 "$png" "$share/icons/hicolor/$n/mimetypes/application-x-gguf.png"
    done
    install -D -m 644 resources/icons/hearth.svg "$share/icons/hicolor/scalable/apps/hearth.svg"
    if command -v desktop-file-validate >/dev/null 2>&1; then
        desktop-file-validate "$share/applications/hearth.desktop"
    fi
}

ARCH="$(uname -m)"
STAGE="$WORK/package"
rm -rf "$STAGE"
mkdir -p "$STAGE"

# --- 3. the archive with install.sh -----------------------------------------------------
if [ "$TAR" -eq 1 ]; then
    t="$(now)"
    name="hearth-$VERSION-linux-$ARCH${GPU:+-$GPU}"
    dir="$STAGE/$name"
    mkdir -p "$dir"
    cp -a "$BUNDLE" "$dir/hearth"
    # install.sh rewrites Exec to the installed launcher's absolute path.
    stage_share "$dir" "hearth"
    install -m 755 "$here/install.sh" "$here/uninstall.sh" "$dir/"
    cat >"$dir/README.txt" <<EOF
Hearth $VERSION for Linux ($ARCH)

    ./install.sh          install for this user, into ~/.local (no root needed)
    hearth --self-test    check the installation
    ~/.local/lib/hearth/uninstall.sh    remove it again

PREFIX=/some/where ./install.sh installs elsewhere (bin/, lib/hearth, share/ under it).
Or run it in place without installing: ./hearth/hearth
EOF
    tarball="$DIST/$name.tar.gz"
    tar -C "$STAGE" -czf "$tarball" "$name"
    say "archive $(basename "$tarball"): $(size "$tarball") in $(since "$t")"
fi

# --- 4. the .deb --------------------------------------------------------------------------
# Shared libraries the bundle loads from the system (PyInstaller leaves out glibc, OpenGL
# and a few X libraries on purpose), each by its Debian package: app/platform_libs.py names
# it, the same rule ./dev.sh and the window's start-up check use. Wayland's are only
# recommended: X11 is the platform the bundle is checked on. So is the NVIDIA driver's
# libcuda (its package's name differs between Debian and Ubuntu); the CUDA runtime and
# cuBLAS (never bundled: see installer/hearth.spec) and the Vulkan loader are depended on.
deb_depends() {
    local needed have soname pkg depends="" recommends=""
    needed="$(find "$BUNDLE" -type f -name '*.so*' -print0 | xargs -0 -r readelf -d 2>/dev/null \
        | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u || true)"
    have="$(find "$BUNDLE" -name '*.so*' -printf '%f\n' | sort -u)"
    local system
    system="$(comm -23 <(echo "$needed") <(echo "$have") | sed '/^$/d')"
    while read -r soname pkg; do
        [ -n "$soname" ] || continue
        case "$soname" in
            libwayland-* | libcuda.so.*) recommends+=" $pkg" ;;
            *) depends+=" $pkg" ;;
        esac
    done < <(echo "$system" | xargs -r "$PY" -m app.platform_libs package)
    # A Vulkan build needs a Vulkan driver (Mesa's for AMD and Intel, or NVIDIA's).
    if [ "$GPU" = vulkan ]; then recommends+=" mesa-vulkan-drivers"; fi
    # The newest glibc symbol version any bundled binary uses.
    local glibc
    glibc="$(find "$BUNDLE" -type f \( -name '*.so*' -o -name hearth \) -print0 \
        | xargs -0 -r objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
        | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -n 1 || true)"
    [ -n "$glibc" ] || glibc="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
    # Data the bundled fontconfig and xkbcommon read from the system.
    depends="$(echo "libc6 $depends fontconfig-config xkb-data" | tr ' ' '\n' | sed '/^$/d' | sort -u \
        | sed "s/^libc6$/libc6 (>= $glibc)/" | paste -sd, | sed 's/,/, /g')"
    recommends="$(echo "$recommends" | tr ' ' '\n' | sed '/^$/d' | sort -u | paste -sd, | sed 's/,/, /g')"
    printf 'Depends: %s\nRecommends: %s\n' "$depends" "$recommends"
}

if [ "$DEB" -eq 1 ]; then
    t="$(now)"
    command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing (apt-get install dpkg)"
    deb_arch="$(dpkg --print-architecture)"
    root_dir="$STAGE/deb"
    mkdir -p "$root_dir/opt" "$root_dir/usr/bin" "$root_dir/DEBIAN"
    cp -a "$BUNDLE" "$root_dir/opt/hearth"
    ln -s /opt/hearth/hearth "$root_dir/usr/bin/hearth"
    stage_share "$root_dir/usr" "hearth"
    {
        echo "Package: $NAME"
        echo "Version: $VERSION"
        echo "Architecture: $deb_arch"
        echo "Maintainer: Hearth developers <hearth@localhost>"
        echo "Section: utils"
        echo "Priority: optional"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root_dir" | cut -f1)"
        deb_depends
        if [ -n "$GPU" ]; then  # one Hearth at a time: both install /opt/hearth
            echo "Provides: hearth"
            echo "Conflicts: hearth"
            echo "Replaces: hearth"
        fi
        echo "Description: run large language models on your own machine"
        echo " Hearth opens GGUF model files, tells you what they will cost in memory with"
        echo " the context and KV cache settings you choose, and runs them with llama.cpp in"
        echo " a supervised worker process. Double-click a .gguf file to open it."
    } >"$root_dir/DEBIAN/control"
    install -m 755 "$here/deb/postinst" "$here/deb/postrm" "$root_dir/DEBIAN/"
    deb="$DIST/${NAME}_${VERSION}_${deb_arch}.deb"
    dpkg-deb --root-owner-group -Z"$DEB_COMPRESSION" --build "$root_dir" "$deb" >/dev/null
    say "package $(basename "$deb"): $(size "$deb") in $(since "$t")"
    sed -n 's/^\(Depends\|Recommends\): /  \1: /p' "$root_dir/DEBIAN/control" >&2
fi

rm -rf "$STAGE"
say "done in $(since "$started"): bundle $(size "$BUNDLE") in $BUNDLE"
