// Layout of the reserved start of every shared disk: the RAID label and the mailbox
// region used by the HA status protocol. Everything from `raidDataOffsetBytes` on belongs
// to RAID. (Formats of the label and mailbox records: docs/formats.md.)

export const diskLayout = {
  /** The disk label (storage/raid): one 4 KiB record at offset 0. */
  labelOffsetBytes: 0,
  labelBytes: 4096,
  /** The mailbox region (ha/): one 4 KiB slot per blade (blade index 0 or 1). */
  mailboxOffsetBytes: 64 * 1024,
  mailboxSlotBytes: 4096,
  mailboxSlotCount: 2,
  /** The RAID write-intent record (storage/raid/intent.ts): one 4 KiB record. */
  raidIntentOffsetBytes: 128 * 1024,
  raidIntentBytes: 4096,
  /** First byte of the RAID data area. */
  raidDataOffsetBytes: 1024 * 1024,
} as const;

export function mailboxSlotOffset(bladeIndex: 0 | 1): number {
  return diskLayout.mailboxOffsetBytes + bladeIndex * diskLayout.mailboxSlotBytes;
}
