import { readFile } from 'node:fs/promises';
import type { CommandRunner } from './exec.js';

/** Loop devices: how the local driver turns an image file into a block device ("attach"). */
export interface LoopDevices {
  attach(file: string): Promise<string>;
  detach(device: string): Promise<void>;
  /** Loop devices currently backed by `file`. */
  findByFile(file: string): Promise<string[]>;
}

export class LosetupLoopDevices implements LoopDevices {
  constructor(
    private readonly runner: CommandRunner,
    private readonly timeoutMs: number,
  ) {}

  async attach(file: string): Promise<string> {
    const res = await this.runner.run('losetup', ['--find', '--show', '--', file], {
      timeoutMs: this.timeoutMs,
      what: `losetup of ${file}`,
    });
    return res.stdout.trim();
  }

  async detach(device: string): Promise<void> {
    await this.runner.run('losetup', ['--detach', device], {
      timeoutMs: this.timeoutMs,
      what: `losetup -d ${device}`,
    });
  }

  async findByFile(file: string): Promise<string[]> {
    const res = await this.runner.run(
      'losetup',
      ['--associated', file, '--noheadings', '--output', 'NAME,BACK-FILE', '--list'],
      {
        timeoutMs: this.timeoutMs,
        what: `losetup -j ${file}`,
      },
    );
    const devices: string[] = [];
    for (const line of res.stdout.split('\n')) {
      const [name] = line.trim().split(/\s+/);
      if (name?.startsWith('/dev/loop') && (await this.backs(name, file))) devices.push(name);
    }
    return devices;
  }

  // losetup -j matches by inode; confirm through sysfs so a recreated file is not mistaken.
  private async backs(device: string, file: string): Promise<boolean> {
    try {
      const back = await readFile(`/sys/block/${device.slice('/dev/'.length)}/loop/backing_file`, 'utf8');
      return back.trim() === file;
    } catch {
      return false;
    }
  }
}
