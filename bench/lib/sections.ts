import { readFile, writeFile } from 'node:fs/promises';

/**
 * BENCHMARKS.md holds one section per benchmark, each rewritten only by its own run and delimited
 * by HTML comments. A file written before sections existed counts as the socket-latency section.
 */
const begin = (id: string) => `<!-- bench:${id} -->`;
const end = (id: string) => `<!-- /bench:${id} -->`;
const ORDER = [
  'socket-latency',
  'flexvolume-coldstart',
  'mount-path',
  'deploy',
  'store-scale',
  'csi-node-publish',
  'csi-create',
];

export async function writeSection(path: string, id: string, markdown: string): Promise<void> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const sections = new Map<string, string>();
  if (text && !text.includes('<!-- bench:')) sections.set('socket-latency', text.trim());
  for (const m of text.matchAll(/<!-- bench:([a-z-]+) -->\n([\s\S]*?)\n<!-- \/bench:\1 -->/g)) {
    sections.set(m[1]!, m[2]!.trim());
  }
  sections.set(id, markdown.trim());
  const ids = [
    ...ORDER.filter((i) => sections.has(i)),
    ...[...sections.keys()].filter((i) => !ORDER.includes(i)),
  ];
  await writeFile(path, `${ids.map((i) => `${begin(i)}\n${sections.get(i)}\n${end(i)}`).join('\n\n')}\n`);
}
