#!/usr/bin/env bash
# shellcheck disable=SC2016 # single-quoted scripts and formats are expanded by their own shell
# Make (once) and verify (every time) the Debian trixie chroot that holds a QEMU with the
# vfio-user client (`-device vfio-user-pci`), the guest kernel with its modules, and a static
# busybox for the guest's userland, and fio (copied into benchmark guests by
# scripts/bench/nvme-guest.mjs).
#
# Prints the chroot's path on stdout; everything else goes to stderr.
#
#   VFU_QEMU_CACHE    cache directory      (default: $HOME/.cache/vfio-user-node)
#   VFU_QEMU_VERSION  QEMU version wanted  (default: 11.1; must prefix `--version`'s number)
#   VFU_QEMU_CHROOT   the chroot's path    (default: $VFU_QEMU_CACHE/trixie-qemu-$VFU_QEMU_VERSION)
#   VFU_DEBIAN_MIRROR mirror URL handed to debootstrap (default: debootstrap's own default)
#   VFU_KEEP_FAILED=1 keep a half-built chroot for inspection instead of deleting it
#
# Needs root (debootstrap, chroot, mount namespaces). Mounts happen only inside private mount
# namespaces, so nothing stays mounted if a run dies. A chroot is built under a temporary name
# in the cache directory and renamed into place only when complete and verified.
set -euo pipefail

QEMU_VERSION=${VFU_QEMU_VERSION:-11.1}
CACHE=${VFU_QEMU_CACHE:-${HOME:-/root}/.cache/vfio-user-node}
CHROOT=${VFU_QEMU_CHROOT:-$CACHE/trixie-qemu-$QEMU_VERSION}
SUITE=trixie
MARKER=.vfu-chroot

log() { printf '[setup-chroot] %s\n' "$*" >&2; }
die() { printf '[setup-chroot] error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit "${1:-0}"
}
case "${1:-}" in
  -h | --help) usage 0 ;;
  "") ;;
  *) log "unknown argument: $1"; usage 2 ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount namespaces need it)"
for tool in unshare chroot flock mount; do
  command -v "$tool" >/dev/null || die "'$tool' not found on the host (util-linux/coreutils)"
done

# Run a command inside chroot DIR, in a private mount namespace with /proc and /dev mounted.
# The mounts die with the namespace, whatever happens to this script.
in_chroot() {
  local dir=$1
  shift
  unshare --mount --propagation private -- /bin/sh -euc '
    mount --make-rprivate /
    d=$1; shift
    mount -t proc proc "$d/proc"
    mount --rbind /dev "$d/dev"
    exec chroot "$d" /usr/bin/env -i \
      PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true "$@"
  ' in_chroot "$dir" "$@"
}

# Check that DIR is a usable chroot. Prints the QEMU version line on success; returns 1 with a
# reason on stderr otherwise.
verify() {
  local dir=$1 out version
  [ -f "$dir/$MARKER" ] || { log "$dir: no $MARKER marker (not made by this script, or unfinished)"; return 1; }
  [ -x "$dir/usr/bin/qemu-system-x86_64" ] || { log "$dir: qemu-system-x86_64 missing"; return 1; }
  [ -x "$dir/usr/bin/busybox" ] || [ -x "$dir/bin/busybox" ] || { log "$dir: busybox missing"; return 1; }
  compgen -G "$dir/boot/vmlinuz-*" >/dev/null || { log "$dir: no guest kernel in /boot"; return 1; }
  version=$(in_chroot "$dir" qemu-system-x86_64 --version 2>&1 | head -n1) ||
    { log "$dir: qemu-system-x86_64 --version failed: $version"; return 1; }
  case "$version" in
    "QEMU emulator version $QEMU_VERSION"*) ;;
    *) log "$dir: wanted QEMU $QEMU_VERSION, found: $version"; return 1 ;;
  esac
  out=$(in_chroot "$dir" qemu-system-x86_64 -device help 2>&1) ||
    { log "$dir: qemu-system-x86_64 -device help failed: $out"; return 1; }
  grep -q '"vfio-user-pci"' <<<"$out" || { log "$dir: this QEMU has no vfio-user-pci device"; return 1; }
  printf '%s\n' "$version"
}

