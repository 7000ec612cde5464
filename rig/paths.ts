// Where a rig lives when started with the defaults, so that `rig` commands find it.
import path from 'node:path';

export const defaultRigDir = (): string => path.resolve(process.env.TWINBLADE_RIG_DIR ?? '.rig');
