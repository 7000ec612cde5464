// Runs the GPIO contract against the rig driver: lines of the rig's emulated board reached
// over a real rig control channel (Unix socket), with the board's test jumper as loopback.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gpioContract } from './gpio.contract.ts';
import { RigControlServer } from '../../rig/control/server.ts';
import { RigHardware } from '../../rig/hw/blade-hw.ts';
import { rigGpioLines } from '../../rig/hw/wiring.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';
import { openRigGpio, rigGpioOpener } from '../../firmware/ts/hal/gpio/rig/rig-gpio.ts';
import { openBoardGpio } from '../../firmware/ts/board/devices.ts';
import type { Board } from '../../firmware/ts/board/schema.ts';

interface RigGpioSetup {
  server: RigControlServer;
  hw: RigHardware;
  client: RigControlClient;
  powerLog: string[];
  socketPath: string;
  dispose(): Promise<void>;
}

async function rigGpioSetup(): Promise<RigGpioSetup> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-riggpio-'));
  const server = new RigControlServer(path.join(dir, 'control.sock'));
  const powerLog: string[] = [];
  const hw = new RigHardware(server, {
    power: {
      cut: async (b) => void powerLog.push(`cut ${b}`),
      restore: async (b) => void powerLog.push(`restore ${b}`),
    },
  });
  await server.start();
  const client = new RigControlClient({ socketPath: path.join(dir, 'control.sock'), blade: 'a' });
  await client.connect();
  return {
    server,
    hw,
    client,
    powerLog,
    socketPath: path.join(dir, 'control.sock'),
    dispose: async () => {
      await client.close();
      hw.close();
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until the rig's edge events for what was written so far have arrived (a round trip after the edge latency). */
const settleEdges = async (client: RigControlClient): Promise<void> => {
  await new Promise((r) => setTimeout(r, 5));
  await client.request('ping');
};

gpioContract('rig (control channel)', async ({ inputActiveLow }) => {
  const s = await rigGpioSetup();
  const output = await openRigGpio(s.client, { line: rigGpioLines.jumperOut, direction: 'out', name: 'jumper-out' });
  const input = await openRigGpio(s.client, { line: rigGpioLines.jumperIn, direction: 'in', activeLow: inputActiveLow, name: 'jumper-in' });
  return {
    output,
    input,
    settle: () => settleEdges(s.client),
    dispose: async () => {
      await output.close();
      await input.close();
      await s.dispose();
    },
  };
});

describe('rig GPIO driver', () => {
  it('refuses lines the rig board does not have, or with the wrong direction', async () => {
    const s = await rigGpioSetup();
    try {
      await expect(openRigGpio(s.client, { line: 8, direction: 'out' })).rejects.toMatchObject({ code: 'ERR_GPIO_INVALID_ARGUMENT' });
      await expect(openRigGpio(s.client, { line: rigGpioLines.powerFail, direction: 'out' })).rejects.toMatchObject({ code: 'ERR_GPIO_DIRECTION' });
      await expect(openRigGpio(s.client, { line: -1, direction: 'in' })).rejects.toMatchObject({ code: 'ERR_GPIO_INVALID_ARGUMENT' });
    } finally {
      await s.dispose();
    }
  });

  it('reports every edge across repeated subscribe / unsubscribe cycles (one watcher per edge)', async () => {
    const s = await rigGpioSetup();
    try {
      const output = await openRigGpio(s.client, { line: rigGpioLines.jumperOut, direction: 'out' });
      const input = await openRigGpio(s.client, { line: rigGpioLines.jumperIn, direction: 'in' });
      let missed = 0;
      for (let i = 0; i < 60; i++) {
        const v = ((i + 1) & 1) as 0 | 1;
        const seen = await Promise.race([
          new Promise<boolean>((resolve) => {
            const off = input.watch('both', (x) => {
              if (x !== v) return;
              off();
              resolve(true);
            });
            void output.write(v);
          }),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000)),
        ]);
        if (!seen) missed++;
      }
      expect(missed).toBe(0);
    } finally {
      await s.dispose();
    }
  });

  it('two drivers of one blade watching the same input (two connections): one unsubscribing leaves the other its edges', async () => {
    const s = await rigGpioSetup();
    const second = new RigControlClient({ socketPath: s.socketPath, blade: 'a' });
    await second.connect();
    try {
      const output = await openRigGpio(s.client, { line: rigGpioLines.jumperOut, direction: 'out' });
      const first = await openRigGpio(s.client, { line: rigGpioLines.jumperIn, direction: 'in' });
      const other = await openRigGpio(second, { line: rigGpioLines.jumperIn, direction: 'in' });
      const seen: number[] = [];
      const offFirst = first.watch('both', () => undefined);
      other.watch('both', (v) => seen.push(v));
      await second.request('ping');
      offFirst();
      await first.close();
      await output.write(1);
      await settleEdges(second);
      await settleEdges(s.client);
      expect(seen).toEqual([1]);
      await other.close();
    } finally {
      await second.close();
      await s.dispose();
    }
  });

  it('a failed control channel is ERR_GPIO_IO, not a hang', async () => {
    const s = await rigGpioSetup();
    const line = await openRigGpio(s.client, { line: rigGpioLines.ledStatus, direction: 'out' });
    s.server.disconnect('a');
    await new Promise((r) => setTimeout(r, 20));
    await expect(line.write(1)).rejects.toMatchObject({ code: 'ERR_GPIO_IO', kind: 'io' });
    await expect(line.read()).rejects.toMatchObject({ code: 'ERR_GPIO_IO' });
    await s.dispose();
  });

  it('opens a rig board descriptor\'s lines through openBoardGpio; outputs start inactive and the rig sees the LEDs', async () => {
    const s = await rigGpioSetup();
    try {
      const spec = (line: number, activeLow = false): { chip: string; line: number; activeLow: boolean } => ({ chip: 'rig', line, activeLow });
      const board = {
        gpio: {
          driver: 'rig',
          powerFail: spec(rigGpioLines.powerFail, true),
          partnerReset: spec(rigGpioLines.partnerReset, true),
          leds: { status: spec(rigGpioLines.ledStatus), fault: spec(rigGpioLines.ledFault, true) },
          muxSelect: {},
        },
      } as unknown as Board;
      const g = await openBoardGpio(board, rigGpioOpener(s.client));
      expect(s.hw.board('a').level(rigGpioLines.ledFault)).toBe(1); // active-low LED, off
      await g.leds.get('status')?.write(1);
      await g.leds.get('fault')?.write(1);
      expect(s.hw.board('a').level(rigGpioLines.ledStatus)).toBe(1);
      expect(s.hw.board('a').level(rigGpioLines.ledFault)).toBe(0);
      // Active-low lines idle high: the supply is good and the partner is not held in reset.
      expect(await g.powerFail?.read()).toBe(0);
      expect(s.hw.board('a').level(rigGpioLines.partnerReset)).toBe(1);
      expect(s.powerLog).toEqual([]);
      await g.partnerReset?.write(1);
      await g.partnerReset?.write(0);
      await s.hw.settled();
      expect(s.powerLog).toEqual(['cut b', 'restore b']);
      await g.close();
    } finally {
      await s.dispose();
    }
  });
});