# fio came later than the rest: install it into an existing chroot that lacks it (a fresh build
# installs it with the other packages). Not part of verify(), so a chroot without it is kept.
ensure_fio() {
  local dir=$1 t0
  [ -x "$dir/usr/bin/fio" ] && return 0
  t0=$(now)
  log "installing fio into $dir"
  in_chroot "$dir" apt-get update >&2 || { log "apt-get update in the chroot failed"; return 1; }
  in_chroot "$dir" apt-get install -y fio >&2 || { log "could not install fio"; return 1; }
  in_chroot "$dir" apt-get clean >&2
  rm -rf "$dir"/var/lib/apt/lists/*_Packages 2>/dev/null || true
  log "fio installed in $(since "$t0") s"
}

mkdir -p "$CACHE" "$(dirname "$CHROOT")"
name=$(basename "$CHROOT")
# One set-up at a time per chroot (parallel CI jobs on one machine wait for each other).
exec 9>"$(dirname "$CHROOT")/.$name.lock"
if ! flock -n 9; then
  log "another set-up of $CHROOT is running; waiting for it"
  flock 9
fi

if [ -e "$CHROOT" ]; then
  t0=$(now)
  if version=$(verify "$CHROOT"); then
    # Only the guest benchmark needs fio: a failed install must not fail the e2e tests.
    ensure_fio "$CHROOT" || log "warning: fio is missing from $CHROOT and could not be installed (npm run bench:nvme-guest needs it)"
    log "$CHROOT is ready: $version, vfio-user-pci present (checked in $(since "$t0") s)"
    printf '%s\n' "$CHROOT"
    exit 0
  fi
  if [ -f "$CHROOT/$MARKER" ]; then
    log "$CHROOT fails verification (see above): removing it and building a new one"
    rm -rf --one-file-system "$CHROOT"
  else
    die "$CHROOT exists but was not made by this script: move it away or set VFU_QEMU_CHROOT"
  fi
fi

# --- build -------------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap on the host"
  apt-get update >&2 || log "apt-get update reported errors; trying the install anyway"
  apt-get install -y --no-install-recommends debootstrap >&2 ||
    die "could not install debootstrap on the host (apt-get install debootstrap)"
fi

# Leftovers of builds that died (we hold the lock, so none is running).
for old in "$(dirname "$CHROOT")/.build-$name".*; do
  [ -e "$old" ] || continue
  log "removing an unfinished build: $old"
  rm -rf --one-file-system "$old"
done

TMP=$(mktemp -d "$(dirname "$CHROOT")/.build-$name.XXXXXX")
chmod 755 "$TMP"
cleanup() {
  local rc=$?
  if [ -d "$TMP" ]; then
    if [ "${VFU_KEEP_FAILED:-}" = 1 ]; then
      log "build failed; kept for inspection: $TMP"
    else
      rm -rf --one-file-system "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_all=$(now)
t0=$(now)
log "debootstrap --variant=minbase $SUITE into $TMP (takes 20-60 s)"
# debootstrap mounts /proc and /sys in the target itself: keep those in a private namespace too.
# shellcheck disable=SC2086
unshare --mount --propagation private -- /bin/sh -euc 'mount --make-rprivate / && exec "$@"' sh \
  debootstrap --variant=minbase "$SUITE" "$TMP" ${VFU_DEBIAN_MIRROR:-} >&2 ||
  die "debootstrap failed (see its output above; its log is in $TMP/debootstrap/debootstrap.log with VFU_KEEP_FAILED=1)"
t_debootstrap=$(since "$t0")
log "debootstrap done in $t_debootstrap s"

# A trixie-backports line on the mirror debootstrap chose (never a host name of our own).
mirror=""
if [ -f "$TMP/etc/apt/sources.list" ]; then
  mirror=$(awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == s) { print $i; exit } } }' \
    "$TMP/etc/apt/sources.list")
fi
if [ -z "$mirror" ]; then
  for f in "$TMP"/etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' "$f")
    [ -n "$mirror" ] && break
  done
fi
[ -n "$mirror" ] || die "could not find the mirror debootstrap wrote into $TMP/etc/apt/"
printf 'deb %s %s-backports main\n' "$mirror" "$SUITE" >"$TMP/etc/apt/sources.list.d/$SUITE-backports.list"

cat >"$TMP/etc/apt/apt.conf.d/90vfu" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
EOF
# No services start in the chroot.
printf '#!/bin/sh\nexit 101\n' >"$TMP/usr/sbin/policy-rc.d"
chmod 755 "$TMP/usr/sbin/policy-rc.d"
# The guest gets our own initramfs: do not spend time building Debian's one for the kernel.
mkdir -p "$TMP/etc/initramfs-tools"
printf 'update_initramfs=no\nbackup_initramfs=no\n' >"$TMP/etc/initramfs-tools/update-initramfs.conf"

t0=$(now)
log "installing qemu-system-x86 from $SUITE-backports, linux-image-amd64, busybox-static and fio"
in_chroot "$TMP" apt-get update >&2 || die "apt-get update in the chroot failed"
in_chroot "$TMP" apt-get install -y -t "$SUITE-backports" qemu-system-x86 >&2 ||
  die "could not install qemu-system-x86 from $SUITE-backports"
# INITRD=No: the kernel's postinst hook then skips Debian's own initramfs (the guest gets ours).
in_chroot "$TMP" /usr/bin/env INITRD=No apt-get install -y linux-image-amd64 busybox-static fio >&2 ||
  die "could not install linux-image-amd64 busybox-static fio"
in_chroot "$TMP" apt-get clean >&2
rm -f "$TMP"/boot/initrd.img-*
rm -rf "$TMP"/var/lib/apt/lists/*_Packages "$TMP"/usr/share/doc/* "$TMP"/usr/share/man/* 2>/dev/null || true
t_install=$(since "$t0")
log "packages installed in $t_install s"

kernel=$(cd "$TMP/boot" && printf '%s\n' vmlinuz-* | sort -V | tail -n1)
qver=$(in_chroot "$TMP" dpkg-query -W -f '${Version}' qemu-system-x86)
cat >"$TMP/$MARKER" <<EOF
made-by=scripts/qemu/setup-chroot.sh
made-at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
suite=$SUITE
qemu-wanted=$QEMU_VERSION
qemu-package=$qver
kernel=/boot/$kernel
seconds-debootstrap=$t_debootstrap
seconds-install=$t_install
EOF

version=$(verify "$TMP") || die "the new chroot fails verification (see above)"
mv -T "$TMP" "$CHROOT"
log "$CHROOT is ready: $version (package $qver), kernel /boot/$kernel, built in $(since "$t_all") s"
printf '%s\n' "$CHROOT"
