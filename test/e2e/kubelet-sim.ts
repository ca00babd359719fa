import { mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'stowage.js');

export interface FlexResult {
  reply: Record<string, unknown>;
  exitCode: number;
  /** stdout and stderr as kubelet reads them: combined, in order. */
  output: string;
}

/** Installs the flexvolume drivers with the real CLI, as an operator (or the DaemonSet) does. */
export async function installDrivers(pluginDir: string, drivers: string[]): Promise<void> {
  const res = await execa(
    'node',
    ['--no-warnings', BIN, 'flexvolume', 'install', '--dir', pluginDir, '--drivers', drivers.join(',')],
    { reject: false, timeout: 60_000, stdin: 'ignore' },
  );
  expect(res.exitCode, String(res.stderr)).toBe(0);
}

/**
 * kubelet and the controller-manager as the flexvolume driver sees them: each call runs the
 * installed executable as a separate process, reads stdout+stderr together and requires exactly
 * one JSON object whose status matches the exit code. Paths are kubelet's own layout.
 */
export class KubeletSim {
  constructor(
    readonly opts: {
      pluginDir: string;
      kubeletDir: string;
      driver: string;
      env: Record<string, string>;
    },
  ) {}

  get executable(): string {
    return join(this.opts.pluginDir, `stowage~${this.opts.driver}`, this.opts.driver);
  }

  async call(args: string[], env: Record<string, string> = {}): Promise<FlexResult> {
    const res = await execa(this.executable, args, {
      reject: false,
      all: true,
      stdin: 'ignore',
      timeout: 120_000,
      env: { ...this.opts.env, ...env },
    });
    const output = String(res.all ?? '');
    let reply: unknown;
    try {
      reply = JSON.parse(output);
    } catch {
      throw new Error(
        `${this.opts.driver} ${args[0]}: output is not exactly one JSON object: ${JSON.stringify(output)}`,
      );
    }
    expect(reply, output).toBeTypeOf('object');
    const status = (reply as { status?: unknown }).status;
    expect(['Success', 'Failure', 'Not supported'], output).toContain(status);
    const exitCode = res.exitCode ?? -1;
    expect(exitCode, output).toBe(status === 'Failure' ? 1 : 0);
    return { reply: reply as Record<string, unknown>, exitCode, output };
  }

  /** Calls and requires Success; returns the reply. */
  async ok(args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
    const res = await this.call(args, env);
    expect(res.reply, res.output).toMatchObject({ status: 'Success' });
    return res.reply;
  }

  /** Calls and requires Failure; returns the message. */
  async fails(args: string[], env: Record<string, string> = {}): Promise<string> {
    const res = await this.call(args, env);
    expect(res.reply, res.output).toMatchObject({ status: 'Failure' });
    expect(res.reply.message).toBeTypeOf('string');
    return res.reply.message as string;
  }

  podDir(podUid: string, volume: string): string {
    return join(this.opts.kubeletDir, 'pods', podUid, 'volumes', `stowage~${this.opts.driver}`, volume);
  }

  deviceMountPath(volumeName: string): string {
    return join(
      this.opts.kubeletDir,
      'plugins',
      'kubernetes.io',
      'flexvolume',
      'stowage',
      this.opts.driver,
      'mounts',
      volumeName,
    );
  }

  /** kubelet creates the directory (0750) before mount and removes it after unmount. */
  async mountPod(podUid: string, volume: string, options: Record<string, string>) {
    const dir = this.podDir(podUid, volume);
    await mkdir(dir, { recursive: true, mode: 0o750 });
    return this.ok(['mount', dir, JSON.stringify(podOptions(podUid, options))]);
  }

  async unmountPod(podUid: string, volume: string) {
    const dir = this.podDir(podUid, volume);
    const reply = await this.ok(['unmount', dir]);
    await rmdir(dir).catch(() => undefined);
    return reply;
  }
}

/** The options kubelet sends on every call, then the PV's own (which win). */
export function pvOptions(
  pv: string,
  options: Record<string, string>,
  readwrite = 'rw',
): Record<string, string> {
  return {
    'kubernetes.io/fsType': '',
    'kubernetes.io/readwrite': readwrite,
    'kubernetes.io/pvOrVolumeName': pv,
    ...options,
  };
}

/** What kubelet adds for mount: the pod's identity. */
export function podOptions(podUid: string, options: Record<string, string>): Record<string, string> {
  return {
    'kubernetes.io/pod.name': `pod-${podUid.slice(0, 8)}`,
    'kubernetes.io/pod.namespace': 'default',
    'kubernetes.io/pod.uid': podUid,
    'kubernetes.io/serviceAccount.name': 'default',
    ...options,
  };
}
