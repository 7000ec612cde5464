// The board descriptor: every example in boards/ validates, the two blades of a pair agree,
// validation errors name the field, and no portable code (core/, hal/) names a board.
import { describe, expect, it } from 'vitest';
import { readFile, readdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BoardError, bladeIndex, loadBoard, parseBoard, partnerBlade } from '../../firmware/ts/board/board.ts';
import type { Board } from '../../firmware/ts/board/schema.ts';

const repo = resolve(import.meta.dirname, '../..');
const boardsDir = join(repo, 'boards');

async function example(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(boardsDir, `${name}.json`), 'utf8')) as Record<string, unknown>;
}

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseBoard(input);
  } catch (e) {
    expect(e).toBeInstanceOf(BoardError);
    expect((e as BoardError).code).toBe('ERR_BOARD_INVALID');
    return [...(e as BoardError).issues];
  }
  throw new Error('expected the board to be rejected');
}

describe('board examples', () => {
  it('every file in boards/ is a valid descriptor', async () => {
    const files = (await readdir(boardsDir)).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(['process-rig-a.json', 'process-rig-b.json', 'qemu-rig-a.json', 'qemu-rig-b.json', 'raspberry-pi-pair-a.json', 'raspberry-pi-pair-b.json']);
    for (const f of files) await expect(loadBoard(join(boardsDir, f)), f).resolves.toMatchObject({ version: 1 });
  });

  for (const pair of ['process-rig', 'qemu-rig', 'raspberry-pi-pair']) {
    it(`${pair}: the two blades describe one pair consistently`, async () => {
      const a = await loadBoard(join(boardsDir, `${pair}-a.json`));
      const b = await loadBoard(join(boardsDir, `${pair}-b.json`));
      expect([bladeIndex(a), bladeIndex(b)]).toEqual([0, 1]);
      expect(partnerBlade(a)).toBe('b');
      expect(a.identity.pairId).toBe(b.identity.pairId);
      expect(a.identity.systemId).toBe(b.identity.systemId);
      expect(a.network.interconnect.partner).toBe(b.network.interconnect.self);
      expect(b.network.interconnect.partner).toBe(a.network.interconnect.self);
      expect(a.network.interconnect.port).toBe(b.network.interconnect.port);
      const ids = (board: Board, set: 'own' | 'partner'): string[] => board.disks[set].map((d) => d.id);
      expect(ids(a, 'own')).toEqual(ids(b, 'partner'));
      expect(ids(a, 'partner')).toEqual(ids(b, 'own'));
      // Same client networks on both blades (CF-1), different addresses.
      expect(a.network.ports.map((p) => p.name)).toEqual(b.network.ports.map((p) => p.name));
      expect(a.network.ports.map((p) => p.address)).not.toEqual(b.network.ports.map((p) => p.address));
    });
  }

  it('fills defaults (activeLow, LEDs, spare list, NFS ports)', async () => {
    const doc = await example('qemu-rig-a');
    const nfs = doc['nfs'] as Record<string, unknown>;
    nfs['ports'] = {};
    const board = parseBoard(doc);
    expect(board.nfs.ports).toEqual({ nfs: 2049, mount: 20048, portmapper: 111 });
    expect(board.nfs.bindAddress).toBe('0.0.0.0');
    expect(board.gpio.muxSelect).toEqual({});
    expect(board.gpio.leds).toEqual({});
  });
});

