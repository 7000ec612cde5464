// Storage benchmark on real files with O_DIRECT, in one run on the same files: raw sequential
// write bandwidth of the member disks (the data disks' share of it, and the data disks alone),
// CP write bandwidth of the copy-on-write file system through RAID (and their ratios,
// cpToRawRatio and cpToDataDisksAloneRatio, per round side by side), small-file creates per
// second, sequential read bandwidth, and rebuild bandwidth.
// `npm run bench -- storage [--dir D] [--disk-mib N] [--rounds R] [--cp-write-mib M] [--cp-concurrency C] [--gather thread|main] [--cp-overlap | --no-cp-overlap] [--cpu-prof-dir DIR]`.
import { parseArgs } from 'node:util';
import { Session } from 'node:inspector/promises';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCrc32c } from '../../../firmware/ts/core/crc32c.ts';
import { Prng } from '../../../firmware/ts/core/prng.ts';
import { realClock, realTimers } from '../../../firmware/ts/hal/clock/real.ts';
import { LinuxBlockDevice } from '../../../firmware/ts/hal/block/linux/linux-block-device.ts';
import type { BlockDevice } from '../../../firmware/ts/hal/block/block-device.ts';
import { assert } from '../../../firmware/ts/core/assert.ts';
import { diskLayout } from '../../../firmware/ts/storage/layout.ts';
import { createVolume, type RaidVolume } from '../../../firmware/ts/storage/raid/index.ts';
import { gatherStripesAsyncInstalled, installGatherStripesAsync, xorKernelName } from '../../../firmware/ts/storage/raid/xor.ts';
import { cowFsDefaults } from '../../../firmware/ts/storage/fs/limits.ts';
import { measureRebuild, measureSequentialWrite } from '../../../firmware/ts/storage/raid/measure.ts';
import { CowFs, mkfs } from '../../../firmware/ts/storage/fs/cowfs.ts';
import type { InodeRef } from '../../../firmware/ts/fsapi/ops.ts';
import type { Bench, BenchReport, BenchRow } from '../bench.ts';

const MiB = 1024 * 1024;
const cred = { uid: 0, gid: 0, gids: [] };

