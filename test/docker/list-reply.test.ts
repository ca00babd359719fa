import { describe, expect, it } from 'vitest';
import { encodeListReply, ListReplies } from '../../src/docker/list-reply.js';
import type { VolumeSummary } from '../../src/state/store.js';

/** What the List route answered before it encoded by hand: the bytes must stay the same. */
const stringified = (list: readonly VolumeSummary[]) =>
  JSON.stringify({
    Volumes: list.map((v) => ({ Name: v.name, Mountpoint: v.mountpoint ?? '', CreatedAt: v.createdAt })),
    Err: '',
  });

const at = '2026-11-29T10:17:34.210Z';
const many = (n: number, mountEvery = 10): VolumeSummary[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `vol-${String(i).padStart(6, '0')}`,
    driver: 'local',
    createdAt: at,
    ...(i % mountEvery === 0 ? { mountpoint: `/var/lib/stowage/volumes/vol-${i}` } : {}),
  }));

describe('encodeListReply', () => {
  it('gives the bytes JSON.stringify gives, for plain and awkward strings alike', () => {
    const awkward: VolumeSummary[] = [
      { name: 'a"quote', driver: 'local', createdAt: at, mountpoint: 'C:\\back\\slash' },
      { name: 'tab\there', driver: 'local', createdAt: at, mountpoint: '/mnt/ünïcödé/日本' },
      { name: 'emoji-😀', driver: 'local', createdAt: at, mountpoint: '/ctl/\u0001\u001f\u007f' },
      { name: 'lone-\ud800-surrogate', driver: 'local', createdAt: at },
      { name: '', driver: 'local', createdAt: '' },
    ];
    for (const list of [[], awkward, many(3)]) {
      expect(encodeListReply(list).bytes.toString('utf8')).toBe(stringified(list));
    }
  });

  it('stays exact across many chunks and when the first size guess is too small', () => {
    const list = many(5000);
    expect(encodeListReply(list).bytes.toString('utf8')).toBe(stringified(list));
    // Long mountpoints: twice and more the guessed bytes per entry, so the buffer has to grow.
    const long = list.map((v) => ({ ...v, mountpoint: `/${'x'.repeat(300)}/${v.name}` }));
    expect(encodeListReply(long).bytes.toString('utf8')).toBe(stringified(long));
  });

  it('writes into the memory it is given when that fits, and into new memory when not', () => {
    const list = many(2000);
    const first = encodeListReply(list);
    const again = encodeListReply(list, first.memory);
    expect(again.memory).toBe(first.memory);
    expect(again.bytes.toString('utf8')).toBe(stringified(list));
    const small = Buffer.alloc(16);
    expect(encodeListReply(list, small).memory).not.toBe(small);
  });
});

describe('ListReplies', () => {
  it('encodes a list once and hands out the same bytes while the list is the same', () => {
    const replies = new ListReplies();
    const list = Object.freeze(many(100));
    const a = replies.take(list);
    const b = replies.take(list);
    expect(b.bytes).toBe(a.bytes);
    expect(a.bytes.toString('utf8')).toBe(stringified(list));
  });

  it("reuses the previous reply's memory for the next list once every send of it is delivered", () => {
    const replies = new ListReplies();
    const first = replies.take(many(1000));
    first.delivered();
    const second = replies.take(many(1000, 7));
    expect(second.bytes.buffer).toBe(first.bytes.buffer);
    expect(second.bytes.toString('utf8')).toBe(stringified(many(1000, 7)));
  });

  it('never writes over a reply still being sent (or whose caller left mid-write)', () => {
    const replies = new ListReplies();
    const list1 = many(1000);
    const slow = replies.take(list1);
    const fast = replies.take(list1);
    fast.delivered();
    fast.delivered(); // counted once
    const text = slow.bytes.toString('utf8');
    const next = replies.take(many(1000, 3));
    expect(next.bytes.buffer).not.toBe(slow.bytes.buffer);
    expect(slow.bytes.toString('utf8')).toBe(text);
    expect(next.bytes.toString('utf8')).toBe(stringified(many(1000, 3)));
  });
});
