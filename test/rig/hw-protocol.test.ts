// The rig hardware's control-channel ops under arbitrary arguments (raw requests, no driver in
// between): every request gets a result or an error with a stable code, the rig keeps serving,
// and nothing but the addressed blade's hardware changes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RigControlServer } from '../../rig/control/server.ts';
import { RigHardware } from '../../rig/hw/blade-hw.ts';
import { rigGpioLines } from '../../rig/hw/wiring.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';

const ops = [
  'gpio.open',
  'gpio.read',
  'gpio.write',
  'gpio.watch',
  'gpio.unwatch',
  'i2c.readByte',
  'i2c.writeByte',
  'i2c.readWord',
  'i2c.writeWord',
  'i2c.i2cRead',
  'i2c.i2cWrite',
  'i2c.writeThenRead',
] as const;

const stableCodes = new Set([
  'ERR_GPIO_INVALID_ARGUMENT',
  'ERR_GPIO_DIRECTION',
  'ERR_GPIO_IO',
  'ERR_I2C_INVALID_ARGUMENT',
  'ERR_I2C_NO_DEVICE',
  'ERR_I2C_IO',
  'ERR_RIGCTL_BAD_ARGS',
]);

describe('rig hardware ops under arbitrary arguments', () => {
  let dir: string;
  let server: RigControlServer;
  let hw: RigHardware;
  let client: RigControlClient;
  const power: string[] = [];

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-righwp-'));
    server = new RigControlServer(path.join(dir, 'control.sock'));
    hw = new RigHardware(server, { power: { cut: async (b) => void power.push(`cut ${b}`), restore: async (b) => void power.push(`restore ${b}`) } });
    await server.start();
    client = new RigControlClient({ socketPath: path.join(dir, 'control.sock'), blade: 'a' });
    await client.connect();
  });

  afterAll(async () => {
    await client.close();
    hw.close();
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('answers every request with a result or a stable error code, and keeps serving', async () => {
    const value = fc.oneof(
      fc.integer({ min: -2, max: 300 }),
      fc.constantFrom(0, 1, 0x36, 0x50, 0x21, 0xffff, 0x10000, 4096, 4097, Number.MAX_SAFE_INTEGER),
      fc.double(),
      fc.string({ maxLength: 8 }),
      fc.constantFrom('in', 'out', '00', '0a0b', 'zz', '0', null, true),
      fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b).toString('hex')),
    );
    const args = fc.record(
      { line: value, direction: value, value, address: value, register: value, length: value, data: value },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ops), args, async (op, a) => {
        try {
          await client.request(op, a as Record<string, unknown>);
        } catch (e) {
          expect(isTwinbladeError(e)).toBe(true);
          expect(stableCodes, `${op} ${JSON.stringify(a)}: ${(e as Error).message}`).toContain((e as { code: string }).code);
        }
      }),
      { numRuns: 300 },
    );
    await expect(client.request('ping')).resolves.toBe('pong');
    // Blade b's board was never touched, and no relay acted unless a's partner-reset was pulsed.
    expect(hw.board('b').outputLog).toEqual([]);
    const resets = hw.board('a').outputLog.filter((e) => e.line === rigGpioLines.partnerReset);
    if (resets.length === 0) expect(power).toEqual([]);
  });
});
