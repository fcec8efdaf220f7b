// The runtime control channel of gpio-idio16: a named pipe (FIFO) the server reads text commands
// from, one per line, so a shell can drive the card's isolated inputs while a guest runs:
//
//   vfu serve gpio-idio16 --socket /tmp/gpio.sock --set control=/tmp/gpio.ctl &
//   echo "input 3 1" > /tmp/gpio.ctl
//
// Commands (words separated by blanks; `#` starts a comment; blank lines are ignored):
//   input <n> <level>   drive isolated input IIN<n> (0-15); level 1/0, high/low or on/off
//   inputs <mask>       drive all sixteen inputs at once, bit n = IIN<n> (e.g. 0x00ff)
//   status              log the outputs, the inputs and the interrupt state (info level)
// A malformed line is logged as a warning and skipped; the channel stays open. The FIFO itself
// (creation, removal, any number of writers) is the framework's `openControlChannel`
// (src/util/control-fifo.ts); this file is only the card's command language.

export type ControlCommand =
  | { kind: "input"; line: number; high: boolean }
  | { kind: "inputs"; levels: number }
  | { kind: "status" }
  | { kind: "none" };

const LEVELS: Readonly<Record<string, boolean>> = {
  "1": true,
  high: true,
  on: true,
  "0": false,
  low: false,
  off: false,
};

/** Parse one line of the control channel. Throws an Error saying what is wrong with it. */
export function parseControlLine(text: string): ControlCommand {
  const words = text.replace(/#.*/, "").trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return { kind: "none" };
  const [verb, ...args] = words;
  switch (verb!.toLowerCase()) {
    case "input": {
      if (args.length !== 2) throw new Error(`"input" takes a line and a level, e.g. "input 3 1"`);
      const line = Number(args[0]);
      if (!/^\d+$/.test(args[0]!) || line > 15) throw new Error(`input line "${args[0]}" is not 0-15`);
      const high = LEVELS[args[1]!.toLowerCase()];
      if (high === undefined) throw new Error(`level "${args[1]}" is not 1/0, high/low or on/off`);
      return { kind: "input", line, high };
    }
    case "inputs": {
      if (args.length !== 1) throw new Error(`"inputs" takes one mask, e.g. "inputs 0x00ff"`);
      return { kind: "inputs", levels: parseInputMask(args[0]!) };
    }
    case "status":
      if (args.length !== 0) throw new Error(`"status" takes no arguments`);
      return { kind: "status" };
    default:
      throw new Error(`unknown command "${verb}" (input, inputs, status)`);
  }
}

/** A 16-bit input mask written as decimal, 0x hex or 0b binary. Throws on anything else. */
export function parseInputMask(text: string): number {
  const t = text.trim();
  const v = /^(0x[0-9a-f]+|0b[01]+|\d+)$/i.test(t) ? Number(t) : Number.NaN;
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new Error(`"${text}" is not an input mask 0-0xffff (bit n = IIN<n> high)`);
  }
  return v;
}
