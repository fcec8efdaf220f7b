/* mmio-writes: a tight loop of MMIO stores into a PCI BAR, for the bochs-display guest test and
 * the bochs-guest benchmark. Built on the host (gcc -static -O2) and put into the initramfs.
 * busybox devmem forks a process per access; this does millions of stores a second on real
 * hardware and as many as the virtual machine lets through under QEMU.
 *
 *   mmio-writes seq  <sysfs resource file> <offset> <count>   16-bit stores of 1, 2, ... count
 *                                                               (mod 65536) to one register
 *   mmio-writes fill <sysfs resource file> <offset> <bytes>    32-bit stores of a pattern over
 *                                                               <bytes> bytes: word i = 0xA5000000 + i
 *
 * After the stores it reads the register (seq) or the first word (fill) back, so every store has
 * reached the device before the clock stops (a read is never posted and is ordered behind the
 * writes). Prints one line: "<stores> <nanoseconds> <value read back in hex>".
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 5 || (strcmp(argv[1], "seq") != 0 && strcmp(argv[1], "fill") != 0)) {
    fprintf(stderr, "usage: %s seq|fill <resource file> <offset> <count|bytes>\n", argv[0]);
    return 2;
  }
  int fill = strcmp(argv[1], "fill") == 0;
  unsigned long offset = strtoul(argv[3], NULL, 0);
  unsigned long count = strtoul(argv[4], NULL, 0);
  int fd = open(argv[2], O_RDWR | O_SYNC);
  if (fd < 0) {
    perror(argv[2]);
    return 1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    perror("fstat");
    return 1;
  }
  size_t size = (size_t)st.st_size;
  unsigned long end = fill ? offset + count : offset + 2;
  if (end > size || (fill && (offset % 4 || count % 4)) || (!fill && offset % 2)) {
    fprintf(stderr, "offset 0x%lx / count %lu do not fit the %zu-byte BAR\n", offset, count, size);
    return 1;
  }
  void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  volatile uint8_t *base = (volatile uint8_t *)map;
  uint64_t t0 = now_ns();
  uint32_t back;
  unsigned long stores;
  if (fill) {
    volatile uint32_t *w = (volatile uint32_t *)(base + offset);
    stores = count / 4;
    for (unsigned long i = 0; i < stores; i++) w[i] = 0xA5000000u + (uint32_t)i;
    back = w[0];
  } else {
    volatile uint16_t *r = (volatile uint16_t *)(base + offset);
    stores = count;
    for (unsigned long i = 1; i <= count; i++) *r = (uint16_t)i;
    back = *r;
  }
  uint64_t t1 = now_ns();
  printf("%lu %llu 0x%x\n", stores, (unsigned long long)(t1 - t0), back);
  munmap(map, size);
  close(fd);
  return 0;
}
