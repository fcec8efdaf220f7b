#!/bin/sh
# The README walkthrough's guest side, as written there: find examples/counter.mjs's function,
# enable it, read and write its BAR0 registers through /dev/mem.
. /lib/vfu/prelude.sh
for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor):$(cat $d/device)" = 0x1234:0x0c01 ] && dev=$d; done
vfu_result found "${dev:-none}"
echo 1 > $dev/enable                          # memory decode on
bar0=$(awk 'NR==1 {print $1}' $dev/resource)
vfu_result count "$(devmem $bar0 32)"
vfu_result limit "$(devmem $((bar0 + 8)) 32)"
devmem $((bar0 + 4)) 32 5                     # ADD 5
vfu_result count-after-add "$(devmem $bar0 32)"
vfu_end
