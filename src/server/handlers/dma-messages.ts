// Server-to-client DMA: the MessagePort through which the address space reaches fd-less areas,
// with DMA_READ/DMA_WRITE requests split to the client's max_data_xfer_size. Two byte layouts
// exist ("spec" and "qemu-10.1", see the README); the session's option picks one. A transfer whose
// area is being unmapped (its signal aborted) stops before its next message: the unmap waits for
// the message already out, not for the rest of a long transfer.
import {
  Command,
  type DmaLayout,
  decodeDmaReadReply,
  decodeDmaWriteReply,
  Errno,
  encodeDmaRead,
  encodeDmaWrite,
} from "../../../protocol/index.ts";
import type { MessagePort } from "../../iommu/backing.ts";
import { VfuError } from "../../util/errors.ts";
import { Limits } from "../limits.ts";
import type { Session } from "../session.ts";

export type { DmaLayout };

export function createMessagePort(s: Session): MessagePort {
  const chunk = (): number =>
    Math.min(s.clientCaps?.maxDataXferSize ?? Limits.maxDataXferSize, Limits.maxDataXferSize);
  return {
    async read(iova, length, signal) {
      const out = new Uint8Array(length);
      for (let done = 0; done < length; ) {
        signal?.throwIfAborted();
        const n = Math.min(chunk(), length - done);
        const addr = iova + BigInt(done);
        const reply = await s.request(
          Command.DMA_READ,
          encodeDmaRead({ addr, count: n }, s.options.dmaLayout),
        );
        const r = decodeDmaReadReply(reply.body, s.options.dmaLayout);
        if (r.addr !== addr || r.count !== n || !r.data || r.data.length !== n) {
          throw new VfuError(
            Errno.EIO,
            `DMA_READ reply does not match the request (0x${addr.toString(16)}+${n})`,
          );
        }
        out.set(r.data, done);
        done += n;
      }
      return out;
    },
    async write(iova, data, signal) {
      for (let done = 0; done < data.length; ) {
        signal?.throwIfAborted();
        const n = Math.min(chunk(), data.length - done);
        const addr = iova + BigInt(done);
        const body = encodeDmaWrite(
          { addr, count: n, data: data.subarray(done, done + n) },
          s.options.dmaLayout,
        );
        const reply = await s.request(Command.DMA_WRITE, body);
        const r = decodeDmaWriteReply(reply.body, s.options.dmaLayout);
        if (r && (r.addr !== addr || r.count !== n)) {
          throw new VfuError(
            Errno.EIO,
            `DMA_WRITE reply does not match the request (0x${addr.toString(16)}+${n})`,
          );
        }
        done += n;
      }
    },
  };
}
