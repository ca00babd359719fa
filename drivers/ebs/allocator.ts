/**
 * Chooses EBS device names for attachments, per instance. Pure: no I/O, the caller passes the
 * names the instance already uses. A name is reserved while its attach is in flight (two attaches
 * must never race for one name) and tainted after an attach with it failed or stuck: reusing such
 * a name can leave the next volume "attaching" forever.
 */
export const DEFAULT_DEVICE_NAMES: readonly string[] = [
  ...'fghijklmnopqrstuvwxyz'.split('').map((c) => `/dev/xvd${c}`),
  ...'abcdefghijklmnopqrstuvwxyz'.split('').map((c) => `/dev/xvdb${c}`),
];

export class DeviceAllocator {
  private readonly reserved = new Map<string, Set<string>>();
  private readonly tainted = new Map<string, Set<string>>();

  constructor(private readonly candidates: readonly string[] = DEFAULT_DEVICE_NAMES) {}

  /** Reserves and returns the first free name, or undefined when every candidate is taken. */
  allocate(instanceId: string, inUse: Iterable<string>): string | undefined {
    const used = new Set([...inUse].map(canonical));
    const reserved = this.set(this.reserved, instanceId);
    const tainted = this.set(this.tainted, instanceId);
    for (const name of this.candidates) {
      const key = canonical(name);
      if (used.has(key) || reserved.has(key) || tainted.has(key)) continue;
      reserved.add(key);
      return name;
    }
    return undefined;
  }

  /** Ends the reservation (the attach finished, or failed and `taint` was called). */
  release(instanceId: string, name: string): void {
    this.reserved.get(instanceId)?.delete(canonical(name));
  }

  taint(instanceId: string, name: string): void {
    this.release(instanceId, name);
    this.set(this.tainted, instanceId).add(canonical(name));
  }

  isTainted(instanceId: string, name: string): boolean {
    return this.tainted.get(instanceId)?.has(canonical(name)) ?? false;
  }

  private set(map: Map<string, Set<string>>, instanceId: string): Set<string> {
    let s = map.get(instanceId);
    if (!s) {
      s = new Set();
      map.set(instanceId, s);
    }
    return s;
  }
}

/** /dev/sdf and /dev/xvdf name the same attachment point on EC2. */
export function canonical(name: string): string {
  return name.replace(/^\/dev\/(sd|xvd)/, '/dev/xvd');
}