export const bench: Bench = {
  name: 'storage',
  description: 'raw O_DIRECT disk writes vs CP writes (cpToRawRatio), small-file creates/s, sequential read, rebuild — RAID + CoW FS on files',
  async run(args): Promise<BenchReport> {
    const { values } = parseArgs({
      args: [...args],
      options: {
        dir: { type: 'string' },
        'disk-mib': { type: 'string', default: '384' },
        members: { type: 'string', default: '4' },
        'cp-mib': { type: 'string', default: '192' },
        files: { type: 'string', default: '20000' },
        'stripe-unit-kib': { type: 'string', default: '64' },
        rounds: { type: 'string', default: '5' },
        'cp-write-mib': { type: 'string', default: String(cowFsDefaults.cpWriteBytesMax / MiB) },
        // Four volume writes in flight measured best for the CP here (4 MiB x 4: cpToRawRatio
        // 0.40-0.49 against 0.31-0.38 with the file system's default of 2, same raw shape);
        // the raw side always uses the same queue depth.
        'cp-concurrency': { type: 'string', default: '4' },
        // Where RAID gathers a CP write's blocks and computes its parity: on the libuv thread
        // pool (the addon's gatherStripesAsync), or on the main thread. The main thread
        // measured as fast or faster here (2 shared vCPUs, no idle core for the pool thread).
        gather: { type: 'string', default: 'main' },
        // The CP's writes start during its freeze (CowFsOptions.cpFreezeOverlap, on by default
        // in the file system); --no-cp-overlap turns it off for side-by-side figures.
        'cp-overlap': { type: 'boolean', default: false },
        'no-cp-overlap': { type: 'boolean', default: false },
        // How RAID writes a CP's blocks (RaidRuntimeOptions.zeroCopyWrites): in place with the
        // members' writev ('auto', the default) or gathered into per-member buffers first ('off').
        'zero-copy': { type: 'string', default: 'auto' },
        // Writes a .cpuprofile of the main thread per round, covering only the CP (takeCp).
        'cpu-prof-dir': { type: 'string' },
      },
      strict: true,
    });
    const diskBytes = Number(values['disk-mib']) * MiB;
    const memberCount = Number(values.members);
    const cpBytes = Number(values['cp-mib']) * MiB;
    const fileCount = Number(values.files);
    const stripeUnitBytes = Number(values['stripe-unit-kib']) * 1024;
    const rounds = Math.max(1, Number(values.rounds));
    const cpWriteBytes = Number(values['cp-write-mib']) * MiB;
    const cpConcurrency = Math.max(1, Number(values['cp-concurrency']));
    const notes: string[] = [];
    const rows: BenchRow[] = [];
    const figures: BenchReport['figures'] = {};

    let allocate: ((n: number) => Uint8Array) | undefined;
    try {
      const native = (await import('../../../firmware/ts/native/index.ts')) as Record<string, unknown>;
      if (typeof native['crc32cNative'] === 'function') installCrc32c(native['crc32cNative'] as (d: Uint8Array, c: number) => number);
      if (typeof native['allocAligned'] === 'function') allocate = (n) => (native['allocAligned'] as (n: number) => Uint8Array)(n);
      if (values.gather === 'thread' && typeof native['gatherStripesNativeAsync'] === 'function') {
        await installGatherStripesAsync(native['gatherStripesNativeAsync'] as Parameters<typeof installGatherStripesAsync>[0]);
      }
      figures['crc32c'] = typeof native['crc32cImplementation'] === 'string' ? native['crc32cImplementation'] : 'unknown';
    } catch (e) {
      notes.push(`native addon unavailable (${(e as Error).message.split('\n')[0] ?? ''}): portable CRC, unaligned buffers`);
    }

    const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'twinblade-storage-bench-')));
    const owned = values.dir === undefined;
    const disks: LinuxBlockDevice[] = [];
    const profDir = values['cpu-prof-dir'];
    let profiler: Session | undefined;
    if (profDir !== undefined) {
      await mkdir(profDir, { recursive: true });
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
    }
    try {
      for (let i = 0; i <= memberCount; i++) {
        disks.push(await LinuxBlockDevice.open(join(dir, `disk${i}.img`), { create: true, sizeBytes: diskBytes, direct: 'prefer', name: `disk${i}` }));
      }
      const direct = disks.every((d) => d.direct);
      figures['oDirect'] = direct;
      figures['xorKernel'] = xorKernelName();
      figures['gatherOffThread'] = gatherStripesAsyncInstalled();
      const cpFreezeOverlap = values['no-cp-overlap'] ? false : values['cp-overlap'] ? true : cowFsDefaults.cpFreezeOverlap;
      figures['cpFreezeOverlap'] = cpFreezeOverlap;
      figures['zeroCopy'] = values['zero-copy'];
      figures['loadAverage1mStart'] = round(loadavg()[0] ?? 0, 2);
      if (!direct) notes.push(`${dir} refused O_DIRECT: figures include the page cache`);
      const members = disks.slice(0, memberCount);
      const spare = disks[memberCount] as LinuxBlockDevice;
      const dataDisks = members.slice(0, memberCount - 1);
      const opt = allocate !== undefined ? { allocate } : {};

      // 0. Every file written once end to end, so that no measurement pays for the file
      // system allocating blocks of a sparse image (the first write to a hole costs more).
      const fillChunk = 4 * MiB;
      await measureSequentialWrite(disks, {
        clock: realClock,
        bytesPerDisk: Math.floor((diskBytes - diskLayout.raidDataOffsetBytes) / fillChunk) * fillChunk,
        chunkBytes: fillChunk,
        parallel: true,
        queueDepth: 2,
        ...opt,
      });

      // The shape of the CP's I/O: each volume write is `cpRunStripes` whole stripes, one
      // write of `memberWriteBytes` per member disk, `cpConcurrency` volume writes in flight.
      // The raw baseline writes the same files with the same I/O size and queue depth.
      const stripeBlocks = (stripeUnitBytes / 4096) * dataDisks.length;
      const cpRunStripes = Math.max(1, Math.floor(cpWriteBytes / 4096 / stripeBlocks));
      const memberWriteBytes = cpRunStripes * stripeUnitBytes;
      const rawBytesPerDisk = Math.max(1, Math.floor(cpBytes / dataDisks.length / memberWriteBytes)) * memberWriteBytes;
      figures['memberWriteKiB'] = memberWriteBytes / 1024;
      figures['queueDepth'] = cpConcurrency;

      // Raw sequential writes of `ds`, all at once, in the CP's shape.
      const rawWrite = (ds: readonly BlockDevice[]) =>
        measureSequentialWrite(ds, { clock: realClock, bytesPerDisk: rawBytesPerDisk, chunkBytes: memberWriteBytes, parallel: true, queueDepth: cpConcurrency, ...opt });

      // 1 and 2, side by side in every round: raw sequential writes of the data disks, then a
      // CP of a big file's data (written in memory first) through a new volume on the same
      // files. The ratio is taken per round, so that load changes between rounds cancel out.
      const raws: number[] = [];
      const cps: number[] = [];
      const ratios: number[] = [];
      // The data disks' share of all members written at once, and the ratio against it.
      const rawsMembers: number[] = [];
      // The CP against the data disks written alone (no parity disk beside them).
      const aloneRatios: number[] = [];
      // CPU time of the process (every thread) per run: unlike wall time, hardly moved by
      // other processes' load, so it shows what the CP path itself costs.
      const rawCpuMs: number[] = [];
      const cpCpuMs: number[] = [];
      // The freeze of each round's CP (the time changes wait for the file system's lock).
      const freezeMs: number[] = [];
      let volume: RaidVolume | undefined;
      let fs: CowFs | undefined;
      let big: InodeRef | undefined;
      const chunk = new Uint8Array(MiB).map((_, i) => (i * 31 + 7) & 0xff);
      for (let round = 0; round < rounds; round++) {
        if (fs !== undefined) await fs.close();
        if (volume !== undefined) await volume.close();
        const rawCpu0 = process.cpuUsage();
        const raw = await rawWrite(dataDisks);
        rawCpuMs.push(cpuMs(process.cpuUsage(rawCpu0)));
        // Every member disk at once (the parity disk too), as the array is written: the data
        // disks' share of that aggregate is what they deliver while the array is in use. On
        // independent disks it equals the data disks written alone; on one shared device (the
        // image files here) the parity disk's writes take device time from the data disks'.
        const rawAll = await rawWrite(members);
        volume = await createVolume(members, { pairId: 'bench', volumeId: 'fs', clock: realClock, timers: realTimers, prng: new Prng(1), overwrite: true, stripeUnitBytes, autoRebuild: false, zeroCopyWrites: values['zero-copy'] === 'off' ? false : 'auto', ...opt });
        await mkfs(volume, { fsid: 1n });
        fs = await CowFs.mount(volume, { dirtyBytesMax: 2 * cpBytes, cachePagesMax: 4096, clock: realClock, cpWriteBytesMax: cpWriteBytes, cpWriteConcurrencyMax: cpConcurrency, cpFreezeOverlap });
        big = fs.allocInode();
        await fs.apply({ op: 'create', dir: fs.rootIno, name: 'big', how: 'guarded', attrs: {}, newIno: big.ino, newGen: big.gen, time: { sec: 1, nsec: 0 }, cred });
        for (let off = 0; off < cpBytes; off += MiB) await fs.apply({ op: 'write', target: big, offset: off, data: chunk, time: { sec: 2, nsec: 0 }, cred });
        if (profiler !== undefined) await profiler.post('Profiler.start');
        const cp0 = realClock.nowMs();
        const cpCpu0 = process.cpuUsage();
        await fs.takeCp();
        const cpMs = realClock.nowMs() - cp0;
        cpCpuMs.push(cpuMs(process.cpuUsage(cpCpu0)));
        freezeMs.push(fs.lastCpStats?.freezeMs ?? 0);
        if (profiler !== undefined && profDir !== undefined) {
          const { profile } = await profiler.post('Profiler.stop');
          await writeFile(join(profDir, `cp-round${round}.cpuprofile`), JSON.stringify(profile));
        }
        const rawMiBps = raw.aggregateBytesPerSec / MiB;
        const cpMiBps = cpBytes / MiB / (cpMs / 1000);
        const rawMembersDataMiBps = ((rawAll.aggregateBytesPerSec / MiB) * dataDisks.length) / members.length;
        raws.push(rawMiBps);
        rawsMembers.push(rawMembersDataMiBps);
        cps.push(cpMiBps);
        ratios.push(cpMiBps / rawMembersDataMiBps);
        aloneRatios.push(cpMiBps / rawMiBps);
      }
      assert(volume !== undefined && fs !== undefined && big !== undefined, 'at least one round ran');
      const rawMiBps = median(raws);
      const cpMiBps = median(cps);
      const ratio = median(ratios);
      const shape = `${memberWriteBytes / 1024} KiB writes, ${cpConcurrency} in flight per disk`;
      const rawMembersMiBps = median(rawsMembers);
      const aloneRatio = median(aloneRatios);
      rows.push({ metric: `raw sequential write, all ${members.length} member disks at once (O_DIRECT, ${shape}): the ${dataDisks.length} data disks' share, median of ${rounds}`, value: rawMembersMiBps, unit: 'MiB/s' });
      rows.push({ metric: `raw sequential write, the ${dataDisks.length} data disks alone at once (O_DIRECT, ${shape}), median of ${rounds}`, value: rawMiBps, unit: 'MiB/s' });
      rows.push({ metric: `CP write of ${cpBytes / MiB} MiB of file data (full stripes through RAID, flushes, superblock), median of ${rounds}`, value: cpMiBps, unit: 'MiB/s' });
      rows.push({ metric: 'cpToRawRatio (goal >= 0.7): CP / the data disks\' share of the members\' raw writes, median of the per-round ratios', value: ratio, unit: 'x' });
      rows.push({ metric: 'cpToRawRatio, lowest round', value: Math.min(...ratios), unit: 'x' });
      rows.push({ metric: 'cpToRawRatio, highest round', value: Math.max(...ratios), unit: 'x' });
      rows.push({ metric: 'CP / the data disks written alone (stricter: counts the parity disk\'s share of a shared device against the CP), median', value: aloneRatio, unit: 'x' });
      figures['rawMembersDataShareMiBps'] = round(rawMembersMiBps);
      figures['rawDataDisksMiBps'] = round(rawMiBps);
      figures['cpWriteMiBps'] = round(cpMiBps);
      figures['cpToRawRatio'] = round(ratio, 3);
      figures['cpToRawRatioRounds'] = ratios.map((x) => round(x, 3)).join(' ');
      figures['cpToDataDisksAloneRatio'] = round(aloneRatio, 3);
      figures['cpToDataDisksAloneRatioRounds'] = aloneRatios.map((x) => round(x, 3)).join(' ');
      figures['rawCpuMs'] = round(median(rawCpuMs));
      figures['cpCpuMs'] = round(median(cpCpuMs));
      rows.push({ metric: `CPU time (all threads) of the raw writes, median`, value: median(rawCpuMs), unit: 'ms' });
      rows.push({ metric: `CPU time (all threads) of the CP, median`, value: median(cpCpuMs), unit: 'ms' });
      rows.push({ metric: 'CP freeze, median', value: median(freezeMs), unit: 'ms' });
      figures['cpFreezeMsMedian'] = round(median(freezeMs));
      const st = fs.lastCpStats;
      if (st !== undefined) {
        rows.push({ metric: 'CP freeze (in-memory snapshot into stripe buffers), last round', value: st.freezeMs, unit: 'ms' });
        rows.push({ metric: 'CP write (stripes, flush, superblock, flush), last round', value: st.writeMs, unit: 'ms' });
        figures['cpFreezeMs'] = round(st.freezeMs);
        figures['cpWriteMs'] = round(st.writeMs);
        figures['cpBlocks'] = st.blocks;
      }

      // 3. Small files: create + 4 KiB write, spread over directories of 1000, then a CP.
      const t0 = realClock.nowMs();
      const dirs: InodeRef[] = [];
      for (let i = 0; i < fileCount; i++) {
        if (i % 1000 === 0) {
          const d = fs.allocInode();
          await fs.apply({ op: 'mkdir', dir: fs.rootIno, name: `d${i / 1000}`, attrs: {}, newIno: d.ino, newGen: d.gen, time: { sec: 3, nsec: 0 }, cred });
          dirs.push(d);
        }
        const n = fs.allocInode();
        await fs.apply({ op: 'create', dir: dirs[dirs.length - 1] as InodeRef, name: `f${i}`, how: 'guarded', attrs: {}, newIno: n.ino, newGen: n.gen, time: { sec: 3, nsec: i }, cred });
        await fs.apply({ op: 'write', target: n, offset: 0, data: chunk.subarray(0, 4096), time: { sec: 3, nsec: i }, cred });
      }
      const applyMs = realClock.nowMs() - t0;
      await fs.takeCp();
      const createMs = realClock.nowMs() - t0;
      rows.push({ metric: `small-file creates (create + 4 KiB write), ${fileCount} files, including the CP`, value: fileCount / (createMs / 1000), unit: 'files/s' });
      rows.push({ metric: 'small-file creates, in memory before the CP', value: fileCount / (applyMs / 1000), unit: 'files/s' });
      figures['smallFileCreatesPerSec'] = round(fileCount / (createMs / 1000));

      // 4. Sequential read of the big file after a remount (cold cache), 1 MiB reads.
      await fs.close();
      fs = await CowFs.mount(volume, { cachePagesMax: 4096 });
      const r0 = realClock.nowMs();
      for (let off = 0; off < cpBytes; off += MiB) {
        const r = await fs.read(big, off, MiB);
        if (r.data.length !== MiB || r.data[5] !== chunk[5]) throw new Error(`storage bench: read back wrong data at ${off}`);
      }
      const readMiBps = cpBytes / MiB / ((realClock.nowMs() - r0) / 1000);
      rows.push({ metric: 'sequential read of the big file after a remount, 1 MiB reads', value: readMiBps, unit: 'MiB/s' });
      figures['seqReadMiBps'] = round(readMiBps);
      await fs.close();
      await volume.close();

      // 5. Rebuild of one data disk onto the spare (overwrites the volume).
      const rebuild = await measureRebuild({
        clock: realClock,
        timers: realTimers,
        prng: new Prng(2),
        members,
        spare,
        stripeUnitBytes,
        stripeCountMax: Math.floor((diskBytes / 2) / stripeUnitBytes),
        ...opt,
      });
      const rebuildMiBps = rebuild.bytesPerSec / MiB;
      rows.push({ metric: `rebuild onto the spare (${rebuild.bytesRebuilt / MiB} MiB)`, value: rebuildMiBps, unit: 'MiB/s' });
      figures['rebuildMiBps'] = round(rebuildMiBps);
      figures['fullStripeWriteMiBps'] = round(rebuild.fillBytesPerSec / MiB);
      rows.push({ metric: 'RAID full-stripe writes alone (1 MiB per disk, one at a time)', value: rebuild.fillBytesPerSec / MiB, unit: 'MiB/s' });
      // How much of what the RAID layer itself can write the CP achieves: the file system's
      // own overhead, apart from the RAID layer's.
      const cpToRaid = (figures['cpWriteMiBps'] as number) / (rebuild.fillBytesPerSec / MiB);
      rows.push({ metric: 'CP bandwidth / RAID full-stripe bandwidth', value: cpToRaid, unit: 'x' });
      figures['cpToRaidRatio'] = round(cpToRaid, 3);
      figures['loadAverage1mEnd'] = round(loadavg()[0] ?? 0, 2);
      notes.push(`CP writer: cpWriteBytesMax ${cpWriteBytes / MiB} MiB, cpWriteConcurrencyMax ${cpConcurrency} (file system defaults ${cowFsDefaults.cpWriteBytesMax / MiB} MiB, ${cowFsDefaults.cpWriteConcurrencyMax}); raw writes in the same shape`);
      notes.push(`RAID gather + parity of CP writes: ${gatherStripesAsyncInstalled() ? 'on the libuv thread pool (gatherStripesAsync)' : 'on the main thread'} (--gather thread|main)`);
      notes.push(`disks: ${memberCount} members + 1 spare, ${diskBytes / MiB} MiB files in ${dir}; stripe unit ${stripeUnitBytes / 1024} KiB`);
      notes.push(`load average (1 min) ${figures['loadAverage1mStart']} at the start, ${figures['loadAverage1mEnd']} at the end, on ${cpus().length} CPUs: the host is shared, so compare ratios, not absolute figures`);
    } finally {
      await installGatherStripesAsync(undefined);
      profiler?.disconnect();
      for (const d of disks as BlockDevice[]) await d.close();
      if (owned) await rm(dir, { recursive: true, force: true });
    }
    return { rows, figures, notes };
  },
};

function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
