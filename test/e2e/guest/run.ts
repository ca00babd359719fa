import { existsSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { execa } from 'execa';
import { BEGIN_MARKER, END_MARKER, nonce as makeNonce } from './build.js';

/**
 * Boots the guest built by build.ts under qemu (TCG, no KVM), runs one command in it and returns
 * its exit code and the serial console. The guest reaches the host's 127.0.0.1 as 10.0.2.2 (qemu
 * user-net); it has no other network.
 */

export const QEMU = '/usr/bin/qemu-system-x86_64';
/** x86's COMMAND_LINE_SIZE is 2048 including the terminating NUL. */
const MAX_CMDLINE = 2047;

export interface RunInGuestOptions {
  kernel: string;
  initrd: string;
  payloadDisk: string;
  /** argv run in the guest after setup (e.g. ['/payload/bin/node', '/payload/app/x.js']); default `sh /payload/run.sh`. */
  command?: string[];
  /** Hard deadline for boot + command + poweroff; qemu is killed then. */
  timeoutMs: number;
  memoryMb?: number;
  /** Extra kernel command-line words. */
  append?: string[];
  /** Extra qemu arguments. */
  qemuArgs?: string[];
  /** Called with each console chunk as it arrives (e.g. process.stdout.write for live output). */
  onConsole?: (chunk: string) => void;
}

export interface GuestResult {
  exitCode: number;
  /** The whole serial console (kernel + /init + command), \r removed. */
  console: string;
  /** Only what the command printed: the console between the begin and end markers. */
  output: string;
  durationMs: number;
}

export class GuestError extends Error {
  constructor(
    message: string,
    readonly console: string,
  ) {
    super(message);
    this.name = 'GuestError';
  }
}

export async function runInGuest(opts: RunInGuestOptions): Promise<GuestResult> {
  for (const f of [opts.kernel, opts.initrd, opts.payloadDisk]) {
    if (!existsSync(f)) throw new Error(`${f} does not exist`);
  }
  if (!existsSync(QEMU)) throw new Error(`${QEMU} is missing: call ensureGuestPackages() first`);
  const id = makeNonce();
  const append = ['console=ttyS0', 'quiet', 'panic=-1', `stowage.nonce=${id}`, ...(opts.append ?? [])];
  if (opts.command && opts.command.length > 0) {
    append.push(`stowage.argv=${opts.command.map((a) => Buffer.from(a).toString('base64')).join(',')}`);
  }
  const cmdline = append.join(' ');
  if (cmdline.length > MAX_CMDLINE) {
    throw new Error(
      `kernel command line is ${cmdline.length} bytes (max ${MAX_CMDLINE}): put the command in a script on the payload`,
    );
  }
  if (/,/.test(opts.payloadDisk))
    throw new Error(`qemu -drive cannot take a path with a comma: ${opts.payloadDisk}`);

  const args = [
    '-accel',
    'tcg',
    '-m',
    String(opts.memoryMb ?? 1024),
    '-smp',
    '1',
    '-nographic',
    '-no-reboot',
    '-kernel',
    opts.kernel,
    '-initrd',
    opts.initrd,
    '-append',
    cmdline,
    '-netdev',
    'user,id=n0',
    '-device',
    'virtio-net-pci,netdev=n0,romfile=',
    '-drive',
    `file=${opts.payloadDisk},format=raw,if=virtio,readonly=on`,
    // Entropy for node's startup (getrandom) without waiting on the jitter entropy collector.
    '-device',
    'virtio-rng-pci',
    ...(opts.qemuArgs ?? []),
  ];

  const started = Date.now();
  const qemu = execa(QEMU, args, {
    reject: false,
    stdin: 'pipe', // kept open and unused: -nographic puts the serial console on stdio
    buffer: false,
    cleanup: true,
  });
  let text = '';
  const endRe = new RegExp(`${END_MARKER} ${id} exit=(\\d+)`);
  let exitCode: number | undefined;
  let resolveMarker: () => void = () => {};
  const markerSeen = new Promise<void>((r) => {
    resolveMarker = r;
  });
  // The serial console can deliver a multi-byte character split over chunks.
  const decoders = { out: new StringDecoder('utf8'), err: new StringDecoder('utf8') };
  const onData = (decoder: StringDecoder, buf: Buffer) => {
    const chunk = decoder.write(buf).replace(/\r/g, '');
    text += chunk;
    opts.onConsole?.(chunk);
    if (exitCode === undefined) {
      // Only the new text (plus a marker's length before it): the console may come byte by byte.
      const m = endRe.exec(text.slice(Math.max(0, text.length - chunk.length - 120)));
      if (m) {
        exitCode = Number(m[1]);
        resolveMarker();
      }
    }
  };
  qemu.stdout?.on('data', (b: Buffer) => onData(decoders.out, b));
  qemu.stderr?.on('data', (b: Buffer) => onData(decoders.err, b));

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), opts.timeoutMs);
  });
  try {
    const first = await Promise.race([qemu.then(() => 'exited' as const), markerSeen, timedOut]);
    if (first === 'timeout') {
      qemu.kill('SIGKILL');
      await qemu;
      throw new GuestError(
        `guest did not finish within ${opts.timeoutMs} ms; console tail:\n${tail(text)}`,
        text,
      );
    }
    if (exitCode !== undefined) {
      // The marker is out; /init powers off right after. Give it a moment, then make sure.
      const gone = await Promise.race([
        qemu.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 10_000).unref()),
      ]);
      if (!gone) {
        qemu.kill('SIGKILL');
        await qemu;
      }
    } else {
      const res = await qemu;
      // Output may still have been buffered in the pipe when the process exited.
      if (exitCode === undefined) {
        throw new GuestError(
          `qemu exited (${res.exitCode ?? res.signal}) without the end marker; console tail:\n${tail(text)}`,
          text,
        );
      }
    }
  } finally {
    clearTimeout(timer);
    if (qemu.exitCode === null && !qemu.killed) qemu.kill('SIGKILL');
  }
  const begin = text.indexOf(`${BEGIN_MARKER} ${id}\n`);
  const end = text.search(endRe);
  const output =
    begin >= 0 && end > begin ? text.slice(begin + BEGIN_MARKER.length + id.length + 2, end) : '';
  return { exitCode, console: text, output, durationMs: Date.now() - started };
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