describe('board validation errors', () => {
  it('name the field path and say what is wrong', async () => {
    const doc = await example('raspberry-pi-pair-a');
    const disks = doc['disks'] as { own: { uri: string }[] };
    (disks.own[1] as { uri: string }).uri = 'sdb';
    (doc['i2c'] as { gauge: { address: number } }).gauge.address = 0x90;
    (doc['serial'] as { baud: number }).baud = 12345;
    (doc['identity'] as { blade: string }).blade = 'c';
    const issues = issuesOf(doc);
    const byPath = new Map(issues.map((i) => [i.path, i.message]));
    expect(byPath.get('disks.own[1].uri')).toMatch(/absolute path .* or nbd:\/\/host:port\/export/);
    expect(byPath.get('i2c.gauge.address')).toMatch(/7-bit/);
    expect(byPath.get('serial.baud')).toMatch(/standard baud rate/);
    expect(byPath.has('identity.blade')).toBe(true);
    try {
      parseBoard(doc, 'boards/broken.json');
    } catch (e) {
      expect((e as Error).message).toContain('boards/broken.json: invalid board descriptor');
      expect((e as Error).message).toContain('  disks.own[1].uri: must be an absolute path');
    }
  });

  it('reject unknown fields (a typo is not silently ignored)', async () => {
    const doc = await example('process-rig-a');
    (doc['serial'] as Record<string, unknown>)['buad'] = 115200;
    expect(issuesOf(doc).map((i) => i.path)).toContain('serial');
  });

  it('catch cross-field mistakes: duplicate disk ids, GPIO lines used twice, MUX for an unknown disk, misplaced spares', async () => {
    const doc = await example('raspberry-pi-pair-a');
    const disks = doc['disks'] as { own: { id: string; role: string }[]; partner: { id: string }[] };
    (disks.partner[0] as { id: string }).id = (disks.own[0] as { id: string }).id;
    (disks.own[2] as { role: string }).role = 'spare';
    const gpio = doc['gpio'] as { leds: Record<string, { chip: string; line: number }>; muxSelect: Record<string, unknown> };
    gpio.leds['extra'] = { chip: 'pinctrl-bcm2711', line: 17 };
    gpio.muxSelect['zz'] = { chip: 'pinctrl-bcm2711', line: 40 };
    const issues = issuesOf(doc);
    const text = issues.map((i) => `${i.path}: ${i.message}`);
    expect(text).toContain('disks.partner[0].id: disk id a0 is already used by disks.own[0]');
    expect(text).toContain('disks.own[2].role: a spare belongs under disks.spare, not disks.own');
    expect(text).toContain('gpio.leds.extra: GPIO pinctrl-bcm2711:17 is already used by gpio.powerFail');
    expect(text).toContain('gpio.muxSelect.zz: no disk with id zz');
  });

  it('catch driver mismatches: rig drivers without a control path, FRAM without Linux I2C, linux I2C without a bus', async () => {
    const rig = await example('process-rig-a');
    delete rig['rigControl'];
    expect(issuesOf(rig).map((i) => i.path)).toContain('rigControl');
    const pi = await example('raspberry-pi-pair-a');
    (pi['i2c'] as Record<string, unknown>) = { driver: 'none' };
    expect(issuesOf(pi).map((i) => i.path)).toContain('nvram.driver');
    const pi2 = await example('raspberry-pi-pair-b');
    delete (pi2['i2c'] as Record<string, unknown>)['bus'];
    expect(issuesOf(pi2).map((i) => i.path)).toContain('i2c.bus');
  });

  it('loadBoard reports unreadable files and bad JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'twinblade-board-'));
    try {
      await expect(loadBoard(join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'ERR_BOARD_UNREADABLE' });
      await writeFile(join(dir, 'bad.json'), '{ "version": 1,');
      await expect(loadBoard(join(dir, 'bad.json'))).rejects.toMatchObject({ code: 'ERR_BOARD_INVALID', message: expect.stringContaining('not JSON') });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('portability', () => {
  it('nothing under core/ or hal/ names a board', async () => {
    const offenders: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name.endsWith('.ts')) {
          const text = await readFile(p, 'utf8');
          if (/raspberry|process-rig|qemu-rig|boards\/|firmware\/ts\/board/i.test(text)) offenders.push(p.slice(repo.length + 1));
        }
      }
    };
    await walk(join(repo, 'firmware/ts/core'));
    await walk(join(repo, 'firmware/ts/hal'));
    expect(offenders).toEqual([]);
  });
});

describe('opening a board\'s devices', () => {
  it('opens every GPIO line with its role\'s direction, inactive outputs and the board\'s polarity', async () => {
    const { openBoardGpio, boardGauge } = await import('../../firmware/ts/board/devices.ts');
    const { SimGpioChip } = await import('../../firmware/ts/hal/gpio/sim/sim-gpio.ts');
    const { VirtualTime } = await import('../../firmware/ts/hal/clock/sim/virtual.ts');
    const { SimI2cBus } = await import('../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts');
    const { SimMax17048 } = await import('../../firmware/ts/hal/i2c/sim/devices.ts');
    const board = await loadBoard(join(boardsDir, 'raspberry-pi-pair-a.json'));
    const vt = new VirtualTime();
    const chip = new SimGpioChip({ timers: vt.timers });
    const requests: string[] = [];
    const gpio = await openBoardGpio(board, async (req) => {
      requests.push(`${req.name}:${req.direction}`);
      return chip.open(req.spec.line, { direction: req.direction, activeLow: req.spec.activeLow, initial: req.initial, name: req.name });
    });
    expect(requests).toEqual(['powerFail:in', 'partnerReset:out', 'partnerPower:in', 'led.status:out', 'led.fault:out', 'mux.a0:out', 'mux.a1:out', 'mux.a2:out']);
    // partnerReset is active-low: inactive (logical 0) is a high pin, so the partner runs.
    expect(chip.level(27)).toBe(1);
    expect(await gpio.partnerReset?.read()).toBe(0);
    chip.drive(17, 0);
    expect(await gpio.powerFail?.read()).toBe(1);
    // partnerPower is active-low too (an optocoupler on the partner's rail pulls it down): low = power good.
    chip.drive(24, 0);
    expect(await gpio.partnerPower?.read()).toBe(1);
    chip.drive(24, 1);
    expect(await gpio.partnerPower?.read()).toBe(0);
    expect([...gpio.muxSelect.keys()]).toEqual(['a0', 'a1', 'a2']);
    await gpio.close();
    await expect(gpio.leds.get('status')?.read()).rejects.toMatchObject({ code: 'ERR_GPIO_CLOSED' });

    const bus = new SimI2cBus();
    bus.attach(0x36, new SimMax17048({ stateOfChargePercent: 90 }));
    expect((await boardGauge(board, bus)?.read())?.stateOfChargePercent).toBeCloseTo(90, 5);
    const qemu = await loadBoard(join(boardsDir, 'qemu-rig-a.json'));
    expect(boardGauge(qemu, bus)?.model).toBe('bq27441');
  });

  it('closes the lines already opened when one fails to open', async () => {
    const { openBoardGpio } = await import('../../firmware/ts/board/devices.ts');
    const board = await loadBoard(join(boardsDir, 'raspberry-pi-pair-b.json'));
    const closed: string[] = [];
    let n = 0;
    const err = await openBoardGpio(board, async (req) => {
      if (++n === 3) throw Object.assign(new Error('line busy'), { code: 'ERR_GPIO_IO' });
      return { name: req.name, direction: req.direction, read: async () => 0, write: async () => undefined, watch: () => () => undefined, close: async () => void closed.push(req.name) };
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_GPIO_IO' });
    expect(closed).toEqual(['powerFail', 'partnerReset']);
  });
});

describe('board parsing robustness (property)', () => {
  it('any mutation of a valid descriptor either parses or throws a BoardError with issues, never anything else', async () => {
    const fc = (await import('fast-check')).default;
    const base = await example('raspberry-pi-pair-a');
    // Every path to a leaf or container in the example.
    const paths: (string | number)[][] = [];
    const walk = (v: unknown, p: (string | number)[]): void => {
      paths.push(p);
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
      else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
    };
    walk(base, []);
    fc.assert(
      fc.property(fc.constantFrom(...paths.filter((p) => p.length > 0)), fc.jsonValue({ maxDepth: 2 }), fc.boolean(), (path, value, remove) => {
        const doc = structuredClone(base) as Record<string | number, unknown>;
        let parent: Record<string | number, unknown> = doc;
        for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
        const last = path[path.length - 1] as string | number;
        if (remove) delete parent[last];
        else parent[last] = value;
        try {
          parseBoard(doc);
        } catch (e) {
          expect(e).toBeInstanceOf(BoardError);
          expect((e as BoardError).issues.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 300 },
    );
  });
});
