import { readdir, readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { parseLosetupList } from '../../../src/mount/loop.js';
import { parseMountInfo } from '../../../src/mount/mountinfo.js';

/** The kernel's side of the story, read directly: what the records are checked against. */

/** Mount points at `root/<name>` in this mount namespace, as volume names. */
export async function mountedUnder(root: string): Promise<string[]> {
  const entries = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return entries
    .filter((e) => e.mountPoint.startsWith(`${root}/`))
    .map((e) => e.mountPoint.slice(root.length + 1))
    .sort();
}

/** Loop devices whose backing file lies in `dir`: device -> file name. */
export async function loopsBacking(dir: string): Promise<Map<string, string>> {
  const res = await execa(
    'losetup',
    ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN'],
    {
      timeout: 10_000,
    },
  );
  const out = new Map<string, string>();
  for (const d of parseLosetupList(res.stdout)) {
    const file = d.backFile?.replace(/ \(deleted\)$/, '');
    if (file?.startsWith(`${dir}/`)) out.set(d.name, file.slice(dir.length + 1));
  }
  return out;
}

/** File names in `dir` ([] when it does not exist yet). */
export async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [])).sort();
}
