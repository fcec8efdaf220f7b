// DEVICE_FEATURE: the head, flag checks, and the typed payloads of the migration and dirty
// logging features.

import t from "tap";
import {
  decodeDeviceFeature,
  decodeDmaLoggingReport,
  decodeDmaLoggingStart,
  decodeMigDeviceState,
  decodeMigrationFeatureData,
  dmaLoggingBitmapSize,
  Errno,
  encodeDeviceFeature,
  encodeDmaLoggingReport,
  encodeDmaLoggingStart,
  encodeMigDeviceState,
  encodeMigrationFeatureData,
  Feature,
  FeatureFlag,
  featureIndex,
  MigrationFlag,
  MigState,
} from "../../protocol/index.ts";
import * as fx from "../fixtures/protocol/hand-built.ts";
import { extend, hex, shorten, throwsErrno, toHex, withU32 } from "../fixtures/protocol/helpers.ts";

t.test("PROBE|GET MIGRATION request and its GET reply", async (t) => {
  const probe = decodeDeviceFeature(hex(fx.featureProbeMigration));
  t.equal(probe.argsz, 16);
  t.equal(probe.flags, Feature.MIGRATION | FeatureFlag.GET | FeatureFlag.PROBE);
  t.equal(featureIndex(probe.flags), Feature.MIGRATION);
  t.equal(probe.data.length, 0);
  t.equal(toHex(encodeDeviceFeature(probe)), fx.featureProbeMigration);

  const reply = decodeDeviceFeature(hex(fx.featureGetMigrationReply));
  const mig = decodeMigrationFeatureData(reply.data);
  t.same(mig, { flags: BigInt(MigrationFlag.STOP_COPY | MigrationFlag.PRE_COPY) });
  t.equal(
    toHex(encodeDeviceFeature({ ...reply, data: encodeMigrationFeatureData(mig) })),
    fx.featureGetMigrationReply,
  );
});

t.test("SET MIG_DEVICE_STATE", async (t) => {
  const f = decodeDeviceFeature(hex(fx.featureSetStateStop));
  t.equal(featureIndex(f.flags), Feature.MIG_DEVICE_STATE);
  const s = decodeMigDeviceState(f.data);
  t.same(s, { deviceState: MigState.STOP, dataFd: 0 });
  t.equal(toHex(encodeDeviceFeature({ ...f, data: encodeMigDeviceState(s) })), fx.featureSetStateStop);
});

t.test("DMA logging start and report", async (t) => {
  const start = decodeDeviceFeature(hex(fx.featureLoggingStart));
  const s = decodeDmaLoggingStart(start.data);
  t.same(s, {
    pageSize: 4096n,
    ranges: [
      { iova: 0n, length: 0xa0000n },
      { iova: 0x100000n, length: 0x1ff00000n },
    ],
  });
  t.equal(toHex(encodeDeviceFeature({ ...start, data: encodeDmaLoggingStart(s) })), fx.featureLoggingStart);

  const body = hex(fx.featureLoggingReportReply);
  const report = decodeDeviceFeature(body);
  const r = decodeDmaLoggingReport(report.data);
  t.same(
    { ...r, bitmap: undefined },
    { iova: 0x100000n, length: 0x100000n, pageSize: 4096n, bitmap: undefined },
  );
  t.equal(
    BigInt(r.bitmap?.length ?? 0),
    dmaLoggingBitmapSize(r.length, r.pageSize),
    "bitmap size matches the range",
  );
  t.equal(r.bitmap?.buffer, body.buffer, "bitmap is a view");
  t.equal(
    toHex(encodeDeviceFeature({ ...report, data: encodeDmaLoggingReport(r) })),
    fx.featureLoggingReportReply,
  );
  const request = decodeDmaLoggingReport(report.data.subarray(0, 24));
  t.equal(request.bitmap, undefined, "a request has no bitmap");
  t.equal(encodeDmaLoggingReport(request).length, 24);
});

t.test("bitmap size arithmetic", async (t) => {
  t.equal(dmaLoggingBitmapSize(1n, 4096n), 8n, "one page still takes a u64");
  t.equal(dmaLoggingBitmapSize(64n * 4096n, 4096n), 8n);
  t.equal(dmaLoggingBitmapSize(65n * 4096n, 4096n), 16n);
  t.equal(dmaLoggingBitmapSize(0n, 4096n), 0n);
  t.throws(() => dmaLoggingBitmapSize(1n, 0n), RangeError);
});

t.test("errors", async (t) => {
  const probe = hex(fx.featureProbeMigration);
  throwsErrno(t, () => decodeDeviceFeature(shorten(probe)), Errno.EINVAL, /at least 8/);
  throwsErrno(t, () => decodeDeviceFeature(withU32(probe, 0, 4)), Errno.EINVAL, /argsz 4/);
  throwsErrno(t, () => decodeDeviceFeature(withU32(probe, 4, 1 << 19)), Errno.EINVAL, /unknown bits/);
  throwsErrno(
    t,
    () => decodeDeviceFeature(withU32(probe, 4, 0x30001)),
    Errno.EINVAL,
    /GET and SET without PROBE/,
  );
  t.equal(decodeDeviceFeature(withU32(probe, 4, 0x70001)).flags, 0x70001, "GET|SET|PROBE is a valid probe");
  throwsErrno(t, () => decodeMigrationFeatureData(new Uint8Array(7)), Errno.EINVAL, /must be 8/);
  throwsErrno(t, () => decodeMigDeviceState(new Uint8Array(9)), Errno.EINVAL, /must be 8/);
  const start = hex(fx.featureLoggingStart).subarray(8);
  throwsErrno(t, () => decodeDmaLoggingStart(start.subarray(0, 15)), Errno.EINVAL, /at least 16/);
  throwsErrno(t, () => decodeDmaLoggingStart(shorten(start)), Errno.EINVAL, /2 ranges do not fit/);
  throwsErrno(t, () => decodeDmaLoggingStart(extend(start)), Errno.EINVAL, /must be 48/);
  throwsErrno(t, () => decodeDmaLoggingStart(withU32(start, 8, 0xffffffff)), Errno.EINVAL, /do not fit/);
  throwsErrno(t, () => decodeDmaLoggingReport(new Uint8Array(23)), Errno.EINVAL, /at least 24/);
  t.throws(() => encodeMigrationFeatureData({ flags: -1n }), RangeError);
});
