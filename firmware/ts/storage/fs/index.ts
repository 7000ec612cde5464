// Public API of the copy-on-write file system: mkfs, mount, fsck, limits and formats.
export { CowFs, mkfs, attrOf, type CowFsOptions, type MkfsOptions, type CpInfo, type FsProblem } from './cowfs.ts';
export { fsck, scanCp, newestSuperblock, FsckCode, type FsckProblem, type CpScan } from './fsck.ts';
export { cowFsDefaults, fsInfo, pathConf } from './limits.ts';
export { CowFsErrorCode, FsCorruptError, FsCorruptReason, SuperblockErrorCode, fsBlockBytes } from './format.ts';
export { MemVolume } from './mem-volume.ts';
