# shellcheck shell=sh disable=SC3045 # busybox ash: read -t exists
# Common start of every guest /init (busybox sh). A per-test init does:
#
#   #!/bin/sh
#   . /lib/vfu/prelude.sh
#   vfu_pci_list
#   vfu_result my-check yes
#   vfu_end
#
# Sourcing it mounts /proc, /sys, /dev (devtmpfs) and /tmp, turns the kernel's console chatter
# down (so our lines are not cut by kernel messages; set VFU_KEEP_PRINTK=1 before sourcing to
# keep it), and loads the modules listed in /lib/modules-load.list (set VFU_NO_AUTOLOAD=1
# before sourcing to load them later with vfu_load_modules).
#
# Every machine-readable line starts with "VFU-" and is parsed by scripts/qemu/boot.mjs:
#   VFU-INSMOD <name> ok|fail [message]
#   VFU-PCI <slot> <vendor>:<device> class=<hex> driver=<name|-> sub=<v>:<d> rev=<hex> irq=<n> [barN=...] [rom=...]
#   VFU-RESULT <key> <value...>
#   VFU-LOG <text>               free text for humans
#   VFU-DMESG <kernel log line>
#   VFU-WAIT <token>             the guest waits for the host to type "<token>" on the console
#   VFU-EXIT <status>            /init ended without vfu_end (its exit status)
#   VFU-END                      last line; the guest powers off right after it

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp 2>/dev/null
[ "${VFU_KEEP_PRINTK:-0}" = 1 ] || echo 1 >/proc/sys/kernel/printk

vfu_log() { echo "VFU-LOG $*"; }

# vfu_result KEY VALUE...: one result line; KEY has no spaces, VALUE is the rest of the line.
vfu_result() {
  _k=$1
  shift
  echo "VFU-RESULT $_k $*"
}

# vfu_check KEY COMMAND...: runs COMMAND and prints "VFU-RESULT KEY ok" or "VFU-RESULT KEY fail <status>".
vfu_check() {
  _k=$1
  shift
  if "$@"; then vfu_result "$_k" ok; else vfu_result "$_k" "fail $?"; fi
}

# vfu_insmod NAME [PARAMS...]: load /lib/modules/NAME.ko, print VFU-INSMOD.
vfu_insmod() {
  _n=$1
  shift
  if _msg=$(insmod "/lib/modules/$_n.ko" "$@" 2>&1); then
    echo "VFU-INSMOD $_n ok"
  else
    echo "VFU-INSMOD $_n fail $(echo "$_msg" | tr '\n' ' ')"
    return 1
  fi
}

# vfu_load_modules: load every module of /lib/modules-load.list in order (dependencies first).
vfu_load_modules() {
  [ -f /lib/modules-load.list ] || return 0
  _rc=0
  while read -r _m _params; do
    [ -n "$_m" ] || continue
    # shellcheck disable=SC2086
    vfu_insmod "$_m" $_params || _rc=1
  done </lib/modules-load.list
  return $_rc
}

# vfu_pci_line SYSFS_DIR: one VFU-PCI line for a device.
vfu_pci_line() {
  _d=$1
  _slot=${_d##*/}
  _ven=$(cat "$_d/vendor")
  _dev=$(cat "$_d/device")
  _cls=$(cat "$_d/class")
  _sv=$(cat "$_d/subsystem_vendor" 2>/dev/null || echo 0x0000)
  _sd=$(cat "$_d/subsystem_device" 2>/dev/null || echo 0x0000)
  _rev=$(cat "$_d/revision" 2>/dev/null || echo 0x00)
  _irq=$(cat "$_d/irq" 2>/dev/null || echo 0)
  _drv=-
  [ -L "$_d/driver" ] && _drv=$(basename "$(readlink "$_d/driver")")
  _res=""
  _i=0
  if [ -f "$_d/resource" ]; then
    while read -r _start _end _flags; do
      if [ "$_i" -le 6 ] && [ $((_end)) -ne 0 ]; then
        _kind=mem
        [ $((_flags & 0x100)) -ne 0 ] && _kind=io
        [ $((_flags & 0x2000)) -ne 0 ] && _kind="$_kind,pref"
        [ $((_flags & 0x100000)) -ne 0 ] && _kind="$_kind,64"
        _name=bar$_i
        [ "$_i" = 6 ] && _name=rom
        _res="$_res $_name=$_kind:$(printf '0x%x-0x%x' $((_start)) $((_end)))"
      fi
      _i=$((_i + 1))
    done <"$_d/resource"
  fi
  echo "VFU-PCI $_slot ${_ven#0x}:${_dev#0x} class=${_cls#0x} driver=$_drv sub=${_sv#0x}:${_sd#0x} rev=${_rev#0x} irq=$_irq$_res"
}

# vfu_pci_list: a VFU-PCI line for every PCI device the guest sees.
vfu_pci_list() {
  for _d in /sys/bus/pci/devices/*; do
    [ -e "$_d/vendor" ] && vfu_pci_line "$_d"
  done
}

# vfu_pci_find VENDOR DEVICE: print the slots (0000:00:01.0 ...) of matching devices (hex, no 0x).
vfu_pci_find() {
  for _d in /sys/bus/pci/devices/*; do
    [ -e "$_d/vendor" ] || continue
    [ "$(cat "$_d/vendor")" = "0x$1" ] && [ "$(cat "$_d/device")" = "0x$2" ] && echo "${_d##*/}"
  done
  return 0
}

# vfu_pci_driver SLOT: the driver bound to a device, or "-".
vfu_pci_driver() {
  if [ -L "/sys/bus/pci/devices/$1/driver" ]; then
    basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
  else
    echo -
  fi
}

# vfu_dmesg [EGREP_PATTERN]: the kernel log (optionally filtered) as VFU-DMESG lines.
vfu_dmesg() {
  if [ -n "${1:-}" ]; then
    dmesg | grep -E "$1" | sed 's/^/VFU-DMESG /'
  else
    dmesg | sed 's/^/VFU-DMESG /'
  fi
}

# vfu_wait_for PATH [SECONDS]: wait until PATH exists (default 10 s); 0 if it does.
vfu_wait_for() {
  _t=$((${2:-10} * 10))
  while [ ! -e "$1" ]; do
    [ "$_t" -le 0 ] && return 1
    _t=$((_t - 1))
    usleep 100000
  done
}

# vfu_wait_host TOKEN [SECONDS]: print "VFU-WAIT TOKEN" and wait (default 30 s) until the host
# types TOKEN on the console (boot.mjs does it through its onWait callback). 0 if it did.
vfu_wait_host() {
  _tok=$1
  _secs=${2:-30}
  stty -echo 2>/dev/null
  echo "VFU-WAIT $_tok"
  while read -r -t "$_secs" _line; do
    [ "$_line" = "$_tok" ] && return 0
  done
  echo "VFU-LOG vfu_wait_host: no '$_tok' from the host within ${_secs}s"
  return 1
}

_vfu_ended=0
# vfu_end: the end marker, then power off (QEMU exits).
vfu_end() {
  _vfu_ended=1
  sync
  echo "VFU-END"
  poweroff -f
  sleep 5
}

# If /init returns or fails without vfu_end, say so and still end cleanly (instead of a panic).
_vfu_on_exit() {
  _rc=$?
  if [ "$_vfu_ended" = 0 ]; then
    echo "VFU-EXIT $_rc"
    vfu_end
  fi
}
trap _vfu_on_exit EXIT

if [ "${VFU_NO_AUTOLOAD:-0}" != 1 ]; then vfu_load_modules || :; fi
