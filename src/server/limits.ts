// Every limit the server enforces lives here, each with the reason for its value. Tests at
// test/server/limits.test.ts exercise each boundary (at the limit: accepted; one over: refused).

import { RequestLimits } from "../transport/request-engine.ts";

const MiB = 1024 * 1024;

export const Limits = {
  /** Fds we accept in one message (advertised as `max_msg_fds`). QEMU accepts at most 16 and
   * splits SET_IRQS into chunks of this size; 8 keeps the control buffer small. */
  maxMsgFds: 8,
  /** Largest REGION_READ/WRITE `count` we accept and largest DMA transfer we send unsplit
   * (advertised as `max_data_xfer_size`). 1 MiB is QEMU's own default. */
  maxDataXferSize: 1 * MiB,
  /** Simultaneous DMA maps (advertised as `max_dma_maps`). 65,535 is the most QEMU accepts. */
  maxDmaMaps: 65535,
  /** DMA page sizes we accept (advertised as `pgsizes`): 4 KiB, the host page size. */
  pgsizes: 4096,
  /** Largest whole message: a maximal REGION_WRITE (16 header + 16 access head + data) with room
   * for the 24-byte REGION_WRITE_MULTI and MIG_DATA heads. Anything larger breaks framing. */
  maxMessageSize: 1 * MiB + 64,
  /** A client may say it receives at most this many fds per message; more is nonsense (1024 is
   * the limit libvfio-user applies too). */
  maxClientMsgFds: 1024,
  /** Reply bytes queued for a client that does not read them; over this the client is dropped,
   * so a stalled client cannot grow the server's memory without bound. */
  maxQueuedReplyBytes: 16 * MiB,
  /** Commands received but not yet processed before we stop reading the socket (back-pressure). */
  maxQueuedCommands: 256,
  /** How long a server-to-client request (DMA_READ/DMA_WRITE) may wait for its reply: the request
   * engine's timeout (QEMU's own, 5 s; see RequestLimits in src/transport/request-engine.ts). */
  requestTimeoutMs: RequestLimits.timeoutMs,
  /** A connection that sends nothing for its first message within this time is closed (a second
   * client waiting for the busy answer, or a half-open probe). */
  negotiationTimeoutMs: 10000,
  /** Read buffer for one recvmsg: large enough that one call usually takes a whole burst. */
  readBufferSize: 256 * 1024,
  /** Refused region accesses logged per cause (command, errno and reason, numbers aside) in each
   * `refusedLogWindowMs`; the rest are counted and the count reported with the next line or at
   * disconnect. A guest that probes a hole in a loop costs a few lines, not one per access. */
  refusedLogBurst: 5,
  refusedLogWindowMs: 10_000,
} as const;

export type LimitName = keyof typeof Limits;
