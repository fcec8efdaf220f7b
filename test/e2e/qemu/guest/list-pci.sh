#!/bin/sh
# Guest /init for boot.test.ts: no vfio-user device needed. Lists the PCI devices, reports the
# kernel and a few facts, and ends.
# shellcheck source=SCRIPTDIR/../../../../scripts/qemu/guest/prelude.sh
. /lib/vfu/prelude.sh
vfu_log "init start, kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s"
vfu_pci_list
vfu_result kernel "$(uname -r)"
vfu_result pci-count "$(find /sys/bus/pci/devices/ -mindepth 1 -maxdepth 1 | wc -l)"
vfu_result host-bridge "$(vfu_pci_find 8086 29c0)"
vfu_result uptime "$(cut -d' ' -f1 /proc/uptime)"
vfu_end
