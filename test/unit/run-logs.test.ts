// The complete logs of a run as files: exact bytes up to the limit, one marker line past it, backpressure
// when the disk lags, service logs copied without following links.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StreamLog, copyLog, cutMarker, serviceLogArtifactName } from '../../src/environments/run-logs';

describe('run logs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'run-logs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps every byte under the limit, exactly, whatever the chunks', async () => {
    const log = await StreamLog.open(dir, 'stdout.log', 1 << 20);
    const want: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const chunk = Buffer.from([i & 0xff, 0, 0xff, 0xfe, 10]);
      want.push(chunk);
      log.write(chunk);
      chunk.fill(7); // the caller may reuse its buffer at once
    }
    const end = await log.close();
    assert.deepEqual(readFileSync(join(dir, 'stdout.log')), Buffer.concat(want.map((_, i) => Buffer.from([i & 0xff, 0, 0xff, 0xfe, 10]))));
    assert.deepEqual([end.dropped, end.file.sizeBytes, end.file.kind, end.error], [0, 1500, 'LOG', undefined]);
  });

  it('cuts at the limit with one marker line (a newline first when the kept part does not end a line)', async () => {
    const log = await StreamLog.open(dir, 'cut.log', 10);
    log.write(Buffer.from('0123456'));
    log.write(Buffer.from('789abcdef'));
    log.write(Buffer.from('more'));
    const end = await log.close();
    assert.equal(end.dropped, 10);
    assert.equal(readFileSync(join(dir, 'cut.log'), 'latin1'), `0123456789${cutMarker(10, 10, false)}`);
    assert.equal(cutMarker(10, 10, false), '\n[test-orchestrator: log cut at the log limit of 10 bytes (MAX_LOG_BYTES): 10 more bytes were dropped]\n');
    assert.equal(end.file.sizeBytes, readFileSync(join(dir, 'cut.log')).length);
    assert.deepEqual(await log.close(), end, 'closing twice gives the same end');
  });

  it('asks its source to pause while more than 1 MiB waits for the disk, and to go on once drained', async () => {
    const log = await StreamLog.open(dir, 'big.log', 64 << 20);
    let paused = false;
    for (let i = 0; i < 64 && !paused; i++) paused = !log.write(Buffer.alloc(64 * 1024, 'x'));
    assert.equal(paused, true, 'write() says to pause');
    await new Promise<void>((resolve) => log.onDrain(resolve));
    const end = await log.close();
    assert.ok(end.file.sizeBytes >= 1 << 20);
  });

  it('copies a service log up to the limit without reading the rest, and leaves a link or a FIFO out', async () => {
    const src = join(dir, 'service-0.log');
    writeFileSync(src, Buffer.from('svc\0\xff\n', 'latin1'));
    truncateSync(src, 10 * 1024 * 1024 * 1024); // 10 GiB, sparse: read only up to the limit
    const out = join(dir, 'out');
    const end = await copyLog(src, out, serviceLogArtifactName('db one', 0), 100);
    assert.ok(end && 'file' in end);
    assert.equal(end.file.name, 'service-db_one.log');
    assert.equal(end.dropped, 10 * 1024 * 1024 * 1024 - 100);
    const bytes = readFileSync(join(out, 'service-db_one.log'));
    assert.deepEqual(bytes.subarray(0, 6), Buffer.from('svc\0\xff\n', 'latin1'));
    assert.equal(bytes.subarray(100).toString(), cutMarker(100, 10 * 1024 * 1024 * 1024 - 100, false));

    symlinkSync('/etc/passwd', join(dir, 'link.log'));
    assert.deepEqual(await copyLog(join(dir, 'link.log'), out, 'service-l.log', 100), { skipped: 'it is a symbolic link' });
    assert.deepEqual(await copyLog(join(dir, 'none.log'), out, 'service-n.log', 100), { skipped: null });
    execFileSync('mkfifo', [join(dir, 'fifo.log')]);
    assert.deepEqual(await copyLog(join(dir, 'fifo.log'), out, 'service-f.log', 100), { skipped: 'it is not a regular file' });
    assert.equal(serviceLogArtifactName('', 3), 'service-3.log');
    assert.equal(serviceLogArtifactName('../x', 1), 'service-__x.log');
  });
});
