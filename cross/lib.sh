# shellcheck shell=bash
# Common definitions for the cross/ scripts. Source it; do not run it.
#
# Everything here is docker-free: zig (PyPI `ziglang`) is the C compiler and
# linker through cargo-zigbuild, qemu-user-static runs the target binaries, and
# the tier-3 MIPS targets (and armv7, whose prebuilt std cannot be fetched here)
# build std from source with -Zbuild-std. See ../../shared/CROSS.md.
#
# Environment knobs (all optional):
#   TINYMTA_CROSS_VENV       where cross/setup puts zig + cargo-zigbuild
#                            (default: <repo>/.venv, git-ignored)
#   TINYMTA_CROSS_TOOLCHAIN  rustup toolchain for cross builds (default: stable;
#                            build-std is enabled on it with RUSTC_BOOTSTRAP=1)
#   TINYMTA_CROSS_TARGET_DIR root of the per-target cargo target directories
#                            (default: <repo>/target-cross; each target gets
#                            its own <root>/<triple>[-dynamic])
#   TINYMTA_CROSS_RUSTFLAGS  extra rustc flags for the target
#   TINYMTA_OPENSSL_SLIM     1 (default) = Configure vendored OpenSSL without
#                            the features tinymta never uses; 0 = full OpenSSL
#   TINYMTA_TARGET_CFLAGS    C flags for the target's C code (OpenSSL, ring);
#                            default: -Os -fno-asynchronous-unwind-tables
#                            -fno-unwind-tables
#   TINYMTA_OPENSSL_PIC      0 = OpenSSL and the target's C code compiled
#                            for a fixed address (no-pic, -fno-pic); static
#                            MIPS release builds set it (cross/build)
#   TINYMTA_OPENSSL_EXTRA, TINYMTA_OPENSSL_WEAK_SUITES: see cross/openssl-perl

CROSS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CROSS_DIR/.." && pwd)"

CROSS_VENV="${TINYMTA_CROSS_VENV:-$REPO_DIR/.venv}"
CROSS_TOOLCHAIN="${TINYMTA_CROSS_TOOLCHAIN:-stable}"
CROSS_TARGET_ROOT="${TINYMTA_CROSS_TARGET_DIR:-$REPO_DIR/target-cross}"

# Versions proven with this recipe; override to try newer ones.
ZIGLANG_VERSION="${TINYMTA_ZIGLANG_VERSION:-0.17.1}"
CARGO_ZIGBUILD_VERSION="${TINYMTA_CARGO_ZIGBUILD_VERSION:-0.24.0}"

CROSS_TARGETS=(
    aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
)

die() { echo "error: $*" >&2; exit 1; }
note() { echo "==> $*" >&2; }

# target_info TRIPLE: sets QEMU (qemu-user binary), OPENWRT_ARCH (opkg
# architecture name) and TRIPLE_ENV (the triple as in CARGO_TARGET_<T>_*).
target_info() {
    local triple="$1"
    case "$triple" in
        aarch64-unknown-linux-musl)     QEMU=qemu-aarch64-static; OPENWRT_ARCH=aarch64_cortex-a53 ;;
        armv7-unknown-linux-musleabihf) QEMU=qemu-arm-static;     OPENWRT_ARCH=arm_cortex-a7_neon-vfpv4 ;;
        mipsel-unknown-linux-musl)      QEMU=qemu-mipsel-static;  OPENWRT_ARCH=mipsel_24kc ;;
        mips-unknown-linux-musl)        QEMU=qemu-mips-static;    OPENWRT_ARCH=mips_24kc ;;
        *) die "unknown target '$triple' (known: ${CROSS_TARGETS[*]})" ;;
    esac
    TRIPLE_ENV="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
}

