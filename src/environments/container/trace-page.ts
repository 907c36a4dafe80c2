// The kernel's ring-buffer pages as read from tracefs per_cpu/cpuN/trace_pipe_raw, decoded for the
// three sched events the exec trace records (exec-trace.ts). Pure but for readEventFormats.
//
// A page (events/header_page): u64 timestamp, local_t commit (the data's length in its low bits),
// data from offset 16. An event (events/header_event): a u32 of type_len:5, time_delta:27; type_len
// 1-28: that many u32 of payload follow; 0: a u32 length (itself included), then the payload; 29:
// padding; 30: a time extend (delta += next u32 << 27); 31: an absolute time stamp. Payloads start
// with the common fields (u16 common_type, the event's ID); field offsets come from each event's
// `format` file. Little-endian: the x86_64 layout (the seccomp tables are x86_64's only too).

import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface ExecEvent {
  kind: 'exec';
  /** Trace clock (`mono`: CLOCK_MONOTONIC, ns). */
  ts: bigint;
  pid: number;
  oldPid: number;
  filename: string;
}
export type TraceEvent = ExecEvent | { kind: 'fork'; ts: bigint; parentPid: number; childPid: number } | { kind: 'exit'; ts: bigint; pid: number };

export interface TraceFormats {
  exec: { id: number; filename: number; pid: number; oldPid: number };
  fork: { id: number; parentPid: number; childPid: number };
  exit: { id: number; pid: number };
}

async function fieldOffsets(root: string, event: string): Promise<{ id: number; offset: (decl: string) => number }> {
  const text = await fs.readFile(path.join(root, 'events/sched', event, 'format'), 'utf8');
  const id = /^ID: (\d+)$/m.exec(text);
  if (!id) throw new Error(`${event} has no ID`);
  return {
    id: Number(id[1]),
    offset: (decl) => {
      const at = text.indexOf(`field:${decl};`);
      const m = at < 0 ? null : /offset:(\d+);/.exec(text.slice(at));
      if (!m) throw new Error(`${event} has no field ${decl}`);
      return Number(m[1]);
    },
  };
}

export async function readEventFormats(root: string): Promise<TraceFormats> {
  const [exec, fork, exit] = await Promise.all(['sched_process_exec', 'sched_process_fork', 'sched_process_exit'].map((e) => fieldOffsets(root, e)));
  return {
    exec: { id: exec.id, filename: exec.offset('__data_loc char[] filename'), pid: exec.offset('pid_t pid'), oldPid: exec.offset('pid_t old_pid') },
    fork: { id: fork.id, parentPid: fork.offset('pid_t parent_pid'), childPid: fork.offset('pid_t child_pid') },
    exit: { id: exit.id, pid: exit.offset('pid_t pid') },
  };
}

/** Appends the page's events of `formats` to `out`; returns a problem or null. */
export function parsePage(page: Buffer, formats: TraceFormats, out: TraceEvent[]): string | null {
  if (page.length < 16) return 'short page';
  let ts = page.readBigUInt64LE(0);
  const length = page.readUInt32LE(8) & 0x3fffffff; // bits 30, 31: missed-events flags
  const end = Math.min(page.length, 16 + length);
  let at = 16;
  while (at + 4 <= end) {
    const header = page.readUInt32LE(at);
    const typeLen = header & 0x1f;
    const delta = BigInt(header >>> 5);
    if (typeLen === 29) {
      // padding: its length follows; with no time delta, the rest of the page
      if (delta === 0n || at + 8 > end) break;
      at += 4 + page.readUInt32LE(at + 4);
      continue;
    }
    if (typeLen === 30 || typeLen === 31) {
      if (at + 8 > end) return 'cut time record';
      const high = BigInt(page.readUInt32LE(at + 4));
      ts = typeLen === 30 ? ts + (high << 27n) + delta : (high << 27n) + delta;
      at += 8;
      continue;
    }
    let dataAt: number;
    let dataLen: number;
    if (typeLen === 0) {
      if (at + 8 > end) return 'cut event';
      const len = page.readUInt32LE(at + 4);
      dataAt = at + 8;
      dataLen = len - 4;
      at += 4 + len;
    } else {
      dataAt = at + 4;
      dataLen = typeLen * 4;
      at += 4 + dataLen;
    }
    ts += delta;
    if (dataLen < 2 || dataAt + dataLen > end) return 'event beyond its page';
    const id = page.readUInt16LE(dataAt);
    const i32 = (offset: number) => (offset + 4 <= dataLen ? page.readInt32LE(dataAt + offset) : -1);
    if (id === formats.exec.id) {
      if (formats.exec.filename + 4 > dataLen) return 'cut exec event';
      const loc = page.readUInt32LE(dataAt + formats.exec.filename);
      const nameAt = dataAt + (loc & 0xffff);
      const nameLen = loc >>> 16;
      if (nameAt + nameLen > dataAt + dataLen) return 'file name beyond its event';
      let name = page.subarray(nameAt, nameAt + nameLen);
      const nul = name.indexOf(0);
      if (nul >= 0) name = name.subarray(0, nul);
      out.push({ kind: 'exec', ts, pid: i32(formats.exec.pid), oldPid: i32(formats.exec.oldPid), filename: name.toString('utf8') });
    } else if (id === formats.fork.id) {
      out.push({ kind: 'fork', ts, parentPid: i32(formats.fork.parentPid), childPid: i32(formats.fork.childPid) });
    } else if (id === formats.exit.id) {
      out.push({ kind: 'exit', ts, pid: i32(formats.exit.pid) });
    }
  }
  return null;
}
