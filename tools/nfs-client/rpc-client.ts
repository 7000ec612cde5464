// The RPC client of the NFS client library. It lives in firmware/ts/nfs/rpc-client.ts because
// the server uses it too (to register with a portmapper); this re-export keeps the library whole.
export * from '../../firmware/ts/nfs/rpc-client.ts';
