import type { VolumeSummary } from '../state/store.js';

/**
 * Text gathered before it is written into the reply buffer: small enough to stay among V8's
 * short-lived objects (well under its 128 kB large-object size), large enough that the writes
 * (calls into C++) are few: about 400 per 100,000 volumes.
 */
const CHUNK_CHARS = 32 * 1024;
/** Bytes a List entry usually takes (name, empty mountpoint, ISO time): the first guess of the size. */
const ENTRY_BYTES_GUESS = 96;

/** One encoded reply and the memory it lives in (`bytes` is the front of `memory`). */
interface Encoded {
  list: readonly VolumeSummary[];
  bytes: Buffer;
  memory: Buffer;
  /**
   * Callers it was handed to whose reply is not written out yet. A caller that left mid-write
   * never counts down: that memory is then never reused (the write may still read it).
   */
  sending: number;
}

/**
 * The List reply of one plugin socket, encoded once per change of the store's summaries (the
 * store hands back the same array while nothing changed), into memory that is reused.
 *
 * Why: at 100,000 volumes the reply is ~8 MB, and under a steady trickle of changes each List
 * makes a new one. The old one is freed only by a full garbage collection, which V8 runs late
 * when the heap holds little else (measured: 40-80 MB of stale replies waiting). So the next
 * reply is written over the previous one's memory, once every caller it was handed to has had it
 * written out; one still being sent (or whose caller left mid-write) is left alone and the next
 * reply gets memory of its own.
 */
export class ListReplies {
  private current: Encoded | undefined;

  /** The reply for `list`; call `delivered()` of the result once it is written out. */
  take(list: readonly VolumeSummary[]): { bytes: Buffer; delivered: () => void } {
    let cur = this.current;
    if (cur?.list !== list) {
      const reusable = cur && cur.sending === 0 ? cur.memory : undefined;
      cur = { list, ...encodeListReply(list, reusable), sending: 0 };
      this.current = cur;
    }
    const taken = cur;
    taken.sending++;
    let done = false;
    return {
      bytes: taken.bytes,
      delivered: () => {
        if (done) return;
        done = true;
        taken.sending--;
      },
    };
  }
}

/**
 * Docker's List reply, `{"Volumes":[{"Name","Mountpoint","CreatedAt"},...],"Err":""}` (the same
 * bytes JSON.stringify gives), written straight into a Buffer: `into` when it is large enough
 * and not much too large, else new memory.
 *
 * Why not JSON.stringify: built as one 8 MB string the reply costs a wrapper object per volume
 * plus the string's growing copies, all in V8's large-object space (freed only by a full
 * collection); node:http then prepends the headers to a string body, which makes another 8 MB
 * copy for every request, and encodes it into one more. The Buffer is filled from small
 * short-lived chunks and written to each caller as it is.
 */
export function encodeListReply(
  list: readonly VolumeSummary[],
  into?: Buffer,
): { bytes: Buffer; memory: Buffer } {
  const guess = Math.max(1024, list.length * ENTRY_BYTES_GUESS);
  let buf = into && into.length >= guess && into.length <= 4 * guess ? into : Buffer.allocUnsafe(guess);
  let used = 0;
  const put = (text: string) => {
    const most = text.length * 3; // UTF-8 bytes of a UTF-16 length, at most
    if (used + most > buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * buf.length, used + most));
      buf.copy(bigger, 0, 0, used);
      buf = bigger;
    }
    used += buf.write(text, used, 'utf8');
  };
  let chunk = '{"Volumes":[';
  for (let i = 0; i < list.length; i++) {
    const v = list[i]!;
    chunk += `${i === 0 ? '' : ','}{"Name":${quote(v.name)},"Mountpoint":${quote(v.mountpoint ?? '')},"CreatedAt":${quote(v.createdAt)}}`;
    if (chunk.length >= CHUNK_CHARS) {
      put(chunk);
      chunk = '';
    }
  }
  put(`${chunk}],"Err":""}`);
  return { bytes: buf.subarray(0, used), memory: buf };
}

/** Printable ASCII but for the quote and the backslash: JSON-quoted as it is (names, paths, times). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** JSON.stringify of a string, without its cost for the plain ones (a third of the encoding time). */
function quote(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}
