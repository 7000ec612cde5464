// The NFS section of the blade configuration (validated with zod): listen address, ports,
// transports, limits and the exports table. The composition root maps each export's
// `volume` to the FileSystem that serves it and passes the result to startNfsServer().
import { z } from 'zod';
import { ANON_ID_DEFAULT, ExportPolicy } from './core/exports.ts';
import { rpcServerLimits } from './rpc-server.ts';
import type { FileSystem } from '../fsapi/ops.ts';
import type { ExportConfig, NfsServerOptions } from './server.ts';

const port = z.number().int().min(0).max(65535);
const id32 = z.number().int().min(0).max(0xffffffff);

export const nfsExportSchema = z
  .object({
    /** The path clients mount. */
    path: z.string().regex(/^\/[^\0]*$/, 'an absolute path'),
    /** Which volume (file system) it serves; the composition resolves the name. */
    volume: z.string().min(1),
    clients: z.array(z.string()).min(1).default(['*']),
    readOnly: z.boolean().default(false),
    rootSquash: z.boolean().default(true),
    allSquash: z.boolean().default(false),
    anonUid: id32.default(ANON_ID_DEFAULT),
    anonGid: id32.default(ANON_ID_DEFAULT),
  })
  .superRefine((e, ctx) => {
    try {
      new ExportPolicy(e);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err), path: ['clients'] });
    }
  });

const limitsSchema = z
  .object(Object.fromEntries(Object.keys(rpcServerLimits).map((k) => [k, z.number().int().positive()])) as Record<keyof typeof rpcServerLimits, z.ZodNumber>)
  .partial();

export const nfsConfigSchema = z.object({
  host: z.string().default('0.0.0.0'),
  /** 2049 / 20048 / 111 are the usual ports; the rig uses unprivileged ones (0 = ephemeral). */
  ports: z.object({ nfs: port.default(2049), mount: port.default(20048), portmap: port.optional() }).default({ nfs: 2049, mount: 20048 }),
  udp: z.boolean().default(true),
  limits: limitsSchema.default({}),
  exports: z.array(nfsExportSchema).min(1),
});

export type NfsConfig = z.infer<typeof nfsConfigSchema>;

/** Validates the NFS section; throws a ZodError that names the offending field. */
export function parseNfsConfig(raw: unknown): NfsConfig {
  return nfsConfigSchema.parse(raw);
}

/** Server options from a parsed config: `volumes` resolves each export's volume name. */
export function serverOptionsFromConfig(
  cfg: NfsConfig,
  volumes: (name: string) => FileSystem,
  rest: Omit<NfsServerOptions, 'exports' | 'host' | 'ports' | 'udp' | 'limits'>,
): NfsServerOptions {
  const exports: ExportConfig[] = cfg.exports.map((e) => ({
    path: e.path,
    fs: volumes(e.volume),
    clients: e.clients,
    readOnly: e.readOnly,
    rootSquash: e.rootSquash,
    allSquash: e.allSquash,
    anonUid: e.anonUid,
    anonGid: e.anonGid,
  }));
  const ports: NonNullable<NfsServerOptions['ports']> = { nfs: cfg.ports.nfs, mount: cfg.ports.mount };
  if (cfg.ports.portmap !== undefined) ports.portmap = cfg.ports.portmap;
  const limits: Partial<Record<keyof typeof rpcServerLimits, number>> = {};
  for (const [k, v] of Object.entries(cfg.limits)) if (v !== undefined) limits[k as keyof typeof rpcServerLimits] = v;
  return { ...rest, exports, host: cfg.host, ports, udp: cfg.udp, limits };
}
