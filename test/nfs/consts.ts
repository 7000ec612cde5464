// Protocol numbers the NFS suites share.
export { IPPROTO_TCP, IPPROTO_UDP, MOUNT_PROGRAM, MOUNT_V3 } from '../../firmware/ts/nfs/core/mount.ts';
export { NFS_PROGRAM as NFS_PROGRAM_FOR_TESTS } from '../../firmware/ts/nfs/core/nfs3.ts';