# Does the toolchain have a prebuilt std for TRIPLE? If not, build it from
# rust-src (-Zbuild-std). aarch64 always has one; armv7 has one where rustup
# can fetch it; the MIPS musl targets are tier 3 and never do.
has_prebuilt_std() {
    local sysroot
    sysroot="$(RUSTUP_TOOLCHAIN="$CROSS_TOOLCHAIN" rustc --print sysroot)"
    compgen -G "$sysroot/lib/rustlib/$1/lib/libstd-*.rlib" >/dev/null
}

# cross_env TRIPLE [static|dynamic]: export everything cargo-zigbuild needs for
# TRIPLE and set the array CARGO_STD_ARGS (extra cargo arguments).
cross_env() {
    local triple="$1" link="${2:-static}"
    target_info "$triple"

    [ -x "$CROSS_VENV/bin/cargo-zigbuild" ] || die "cargo-zigbuild missing: run cross/setup first"
    export PATH="$CROSS_VENV/bin:$PATH"
    # cargo-zigbuild looks up the toolchain itself: select it through the
    # environment, not with `cargo +toolchain`.
    export RUSTUP_TOOLCHAIN="$CROSS_TOOLCHAIN"
    export CARGO_TARGET_DIR="$CROSS_TARGET_ROOT/$triple"
    [ "$link" = dynamic ] && CARGO_TARGET_DIR="$CARGO_TARGET_DIR-dynamic"

    local rustflags=""
    CARGO_STD_ARGS=()
    if ! has_prebuilt_std "$triple"; then
        # Nightly-only flag; on stable RUSTC_BOOTSTRAP unlocks it.
        export RUSTC_BOOTSTRAP=1
        CARGO_STD_ARGS=(-Zbuild-std=std,panic_abort)
        # zig supplies musl's crt objects; rustc must not look for its own.
        rustflags="-C link-self-contained=no"
    fi
    if [ "$link" = static ]; then
        # MIPS musl targets are not static by default.
        rustflags="$rustflags -C target-feature=+crt-static"
        export OPENSSL_STATIC=1
    else
        rustflags="$rustflags -C target-feature=-crt-static"
    fi
    rustflags="$rustflags ${TINYMTA_CROSS_RUSTFLAGS:-}"
    rustflags="${rustflags# }"
    export "CARGO_TARGET_${TRIPLE_ENV}_RUSTFLAGS=${rustflags% }"

    # Configure wrapper for openssl-src: no-asm and -DBROKEN_CLANG_ATOMICS on
    # MIPS, slimming options everywhere (see cross/openssl-perl).
    export OPENSSL_SRC_PERL="$CROSS_DIR/openssl-perl"
    export TINYMTA_OPENSSL_SLIM="${TINYMTA_OPENSSL_SLIM:-1}"
    # Vendored OpenSSL looks for its configuration and default CA store
    # (certs/, cert.pem) where OpenWrt's libopenssl does, not /usr/local/ssl.
    export OPENSSL_CONFIG_DIR="${OPENSSL_CONFIG_DIR:-/etc/ssl}"

    # C code for the target (OpenSSL, ring): optimise for size and leave out
    # unwind tables (nothing unwinds through C here). The define names the
    # OpenSSL configuration: cc-based build scripts watch CFLAGS_<triple>, so
    # a change of cross/openssl-perl or TINYMTA_OPENSSL_* rebuilds OpenSSL
    # (openssl-sys does not watch those variables itself).
    local cfg_id
    cfg_id="$({ cat "$CROSS_DIR/openssl-perl"; env | grep '^TINYMTA_OPENSSL_' | sort; } | sha256sum | cut -c1-12)"
    local pic=""
    [ "${TINYMTA_OPENSSL_PIC:-1}" = 0 ] && pic=" -fno-pic"
    export "CFLAGS_${triple//-/_}=${TINYMTA_TARGET_CFLAGS--Os -fno-asynchronous-unwind-tables -fno-unwind-tables}$pic -DTINYMTA_OPENSSL_CONFIG_ID=$cfg_id"
}
