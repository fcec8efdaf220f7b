// The client's side of write combining: stores to a region the server reports as WC (or WB) may
// be merged before they go out, the way a CPU merges stores to a write-combining mapping before
// they reach the bus. A CombiningWriter keeps one run of adjacent (or overlapping) bytes and sends
// it as one posted REGION_WRITE when a store does not touch it, when it reaches its limit, when
// `flush()` is called, when the client sends anything else (so order with every other command
// holds), and at the end of the current microtask turn (so stores never linger).
// UC regions must not be written this way: `VfioUserClient.combiningWriter` refuses them.

export class CombiningWriter {
  readonly region: number;
  readonly limit: number;
  readonly #send: (offset: number, data: Uint8Array) => void;
  readonly #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #scheduled = false;
  /** REGION_WRITEs sent so far. */
  messages = 0;

  constructor(region: number, limit: number, send: (offset: number, data: Uint8Array) => void) {
    this.region = region;
    this.limit = limit;
    this.#send = send;
    this.#buf = new Uint8Array(limit);
  }

  get pending(): number {
    return this.#end - this.#start;
  }

  /** A posted store of `data` at `offset` (copied). */
  write(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    if (data.length > this.limit) {
      this.flush();
      this.#emit(offset, data.slice());
      return;
    }
    if (this.#end > this.#start) {
      const touches = offset <= this.#end && end >= this.#start;
      if (!touches || Math.max(end, this.#end) - Math.min(offset, this.#start) > this.limit) this.flush();
    }
    if (this.#end === this.#start) {
      this.#start = offset;
      this.#end = end;
      this.#buf.set(data, 0);
    } else {
      if (offset < this.#start) {
        this.#buf.copyWithin(this.#start - offset, 0, this.#end - this.#start);
        this.#start = offset;
      }
      this.#buf.set(data, offset - this.#start);
      if (end > this.#end) this.#end = end;
    }
    if (this.#end - this.#start >= this.limit) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        this.flush();
      });
    }
  }

  /** Send the pending run now. */
  flush(): void {
    if (this.#end === this.#start) return;
    const data = this.#buf.slice(0, this.#end - this.#start);
    const offset = this.#start;
    this.#start = this.#end = 0;
    this.#emit(offset, data);
  }

  #emit(offset: number, data: Uint8Array): void {
    this.messages++;
    this.#send(offset, data);
  }
}
