/**
 * Crash points: named places between two steps that must each survive a SIGKILL (the record
 * written, the kernel not yet told; the kernel told, the record not yet updated). The crash
 * campaign (test/e2e/crash-campaign.test.ts) starts the daemon with STOWAGE_TEST_CRASH_AT=<name>
 * so that it dies at exactly that place, which random kill timing hits only by luck. Unset (always,
 * outside that test) a crash point is one string comparison.
 */
const armed = process.env.STOWAGE_TEST_CRASH_AT;

export const CRASH_POINTS = [
  'create:recorded',
  'create:noted',
  'create:provisioned',
  'local:image-written',
  'local:image-linked',
  'remove:marked',
  'remove:destroyed',
  'remove:abandoned',
  'mount:attached',
  'mount:mounted',
  'unmount:counted',
  'teardown:unmounted',
  'teardown:unrecorded',
  'publish:counted',
  'unpublish:unbound',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

export function crashPoint(name: CrashPoint): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL');
}
