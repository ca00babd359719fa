import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * deploy/systemd/stowage.service runs the daemon on a Docker host. What a user relies on: the
 * sockets answer before dockerd starts (dockerd finds a plugin by its socket when it starts
 * containers with its volumes), the daemon alone gets SIGTERM on stop (mounts stay), and systemd
 * itself accepts every directive (it only warns, and ignores, what it does not know).
 */
const ROOT = join(import.meta.dirname, '..', '..');
const UNIT = join(ROOT, 'deploy', 'systemd', 'stowage.service');
const BIN = '/usr/local/bin/stowage';

type Unit = Record<string, Record<string, string[]>>;

/** systemd's unit syntax: [Section], Key=value (repeatable), # and ; comments, \ continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section: Record<string, string[]> | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++i]!.trim()}`;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1]!;
      unit[name] = unit[name] ?? {};
      section = unit[name];
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq <= 0) throw new Error(`not a unit file line: ${line}`);
    const key = line.slice(0, eq).trim();
    const values = section[key] ?? [];
    values.push(line.slice(eq + 1).trim());
    section[key] = values;
  }
  return unit;
}

/** The words of every value of a list directive (Before=a b, Before=c). */
function words(unit: Unit, section: string, key: string): string[] {
  return (unit[section]?.[key] ?? []).flatMap((v) => v.split(/\s+/).filter(Boolean));
}

function one(unit: Unit, section: string, key: string): string {
  const values = unit[section]?.[key] ?? [];
  expect(values, `[${section}] ${key}=`).toHaveLength(1);
  return values[0]!;
}

/** systemd time spans as used here: 90s, 2min, 1min 30s, 500ms, or bare seconds. */
function seconds(span: string): number {
  let total = 0;
  for (const part of span.trim().split(/\s+/)) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|sec|min|m|h)?$/.exec(part);
    if (!m) throw new Error(`not a time span: ${span}`);
    const n = Number(m[1]);
    total += { ms: n / 1000, s: n, sec: n, min: n * 60, m: n * 60, h: n * 3600 }[m[2] ?? 's']!;
  }
  return total;
}

function findOnPath(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/bin', '/usr/sbin'];
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}

describe('deploy/systemd/stowage.service', () => {
  const text = readFileSync(UNIT, 'utf8');
  const unit = parseUnit(text);

  it('has exactly the three sections of a service unit', () => {
    expect(Object.keys(unit).sort()).toEqual(['Install', 'Service', 'Unit']);
  });

  it('starts before dockerd, after the network is up, and is pulled in by either', () => {
    expect(words(unit, 'Unit', 'Before')).toContain('docker.service');
    expect(words(unit, 'Unit', 'After')).toContain('network-online.target');
    expect(words(unit, 'Unit', 'Wants')).toContain('network-online.target');
    // Ordered before docker, never after it (that would be a cycle, or dockerd first).
    expect(words(unit, 'Unit', 'After')).not.toContain('docker.service');
    // Not Requires=/BindsTo= on docker: stowage serves its sockets whether or not dockerd runs.
    expect(words(unit, 'Unit', 'Requires')).not.toContain('docker.service');
    expect(words(unit, 'Unit', 'BindsTo')).not.toContain('docker.service');
    const wantedBy = words(unit, 'Install', 'WantedBy');
    expect(wantedBy).toContain('multi-user.target');
    expect(wantedBy).toContain('docker.service');
  });

  it('runs `stowage daemon` from /usr/local/bin, where the install puts the CLI', () => {
    expect(one(unit, 'Service', 'Type')).toBe('simple');
    expect(one(unit, 'Service', 'ExecStart').split(/\s+/)).toEqual([BIN, 'daemon']);
    // The symlink's target is executed directly: it must be executable and find node itself.
    const target = join(ROOT, 'bin', 'stowage.js');
    expect(() => accessSync(target, constants.X_OK), `${target} must be executable`).not.toThrow();
    expect(readFileSync(target, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  });

  it('counts as started only once the sockets answer, within its start timeout', () => {
    const post = one(unit, 'Service', 'ExecStartPost').split(/\s+/);
    expect(post.slice(0, 3)).toEqual([BIN, 'ready', '--timeout']);
    expect(post).toHaveLength(4);
    const ready = seconds(post[3]!);
    expect(ready).toBeGreaterThan(0);
    // systemd would kill `ready` before it could report: the start must outlast its timeout.
    const startTimeout = seconds(unit.Service?.TimeoutStartSec?.[0] ?? '90s');
    expect(startTimeout).toBeGreaterThan(ready);
  });

  it('stops the daemon alone with SIGTERM, restarts it on failure, and reads an optional env file', () => {
    expect(one(unit, 'Service', 'KillMode')).toBe('mixed');
    expect(unit.Service?.KillSignal ?? ['SIGTERM']).toEqual(['SIGTERM']);
    expect(one(unit, 'Service', 'Restart')).toBe('on-failure');
    // "-": a host without the file still starts (the config file is optional too).
    expect(unit.Service?.EnvironmentFile).toContain('-/etc/stowage/stowage.env');
  });

  describe('systemd-analyze verify', () => {
    let dir: string;
    let analyze: string;
    beforeAll(async () => {
      const found = findOnPath('systemd-analyze');
      if (!found) {
        throw new Error(
          'systemd-analyze is missing: apt-get install systemd (it is only run offline, nothing is started)',
        );
      }
      analyze = found;
      dir = await mkdtemp(join(tmpdir(), 'stowage-unit-'));
      // verify also insists that ExecStart's binary exists: point it at a stand-in, so the unit's
      // directives are checked on a machine where stowage is not installed.
      const shim = join(dir, 'stowage');
      await writeFile(shim, '#!/bin/sh\nexit 0\n');
      await chmod(shim, 0o755);
    });
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    async function verify(name: string, unitText: string) {
      const file = join(dir, name);
      await writeFile(file, unitText.replaceAll(BIN, join(dir, 'stowage')));
      const res = await execa(analyze, ['verify', file], { reject: false, timeout: 60_000 });
      return { exitCode: res.exitCode, output: `${res.stdout}${res.stderr}`.trim() };
    }

    it('accepts every directive, without a warning', async () => {
      const res = await verify('stowage.service', text);
      expect(res.output).toBe('');
      expect(res.exitCode).toBe(0);
    });

    it('is a check that can fail: a misspelt directive and a bad value are reported', async () => {
      const broken = text.replace('KillMode=mixed', 'KillMode=mixd\nRestartSecs=2s');
      expect(broken).not.toBe(text);
      const res = await verify('stowage.service', broken);
      expect(res.output).toContain('mixd');
      expect(res.output).toContain('RestartSecs');
    });
  });
});
